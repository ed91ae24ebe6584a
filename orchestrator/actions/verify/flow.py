"""``hopnhat verify`` from end to end, the one flow the CLI calls: load the estate, plan,
verify with the ledger open, write the JUnit and metrics files, ping and tell people
(:mod:`orchestrator.actions.verify.notify`; what each channel made of it is in the run's
ledger events and the result).

Whoever is told of a run is told when it cannot run too: a verification that stops before
any repository is checked (a bad estate, an unknown system, no vault, a report folder that
cannot be written: exit 2) still notifies ``failure`` and writes a metrics file carrying
its exit code, so a nightly job that never starts is seen.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from orchestrator.actions.selection import require_known
from orchestrator.actions.verify.notify import Notifier
from orchestrator.actions.verify.run import RepositoryReport, VerifyPlan, VerifyResult, plan, verify
from orchestrator.adapters.notify import Sent
from orchestrator.errors import EXIT_BAD_INPUT, HopnhatError
from orchestrator.estate.model import Estate
from orchestrator.estate.secrets import Secrets
from orchestrator.ledger import Ledger
from orchestrator.reports import write_report
from orchestrator.reports.junit import render_junit
from orchestrator.reports.metrics import render_could_not_run, render_metrics
from orchestrator.settings import Paths


class Loaded(Protocol):
    """The estate, loaded when first asked for (a bad one raises EstateError then)."""

    @property
    def estate(self) -> Estate:
        """As it stands: its files, less what ``retire`` closed."""

    @property
    def declared(self) -> Estate:
        """As its files declare it."""

    @property
    def paths(self) -> Paths: ...


@dataclass(frozen=True)
class VerifyRequest:
    """What the operator asked of ``verify``: its options."""

    systems: Sequence[str] = ()
    read_data_subset: str = "auto"
    concurrency: int | None = None
    junit: Path | None = None
    metrics: Path | None = None
    notify_url: str | None = None


@dataclass(frozen=True)
class Verified:
    """A verification and the notifications sent of it."""

    result: VerifyResult
    notifications: tuple[Sent, ...]


@dataclass
class _Told:
    """Who hears of this run, as far as it is known yet: the notifier of the options until
    the estate's settings are read, the estate's id once it is loaded."""

    notifier: Notifier
    started: float
    estate: str = ""

    def could_not_run(self, metrics: Path | None, exc: HopnhatError) -> None:
        self.notifier.could_not_run(str(exc), exc.exit_code)
        if metrics is not None:
            # when the folder itself is the problem, the error raised says so
            with contextlib.suppress(OSError):
                write_report(metrics, render_could_not_run(self.estate, self.started,
                                                           exc.exit_code))


def verify_flow(loaded: Loaded, request: VerifyRequest, *,
                on_planned: Callable[[VerifyPlan], None] | None = None,
                on_report: Callable[[RepositoryReport], None] | None = None) -> Verified:
    """Verify the repositories ``request`` selects (see :func:`~.run.verify`), then write
    its JUnit and metrics files and send the notifications. ``on_planned`` hears the plan
    before the first repository, ``on_report`` each repository as it is done. Raises
    HopnhatError when it cannot run (exit 2: notified and in the metrics file first)."""
    told = _Told(Notifier(url=request.notify_url), time.time())
    try:
        result = _verified(loaded, request, told, on_planned, on_report)
    except HopnhatError as exc:
        if exc.exit_code == EXIT_BAD_INPUT:
            told.could_not_run(request.metrics, exc)
        raise
    if request.junit is not None:
        write_report(request.junit, render_junit(result))
    if request.metrics is not None:
        write_report(request.metrics, render_metrics(result))
    paths = told.notifier.paths
    if paths is None:
        told.notifier.finish(result)
    else:
        with Ledger(paths.ledger) as ledger:
            told.notifier.finish(result, ledger)
    return Verified(result, tuple(told.notifier.sent))


def _verified(loaded: Loaded, request: VerifyRequest, told: _Told,
              on_planned: Callable[[VerifyPlan], None] | None,
              on_report: Callable[[RepositoryReport], None] | None) -> VerifyResult:
    """The run itself, ``told`` kept up to date for a failure on the way."""
    estate = loaded.estate
    told.estate = estate.id
    require_known(loaded.declared, systems=request.systems)
    paths = loaded.paths
    secrets = Secrets(paths)
    told.notifier = Notifier.configured(
        estate.settings.verification, secrets, url=request.notify_url, paths=paths,
        estate=estate.id)
    writable(request.junit, "--junit")
    writable(request.metrics, "--metrics")
    with Ledger(paths.ledger) as ledger:
        the_plan = plan(estate, request.systems, request.read_data_subset, ledger,
                        request.concurrency, declared=loaded.declared)
        if not the_plan.targets:
            raise HopnhatError("no system of the estate has a backup to verify",
                               exit_code=EXIT_BAD_INPUT)
        if on_planned is not None:
            on_planned(the_plan)
        return verify(paths, the_plan, ledger=ledger, secrets=secrets,
                      on_start=lambda run_id: told.notifier.start(run_id,
                                                                  len(the_plan.targets)),
                      on_report=on_report)


def writable(path: Path | None, what: str) -> None:
    """Make ``path``'s folder; raise HopnhatError (exit 2) when it cannot be written."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HopnhatError(f"{what} {path}: cannot create its folder ({exc.strerror})",
                           exit_code=EXIT_BAD_INPUT) from None
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK | os.X_OK):
        raise HopnhatError(f"{what} {path}: its folder is not writable",
                           exit_code=EXIT_BAD_INPUT)
