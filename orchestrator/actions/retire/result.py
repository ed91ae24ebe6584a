"""What a retirement did: :class:`RetireResult`, built by :mod:`~orchestrator.actions.retire.run`
and written as evidence by :mod:`~orchestrator.actions.retire.evidence` (both import it here,
so neither imports the other)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.actions.drill.result import StepRecord
from orchestrator.actions.retire.plan import RetirePlan

PASSED, FAILED = "passed", "failed"


@dataclass
class RetireResult:
    run_id: str
    plan: RetirePlan
    operator: str
    started_at: float
    finished_at: float = 0.0
    steps: list[StepRecord] = field(default_factory=list)
    verdict: str = FAILED
    failed_step: str = ""
    reasons: list[str] = field(default_factory=list)
    exit_code: int = 1
    backup_run: str | None = None
    restic_version: str | None = None
    check: dict[str, Any] = field(default_factory=dict)
    finals: dict[str, str] = field(default_factory=dict)  # host → final snapshot ID
    kept: list[dict[str, Any]] = field(default_factory=list)  # the snapshots kept
    manifest_sha256: str | None = None
    manifest_totals: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    catalogue: dict[str, Any] = field(default_factory=dict)
    evidence: str | None = None
    sha256: str | None = None
    html: str | None = None
    timers: list[str] = field(default_factory=list)
    destroyed: list[str] = field(default_factory=list)
    resumed_from: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "system": self.plan.system, "verdict": self.verdict,
                "exit_code": self.exit_code, "failed_step": self.failed_step or None,
                "reasons": self.reasons, "plan": self.plan.as_dict(),
                "operator": self.operator, "seconds": round(self.finished_at
                                                            - self.started_at, 3),
                "steps": [s.as_dict() for s in self.steps], "backup_run": self.backup_run,
                "check": self.check, "finals": self.finals, "kept": self.kept,
                "manifest_sha256": self.manifest_sha256, "catalogue": self.catalogue,
                "evidence": self.evidence, "evidence_sha256": self.sha256, "html": self.html,
                "timers_removed": self.timers, "destroyed": self.destroyed,
                "resumed_from": self.resumed_from}
