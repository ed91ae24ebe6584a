"""The Prometheus textfile of a maintenance pass (``hopnhat maintain --metrics``): per
repository when it last succeeded (carried from the ledger for one that failed this time, so
a repository that keeps failing still ages into the alert), what this pass removed, and the
pass's exit code and time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from orchestrator.reports import passes


class Outcome(passes.Outcome, Protocol):
    """What the pass did to one repository (of ``actions.maintain.run.Outcome``)."""

    @property
    def removed(self) -> Sequence[str]:
        """The IDs of the snapshots removed."""


class MaintainResult(passes.Pass[Outcome], Protocol):
    """The pass (of ``actions.maintain.run.MaintainResult``)."""

    @property
    def dry_run(self) -> bool: ...


TEXTFILE = passes.Textfile[Outcome, tuple[str, str]](
    last_success=("hopnhat_maintain_last_success_timestamp_seconds",
                  "When the repository was last pruned by its retention from the control "
                  "host."),
    counted=("hopnhat_maintain_removed_snapshots", "Snapshots this maintenance pass removed."),
    last_run=("hopnhat_maintain_last_run_timestamp_seconds",
              "When this maintenance pass started."),
    exit_code=("hopnhat_maintain_exit_code", "Exit code of the maintenance pass: 0 all done, "
               "1 a repository failed, 2 could not run."),
    labels=lambda o: {"system": o.target.system, "repository": o.target.repository},
    key=lambda o: (o.target.system, o.target.repository),
    count=lambda o: len(o.removed))


def render_maintain_metrics(estate: str, result: MaintainResult,
                            last_success: Mapping[tuple[str, str], float]) -> str:
    """``last_success``: (system, repository) → time of its last success before this pass."""
    return TEXTFILE.render(estate, result, last_success, changed=not result.dry_run)
