"""The backup gate: back up the data before any change.

``apply`` (a reconfigure) and ``destroy`` call :func:`gate` with the data-bearing VMs they
would change, before any vCenter task. For each such VM whose system has a backup, that VM's
latest snapshot in the system's repository (read from the control host) must be younger than
the tier's RPO; otherwise the gate refuses with a :class:`PlanError` (exit 1) naming the
system, the repository, the snapshot's age and the RPO. A create-only plan has nothing to
guard and reads nothing.

The operator may instead say ``--backup-first`` — the systems concerned are backed up now
(:func:`~orchestrator.actions.backup.run.run_backups`) and the gate passes when each changed
VM's backup succeeded and its new snapshot is in the repository — or ``--no-backup-gate
--reason "…"``, which reads nothing and passes. Every judgement (passed, refused,
overridden) is a ledger run of kind ``backup-gate`` recording who (the operator), why (the
reason, for an override) and each VM's verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from orchestrator.errors import EXIT_BAD_INPUT, HopnhatError, PlanError
from orchestrator.estate.model import Estate
from orchestrator.human import duration
from orchestrator.ledger import Ledger, operator_name
from orchestrator.settings import Paths

if TYPE_CHECKING:
    from orchestrator.actions.backup.run import BackupRun, HostBackup, LineCallback
    from orchestrator.actions.backup.status import SnapshotReader
    from orchestrator.adapters.restic_results import Snapshot

# The backup and repository modules (restic, SSH) are imported when a VM that holds data is
# about to change: a plan that changes none (a no-change apply) never loads them.

# what the gate says of one VM
FRESH, STALE, NO_SNAPSHOT = "fresh", "stale", "no snapshot"
UNREADABLE, BACKED_UP, BACKUP_FAILED = "unreadable", "backed up now", "backup failed"
NOT_CHECKED = "not checked"
# what it decided
NOT_NEEDED, PASSED, REFUSED, OVERRIDDEN = "not needed", "passed", "refused", "overridden"

BackupRunner = Callable[..., "BackupRun"]


@dataclass(frozen=True)
class GateRequest:
    """What the operator asked of the gate: nothing (judge), ``--backup-first``, or
    ``--no-backup-gate`` with its reason."""

    backup_first: bool = False
    override_reason: str | None = None

    @property
    def overridden(self) -> bool:
        return self.override_reason is not None


def gate_request(backup_first: bool = False, no_backup_gate: bool = False,
                 reason: str | None = None) -> GateRequest:
    """The request from the command's options. Raises PlanError (exit 2) for
    ``--no-backup-gate`` without a reason, a reason without ``--no-backup-gate``, or
    ``--backup-first`` together with ``--no-backup-gate``."""
    text = (reason or "").strip()
    if no_backup_gate and backup_first:
        raise PlanError("--backup-first and --no-backup-gate contradict each other: choose one",
                        exit_code=EXIT_BAD_INPUT)
    if no_backup_gate and not text:
        raise PlanError('--no-backup-gate needs --reason "…": the ledger records who '
                        "overrode the backup gate and why", exit_code=EXIT_BAD_INPUT)
    if reason is not None and not no_backup_gate:
        raise PlanError("--reason goes with --no-backup-gate", exit_code=EXIT_BAD_INPUT)
    return GateRequest(backup_first=backup_first, override_reason=text if no_backup_gate
                       else None)


@dataclass(frozen=True)
class GateCheck:
    """The gate's verdict on one data-bearing VM the change touches."""

    system: str
    host: str
    repository: str
    rpo_seconds: float
    verdict: str
    snapshot_id: str | None = None
    snapshot_time: datetime | None = None
    age_seconds: float | None = None
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.verdict in (FRESH, BACKED_UP, NOT_CHECKED)

    def describe(self) -> str:
        """``system video, repository video@repo-qnam-01: video-mcu-01's latest snapshot
        1a2b3c4d is 2h3m4s old, older than the RPO 1h``."""
        rpo = duration(self.rpo_seconds, "estate")
        head = f"system {self.system}, repository {self.repository}: {self.host}"
        age = duration(self.age_seconds, "compact", missing="?")
        if self.verdict == FRESH:
            return f"{head}'s latest snapshot {self.snapshot_id} is {age} old (RPO {rpo})"
        if self.verdict == STALE:
            return (f"{head}'s latest snapshot {self.snapshot_id} is {age} old, older than "
                    f"the RPO {rpo}")
        if self.verdict == NO_SNAPSHOT:
            return f"{head} has no snapshot in the repository (RPO {rpo})"
        if self.verdict == BACKED_UP:
            return f"{head} was backed up now: snapshot {self.snapshot_id} (RPO {rpo})"
        if self.verdict == BACKUP_FAILED:
            return f"{head}: the backup made first failed: {self.error} (RPO {rpo})"
        if self.verdict == NOT_CHECKED:
            return f"{head}: not checked (the gate was overridden; RPO {rpo})"
        return f"{head}: the repository could not be read: {self.error} (RPO {rpo})"

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "host": self.host, "repository": self.repository,
                "rpo_seconds": self.rpo_seconds, "verdict": self.verdict,
                "passed": self.passed, "snapshot_id": self.snapshot_id,
                "snapshot_time": self.snapshot_time.isoformat() if self.snapshot_time
                else None, "age_seconds": None if self.age_seconds is None
                else round(self.age_seconds, 1), "error": self.error}


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided for one command: ``not needed`` (no data-bearing VM changes),
    ``passed``, ``refused`` or ``overridden``, with each VM's check, the data-bearing VMs
    it could not guard (their system has no backup), the backup run made first, the
    gate's ledger run, and who overrode it and why."""

    command: str
    status: str
    checks: tuple[GateCheck, ...] = ()
    not_backed_up: tuple[str, ...] = ()
    backup_run: str | None = None
    run_id: str | None = None
    operator: str | None = None
    reason: str | None = None

    def summary(self) -> str:
        """A few lines for people."""
        lines = [f"backup gate: {self.status}"
                 + (f" by {self.operator}: {self.reason}" if self.status == OVERRIDDEN else "")]
        lines += [f"  - {check.describe()}" for check in self.checks
                  if self.status != OVERRIDDEN]
        lines += [f"  - {name}: its system has no backup in the estate (not guarded)"
                  for name in self.not_backed_up]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"command": self.command, "status": self.status,
                "checks": [c.as_dict() for c in self.checks],
                "not_backed_up": list(self.not_backed_up), "backup_run": self.backup_run,
                "run": self.run_id, "operator": self.operator, "reason": self.reason}


