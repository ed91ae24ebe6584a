"""What a drill reports: its steps, its result, and how it is stopped from outside.

:class:`DrillResult` is everything a drill found (the evidence is built from it);
:class:`StepRecord` one timed step; :class:`Cancel` stops drills from another thread (a
rehearsal's Ctrl-C); :class:`DrillProgress` is what a caller hears while a drill runs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.actions.drill.checks import ContentCheck, ProbeResult
from orchestrator.actions.drill.plan import DrillPlan
from orchestrator.adapters.ssh import Remote
from orchestrator.errors import HopnhatError

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


@dataclass(frozen=True)
class StepRecord:
    """One step: when it started (seconds after the drill's start), how long it took."""

    name: str
    start: float
    seconds: float
    ok: bool
    detail: str = ""

    @property
    def end(self) -> float:
        return self.start + self.seconds

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "start": round(self.start, 3),
                "seconds": round(self.seconds, 3), "end": round(self.end, 3), "ok": self.ok,
                "detail": self.detail}


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
    probes: list[ProbeResult] = field(default_factory=list)
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
                "seconds": round(self.finished_at - self.started_at, 3),
                "sha256": self.sha256, "evidence": self.evidence, "html": self.html}
