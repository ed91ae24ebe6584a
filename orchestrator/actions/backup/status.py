"""``backup status``: the state of every system's backups, from two sources.

For each system with a backup: its repository, opened from the control host with the
system's own SFTP account (:func:`~orchestrator.actions.repositories.open_repository`),
gives each host's latest snapshot — its age against the tier's RPO makes the host
``fresh`` or ``stale``; each backup client's status file (over SSH) gives its last run:
result, time, duration, size (bytes read), files, error. A repository or host that cannot be
read is reported as such for its system; the other systems still show.

A system is ``stale`` when a host's latest snapshot is older than the RPO (or there is
none), else ``failed`` when a host's last run failed or was partial, else ``unreachable``
when its repository or a host could not be read, else ``fresh``. The report's exit code is
0 when every system is fresh, else 1.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.actions.backup.run import BackupClient, backup_clients, status_command
from orchestrator.actions.selection import require_known
from orchestrator.adapters.restic_results import Snapshot, is_dump
from orchestrator.errors import (
    EXIT_FAILURE,
    EXIT_OK,
    HopnhatError,
    SSHError,
)
from orchestrator.estate.model import Estate
from orchestrator.hostjob.contract import FAILED, PARTIAL, REFUSED
from orchestrator.settings import Paths

FRESH, STALE, UNKNOWN = "fresh", "stale", "unknown"  # a host's latest snapshot vs the RPO
UNREACHABLE = "unreachable"
SYSTEM_STATES = (FRESH, UNREACHABLE, FAILED, STALE)  # from best to worst

SnapshotReader = Callable[[Paths, str], list[Snapshot]]
StatusFileReader = Callable[[Paths, BackupClient], str | None]


@dataclass(frozen=True)
class LastRun:
    """A host's last backup run, from its status file."""

    result: str
    time: str | None = None
    duration_seconds: float | None = None
    bytes: int | None = None
    files: int | None = None
    snapshot_id: str | None = None
    error_class: str | None = None
    error_message: str | None = None
    last_success: str | None = None
    #: the version of the restic the host's job ran (None: an older job, or not known)
    restic_version: str | None = None

    @classmethod
    def from_status(cls, data: Mapping[str, Any]) -> LastRun:
        """From the status file's JSON object."""
        error = data.get("error") if isinstance(data.get("error"), dict) else None

        def number(key: str) -> int | None:
            value = data.get(key)
            return int(value) if isinstance(value, int | float) and \
                not isinstance(value, bool) else None

        duration = data.get("duration_seconds")
        version = data.get("restic_version")
        return cls(result=str(data.get("result")), time=data.get("time"),
                   duration_seconds=float(duration) if isinstance(duration, int | float)
                   else None, bytes=number("bytes"), files=number("files"),
                   snapshot_id=data.get("snapshot_id"),
                   error_class=str(error.get("class")) if error else None,
                   error_message=str(error.get("message")) if error else None,
                   last_success=data.get("last_success"),
                   restic_version=version if isinstance(version, str) and version else None)

    def as_dict(self) -> dict[str, Any]:
        return {"result": self.result, "time": self.time,
                "duration_seconds": self.duration_seconds, "bytes": self.bytes,
                "files": self.files, "snapshot_id": self.snapshot_id,
                "error": None if self.error_class is None else {
                    "class": self.error_class, "message": self.error_message},
                "last_success": self.last_success, "restic_version": self.restic_version}


def parse_status_file(text: str) -> LastRun:
    """The status file's text → LastRun. Raises ValueError when it is not a JSON object."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the status file is not a JSON object")
    return LastRun.from_status(data)


@dataclass(frozen=True)
class HostState:
    """One backup client: its latest snapshot in the repository (and how fresh it is), its
    last run (status file), and why either could not be read."""

    host: str
    freshness: str
    snapshot_id: str | None = None
    snapshot_time: datetime | None = None
    age_seconds: float | None = None
    last_run: LastRun | None = None
    error: str | None = None
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "freshness": self.freshness,
                "latest_snapshot": None if self.snapshot_id is None else {
                    "id": self.snapshot_id,
                    "time": self.snapshot_time.isoformat() if self.snapshot_time else None,
                    "age_seconds": None if self.age_seconds is None
                    else round(self.age_seconds, 1)},
                "last_run": None if self.last_run is None else self.last_run.as_dict(),
                "reachable": self.error is None, "error": self.error, "note": self.note}


@dataclass(frozen=True)
class SystemState:
    """One system: its repository (and whether it could be read), its hosts, its state."""

    system: str
    name: str
    tier: int
    rpo_seconds: float
    repository: str
    hosts: tuple[HostState, ...]
    snapshots: int | None = None
    repository_error: str | None = None

    @property
    def state(self) -> str:
        """stale, failed, unreachable or fresh (see the module's doc)."""
        return system_state(self.repository_error, self.hosts)

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "name": self.name, "tier": self.tier,
                "rpo_seconds": self.rpo_seconds, "state": self.state,
                "repository": {"name": self.repository, "reachable":
                               self.repository_error is None,
                               "error": self.repository_error, "snapshots": self.snapshots},
                "hosts": [h.as_dict() for h in self.hosts]}


