"""Running one night of drills: the systems of a :class:`~.tonight.NightPlan` started in
order through a :class:`Launcher` while the window and the scratch-VM limit allow, the window's
end stopping what still runs (:func:`run_night`); :class:`ThreadLauncher` runs each drill
(:func:`~.run.run_drill`) in a thread of its own. See :mod:`~.nightly` for the rules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from orchestrator.actions.drill.evidence import iso
from orchestrator.actions.drill.plan import DrillPlan
from orchestrator.actions.drill.result import (
    EXIT_ABORTED,
    FAILED,
    PASSED,
    Cancel,
    DrillAborted,
    DrillProgress,
    DrillResult,
    StepRecord,
)
from orchestrator.actions.drill.tonight import NightPlan, Turn
from orchestrator.errors import EXIT_FAILURE, EXIT_OK, HopnhatError

NOT_RUN, STOPPED = "not run", "stopped"
WINDOW_CLOSED = "window closed"
BY_OPERATOR = "stopped by the operator"
#: how often the main thread looks up while drills run (Ctrl-C, the window's end)
SLICE = 0.2


@dataclass(frozen=True)
class Outcome:
    """What became of one system tonight: ``passed``, ``failed``, ``stopped`` (started, then
    stopped and torn down) or ``not run``, with why, and its drill's figures."""

    system: str
    tier: int
    status: str
    reason: str = ""
    drill_id: str = ""
    started_at: float | None = None
    seconds: float = 0.0
    rpo_seconds: float | None = None
    rto_seconds: float | None = None
    evidence: str = ""
    html: str = ""

    @property
    def exit_code(self) -> int | None:
        """The drill's own exit code (None when it did not run)."""
        return {PASSED: EXIT_OK, FAILED: EXIT_FAILURE, STOPPED: EXIT_ABORTED}.get(self.status)

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "tier": self.tier, "status": self.status,
                "reason": self.reason, "drill_id": self.drill_id,
                "started_at": iso(self.started_at) if self.started_at else None,
                "seconds": round(self.seconds, 3), "rpo_seconds": self.rpo_seconds,
                "rto_seconds": self.rto_seconds, "evidence": self.evidence, "html": self.html}


def outcome_of(turn: Turn, result: DrillResult) -> Outcome:
    return Outcome(turn.system, turn.tier, result.verdict, "; ".join(result.reasons),
                   result.drill_id, result.started_at,
                   max(0.0, result.finished_at - result.started_at), result.rpo_seconds,
                   result.rto_seconds, result.evidence, result.html)


# ------------------------------------------------------------------ running the night


class Launcher(Protocol):
    """Starts drills and says when they end (threads in production, a simulation with a
    fake clock in the tests)."""

    def start(self, turn: Turn) -> None: ...

    def wait(self, timeout: float) -> list[Outcome]:
        """The drills ended since the last call; returns at the latest after ``timeout``
        seconds (at once when none runs)."""

    def stop(self, reason: str) -> None:
        """Stop every running drill (each tears down, then ends ``stopped`` with
        ``reason``)."""


@dataclass
class NightRun:
    """The night as it went: each system's outcome in the plan's order, and whether the
    operator stopped it."""

    outcomes: list[Outcome] = field(default_factory=list)
    interrupted: bool = False


def run_night(plan: NightPlan, launcher: Launcher, now: Callable[[], float], *,
              slice_seconds: float = SLICE) -> NightRun:
    """Drill ``plan``'s systems through ``launcher`` (see the module's doc); ``now`` is the
    clock, read again at least every ``slice_seconds``. Ctrl-C (KeyboardInterrupt) stops the
    running drills and ends the night with ``interrupted`` set once they have torn down."""
    night = _Night(plan, launcher, now, slice_seconds)
    try:
        night.go()
    except KeyboardInterrupt:
        night.run.interrupted = True
        night.stop_all(BY_OPERATOR, shield=True)
    return night.result()


