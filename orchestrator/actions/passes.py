"""A pass the control host makes over the estate's repositories, one system after the other,
recorded in the ledger as one run with an event per system, with a Prometheus textfile:
``hopnhat maintain`` (:mod:`orchestrator.actions.maintain`) and ``hopnhat vault pull``
(:mod:`orchestrator.actions.vault`) are each one.

What every such pass does is here, written once: :func:`run_pass` works on each system in
turn (one that fails is named and the others still done) and finishes the run ``ok`` or
``failed`` — or ``stopped``, naming the systems done, when anything else ends it (a bug,
Ctrl-C); :func:`last_successes` reads when each system last succeeded, which the textfile
carries for one that failed this time; :func:`pass_flow` is the end of the flow each verb's
CLI command calls once (the estate lock, the ledger open for the pass, the textfile);
:class:`Ran` is what every pass's result holds. What a pass does to one repository, and what
its run and textfile say besides, stays with its verb.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from orchestrator.errors import EXIT_FAILURE, EXIT_OK, HopnhatError
from orchestrator.interrupts import interrupts
from orchestrator.ledger import Ledger, Run
from orchestrator.reports import passes as reported
from orchestrator.reports import write_report
from orchestrator.settings import Paths
from orchestrator.verdicts import FAILED, OK


class Outcome(reported.Outcome, Protocol):
    """What a pass did to one system: ok, failed (with why) or skipped, timed by the pass,
    recorded in the ledger as its ``as_dict``."""

    seconds: float

    def as_dict(self) -> dict[str, Any]: ...


T = TypeVar("T", bound=reported.Target)
Out = TypeVar("Out", bound=Outcome)
R = TypeVar("R")
K = TypeVar("K", bound=Hashable)


@dataclass
class Ran(Generic[Out]):
    """A pass as it ran: its ledger run, when it started (seconds since the epoch), what it
    did to each system, how long it took (seconds). Each verb's result is one, with what it
    says besides."""

    run_id: str
    started: float
    outcomes: list[Out]
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """1 when a system failed, else 0."""
        return EXIT_FAILURE if any(o.status == FAILED for o in self.outcomes) else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "exit_code": self.exit_code,
                "seconds": round(self.seconds, 2)}


@dataclass(frozen=True)
class Recorded(Generic[T, Out]):
    """How a pass is recorded: the kind of its ledger run, each system's event subject, the
    outcome of a system whose work raised HopnhatError (with the error's message), and what
    the run's summary says besides the systems that failed."""

    kind: str
    subject: Callable[[T], str]
    failed: Callable[[T, str], Out]
    summary: Callable[[Sequence[Out]], dict[str, Any]]


def run_pass(ledger: Ledger, recorded: Recorded[T, Out], estate: str, params: dict[str, Any],
             targets: Sequence[T], work: Callable[[T, str], Out], *,
             on_outcome: Callable[[Out], None] | None = None) -> Ran[Out]:
    """``work`` (given the run's id) on each of ``targets`` one after the other, as one run
    of ``recorded.kind`` with ``params``: each outcome timed, recorded as an event, then
    handed to ``on_outcome``. A target whose work raises HopnhatError fails, named, and the
    others are still worked on; anything else raised finishes the run ``stopped`` (naming
    the systems done) and goes on up."""
    started = time.time()
    run_id = ledger.start(recorded.kind, estate, params)
    outcomes: list[Out] = []
    try:
        for target in targets:
            outcome = _worked(recorded, target, run_id, work)
            ledger.event(run_id, recorded.subject(target), outcome.status, **outcome.as_dict())
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
    except BaseException:
        ledger.finish(run_id, "stopped", {"done": [o.target.system for o in outcomes]})
        raise
    ran = Ran(run_id, started, outcomes, time.time() - started)
    ledger.finish(run_id, "ok" if ran.exit_code == EXIT_OK else "failed", {
        **recorded.summary(outcomes),
        "failed": [o.target.system for o in outcomes if o.status == FAILED]})
    return ran


def _worked(recorded: Recorded[T, Out], target: T, run_id: str,
            work: Callable[[T, str], Out]) -> Out:
    """The outcome of ``work`` on ``target``, failed when it raised HopnhatError, timed."""
    began = time.monotonic()
    try:
        outcome = work(target, run_id)
    except HopnhatError as exc:
        outcome = recorded.failed(target, str(exc))
    outcome.seconds = time.monotonic() - began
    return outcome


def last_successes(ledger: Ledger, kind: str, key: Callable[[dict[str, Any]], K], *,
                   counts: Callable[[Run], bool] | None = None,
                   limit: int = 200) -> dict[K, float]:
    """``key`` of a system's event → when the newest of the last ``limit`` runs of ``kind``
    (those ``counts`` keeps: all when None) in which it was ok started."""
    out: dict[K, float] = {}
    for run in ledger.runs(kind, limit=limit):
        if counts is not None and not counts(run):
            continue
        for event in ledger.events(run.id):
            found = key(event)
            if event.get("kind") == OK and found not in out:
                out[found] = run.started
    return out


def _nothing(*_: object) -> None:
    """A hook that does nothing."""


@dataclass(frozen=True)
class Hooks(Generic[T, Out]):
    """What a pass's flow tells its caller as it goes; each may be left out."""

    #: once the input is checked, before anything is touched (the CLI takes the estate lock)
    lock: Callable[[], None] = _nothing
    #: the targets, before the first
    planned: Callable[[Sequence[T]], None] = _nothing
    #: each system's outcome, as it is done
    outcome: Callable[[Out], None] = _nothing


def pass_flow(paths: Paths, targets: Sequence[T], hooks: Hooks[T, Out], *, changes: bool,
              run: Callable[[Ledger], R], successes: Callable[[Ledger], dict[K, float]],
              textfile: Callable[[R, dict[K, float]], str], metrics: Path | None) -> R:
    """The rest of a pass's flow once ``targets`` are planned and their secrets read: the
    estate lock (``hooks.lock``, when the pass ``changes`` repositories: a dry run does not),
    ``hooks.planned``, then with the ledger open the last ``successes`` (read only for a
    ``metrics`` file, before this pass is recorded) and the pass (``run``; SIGINT and
    SIGTERM stop it like Ctrl-C: the ledger records it stopped); then the ``textfile``
    written to ``metrics``. Returns what ``run`` did."""
    if changes:
        hooks.lock()
    hooks.planned(targets)
    with Ledger(paths.ledger) as ledger:
        before = successes(ledger) if metrics is not None else {}
        with interrupts():
            result = run(ledger)
    if metrics is not None:
        write_report(metrics, textfile(result, before))
    return result