@dataclass(frozen=True)
class StatusReport:
    """``backup status``: every system asked for, when it was checked, and the systems of
    the selection that have no backup at all."""

    estate: str
    checked_at: datetime
    systems: tuple[SystemState, ...]
    not_backed_up: tuple[str, ...] = ()

    @property
    def state(self) -> str:
        """The worst system state (fresh when there is none)."""
        return max((s.state for s in self.systems), key=SYSTEM_STATES.index, default=FRESH)

    @property
    def exit_code(self) -> int:
        """0 when every system is fresh, else 1."""
        return EXIT_OK if self.state == FRESH else EXIT_FAILURE

    def as_dict(self) -> dict[str, Any]:
        counts = {state: 0 for state in SYSTEM_STATES}
        for system in self.systems:
            counts[system.state] += 1
        return {"estate": self.estate, "checked_at": self.checked_at.isoformat(),
                "state": self.state, "exit_code": self.exit_code, "counts": counts,
                "systems": [s.as_dict() for s in self.systems],
                "not_backed_up": list(self.not_backed_up)}


# --- judging (pure) ---------------------------------------------------------------------------


def latest_by_host(snapshots: Iterable[Snapshot]) -> dict[str, Snapshot]:
    """Each host's newest files snapshot (a database dump's snapshot is not one: a run whose
    dump fails makes no files snapshot, so the files snapshot's age is the dumps' too)."""
    latest: dict[str, Snapshot] = {}
    for snap in snapshots:
        if is_dump(snap):
            continue
        have = latest.get(snap.hostname)
        if have is None or snap.time > have.time:
            latest[snap.hostname] = snap
    return latest


def freshness(snapshot_time: datetime | None, now: datetime, rpo: timedelta) -> str:
    """``fresh`` when the snapshot is no older than the RPO, else ``stale`` (also when there
    is none)."""
    if snapshot_time is None:
        return STALE
    return FRESH if now - snapshot_time <= rpo else STALE


def system_state(repository_error: str | None, hosts: Sequence[HostState]) -> str:
    """stale (a host's latest snapshot older than the RPO, or none) › failed (a host's last
    run failed, was partial or refused) › unreachable (the repository or a host could not be
    read) › fresh."""
    if any(h.freshness == STALE for h in hosts):
        return STALE
    if any(h.last_run is not None and h.last_run.result in (FAILED, PARTIAL, REFUSED)
           for h in hosts):
        return FAILED
    if repository_error is not None or any(h.error is not None for h in hosts):
        return UNREACHABLE
    return FRESH


def host_state(host: str, snapshot: Snapshot | None, repository_readable: bool,
               now: datetime, rpo: timedelta, status_text: str | None,
               host_error: str | None) -> HostState:
    """One host's state from what could be read: its latest snapshot (when the repository
    could be read), its status file's text (None: there is none) or why the host could not
    be read."""
    last_run: LastRun | None = None
    note: str | None = None
    error = host_error
    if host_error is None:
        if status_text is None:
            note = "no status file: the backup job has not run on this host"
        else:
            try:
                last_run = parse_status_file(status_text)
            except ValueError as exc:
                error = f"unreadable status file: {exc}"
    if not repository_readable:
        return HostState(host, UNKNOWN, last_run=last_run, error=error, note=note)
    if snapshot is None:
        return HostState(host, STALE, last_run=last_run, error=error,
                         note=note or "no snapshot of this host in the repository")
    return HostState(host, freshness(snapshot.time, now, rpo), snapshot.short_id, snapshot.time,
                     (now - snapshot.time).total_seconds(), last_run, error, note)


