"""The Prometheus textfile of a vault pull (``hopnhat vault pull --metrics``): per system when
its copy into the vault last succeeded (carried from the ledger for one that failed this
time, so a system that keeps failing still ages into an alert), what this pull copied, and
the pull's exit code and time. Whether the vault holds every snapshot is ``verify``'s copy
check (``hopnhat_backup_copy_lag_seconds``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from orchestrator.reports import passes
from orchestrator.reports.metrics import gauges
from orchestrator.verdicts import OK

HELP = {
    "hopnhat_vault_last_success_timestamp_seconds":
        "When the system's snapshots were last copied into the vault by the control host.",
    "hopnhat_vault_copied_snapshots": "Snapshots this vault pull copied.",
    "hopnhat_vault_last_run_timestamp_seconds": "When this vault pull started.",
    "hopnhat_vault_exit_code": "Exit code of the vault pull: 0 all done, 1 a system failed, "
                               "2 could not run.",
}


class Target(passes.Target, Protocol):
    """One system's pull (of ``actions.vault.Target``): from its repository host into the
    vault."""

    @property
    def vault(self) -> str:
        """The vault's repository host."""


class Outcome(passes.Outcome, Protocol):
    """What one system's pull did (of ``actions.vault.Outcome``)."""

    @property
    def target(self) -> Target: ...

    @property
    def copied(self) -> Sequence[str]:
        """The IDs of the snapshots copied."""


#: the pull (of ``actions.vault.PullResult``)
PullResult = passes.Pass[Outcome]


def render_vault_metrics(estate: str, result: PullResult,
                         last_success: Mapping[str, float]) -> str:
    """``last_success``: system → time of its last successful pull before this one."""
    series: dict[str, list[tuple[Mapping[str, str], float]]] = {name: [] for name in HELP}
    for outcome in result.outcomes:
        t = outcome.target
        labels = {"system": t.system, "repository": t.repository, "vault": t.vault}
        when = result.started if outcome.status == OK else last_success.get(t.system)
        if when is not None:
            series["hopnhat_vault_last_success_timestamp_seconds"].append((labels, when))
        if outcome.status == OK:
            series["hopnhat_vault_copied_snapshots"].append((labels, float(len(outcome.copied))))
    run = {"estate": estate}
    series["hopnhat_vault_last_run_timestamp_seconds"].append((run, result.started))
    series["hopnhat_vault_exit_code"].append((run, float(result.exit_code)))
    return gauges(HELP, series)
