"""``hopnhat drill nightly``: tonight's drills, unattended, inside the estate's window.

Tonight's systems and their order come from :mod:`~.tonight` (a pure function of the
estate, the ledger's drills and the clock). They are drilled in that order, several at once
while their scratch VMs (one per data-bearing VM of each) stay within
``nightly_drills.max_scratch_vms``; a system waits for the one before it (the overdue go
first, and stay first). Each drill is an ordinary ``drill run`` (:func:`~.run.run_drill`):
in the ledger and the evidence folder as any other, its ledger params naming the night.

The window: a drill is not started when its expected length (its last drill's) would end
after the window closes; once one is not, none after it is. At the window's end a drill
still running is stopped (its scratch VMs torn down) and reported ``stopped: window
closed``; the systems not started are reported ``not run: window closed``. Neither is lost:
no passed drill is recorded for them, so they stay due, ``drill due`` keeps alarming, and
an overdue one goes first the next night.

The night is recorded in the ledger (kind ``nightly``). Exit: 0 every drill of tonight
passed (or none was due), 1 a drill failed, 3 none failed but some were not run or were
stopped (window closed, too many scratch VMs), 130 stopped by Ctrl-C or SIGTERM (the
running drills tore down first).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from orchestrator.actions.drill.evidence import iso
from orchestrator.actions.drill.history import DueRow, due
from orchestrator.actions.drill.night import (
    NOT_RUN,
    SLICE,
    STOPPED,
    Launcher,
    NightRun,
    Outcome,
    ThreadLauncher,
    run_night,
)
from orchestrator.actions.drill.result import (
    ABORTED,
    EXIT_ABORTED,
    FAILED,
    PASSED,
    Cancel,
    DrillAborted,
    DrillProgress,
    DrillResult,
)
from orchestrator.actions.drill.tonight import NightPlan, Standing, Turn, plan_night, standings_from
from orchestrator.errors import EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL
from orchestrator.estate.model import Estate
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths

# ------------------------------------------------------------------ the flow


class NightlyHooks(Protocol):
    """Who hears of the night (the notifications): a drill that failed, as it ends; the
    systems overdue once the night is over; the whole night."""

    def drill_failed(self, outcome: Outcome) -> None: ...

    def overdue(self, rows: Sequence[DueRow]) -> None: ...

    def finished(self, result: NightlyResult) -> None: ...


class NoHooks:
    def drill_failed(self, outcome: Outcome) -> None:
        del outcome

    def overdue(self, rows: Sequence[DueRow]) -> None:
        del rows

    def finished(self, result: NightlyResult) -> None:
        del result


@dataclass
class NightlyResult:
    """The night: its plan, each system's outcome, each drillable system's standing after
    it (for the textfile), and what is overdue now."""

    night_id: str
    estate: str
    plan: NightPlan
    started: float
    finished: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)
    standings: list[Standing] = field(default_factory=list)
    overdue: list[DueRow] = field(default_factory=list)
    last_runs: dict[str, tuple[float, int, float | None, float | None]] = field(
        default_factory=dict)  # system → (started, exit code, RPO, RTO) of its last drill
    targets: dict[str, tuple[float, float]] = field(default_factory=dict)  # tier's RPO, RTO
    interrupted: bool = False

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_ABORTED
        statuses = {o.status for o in self.outcomes}
        if FAILED in statuses:
            return EXIT_FAILURE
        return EXIT_PARTIAL if statuses & {NOT_RUN, STOPPED} else EXIT_OK

    @property
    def verdict(self) -> str:
        return {EXIT_OK: PASSED, EXIT_ABORTED: ABORTED}.get(self.exit_code, FAILED)

    def summary(self) -> dict[str, Any]:
        return {**self.plan.as_dict(), "night_id": self.night_id, "verdict": self.verdict,
                "exit_code": self.exit_code, "started_at": iso(self.started),
                "seconds": round(self.seconds, 3),
                "outcomes": [o.as_dict() for o in self.outcomes],
                "overdue": [r.system for r in self.overdue if r.overdue]}


def drill_runs(ledger: Ledger, estate: Estate) -> list[dict[str, Any]]:
    """This estate's drills in the ledger as :func:`~.tonight.standings_from` reads them."""
    return [{"system": str(run.params.get("system", "")), "status": run.status,
             "started": run.started, "seconds": (run.summary or {}).get("seconds"),
             "rpo_seconds": (run.summary or {}).get("rpo_seconds"),
             "rto_seconds": (run.summary or {}).get("rto_seconds")}
            for run in ledger.history("drill") if run.estate == estate.id]


def tonight(estate: Estate, ledger: Ledger, now: float) -> NightPlan:
    """Tonight's plan as of ``now`` (``--dry-run`` prints it)."""
    return plan_night(estate, standings_from(estate, drill_runs(ledger, estate)), now)


