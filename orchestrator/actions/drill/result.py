"""What a drill reports: its steps, its result, and how it is stopped from outside.

:class:`DrillResult` is everything a drill found (the evidence is built from it);
:class:`StepRecord` one timed step; :class:`Cancel` stops drills from another thread (a
rehearsal's Ctrl-C); :class:`DrillProgress` is what a caller hears while a drill runs.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.actions.drill.checks import ContentCheck
from orchestrator.actions.drill.manifest import Manifest
from orchestrator.actions.drill.plan import DrillPlan
from orchestrator.adapters.ssh import Remote
from orchestrator.errors import HopnhatError
from orchestrator.estate.recovery import DRILL_STEPS, Drill
from orchestrator.human import duration

PASSED, FAILED, ABORTED = "passed", "failed", "aborted"
EXIT_ABORTED = 130


class DrillAborted(HopnhatError):
    """The operator stopped the drill (Ctrl-C, SIGTERM); its scratch VMs were torn down."""

    exit_code = EXIT_ABORTED


class DrillProgress(Protocol):
    """What a drill tells its caller while it runs."""

    def planned(self, plan: DrillPlan) -> None: ...

    def step_started(self, drill_id: str, step: str) -> None: ...

    def step_finished(self, drill_id: str, step: StepRecord) -> None: ...


class NoDrillProgress:
    def planned(self, plan: DrillPlan) -> None:
        del plan

    def step_started(self, drill_id: str, step: str) -> None:
        del drill_id, step

    def step_finished(self, drill_id: str, step: StepRecord) -> None:
        del drill_id, step


class Cancel:
    """Stops one or more drills from another thread: :meth:`abort` sets the flag each drill
    checks between steps and closes their SSH connections, so a restore in flight ends."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._remotes: list[Remote] = []
        self._lock = threading.Lock()

    def register(self, remote: Remote) -> Remote:
        with self._lock:
            self._remotes.append(remote)
        if self.event.is_set():
            remote.close()
        return remote

    def abort(self) -> None:
        self.event.set()
        with self._lock:
            remotes = list(self._remotes)
        for remote in remotes:
            remote.close()

    def check(self) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt


#: a step of the drill's own (plan, provision, …) and one of the system's recovery steps
DRILL_STEP, RECOVERY_STEP = "drill", "recovery"


@dataclass(frozen=True)
class StepRecord:
    """One step: when it started (seconds after the drill's start), how long it took;
    ``kind``: one of the drill's own steps or a recovery step of the system's (named by the
    estate)."""

    name: str
    start: float
    seconds: float
    ok: bool
    detail: str = ""
    kind: str = DRILL_STEP

    @property
    def end(self) -> float:
        return self.start + self.seconds

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "start": round(self.start, 3),
                "seconds": round(self.seconds, 3), "end": round(self.end, 3), "ok": self.ok,
                "detail": self.detail}


@dataclass(frozen=True)
class NotRun:
    """A step the drill never reached (an earlier one failed, or it was stopped)."""

    name: str
    kind: str = DRILL_STEP

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind}


def planned_steps(recovery: Sequence[str]) -> list[NotRun]:
    """Every step a drill with these recovery steps means to run, in order (the teardown,
    which always runs, aside)."""
    own = [NotRun(name) for name in DRILL_STEPS if name != "teardown"]
    at = [s.name for s in own].index("probes")
    return [*own[:at], *(NotRun(name, RECOVERY_STEP) for name in recovery), *own[at:]]


class Probed(Protocol):
    """A probe's result, a command's or a SQL one's."""

    @property
    def ok(self) -> bool: ...

    @property
    def name(self) -> str: ...

    def describe(self) -> str: ...

    def as_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class RestoredDatabase:
    """A dump a restore_database step loaded on a scratch VM: its manifest's snapshot."""

    vm: str
    step: str
    manifest: Manifest
    seconds: float
    fetch_seconds: float = 0.0  # its file restored from the dump's snapshot
    load_seconds: float = 0.0  # loaded into the engine

    def as_dict(self) -> dict[str, Any]:
        return {"vm": self.vm, "step": self.step, "seconds": round(self.seconds, 3),
                "fetch_seconds": round(self.fetch_seconds, 3),
                "load_seconds": round(self.load_seconds, 3), **self.manifest.as_dict()}


