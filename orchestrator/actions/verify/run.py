"""``hopnhat verify``: every repository checked, judged against its tier, in parallel.

First a plan (pure data: which repositories, what each reads tonight), then the run. For
each repository, at most ``concurrency`` at once, from the control host:

- ``restic check`` with tonight's read-data subset (``auto``: subset k/t of the tier's
  rotation, the position kept in the ledger, so every pack is read once every t nights);
  its exclusive lock doubles as the locks check: only when another lock is in its way are
  the lock files read (who, since when, stale or live);
- beside it, without a lock: the snapshots, the sizes of the latest ones (measured once per
  snapshot and kept in the ledger) and the second copy's snapshots;
- the judgements of :mod:`~orchestrator.actions.verify.checks`: structure, read data,
  freshness against the RPO, anomalies against the median of earlier snapshots, the copy,
  locks, a retirement's final snapshots; and of :mod:`~orchestrator.actions.verify.attacks`:
  snapshots dated in the future, of a host not the system's, or gone since the previous
  verification without hopnhat removing them (the snapshots seen are kept in the ledger,
  :mod:`~orchestrator.actions.snapshot_log`).

One repository that cannot be read is an error for that system; the others are still checked.
The run, each repository's report and the rotation go to the ledger. Verify changes nothing
in any repository: it removes no lock and repairs nothing.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.actions import snapshot_log
from orchestrator.actions.repositories import open_repository
from orchestrator.actions.retire.state import retirements
from orchestrator.actions.verify import checks as judge
from orchestrator.actions.verify.attacks import (
    deletions_skip_reason,
    judge_deletions,
    judge_foreign,
    judge_future,
    judge_vanished,
    vanished_skip_reason,
)
from orchestrator.actions.verify.checks import Check, HostState
from orchestrator.adapters.rest_server import RestServerError, repository_size, server_deletions
from orchestrator.adapters.restic import (
    NoRepository,
    Repository,
    RepositoryDamaged,
    RepositoryLocked,
    Restic,
    Snapshot,
)
from orchestrator.adapters.restic_stream import process_state
from orchestrator.errors import EstateError, HopnhatError
from orchestrator.estate.model import Estate, SecretRef, VerificationSettings
from orchestrator.estate.secrets import Secrets
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths
from orchestrator.verdicts import (
    COPY,
    DELETIONS,
    ERROR,
    FAILED,
    LOCKS,
    OK,
    READ_DATA,
    SKIPPED,
    STRUCTURE,
)

log = logging.getLogger("hopnhat.verify")

ROTATION = "verify.read_data"  # ledger facts: system@host → last subset read
SIZES = "snapshot.size"  # ledger facts: snapshot ID → [bytes, files]
ResticFactory = Callable[[Repository, float, Callable[[int], None] | None], Restic]


@dataclass(frozen=True)
class Target:
    """One repository to verify and what it is judged against."""

    system: str
    tier: int
    repository: str
    copy: str | None
    rpo: timedelta
    rotation: int
    expected_hosts: tuple[str, ...]
    expected_paths: tuple[str, ...]
    subset: str | None
    position: int | None
    finals: dict[str, str] = field(default_factory=dict)  # retired host → final snapshot
    retired_at: str | None = None  # the system was retired whole (no backups expected)
    #: every host the declared estate gives the system (retired and migration targets
    #: too): a snapshot of any other is foreign
    system_hosts: tuple[str, ...] = ()
    protocol: str = "sftp"  # the repository host's: rest clients can only add
    quota_bytes: int | None = None  # a rest system's backup.quota_gb
    #: ``copy`` is the estate's vault (pulled by the control host), not a client's copy
    vaulted: bool = False

    @property
    def vanished_skipped(self) -> str | None:
        """Why ``vanished`` is not judged here (None: it is)."""
        return vanished_skip_reason(self.protocol)

    @property
    def key(self) -> str:
        """``system@repository-host``: how the ledger and messages name it."""
        return f"{self.system}@{self.repository}"


@dataclass(frozen=True)
class VerifyPlan:
    estate: str
    option: str
    concurrency: int
    targets: tuple[Target, ...]


@dataclass(frozen=True)
class RepositoryReport:
    """What verify found in one repository."""

    target: Target
    where: str
    checks: tuple[Check, ...]
    hosts: tuple[HostState, ...] = ()
    snapshots: int = 0
    duration_seconds: float = 0.0
    #: the version of the control host's restic that checked the repository (None: unknown)
    restic_version: str | None = None
    #: a rest repository: the bytes it holds as its server counts them against the quota
    used_bytes: int | None = None

    @property
    def verdict(self) -> str:
        return judge.verdict(self.checks)

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def as_dict(self) -> dict[str, Any]:
        t = self.target
        return {"system": t.system, "tier": t.tier, "repository": t.repository,
                "where": self.where, "protocol": t.protocol, "copy": t.copy,
                "verdict": self.verdict,
                "rpo_seconds": t.rpo.total_seconds(), "read_data_subset": t.subset,
                "snapshots": self.snapshots, "duration_seconds": round(self.duration_seconds, 3),
                "restic_version": self.restic_version,
                "used_bytes": self.used_bytes, "quota_bytes": t.quota_bytes,
                "hosts": [h.as_dict() for h in self.hosts],
                "checks": [c.as_dict() for c in self.checks]}


@dataclass(frozen=True)
class VerifyResult:
    run_id: str
    estate: str
    option: str
    started: datetime
    duration_seconds: float
    reports: tuple[RepositoryReport, ...]

    @property
    def exit_code(self) -> int:
        """0 when every repository is ok, else 1."""
        return 0 if all(r.verdict == OK for r in self.reports) else 1

    @property
    def status(self) -> str:
        return "ok" if self.exit_code == 0 else "failed"

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "estate": self.estate, "status": self.status,
                "exit_code": self.exit_code, "read_data_subset": self.option,
                "started": self.started.isoformat(),
                "duration_seconds": round(self.duration_seconds, 3),
                "repositories": [r.as_dict() for r in self.reports]}


# --- the plan -------------------------------------------------------------------------------


def system_hosts(code: str, estates: Sequence[Estate], retired: Sequence[str] = ()
                 ) -> tuple[str, ...]:
    """Every host that may write system ``code``'s snapshots: its VMs and its migration's
    targets in each of ``estates`` (the declared one keeps VMs that retire or a migration
    took away), and the ``retired`` VMs the ledger names."""
    names = {vm.hostname for estate in estates
             for vm in (*estate.vms_of(code), *estate.targets_of(code))}
    return tuple(sorted(names | set(retired)))


def plan(estate: Estate, systems: Sequence[str], option: str, ledger: Ledger,
         concurrency: int | None = None, *, declared: Estate | None = None) -> VerifyPlan:
    """The repositories of ``systems`` (every system with a backup when empty) and what each
    reads tonight for ``option`` (see :func:`verify_checks.parse_subset_option`).
    ``estate`` as it stands (after retirements), ``declared`` as its files declare it
    (every host a system ever had: the ``foreign`` check's). Raises EstateError (exit 2)
    for an unknown system or one without a backup, ValueError for a bad option."""
    option = judge.parse_subset_option(option)
    unknown = [s for s in systems if s not in estate.systems]
    bare = [s for s in systems if s in estate.systems and estate.systems[s].backup is None]
    if unknown or bare:
        raise EstateError(
            [("systems/", "", f"no system {s!r} in the estate") for s in unknown]
            + [(estate.file_of("system", s), "backup", f"system {s!r} has no backup to verify")
               for s in bare])
    chosen = list(dict.fromkeys(systems)) or [
        code for code, system in estate.systems.items() if system.backup is not None]
    retired = retirements(ledger, estate.id)
    targets = []
    for code in chosen:
        system = estate.systems[code]
        backup = system.backup
        assert backup is not None
        tier = estate.tier(system.tier)
        key = f"{code}@{backup.repository_host}"
        last = ledger.fact(ROTATION, key)
        closed = retired.get(code)
        whole = closed is not None and not closed.moved
        rotation = tier.read_data_rotation
        if whole and estate.settings.verification.archive_read_data_rotation:
            rotation = estate.settings.verification.archive_read_data_rotation
        subset, position = judge.restic_subset(
            option, int(last["position"]) if isinstance(last, dict) else None, rotation)
        targets.append(Target(
            system=code, tier=system.tier, repository=backup.repository_host,
            copy=_copy_host(estate, code), vaulted=code in estate.vault_systems(), rpo=tier.rpo,
            rotation=rotation,
            expected_hosts=tuple(vm.name for vm in estate.vms_of(code) if vm.data),
            expected_paths=tuple(backup.paths), subset=subset, position=position,
            finals=dict(closed.finals) if closed else {},
            retired_at=datetime.fromtimestamp(closed.at, UTC).strftime("%Y-%m-%d")
            if whole and closed else None,
            system_hosts=system_hosts(code, (estate, declared or estate),
                                      closed.vms if closed else ()),
            protocol=estate.repository_host(backup.repository_host).protocol,
            quota_bytes=None if backup.quota_gb is None else int(backup.quota_gb * 1024 ** 3)))
    return VerifyPlan(estate.id, option,
                      concurrency or estate.settings.verification.concurrency, tuple(targets))


# --- the run --------------------------------------------------------------------------------


def default_restic(settings: VerificationSettings, binary: str = "restic") -> ResticFactory:
    def make(repo: Repository, lock_wait: float,
             on_start: Callable[[int], None] | None) -> Restic:
        return Restic(repo, binary=binary, timeout=settings.timeout.total_seconds(),
                      lock_wait=lock_wait, on_start=on_start)
    return make


def require_secrets(paths: Paths, the_plan: VerifyPlan, secrets: Secrets) -> None:
    """Read every target's repository password from the vault (kept in ``secrets``). Raises
    SecretError (exit 2) when one cannot be: no vault, no run."""
    for target in the_plan.targets:
        backup = paths.estate.systems[target.system].backup
        assert backup is not None
        secrets.get(backup.password)


def verify(paths: Paths, the_plan: VerifyPlan, *, ledger: Ledger,
           secrets: Secrets | None = None, make_restic: ResticFactory | None = None,
           on_start: Callable[[str], None] | None = None,
           on_report: Callable[[RepositoryReport], None] | None = None,
           now: datetime | None = None) -> VerifyResult:
    """Verify every target of ``the_plan``, ``concurrency`` at once; record the run in the
    ledger, call ``on_start`` with its run id before the first repository and ``on_report``
    as each repository is done. Raises SecretError (exit 2) before any repository is touched
    (and before the run is recorded) when a password cannot be read from the vault; a
    repository's own failure is in its report."""
    settings = paths.estate.settings.verification
    secrets = secrets or Secrets(paths)
    require_secrets(paths, the_plan, secrets)
    make = make_restic or default_restic(settings, paths.restic_binary)
    started = now or datetime.now(UTC)
    clock = time.monotonic()
    run_id = ledger.start("verify", the_plan.estate, {
        "systems": [t.system for t in the_plan.targets],
        "read_data_subset": the_plan.option, "concurrency": the_plan.concurrency})
    if on_start is not None:
        on_start(run_id)
    reports: dict[str, RepositoryReport] = {}

    def one(target: Target) -> RepositoryReport:
        try:
            report = verify_repository(paths, target, secrets=secrets, ledger=ledger,
                                       make_restic=make, now=started, run_id=run_id)
        except Exception as exc:  # a bug in one repository's run must not stop the others
            log.exception("verify of %s failed unexpectedly", target.key)
            report = RepositoryReport(target, target.key, _error_checks(
                target, target.key, f"internal error: {type(exc).__name__}: {exc}"))
        ledger.event(run_id, target.system, "repository", **report.as_dict())
        if on_report is not None:
            on_report(report)
        return report

    with ThreadPoolExecutor(max_workers=max(1, the_plan.concurrency),
                            thread_name_prefix="verify") as pool:
        for report in pool.map(one, the_plan.targets):
            reports[report.target.key] = report
    result = VerifyResult(run_id, the_plan.estate, the_plan.option, started,
                          time.monotonic() - clock, tuple(reports.values()))
    ledger.finish(run_id, result.status, {
        "exit_code": result.exit_code,
        "repositories": {r.target.system: r.verdict for r in result.reports},
        "failed": {r.target.system: [c.name for c in r.checks if not c.passed]
                   for r in result.reports if r.verdict != OK}})
    return result


class _CheckOutput:
    """``check``'s lines as they come → the phase each came in (bounded memory)."""

    def __init__(self) -> None:
        self.phase = STRUCTURE
        self.phases: dict[str, str] = {}

    def __call__(self, line: str) -> None:
        text = line.strip()
        if text.startswith("read ") and self.phase == STRUCTURE:
            self.phase = READ_DATA
        if len(self.phases) < 50_000 and not text.startswith("["):
            self.phases.setdefault(text, self.phase)


def _damage_phases(exc: RepositoryDamaged, phases: dict[str, str]) -> dict[str, str]:
    """The phase of each problem: from restic 0.18's JSON (which says which problems
    reading data found, but prints no phase lines), else from the phase lines (0.14)."""
    if exc.read_data_problems is None:
        return phases
    data = {line.strip() for line in exc.read_data_problems}
    return {line.strip(): READ_DATA if line.strip() in data else STRUCTURE
            for line in exc.problems}


@dataclass
class _CheckRun:
    phases: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    problems: tuple[str, ...] | None = None
    error: str | None = None
    locks: Check | None = None


def _read_locks(repo: Repository, where: str, make: ResticFactory,
                own_pids: set[int]) -> Check:
    """The locks check from the repository's lock files, read while verify holds none."""
    try:
        found = make(repo, 0.0, None).locks()
    except HopnhatError as exc:
        return Check(LOCKS, ERROR, judge.named(where, f"locks not read: {exc}"))
    return judge.judge_locks(where, found, datetime.now(UTC), socket.gethostname(),
                             process_state, own_pids)


def _run_check(repo: Repository, where: str, subset: str | None, make: ResticFactory,
               lock_wait: float, own_pids: set[int]) -> _CheckRun:
    """``check`` (with ``subset``). restic's check takes the repository's exclusive lock,
    which any other lock, live or stale, refuses: so a check that ran shows that no other
    lock stood, and the lock files are read only when one is in the way (after check has
    ended, so its own lock is not among them). A stale lock is reported at once (verify
    removes none); live ones are waited for up to ``lock_wait`` seconds, then check runs
    again."""
    output = _CheckOutput()
    try:
        result = make(repo, 0.0, own_pids.add).check(subset, on_line=output)
        return _CheckRun(output.phases, notes=result.notes)
    except RepositoryDamaged as exc:
        return _CheckRun(_damage_phases(exc, output.phases), problems=exc.problems)
    except RepositoryLocked as exc:
        locked = exc
    except HopnhatError as exc:
        return _CheckRun(output.phases, error=str(exc))
    locks = _read_locks(repo, where, make, own_pids)
    if lock_wait <= 0 or locks.status != OK:
        return _CheckRun(output.phases, error=str(locked), locks=locks)
    output = _CheckOutput()
    try:
        result = make(repo, lock_wait, own_pids.add).check(subset, on_line=output)
        return _CheckRun(output.phases, notes=result.notes, locks=locks)
    except RepositoryDamaged as exc:
        return _CheckRun(_damage_phases(exc, output.phases), problems=exc.problems,
                         locks=locks)
    except HopnhatError as exc:
        return _CheckRun(output.phases, error=str(exc), locks=locks)


def _sizes(restic: Restic, ledger: Ledger, ids: Sequence[str]) -> dict[str, tuple[int, int]]:
    """(bytes, files) of each snapshot of ``ids``: from the ledger, else measured once with
    ``stats`` (a snapshot never changes) and kept. A snapshot that cannot be measured is
    left out."""
    known = {k: (int(v[0]), int(v[1])) for k, v in ledger.facts(SIZES, ids).items()}

    def measure(snapshot_id: str) -> tuple[str, tuple[int, int] | None]:
        try:
            stats = restic.stats([snapshot_id], no_lock=True)
        except HopnhatError as exc:
            log.warning("size of snapshot %s not measured: %s", snapshot_id[:8], exc)
            return snapshot_id, None
        return snapshot_id, (stats.total_size, stats.total_file_count)

    todo = [i for i in dict.fromkeys(ids) if i not in known]
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="stats") as pool:
        for snapshot_id, size in pool.map(measure, todo):
            if size is not None:
                known[snapshot_id] = size
                ledger.set_fact(SIZES, snapshot_id, list(size))
    return known