def nightly(paths: Paths, *, ledger: Ledger, now: Callable[[], float] = time.time,
            lang: str = "en", progress: DrillProgress | None = None,
            hooks: NightlyHooks | None = None, launcher: Launcher | None = None,
            metrics: Path | None = None, junit: Path | None = None,
            slice_seconds: float = SLICE) -> NightlyResult:
    """Tonight's drills (see the module's doc), recorded in ``ledger`` (kind ``nightly``),
    then the textfile (``metrics``) and the JUnit XML (``junit``) written. Out: the
    :class:`NightlyResult` (its ``exit_code``). Raises NightStopped (exit 130) when stopped
    by Ctrl-C or SIGTERM, after the running drills tore down and the night was recorded and
    written."""
    estate, hooks = paths.estate, hooks or NoHooks()
    started = now()
    plan = tonight(estate, ledger, started)
    night_id = ledger.start("nightly", estate.id, {
        "night": plan.window.night.isoformat(), "systems": [t.system for t in plan.turns],
        "pid": os.getpid(), "host": socket.gethostname()})
    result = NightlyResult(night_id, estate.id, plan, started)

    def drill(code: str, cancel: Cancel, heard: DrillProgress) -> DrillResult:
        from orchestrator.actions.drill.run import run_drill

        return run_drill(paths, code, ledger=ledger, lang=lang, progress=heard, cancel=cancel,
                         params={"nightly": night_id})

    threads = ThreadLauncher(drill, plan.max_scratch_vms, progress)
    try:
        ran = run_night(plan, _Told(launcher or threads, hooks, ledger, night_id), now,
                        slice_seconds=slice_seconds)
    finally:
        threads.close()
    _finish(result, ran, estate, ledger, now)
    _write(result, metrics, junit)
    hooks.overdue(result.overdue)
    hooks.finished(result)
    if ran.interrupted:
        raise NightStopped(f"nightly drills {night_id} were stopped; every running drill "
                           "tore down", result)
    return result


def _write(result: NightlyResult, metrics: Path | None, junit: Path | None) -> None:
    from orchestrator.reports import write_report
    from orchestrator.reports.drill.nightly import render_nightly_metrics
    from orchestrator.reports.junit import render_drill_junit

    if metrics is not None:
        write_report(metrics, render_nightly_metrics(result))
    if junit is not None:
        write_report(junit, render_drill_junit(result))


class NightStopped(DrillAborted):
    """Ctrl-C or SIGTERM stopped the night (exit 130); ``result`` is what it did."""

    def __init__(self, message: str, result: NightlyResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class _Told:
    """The launcher, with each ended drill recorded in the night's ledger run and a failed
    one told to the hooks at once."""

    inner: Launcher
    hooks: NightlyHooks
    ledger: Ledger
    night_id: str

    def start(self, turn: Turn) -> None:
        self.ledger.event(self.night_id, turn.system, "started", **turn.as_dict())
        self.inner.start(turn)

    def wait(self, timeout: float) -> list[Outcome]:
        ended = self.inner.wait(timeout)
        for outcome in ended:
            self.ledger.event(self.night_id, outcome.system, "ended", **outcome.as_dict())
            if outcome.status == FAILED:
                self.hooks.drill_failed(outcome)
        return ended

    def stop(self, reason: str) -> None:
        self.ledger.event(self.night_id, "", "stop", reason=reason)
        self.inner.stop(reason)


def _finish(result: NightlyResult, ran: NightRun, estate: Estate, ledger: Ledger,
            now: Callable[[], float]) -> None:
    """The outcomes, the standings and what is overdue after the night; the night recorded."""
    result.outcomes, result.interrupted = ran.outcomes, ran.interrupted
    result.finished = now()
    after_night(result, estate, ledger)
    ledger.finish(result.night_id, result.verdict, result.summary())


def after_night(result: NightlyResult, estate: Estate, ledger: Ledger) -> None:
    """Fill ``result``'s standings, last drills and overdue rows from the ledger."""
    runs = drill_runs(ledger, estate)
    result.standings = standings_from(estate, runs)
    result.overdue = due(estate, ledger, result.finished)
    for s in result.standings:
        tier = estate.tier(s.tier)
        result.targets[s.system] = (tier.rpo.total_seconds(), tier.rto.total_seconds())
    for run in sorted(runs, key=lambda r: r["started"]):
        if run["status"] in (PASSED, FAILED, ABORTED):
            code = {PASSED: EXIT_OK, FAILED: EXIT_FAILURE}.get(run["status"], EXIT_ABORTED)
            result.last_runs[run["system"]] = (run["started"], code, run["rpo_seconds"],
                                               run["rto_seconds"])
