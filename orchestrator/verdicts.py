"""The words results are given in, shared by the actions that reach them and the reports that
render them (JUnit XML, the Prometheus textfiles), which may not import actions (the layers:
``[tool.importlinter]`` in pyproject.toml): how one part of a run ended — a check of
``hopnhat verify``, a repository of ``hopnhat maintain``, a system of ``hopnhat vault pull``
— and the names of verify's checks, which are the JUnit test cases' names and the textfile's
``check`` label. A new check gets its name here and its judgement in
:mod:`orchestrator.actions.verify.checks`.

The backup job's results (ok, partial, failed, refused) are its contract with the control
host, in :mod:`orchestrator.hostjob.contract`. Importing nothing, this module sits below
every layer.
"""

from __future__ import annotations

#: ``ok``; ``failed``: it ran and found something wrong (or its work failed); ``error``: it
#: could not run (the repository unreachable, locked…); ``skipped``: nothing to do, or not
#: asked for
OK, FAILED, ERROR, SKIPPED = "ok", "failed", "error", "skipped"

STRUCTURE, READ_DATA, FRESHNESS, ANOMALY, COPY, LOCKS, FINAL = (
    "structure", "read_data", "freshness", "anomaly", "copy", "locks", "final")
#: the checks that notice an attack on the repository (judged in
#: :mod:`orchestrator.actions.verify.attacks`)
FUTURE, FOREIGN, VANISHED, DELETIONS = "future", "foreign", "vanished", "deletions"
#: every check, in the order reports show them
CHECKS = (STRUCTURE, READ_DATA, FRESHNESS, ANOMALY, COPY, LOCKS, FINAL, FUTURE, FOREIGN,
          VANISHED, DELETIONS)