# --- judging (pure) ---------------------------------------------------------------------------


def gated_hosts(estate: Estate, vms: Iterable[tuple[str, str]]
                ) -> tuple[dict[str, list[str]], list[str]]:
    """(system → its changed VMs, for systems with a backup; the changed VMs whose system
    has none) from ``(system, VM name)`` pairs, in the order given, once each."""
    guarded: dict[str, list[str]] = {}
    unguarded: list[str] = []
    for system, name in vms:
        known = estate.systems.get(system)
        if known is None or known.backup is None:
            if name not in unguarded:
                unguarded.append(name)
        elif name not in guarded.setdefault(system, []):
            guarded[system].append(name)
    return guarded, unguarded


def judge(system: str, host: str, repository: str, rpo: timedelta,
          snapshots: Sequence[Snapshot], now: datetime, made: str | None = None) -> GateCheck:
    """The verdict on ``host`` from its system's ``snapshots``: ``fresh`` when its newest
    is no older than ``rpo`` at ``now``, else ``stale``; ``no snapshot`` when it has none.
    With ``made`` (the snapshot a backup made just now) the verdict is ``backed up now``
    when the repository holds that snapshot."""
    base: dict[str, Any] = {"system": system, "host": host, "repository": repository,
                            "rpo_seconds": rpo.total_seconds()}
    from orchestrator.adapters.restic_results import is_dump  # light: parsing only

    own = [s for s in snapshots if s.hostname == host and not is_dump(s)]
    if made is not None:
        found = next((s for s in own if made in (s.id, s.short_id)), None)
        if found is None:
            return GateCheck(**base, verdict=BACKUP_FAILED, snapshot_id=made,
                             error=f"snapshot {made} is not in the repository")
        return GateCheck(**base, verdict=BACKED_UP, snapshot_id=found.short_id,
                         snapshot_time=found.time,
                         age_seconds=(now - found.time).total_seconds())
    if not own:
        return GateCheck(**base, verdict=NO_SNAPSHOT)
    latest = max(own, key=lambda s: s.time)
    age = now - latest.time
    return GateCheck(**base, verdict=FRESH if age <= rpo else STALE,
                     snapshot_id=latest.short_id, snapshot_time=latest.time,
                     age_seconds=age.total_seconds())


