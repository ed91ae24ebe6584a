"""``hopnhat maintain`` from end to end, the one flow the CLI calls: plan, read every secret
the pass needs, the estate lock (a dry run takes none), the pass with the ledger open, the
metrics file (:func:`orchestrator.actions.passes.pass_flow`).

A pass that cannot run — an unknown system, a retention that keeps nothing, a key missing
from the vault: exit 2 — raises before anything is touched or recorded, and writes no
metrics file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from orchestrator.actions.maintain.plan import Target, plan_maintenance
from orchestrator.actions.maintain.run import (
    MaintainResult,
    Outcome,
    last_successes,
    maintain,
    require_secrets,
)
from orchestrator.actions.passes import Hooks, pass_flow
from orchestrator.estate.secrets import Secrets
from orchestrator.reports.maintain_metrics import render_maintain_metrics
from orchestrator.settings import Paths


def maintain_flow(paths: Paths, systems: Sequence[str] = (), *, dry_run: bool = False,
                  metrics: Path | None = None,
                  hooks: Hooks[Target, Outcome] | None = None) -> MaintainResult:
    """Maintain the repositories of ``systems`` (every system with a backup when empty; see
    :func:`~.run.maintain`), then write the textfile to ``metrics``. ``hooks`` hear of the
    lock to take, the targets and each repository's outcome."""
    hooks = hooks or Hooks()
    targets = plan_maintenance(paths.estate, systems)
    secrets = Secrets(paths)
    require_secrets(paths, targets, secrets)  # a missing key: exit 2, nothing touched
    return pass_flow(
        paths, targets, hooks, changes=not dry_run, metrics=metrics,
        run=lambda ledger: maintain(paths, targets, ledger=ledger, dry_run=dry_run,
                                    on_outcome=hooks.outcome, secrets=secrets),
        successes=last_successes,
        textfile=lambda result, before: render_maintain_metrics(paths.estate.id, result,
                                                                before))
