"""Which systems are retired, read from the ledger: a passed run of kind ``retire`` is the
whole record (nothing else keeps state). A failed run leaves the system as it was, with
what it had done (see :func:`resumable`).

:func:`apply` gives the estate as it stands after its retirements: the retired VMs are no
longer the estate's (``plan`` does not recreate them, ``configure`` and ``backup`` leave
them out); a system whose migration's source was retired lives on at its targets, which
become its VMs; a system retired whole keeps its backup, which ``verify`` goes on checking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.estate.model import Estate
from orchestrator.ledger import Ledger, Run

KIND = "retire"


@dataclass(frozen=True)
class Retirement:
    system: str
    run_id: str
    at: float
    vms: tuple[str, ...]  # the VMs retired (destroyed)
    hosts: tuple[str, ...]  # those that held data: their final snapshots are kept
    finals: dict[str, str] = field(default_factory=dict)  # host → final snapshot ID
    keep_until: float = 0.0
    moved: bool = False  # the system lives on at its migration's targets

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "run_id": self.run_id, "at": self.at,
                "vms": list(self.vms), "hosts": list(self.hosts), "finals": self.finals,
                "keep_until": self.keep_until, "moved": self.moved}


def runs_of(ledger: Ledger, estate: str, code: str | None = None) -> list[Run]:
    """Retire runs (of ``code``, or every system), newest first."""
    return [r for r in ledger.runs(KIND, limit=100_000)
            if r.estate == estate and (code is None or r.params.get("system") == code)]


def _retirement(run: Run) -> Retirement:
    summary = run.summary or {}
    return Retirement(
        system=str(run.params.get("system")), run_id=run.id, at=run.finished or run.started,
        vms=tuple(summary.get("vms", ())), hosts=tuple(summary.get("hosts", ())),
        finals=dict(summary.get("finals", {})), keep_until=float(summary.get("keep_until", 0)),
        moved=bool(summary.get("moved")))


def retirements(ledger: Ledger, estate: str) -> dict[str, Retirement]:
    """The retired systems of ``estate``: system → its (latest passed) retirement."""
    out: dict[str, Retirement] = {}
    for run in runs_of(ledger, estate):
        code = str(run.params.get("system"))
        if run.status == "passed" and code not in out:
            out[code] = _retirement(run)
    return out


def resumable(ledger: Ledger, estate: str, code: str) -> Run | None:
    """The system's last retire run when it failed after its evidence was written (only
    the destruction was left): the next run takes up from there."""
    runs = [r for r in runs_of(ledger, estate, code) if r.summary is not None]
    if not runs or runs[0].status == "passed":
        return None
    last = runs[0]
    return last if (last.summary or {}).get("evidence_sha256") else None


def apply(estate: Estate, retired: dict[str, Retirement]) -> Estate:
    """``estate`` as it stands after ``retired`` (see the module's text)."""
    if not retired:
        return estate
    gone = {name for r in retired.values() for name in r.vms}
    moved = {code for code, r in retired.items() if r.moved}
    vms = [vm for vm in estate.vms if vm.name not in gone]
    vms += [vm for vm in estate.targets if vm.system in moved]
    targets = [vm for vm in estate.targets if vm.system not in moved]
    return estate.model_copy(update={"vms": vms, "targets": targets})


def load(estate: Estate, ledger_file: Path) -> Estate:
    """The estate after the retirements the ledger at ``ledger_file`` records (none when
    there is no ledger yet)."""
    if not ledger_file.is_file():
        return estate
    with Ledger(ledger_file) as ledger:
        return apply(estate, retirements(ledger, estate.id))