@dataclass
class _Night:
    plan: NightPlan
    launcher: Launcher
    now: Callable[[], float]
    slice_seconds: float
    run: NightRun = field(default_factory=NightRun)
    queue: list[Turn] = field(default_factory=list)
    running: dict[str, Turn] = field(default_factory=dict)
    done: dict[str, Outcome] = field(default_factory=dict)
    closed: str = ""  # why nothing more starts, once nothing may

    def __post_init__(self) -> None:
        limit = self.plan.max_scratch_vms
        for turn in self.plan.turns:
            if turn.scratch_vms > limit:
                self.done[turn.system] = Outcome(
                    turn.system, turn.tier, NOT_RUN, f"its drill needs {turn.scratch_vms} "
                    f"scratch VMs, more than nightly_drills.max_scratch_vms ({limit})")
            else:
                self.queue.append(turn)
        if not self.plan.is_open:
            window = self.plan.window
            self.closed = f"{WINDOW_CLOSED} (it opens {window.local(window.start)})"

    @property
    def in_use(self) -> int:
        return sum(t.scratch_vms for t in self.running.values())

    def go(self) -> None:
        while True:
            self._start_what_fits()
            if not self.running:
                return
            left = self.plan.window.end - self.now()
            if left <= 0:
                self.stop_all(WINDOW_CLOSED, shield=False)
                return
            self._collect(self.launcher.wait(min(left, self.slice_seconds)))

    def _start_what_fits(self) -> None:
        """Start the queue's head while the window and the scratch-VM limit allow."""
        while self.queue and not self.closed:
            turn = self.queue[0]
            if self.in_use + turn.scratch_vms > self.plan.max_scratch_vms:
                return
            if self.now() + (turn.expected_seconds or 0.0) >= self.plan.window.end:
                self.closed = WINDOW_CLOSED
                return
            self.queue.pop(0)
            self.running[turn.system] = turn
            self.launcher.start(turn)

    def _collect(self, ended: Sequence[Outcome]) -> None:
        for outcome in ended:
            self.running.pop(outcome.system, None)
            self.done[outcome.system] = outcome

    def stop_all(self, reason: str, *, shield: bool) -> None:
        """Stop what runs and wait for each to tear down; nothing more starts."""
        self.closed = self.closed or reason
        if not self.running:
            return
        self.launcher.stop(reason)
        while self.running:
            try:
                self._collect(self.launcher.wait(self.slice_seconds))
            except KeyboardInterrupt:
                if not shield:
                    raise

    def result(self) -> NightRun:
        why = self.closed or WINDOW_CLOSED
        for turn in self.plan.turns:
            if turn.system not in self.done:
                self.done[turn.system] = Outcome(turn.system, turn.tier, NOT_RUN, why)
        self.run.outcomes = [self.done[t.system] for t in self.plan.turns]
        return self.run


# ------------------------------------------------------------------ drills in threads


class _Heard:
    """A drill's progress: its id as soon as it has one (a stopped drill returns no result
    to read it from), passed on to the caller's progress."""

    def __init__(self, inner: DrillProgress | None) -> None:
        self.inner = inner
        self.drill_id = ""

    def planned(self, plan: DrillPlan) -> None:
        if self.inner is not None:
            self.inner.planned(plan)

    def step_started(self, drill_id: str, step: str) -> None:
        self.drill_id = drill_id
        if self.inner is not None:
            self.inner.step_started(drill_id, step)

    def step_finished(self, drill_id: str, step: StepRecord) -> None:
        if self.inner is not None:
            self.inner.step_finished(drill_id, step)


#: one drill: (system, cancel, progress) → its result (raises DrillAborted when stopped)
DrillCall = Callable[[str, Cancel, DrillProgress], DrillResult]


class ThreadLauncher:
    """Each drill in a thread of its own; one :class:`Cancel` stops them all."""

    def __init__(self, drill: DrillCall, workers: int,
                 progress: DrillProgress | None = None) -> None:
        self.drill, self.progress = drill, progress
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nightly")
        self.cancel = Cancel()
        self.reason = ""
        self.stopped_at: float | None = None
        self.futures: dict[Future[DrillResult], tuple[Turn, _Heard, float]] = {}

    def start(self, turn: Turn) -> None:
        heard = _Heard(self.progress)
        future = self.pool.submit(self.drill, turn.system, self.cancel, heard)
        self.futures[future] = (turn, heard, time.time())

    def wait(self, timeout: float) -> list[Outcome]:
        if not self.futures:
            return []
        finished, _ = wait(self.futures, timeout=timeout, return_when=FIRST_COMPLETED)
        return [self._outcome(f, *self.futures.pop(f)) for f in finished]

    def _outcome(self, future: Future[DrillResult], turn: Turn, heard: _Heard,
                 began: float) -> Outcome:
        try:
            result = future.result()
        except DrillAborted:
            return Outcome(turn.system, turn.tier, STOPPED,
                           f"{self.reason or BY_OPERATOR}: stopped, its scratch VMs torn down",
                           heard.drill_id, began, time.time() - began)
        except HopnhatError as exc:
            return Outcome(turn.system, turn.tier, FAILED, str(exc), heard.drill_id, began,
                           time.time() - began)
        except Exception as exc:  # a fault of one drill must not end the night unrecorded
            return Outcome(turn.system, turn.tier, FAILED, f"the drill broke: {exc!r}",
                           heard.drill_id, began, time.time() - began)
        if self.stopped_at is not None and result.verdict != PASSED \
                and result.finished_at >= self.stopped_at:
            # stopped mid-step, a drill may end failed rather than aborted: it was cut short,
            # not judged
            why = "; ".join(result.reasons) or result.verdict
            return replace(outcome_of(turn, result), status=STOPPED, reason=(
                f"{self.reason}: stopped, its scratch VMs torn down (the drill ended "
                f"{result.verdict}: {why})"))
        return outcome_of(turn, result)

    def stop(self, reason: str) -> None:
        self.reason, self.stopped_at = reason, time.time()
        self.cancel.abort()

    def close(self) -> None:
        self.pool.shutdown(wait=True)
