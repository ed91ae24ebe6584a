"""What ``retire`` would do, and whether it may: pure but for reading the ledger.

- A system without a migration is retired whole: every VM of it goes; its repository stays.
- A system with a migration is retired at the end of its parallel run: only its source VMs
  go (the system lives on at its targets). Before its cutover it is refused; before the
  parallel run's end it is refused unless the operator gives ``--reason`` (recorded).
- A system already retired, or without a backup (nothing would be kept), is refused.

The kept period (``--keep``: ``10y``, ``18m``, ``400d``) is recorded with the retirement.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator.actions.migrate.state import CUT_OVER, state_of
from orchestrator.actions.retire.state import resumable, retirements
from orchestrator.actions.selection import require_known
from orchestrator.errors import EXIT_BAD_INPUT, PlanError
from orchestrator.estate.model import Estate
from orchestrator.ledger import Ledger

_KEEP = re.compile(r"^([1-9]\d{0,3})([ymd])$")
MAX_KEEP_DAYS = 100 * 366


@dataclass(frozen=True)
class RetirePlan:
    estate: str
    system: str
    name: str
    tier: int
    vms: tuple[str, ...]  # to destroy
    adopted: tuple[str, ...]  # of those, the ones hopnhat took over (destroyed too)
    hosts: tuple[str, ...]  # those that hold data: a final backup each
    repository: str
    keep: str
    keep_until: float
    moved: bool  # a migration was cut over: the sources go, the targets stay
    targets: tuple[str, ...] = ()
    parallel_until: str | None = None
    reason: str | None = None
    resume: str | None = None  # a failed run whose evidence was written: only destroy left

    def as_dict(self) -> dict[str, Any]:
        return {"estate": self.estate, "system": self.system, "name": self.name,
                "tier": self.tier, "vms": list(self.vms), "adopted": list(self.adopted),
                "hosts": list(self.hosts), "repository": self.repository, "keep": self.keep,
                "keep_until": datetime.fromtimestamp(self.keep_until, UTC).isoformat(
                    timespec="seconds").replace("+00:00", "Z"),
                "moved": self.moved, "targets": list(self.targets),
                "parallel_until": self.parallel_until, "reason": self.reason,
                "resume": self.resume}


def keep_until(keep: str, now: float) -> float:
    """``10y`` / ``18m`` / ``400d`` after ``now`` (calendar years and months). Raises
    PlanError (exit 2) for another form or more than a hundred years."""
    found = _KEEP.match(keep.strip())
    if found is None:
        raise PlanError(f"--keep {keep!r}: give a period such as 10y, 18m or 400d",
                        exit_code=EXIT_BAD_INPUT)
    count, unit = int(found.group(1)), found.group(2)
    start = datetime.fromtimestamp(now, UTC)
    if unit == "d":
        days = count
    else:
        months = count * (12 if unit == "y" else 1) + start.month - 1
        year, month = start.year + months // 12, months % 12 + 1
        try:
            end = start.replace(year=year, month=month)
        except ValueError:  # 29 February, 31st of a short month: the month's last day
            end = start.replace(year=year, month=month, day=28)
        days = (end - start).days
    if days > MAX_KEEP_DAYS:
        raise PlanError(f"--keep {keep}: more than a hundred years", exit_code=EXIT_BAD_INPUT)
    return now + days * 86400.0


def plan_retire(estate: Estate, ledger: Ledger, code: str, *, keep: str = "10y",
                reason: str | None = None, now: float | None = None) -> RetirePlan:
    """The plan to retire ``code`` (see the module's text). Raises PlanError (exit 2) for an
    unknown system, one without a backup, one already retired, a migration not cut over,
    or a parallel run not ended without ``reason``."""
    now = time.time() if now is None else now
    require_known(estate, systems=[code])
    system = estate.systems[code]
    if system.backup is None:
        raise PlanError(f"system {code} has no backup: retiring it would keep nothing "
                        f"({estate.file_of('system', code)}: backup)",
                        exit_code=EXIT_BAD_INPUT)
    done = retirements(ledger, estate.id).get(code)
    if done is not None:
        raise PlanError(f"system {code} was retired by run {done.run_id} "
                        f"({datetime.fromtimestamp(done.at, UTC):%Y-%m-%d %H:%M} UTC); its "
                        "records: hopnhat archive find --system " + code,
                        exit_code=EXIT_BAD_INPUT)
    text = (reason or "").strip() or None
    until = keep_until(keep, now)
    moved = False
    parallel_until = None
    targets: tuple[str, ...] = ()
    if system.migration is not None:
        state = state_of(ledger, estate.id, code)
        if state.name != CUT_OVER:
            raise PlanError(
                f"system {code} moves to {system.migration.to} and its migration is "
                f"{state.name}: a moved system is retired (its source VMs) after its "
                f"cutover and parallel run (hopnhat migrate cutover --system {code}); to "
                "close the whole system instead, remove its migration from "
                f"{estate.file_of('system', code)}", exit_code=EXIT_BAD_INPUT)
        moved = True
        targets = state.targets or tuple(vm.name for vm in estate.targets_of(code))
        parallel_until = state.parallel_until
        ends = datetime.fromisoformat(parallel_until.replace("Z", "+00:00")).timestamp() \
            if parallel_until else 0.0
        if ends > now and text is None:
            raise PlanError(
                f"system {code}: its parallel run lasts until {parallel_until} (cut over "
                f"{state.cut_over_at}); retiring its source VMs now needs --reason \"…\" "
                "(the ledger records who and why)", exit_code=EXIT_BAD_INPUT)
    vms = estate.vms_of(code)
    if not vms:
        raise PlanError(f"system {code} has no VM to retire", exit_code=EXIT_BAD_INPUT)
    previous = resumable(ledger, estate.id, code)
    return RetirePlan(
        estate=estate.id, system=code, name=system.name, tier=system.tier,
        vms=tuple(vm.name for vm in vms),
        adopted=tuple(vm.name for vm in vms if vm.existing is not None),
        hosts=tuple(vm.name for vm in vms if vm.data), repository=system.backup.repository_host,
        keep=keep.strip(), keep_until=until, moved=moved, targets=targets,
        parallel_until=parallel_until, reason=text,
        resume=previous.id if previous is not None else None)
