"""The Prometheus textfile of a maintenance pass (``hopnhat maintain --metrics``): per
repository when it last succeeded (carried from the ledger for one that failed this time, so
a repository that keeps failing still ages into the alert), what this pass removed, and the
pass's exit code and time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from orchestrator.reports import passes
from orchestrator.reports.metrics import gauges
from orchestrator.verdicts import OK, SKIPPED

HELP = {
    "hopnhat_maintain_last_success_timestamp_seconds":
        "When the repository was last pruned by its retention from the control host.",
    "hopnhat_maintain_removed_snapshots": "Snapshots this maintenance pass removed.",
    "hopnhat_maintain_last_run_timestamp_seconds": "When this maintenance pass started.",
    "hopnhat_maintain_exit_code": "Exit code of the maintenance pass: 0 all done, 1 a "
                                  "repository failed, 2 could not run.",
}


class Outcome(passes.Outcome, Protocol):
    """What the pass did to one repository (of ``actions.maintain.run.Outcome``)."""

    @property
    def removed(self) -> Sequence[str]:
        """The IDs of the snapshots removed."""


class MaintainResult(passes.Pass[Outcome], Protocol):
    """The pass (of ``actions.maintain.run.MaintainResult``)."""

    @property
    def dry_run(self) -> bool: ...


def render_maintain_metrics(estate: str, result: MaintainResult,
                            last_success: Mapping[tuple[str, str], float]) -> str:
    """``last_success``: (system, repository) → time of its last success before this pass."""
    series: dict[str, list[tuple[dict[str, str], float]]] = {name: [] for name in HELP}
    for outcome in result.outcomes:
        if outcome.status == SKIPPED:
            continue
        labels = {"system": outcome.target.system, "repository": outcome.target.repository}
        key = (outcome.target.system, outcome.target.repository)
        when = result.started if outcome.status == OK and not result.dry_run \
            else last_success.get(key)
        if when is not None:
            series["hopnhat_maintain_last_success_timestamp_seconds"].append((labels, when))
        if outcome.status == OK and not result.dry_run:
            series["hopnhat_maintain_removed_snapshots"].append(
                (labels, float(len(outcome.removed))))
    run = {"estate": estate}
    series["hopnhat_maintain_last_run_timestamp_seconds"].append((run, result.started))
    series["hopnhat_maintain_exit_code"].append((run, float(result.exit_code)))
    return gauges(HELP, series)