def refusal(decision: GateDecision) -> str:
    """The refusal's message: every VM that did not pass, and what to do."""
    failing = [c for c in decision.checks if not c.passed]
    systems = " ".join(f"--system {s}" for s in dict.fromkeys(c.system for c in failing))
    lines = "\n".join(f"  - {c.describe()}" for c in failing)
    return (f"the backup gate refuses this {decision.command}: the data is backed up before "
            f"any change, and {len(failing)} data-bearing VM(s) have no fresh snapshot. "
            f"Nothing was changed.\n{lines}\n"
            f"Back up first (`hopnhat backup run {systems}`, or run this again with "
            '--backup-first), or override with --no-backup-gate --reason "…" (recorded in the '
            f"ledger; gate run {decision.run_id}).")


# --- the gate ---------------------------------------------------------------------------------


def gate(paths: Paths, vms: Iterable[tuple[str, str]], request: GateRequest | None = None, *,
         command: str, ledger: Ledger | None = None, on_line: LineCallback | None = None,
         now: Callable[[], datetime] = lambda: datetime.now(UTC),
         snapshots: SnapshotReader | None = None, backup: BackupRunner | None = None,
         parallel: int = 8) -> GateDecision:
    """Judge a change to the data-bearing VMs ``vms`` (``(system, VM name)`` pairs) that
    ``command`` (apply, destroy) is about to make.

    ``ledger``: where the judgement is recorded (default: the state folder's, opened for
    this); ``on_line``: the output lines of a ``--backup-first`` backup; ``snapshots`` and
    ``backup`` stand in for the repository and the hosts (tests).
    Out: the :class:`GateDecision` (``not needed``, ``passed`` or ``overridden``).
    Raises PlanError (exit 1) when the gate refuses, naming each VM that did not pass.
    """
    request = request or GateRequest()
    estate = paths.estate
    guarded, unguarded = gated_hosts(estate, vms)
    if not guarded:
        return GateDecision(command, NOT_NEEDED, not_backed_up=tuple(unguarded))
    from orchestrator.actions.backup.run import run_backups
    from orchestrator.actions.backup.status import repository_snapshots

    operator = operator_name()
    with nullcontext(ledger) if ledger is not None else Ledger(paths.ledger) as book:
        run_id = book.start("backup-gate", estate.id, {
            "command": command, "systems": list(guarded),
            "hosts": [h for hosts in guarded.values() for h in hosts],
            "backup_first": request.backup_first, "overridden": request.overridden,
            "reason": request.override_reason, "operator": operator,
            "not_backed_up": unguarded})
        try:
            decision = _decide(paths, guarded, unguarded, request, command, book, run_id,
                               operator, on_line, now, snapshots or repository_snapshots,
                               backup or run_backups, parallel)
        except BaseException as exc:  # an interrupt, or a failure before any verdict
            book.finish(run_id, "failed", {"error": str(exc) or type(exc).__name__})
            raise
        for check in decision.checks:
            book.event(run_id, check.host, check.verdict, **{
                k: v for k, v in check.as_dict().items() if k != "host"},
                **({"reason": request.override_reason, "operator": operator}
                   if request.overridden else {}))
        book.finish(run_id, decision.status, {
            "passed": sum(c.passed for c in decision.checks), "checks": len(decision.checks),
            "backup_run": decision.backup_run, "operator": operator,
            "reason": request.override_reason})
    if decision.status == REFUSED:
        raise PlanError(refusal(decision))
    return decision