def _copy_host(estate: Estate, code: str) -> str | None:
    """Where system ``code``'s second copy is: the estate's vault when it holds the system
    (pulled by the control host), else the repository host its client copies to, if any."""
    backup = estate.systems[code].backup
    assert backup is not None
    if estate.settings.vault is not None and code in estate.vault_systems():
        return estate.settings.vault.repository_host
    return backup.copy_to.repository_host if backup.copy_to else None


def _copy_check(paths: Paths, target: Target, where: str, source: Sequence[Snapshot],
                secrets: Secrets, make: ResticFactory, now: datetime) -> Check:
    if target.copy is None:
        return Check(COPY, SKIPPED, "no second copy configured")
    what = "the vault" if target.vaulted else "the second copy"
    copy_where = f"{target.system}@{target.copy}"
    grace = paths.estate.settings.verification.copy_grace
    try:
        with open_repository(paths, target.system, second_copy=not target.vaulted,
                             vault=target.vaulted, secrets=secrets) as repo:
            copy_where = repo.display
            copied = make(repo, 0.0, None).snapshots(no_lock=True)
    except NoRepository as exc:
        if not target.vaulted:
            return Check(COPY, FAILED, f"{where}: {what} is missing: {exc}",
                         {"copy": copy_where, "missing": [s.short_id for s in source]})
        # made by the first pull: until then, as a vault holding nothing (snapshots
        # younger than the grace are on their way)
        copied = []
    except HopnhatError as exc:
        return Check(COPY, ERROR, judge.named(
            where, f"{what} could not be read: {exc}"), {"copy": copy_where})
    return judge.judge_copy(where, copy_where, source, copied, now, grace, what=what)