# --- reading ----------------------------------------------------------------------------------


def repository_snapshots(paths: Paths, code: str) -> list[Snapshot]:
    """System ``code``'s snapshots, read from the control host. Raises ResticError,
    SecretError or EstateError."""
    from orchestrator.actions.repositories import open_repository  # restic: when used
    from orchestrator.adapters.restic import Restic

    with open_repository(paths, code) as repo:
        return Restic(repo, binary=paths.restic_binary, timeout=300.0,
                      lock_wait=60.0).snapshots()


def host_status_file(paths: Paths, client: BackupClient) -> str | None:
    """The text of ``client``'s status file, or None when it has none. Raises SSHError."""
    from orchestrator.adapters import ssh  # paramiko: imported when used

    target = ssh.Target(host=client.host, address=client.address, port=client.port,
                        user=paths.estate.settings.ssh.user, key_file=paths.private_key,
                        known_hosts=paths.known_hosts)
    connection = ssh.connect(target, alive=paths.estate.settings.ssh.alive)
    try:
        done = ssh.execute(connection, target, status_command(client.system), timeout=60.0)
    finally:
        connection.close()
    if done.returncode == 0:
        return done.stdout
    if "No such file" in done.stderr:
        return None
    raise SSHError(f"{client.host}: cannot read the status file: "
                   f"{done.stderr.strip()[:200] or f'exit {done.returncode}'}")


def backed_up_systems(estate: Estate, systems: Sequence[str] = ()) -> tuple[list[str],
                                                                             list[str]]:
    """(systems with a backup, systems without) among ``systems`` (all when empty), in
    estate order. Raises PlanError (exit 2) naming an unknown system."""
    require_known(estate, systems=systems)
    chosen = [code for code in estate.systems if not systems or code in systems]
    return ([c for c in chosen if estate.systems[c].backup is not None],
            [c for c in chosen if estate.systems[c].backup is None])


def read_status(paths: Paths, systems: Sequence[str] = (), *, parallel: int = 8,
                now: datetime | None = None, snapshots: SnapshotReader | None = None,
                status_file: StatusFileReader | None = None) -> StatusReport:
    """Read every selected system's repository and every backup client's status file,
    ``parallel`` at a time, and judge them at ``now`` (default: when the reading is done).
    ``snapshots`` and ``status_file`` stand in for the repository and SSH (tests).

    Out: :class:`StatusReport`. Raises PlanError (exit 2) for an unknown system; a
    repository or host that cannot be read is in the report, not raised.
    """
    estate = paths.estate
    codes, without = backed_up_systems(estate, systems)
    read_snapshots = snapshots or repository_snapshots
    read_status_file = status_file or host_status_file
    clients = [c for c in backup_clients(estate) if c.system in codes]

    def repository(code: str) -> tuple[list[Snapshot] | None, str | None]:
        try:
            return read_snapshots(paths, code), None
        except (HopnhatError, OSError, ValueError) as exc:
            return None, str(exc) or type(exc).__name__

    def host(client: BackupClient) -> tuple[str | None, str | None]:
        try:
            return read_status_file(paths, client), None
        except (HopnhatError, OSError) as exc:
            return None, str(exc) or type(exc).__name__

    jobs = len(codes) + len(clients)
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, jobs or 1)),
                            thread_name_prefix="status") as pool:
        repo_futures = {code: pool.submit(repository, code) for code in codes}
        host_futures = {c.host: pool.submit(host, c) for c in clients}
        repos = {code: f.result() for code, f in repo_futures.items()}
        texts = {name: f.result() for name, f in host_futures.items()}
    moment = now or datetime.now(UTC)
    out = []
    for code in codes:
        system = estate.systems[code]
        backup = system.backup
        assert backup is not None
        rpo = estate.tier(system.tier).rpo
        found, repo_error = repos[code]
        latest = latest_by_host(found or ())
        hosts = tuple(
            host_state(c.host, latest.get(c.host), found is not None, moment, rpo,
                       texts[c.host][0], texts[c.host][1])
            for c in clients if c.system == code)
        out.append(SystemState(code, system.name, system.tier, rpo.total_seconds(),
                               f"{code}@{backup.repository_host}", hosts,
                               None if found is None else len(found), repo_error))
    return StatusReport(estate.id, moment, tuple(out), tuple(without))
