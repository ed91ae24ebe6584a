"""The Prometheus textfile of a vault pull (``hopnhat vault pull --metrics``): per system when
its copy into the vault last succeeded (carried from the ledger for one that failed this
time, so a system that keeps failing still ages into an alert), what this pull copied, and
the pull's exit code and time. Whether the vault holds every snapshot is ``verify``'s copy
check (``hopnhat_backup_copy_lag_seconds``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from orchestrator.reports import passes


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

TEXTFILE = passes.Textfile[Outcome, str](
    last_success=("hopnhat_vault_last_success_timestamp_seconds",
                  "When the system's snapshots were last copied into the vault by the control "
                  "host."),
    counted=("hopnhat_vault_copied_snapshots", "Snapshots this vault pull copied."),
    last_run=("hopnhat_vault_last_run_timestamp_seconds", "When this vault pull started."),
    exit_code=("hopnhat_vault_exit_code", "Exit code of the vault pull: 0 all done, 1 a system "
               "failed, 2 could not run."),
    labels=lambda o: {"system": o.target.system, "repository": o.target.repository,
                      "vault": o.target.vault},
    key=lambda o: o.target.system,
    count=lambda o: len(o.copied))


def render_vault_metrics(estate: str, result: PullResult,
                         last_success: Mapping[str, float]) -> str:
    """``last_success``: system → time of its last successful pull before this one."""
    return TEXTFILE.render(estate, result, last_success)