@contextmanager
def _lane(fn: Callable[[], Any]) -> Iterator[Callable[[], Any]]:
    """Run ``fn`` in a thread of its own for the block; yields a function that waits for
    and returns its result (re-raising its exception)."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the waiting thread
            box["error"] = exc

    thread = threading.Thread(target=body, name="verify-check", daemon=True)
    thread.start()

    def wait() -> Any:
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["value"]

    try:
        yield wait
    finally:
        thread.join()


def _error_checks(target: Target, where: str, error: str) -> tuple[Check, ...]:
    return judge.error_checks(where, error, copy=target.copy is not None,
                              subset=target.subset, retired=bool(target.finals),
                              vanished_skipped=target.vanished_skipped,
                              deletions_skipped=deletions_skip_reason(target.protocol))


def _attack_checks(target: Target, where: str, snapshots: Sequence[Snapshot],
                   ledger: Ledger, now: datetime, clock_skew: timedelta,
                   run_id: str) -> tuple[Check, Check, Check]:
    """``future``, ``foreign`` and ``vanished``; then the snapshots seen are kept for the
    next verification's ``vanished``."""
    previous = snapshot_log.last_seen(ledger, target.system, target.repository)
    removed = snapshot_log.removed_ids(ledger, target.system, target.repository) \
        if previous is not None else frozenset()
    checks = (judge_future(where, snapshots, now, clock_skew),
              judge_foreign(where, snapshots, target.system_hosts),
              judge_vanished(where, previous.snapshots if previous else None,
                             previous.run_id if previous else "", snapshots, removed,
                             target.protocol))
    snapshot_log.record_seen(ledger, target.system, target.repository, snapshots, run_id)
    return checks