def _decide(paths: Paths, guarded: Mapping[str, list[str]], unguarded: list[str],
            request: GateRequest, command: str, ledger: Ledger, run_id: str, operator: str,
            on_line: LineCallback | None, now: Callable[[], datetime],
            snapshots: SnapshotReader, backup: BackupRunner, parallel: int) -> GateDecision:
    estate = paths.estate

    def repository(code: str) -> str:
        system_backup = estate.systems[code].backup
        assert system_backup is not None
        return f"{code}@{system_backup.repository_host}"

    def rpo(code: str) -> timedelta:
        return estate.tier(estate.systems[code].tier).rpo

    common: dict[str, Any] = {"command": command, "not_backed_up": tuple(unguarded),
                              "run_id": run_id, "operator": operator}
    if request.overridden:
        unchecked = tuple(GateCheck(code, host, repository(code), rpo(code).total_seconds(),
                                    NOT_CHECKED) for code, hosts in guarded.items()
                          for host in hosts)
        return GateDecision(status=OVERRIDDEN, checks=unchecked,
                            reason=request.override_reason, **common)
    made: dict[str, HostBackup] = {}
    backup_run: str | None = None
    if request.backup_first:
        from orchestrator.actions.backup.run import backup_clients

        clients = [c for c in backup_clients(estate) if c.system in guarded]
        run = backup(paths, clients, ledger=ledger, on_line=on_line, parallel=parallel,
                     params={"trigger": f"{command} --backup-first", "gate": run_id})
        backup_run = run.run_id
        made = {h.host: h for h in run.hosts}

    def read(code: str) -> tuple[list[Snapshot] | None, str | None]:
        try:
            return snapshots(paths, code), None
        except (HopnhatError, OSError, ValueError) as exc:
            return None, str(exc) or type(exc).__name__

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(guarded))),
                            thread_name_prefix="gate") as pool:
        found = dict(zip(guarded, pool.map(read, guarded), strict=True))
    moment = now()
    checks: list[GateCheck] = []
    for code, hosts in guarded.items():
        listed, error = found[code]
        for host in hosts:
            checks.append(_host_check((code, host, repository(code)), rpo(code), listed, error,
                                      made.get(host), request.backup_first, moment))
    status = PASSED if all(c.passed for c in checks) else REFUSED
    return GateDecision(status=status, checks=tuple(checks), backup_run=backup_run, **common)


def _host_check(base: tuple[str, str, str], rpo: timedelta, listed: list[Snapshot] | None,
                error: str | None, result: HostBackup | None, backup_first: bool,
                moment: datetime) -> GateCheck:
    """The check of one host (``base``: system, host, repository): its backup asked for
    first failed, its system's snapshots could not be read (``listed`` None, ``error``), or
    its latest snapshot judged against the ``rpo``."""
    if backup_first and (result is None or not result.ok or result.snapshot_id is None):
        why = "no backup client of that name" if result is None else \
            f"{result.result}: {result.error_message or 'no snapshot'}"
        return GateCheck(*base, rpo.total_seconds(), BACKUP_FAILED, error=why)
    if listed is None:
        return GateCheck(*base, rpo.total_seconds(), UNREADABLE, error=error)
    return judge(*base, rpo, listed, moment, made=result.snapshot_id if result else None)
