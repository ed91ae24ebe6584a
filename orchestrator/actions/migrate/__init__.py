"""``migrate``: move a system to another site by restore (plan, run, sync, cutover, status,
report). See :mod:`~orchestrator.actions.migrate.run` for the flow."""