def verify_repository(paths: Paths, target: Target, *, secrets: Secrets, ledger: Ledger,
                      make_restic: ResticFactory, now: datetime,
                      run_id: str = "") -> RepositoryReport:
    """Every check of one repository (``run_id``: the verify run, kept with the snapshots
    seen). A repository that cannot be read gives a report whose checks are errors naming
    the system, the repository and why; never raises for it."""
    settings = paths.estate.settings.verification
    clock = time.monotonic()
    where = target.key
    own_pids: set[int] = set()
    with open_repository(paths, target.system, secrets=secrets) as repo:
        where = repo.display
        meta = make_restic(repo, 0.0, None)
        version = _restic_version(meta)
        with _lane(lambda: _run_check(repo, where, target.subset, make_restic,
                                      settings.lock_wait.total_seconds(), own_pids)) as ran:
            try:
                snapshots = meta.snapshots(no_lock=True)
                # the future is judged from when the list was read, not from the run's
                # start: a backup made while a long run goes on is no attack
                listed = datetime.now(UTC)
            except HopnhatError as exc:
                ran()  # the check fails the same way; wait for it before leaving
                return RepositoryReport(target, where, _error_checks(target, where, str(exc)),
                                        duration_seconds=time.monotonic() - clock,
                                        restic_version=version)
            log.debug("%s: %d snapshots listed after %.1f s", target.key, len(snapshots),
                      time.monotonic() - clock)
            hosts = target.expected_hosts or tuple(sorted({s.hostname for s in snapshots}))
            ids = [i for host in hosts
                   for i in judge.baseline_ids(snapshots, host, settings.history)]
            sizes = _sizes(meta, ledger, ids)
            copy = _copy_check(paths, target, where, snapshots, secrets, make_restic, now)
            used = _used_bytes(repo, target)
            deletions = _deletions_check(paths, target, where, secrets)
            log.debug("%s: snapshots, sizes and copy read after %.1f s", target.key,
                      time.monotonic() - clock)
            check_run: _CheckRun = ran()
            log.debug("%s: check done after %.1f s", target.key, time.monotonic() - clock)
    locks = check_run.locks or (
        Check(LOCKS, OK, "no other lock (check took the exclusive lock)",
              {"locks": [], "stale": 0}) if check_run.error is None else
        Check(LOCKS, ERROR, judge.named(where, "locks not read: check could not "
                                                    f"run: {check_run.error}")))
    structure, data = judge.judge_check_run(
        where, target.subset, check_run.phases, notes=check_run.notes,
        problems=check_run.problems, error=check_run.error)
    if check_run.error is None and target.position is not None:
        ledger.set_fact(ROTATION, target.key, {"position": target.position,
                                               "total": target.rotation})
    states = judge.host_states(snapshots, target.expected_hosts, now, sizes)
    if target.retired_at is not None:
        fresh, anomaly = judge.retired_checks(target.retired_at)
    else:
        fresh = judge.judge_freshness(where, states, target.rpo)
        anomaly = judge.judge_anomaly(where, snapshots, target.expected_hosts,
                                      target.expected_paths, sizes, history=settings.history,
                                      min_history=settings.min_history,
                                      shrink_pct=settings.shrink_pct,
                                      growth_pct=settings.growth_pct)
    checks = (structure, data, fresh, anomaly, copy, locks,
              judge.judge_final(where, snapshots, target.finals),
              *_attack_checks(target, where, snapshots, ledger, max(now, listed),
                              settings.clock_skew, run_id), deletions)
    return RepositoryReport(target, where, checks, states, len(snapshots),
                            time.monotonic() - clock, version, used)


