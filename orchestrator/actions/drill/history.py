"""``drill history`` and ``drill due``: what the ledger says about past drills.

A system is **due** when it has no passed drill within its tier's ``drill_interval`` (or
none at all). Only systems a drill can restore (a backup and a data-bearing VM) are listed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from orchestrator.actions.drill.evidence import iso
from orchestrator.actions.drill.plan import drillable
from orchestrator.estate.model import Estate
from orchestrator.ledger import Ledger, Run


@dataclass(frozen=True)
class HistoryRow:
    drill_id: str
    system: str
    started: str
    verdict: str
    operator: str
    rpo_seconds: float | None
    rto_seconds: float | None
    sha256: str | None
    html: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"drill_id": self.drill_id, "system": self.system, "started": self.started,
                "verdict": self.verdict, "operator": self.operator,
                "rpo_seconds": self.rpo_seconds, "rto_seconds": self.rto_seconds,
                "sha256": self.sha256, "html": self.html}


def _system(run: Run) -> str:
    """The system ``run`` drilled."""
    return str(run.params.get("system", ""))


def history(ledger: Ledger, system: str | None = None) -> list[HistoryRow]:
    """Every drill in the ledger (of ``system`` when given), newest first."""
    runs = ledger.history("drill", of=lambda run: system is None or _system(run) == system)
    return [_row(run) for run in runs]


def _row(run: Run) -> HistoryRow:
    s = run.summary or {}
    return HistoryRow(run.id, _system(run), iso(run.started) or "", run.status, run.operator,
                      s.get("rpo_seconds"), s.get("rto_seconds"), s.get("sha256"),
                      s.get("html"))


@dataclass(frozen=True)
class DueRow:
    system: str
    tier: int
    interval_seconds: float
    last_passed: str | None
    overdue: bool

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "tier": self.tier,
                "interval_seconds": self.interval_seconds, "last_passed": self.last_passed,
                "overdue": self.overdue}


def due(estate: Estate, ledger: Ledger, now: float | None = None) -> list[DueRow]:
    """Each drillable system with its last passed drill and whether it is overdue by its
    tier's ``drill_interval``."""
    now = time.time() if now is None else now
    last: dict[str, float] = {}
    for run in ledger.history("drill"):
        code = _system(run)
        if run.status == "passed" and run.estate == estate.id:
            last[code] = max(last.get(code, 0.0), run.started)
    rows = []
    for code in sorted(estate.systems):
        if drillable(estate, code):
            continue
        system = estate.systems[code]
        interval = estate.tier(system.tier).drill_interval.total_seconds()
        seen = last.get(code)
        rows.append(DueRow(code, system.tier, interval, iso(seen) if seen else None,
                           seen is None or now - seen > interval))
    return rows
