"""What one migration step did: :class:`MigrationResult` and each target's
:class:`TargetCheck`, built by :mod:`~orchestrator.actions.migrate.run` and written as
evidence by :mod:`~orchestrator.actions.migrate.evidence` (both import them here, so neither
imports the other); the steps' and verdicts' names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.actions.drill.checks import ProbeResult
from orchestrator.actions.drill.result import StepRecord
from orchestrator.actions.migrate import manifest
from orchestrator.actions.migrate.plan import MigrationPlan

RUN, SYNC, CUTOVER = "run", "sync", "cutover"
STEPS = (RUN, SYNC, CUTOVER)
PASSED, FAILED, ABORTED = "passed", "failed", "aborted"


@dataclass
class TargetCheck:
    """One target VM's manifest check."""

    vm: str
    source: str
    snapshot: str
    differences: manifest.Differences
    totals: dict[str, dict[str, int]]
    deleted: int = 0
    changes: manifest.Changes | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"vm": self.vm, "source": self.source, "snapshot": self.snapshot,
                "ok": self.differences.ok, "differences": self.differences.as_dict(),
                "per_path": self.totals, "deleted_before_check": self.deleted,
                "changes": None if self.changes is None else self.changes.as_dict()}


@dataclass
class MigrationResult:
    """What one run, sync or cutover did."""

    run_id: str
    step: str
    estate: str
    system: str
    to: str
    operator: str
    started_at: float
    finished_at: float = 0.0
    plan: MigrationPlan | None = None
    steps: list[StepRecord] = field(default_factory=list)
    verdict: str = FAILED
    failed_step: str = ""
    reasons: list[str] = field(default_factory=list)
    backup_run: str | None = None
    restic_version: str = ""
    checks: list[TargetCheck] = field(default_factory=list)
    probes: list[ProbeResult] = field(default_factory=list)
    manifest_sha256: str | None = None
    manifest_file: str | None = None
    writes_stopped: bool = False
    writes_restored: bool | None = None
    source_marked: bool = False
    parallel_until: float | None = None
    snapshot_reason: str = ""
    failed_exit: int = 1
    evidence: str = ""
    html: str = ""
    sha256: str = ""

    @property
    def passed(self) -> bool:
        return self.verdict == PASSED

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 130 if self.verdict == ABORTED else self.failed_exit

    def summary(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "step": self.step, "to": self.to,
                "restic_version": self.restic_version or None,
                "failed_step": self.failed_step or None, "reasons": self.reasons[:20],
                "targets": [vm.name for vm in self.plan.targets] if self.plan else [],
                "snapshots": {p.source.name: p.snapshot.id for p in self.plan.pairs
                              if p.snapshot is not None} if self.plan else {},
                "manifest_sha256": self.manifest_sha256, "manifest_ok":
                    all(c.differences.ok for c in self.checks) if self.checks else None,
                "changes": {c.vm: c.changes.counts for c in self.checks
                            if c.changes is not None},
                "cut_over": self.step == CUTOVER and self.passed,
                "parallel_until": self.parallel_until,
                "evidence_sha256": self.sha256 or None, "evidence": self.evidence or None,
                "seconds": round(self.finished_at - self.started_at, 3)}