@dataclass
class DrillResult:
    """Everything a drill found, as the evidence reports it."""

    drill_id: str
    estate: str
    system: str
    operator: str
    started_at: float
    finished_at: float = 0.0
    plan: DrillPlan | None = None
    verdict: str = FAILED
    reasons: list[str] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    restic_version: str = ""
    checks: list[ContentCheck] = field(default_factory=list)
    probes: list[Probed] = field(default_factory=list)
    databases: list[RestoredDatabase] = field(default_factory=list)
    #: the steps the drill never reached and the probes it never ran (names)
    not_run: list[NotRun] = field(default_factory=list)
    probes_not_run: list[str] = field(default_factory=list)
    rpo_seconds: float | None = None
    rto_seconds: float | None = None
    failed_step: str = ""
    kept: bool = False
    sha256: str = ""
    evidence: str = ""
    html: str = ""

    @property
    def exit_code(self) -> int:
        return {PASSED: 0, ABORTED: EXIT_ABORTED}.get(self.verdict, 1)

    def summary(self) -> dict[str, Any]:
        """What the ledger keeps of the drill (``drill history`` and ``due`` read it)."""
        plan = self.plan
        return {"system": self.system, "tier": plan.tier if plan else None,
                "verdict": self.verdict, "reasons": self.reasons,
                "rpo_seconds": self.rpo_seconds, "rto_seconds": self.rto_seconds,
                "targets": {"rpo_seconds": plan.rpo_seconds, "rto_seconds": plan.rto_seconds}
                if plan else None,
                "snapshots": [s.snapshot.id for s in plan.scratch] if plan else [],
                "scratch_vms": [vm.name for vm in plan.vms] if plan else [],
                "failed_step": self.failed_step, "kept": self.kept,
                "steps": [s.as_dict() for s in self.steps],
                "not_run": [n.as_dict() for n in self.not_run],
                "probes_not_run": list(self.probes_not_run),
                "seconds": round(self.finished_at - self.started_at, 3),
                "sha256": self.sha256, "evidence": self.evidence, "html": self.html}


def judge(result: DrillResult, aborted: bool) -> None:
    """The verdict of a drill that has ended (``aborted``: stopped): passed only when every
    step and probe passed within the tier's targets. Sets ``rpo_seconds``, ``verdict`` and
    the reasons of a miss."""
    plan = result.plan
    if plan is not None and plan.scratch:
        oldest = min(s.snapshot.time for s in plan.scratch)
        result.rpo_seconds = result.started_at - oldest.timestamp()
    if aborted:
        result.verdict = ABORTED
        return
    if result.failed_step or plan is None or result.rto_seconds is None:
        result.verdict = FAILED
        return
    if result.rpo_seconds is not None and result.rpo_seconds > plan.rpo_seconds:
        result.reasons.append(f"achieved RPO {duration(result.rpo_seconds, 'padded')} exceeds "
                              f"the tier's target {duration(plan.rpo_seconds, 'padded')}")
    if result.rto_seconds > plan.rto_seconds:
        result.reasons.append(f"achieved RTO {duration(result.rto_seconds, 'padded')} exceeds "
                              f"the tier's target {duration(plan.rto_seconds, 'padded')}")
    result.verdict = FAILED if result.reasons else PASSED


def mark_not_run(result: DrillResult, drill: Drill) -> None:
    """What the drill never reached: the steps after the one that failed (or where it was
    stopped), and the probes when it never got to them."""
    ran = {step.name for step in result.steps}
    result.not_run = [step for step in planned_steps([s.name for s in drill.recovery])
                      if step.name not in ran]
    if "probes" not in ran:
        result.probes_not_run = [p.name for p in drill.probes]