def _deletions_check(paths: Paths, target: Target, where: str, secrets: Secrets) -> Check:
    """What the system's own rest-server deleted, by its metrics (read as the host's metrics
    user, the control host's)."""
    skipped = deletions_skip_reason(target.protocol)
    if skipped is not None:
        return Check(DELETIONS, SKIPPED, skipped)
    estate = paths.estate
    host = estate.repository_host(target.repository)
    backup = estate.systems[target.system].backup
    assert backup is not None and backup.port is not None
    server = f"{host.address}:{backup.port}"
    cacert = paths.tls_ca(host.tls_ca)
    assert cacert is not None  # a rest host has its tls_ca
    try:
        password = secrets.get(SecretRef(vault=host.metrics_secret))
        deleted = server_deletions(str(host.address), backup.port, host.metrics_user,
                                   password, cacert, name=server)
    except HopnhatError as exc:
        return Check(DELETIONS, ERROR, judge.named(
            where, f"the metrics of its server could not be read: {exc}"), {"server": server})
    return judge_deletions(where, server, deleted)


def _used_bytes(repo: Repository, target: Target) -> int | None:
    """What a rest repository holds, as its server counts it against the quota (None for
    an SFTP one, or when the server cannot say: logged, the checks judge the rest)."""
    if target.protocol != "rest" or repo.location_file is None or repo.cacert is None:
        return None
    try:
        return repository_size(repo.location_file, repo.cacert, name=repo.display)
    except RestServerError as exc:
        log.warning("%s: size not read: %s", target.key, exc)
        return None


def _restic_version(restic: Restic) -> str | None:
    """``0.18.1``: the version of the restic that checks the repository (None when it cannot
    say: the check that follows then fails naming why)."""
    try:
        return ".".join(str(part) for part in restic.version())
    except HopnhatError:
        return None
