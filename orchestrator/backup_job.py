"""The backup job that runs on a host: ``hopnhat-backup-<code>.service`` starts it, and so
does an operator by hand (``python3 -S /usr/local/lib/hopnhat/backup_job.py --config …``).

One run, in this order:

1. take an exclusive ``flock`` on the job's lock file — a second run while one is going is
   refused (result ``refused``, exit 1) and leaves the status files alone;
2. run the pre-backup commands (e.g. ``sqlite3 app.db '.backup dump/app.db'``), each as an
   argv (split like a shell would, but never run by one); a failing command stops the run;
3. ``restic backup`` of the system's paths, tagged ``system=<code>``, ``tier=<n>`` and
   ``host=<name>``, with ``--host <name>``;
4. ``restic forget --prune`` by the system's retention, for this host's snapshots;
5. the optional second copy (``restic copy`` of the new snapshot to the copy repository);
6. a JSON status file and a Prometheus textfile, each replaced atomically.

Results: ``ok`` (exit 0); ``partial`` (exit 3) — a snapshot was made but is not the whole
story: restic exited 3 (unreadable files), or retention or the second copy failed;
``failed`` (exit 1) — no snapshot. A bad config exits 2.

A repository locked by a live process is waited for (``lock_wait_seconds``), then the stage
fails naming the holder and the lock's age; a lock restic itself calls stale (this host and its
process gone, or older than 30 minutes) is removed when it stands in the way, and the run after
a failed or partial one clears those the last run may have left. A failed write is reported as
"no space" when the repository's storage, asked for its free space (statvfs over SFTP), has less
than ``NO_SPACE_BELOW`` left. The password is never read here:
restic gets the *path* of the password file (``RESTIC_PASSWORD_FILE``), so it is in no argv,
status file or log line.

Runs with the host's ``python3`` (3.11+): standard library plus hopnhat's restic adapter,
:mod:`orchestrator.process` and :mod:`orchestrator.errors`, which the ``backup_schedule`` role
copies next to this file.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from orchestrator.adapters.restic import (
    BackupResult,
    ForgetResult,
    LockInfo,
    NoSpace,
    Repository,
    Restic,
    ResticCommandError,
    Retry,
)
from orchestrator.adapters.restic_argv import Version
from orchestrator.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_PARTIAL,
    HopnhatError,
)
from orchestrator.files import write_atomically
from orchestrator.process import Completed, run

log = logging.getLogger("hopnhat.backup")

CONFIG_VERSION = 1
OK, PARTIAL, FAILED, REFUSED = "ok", "partial", "failed", "refused"
RESULTS = (OK, PARTIAL, FAILED)
EXIT_CODES = {OK: EXIT_OK, PARTIAL: EXIT_PARTIAL, FAILED: EXIT_FAILURE, REFUSED: EXIT_FAILURE}
#: restic's version, kept beside the status files (:func:`restic_version`)
VERSION_CACHE = "restic-version.json"
#: what pre-backup commands may see of the environment (nothing secret is passed on)
COMMAND_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_WARNINGS_KEPT = 20
#: a failed write means "no space" when the repository's storage has less than this free:
#: room for less than two of the packs restic writes (16 MiB each by default)
NO_SPACE_BELOW = 32 * 1024 * 1024
#: how long the free-space check of a repository host may take
SPACE_TIMEOUT = 60.0
#: seconds between two free-space checks while restic retries failed writes: often, since
#: restic removes a pack whose write failed, so the storage's free space swings back and forth
#: while its uploads fail and are retried (a reading can show room that the next write fills)
SPACE_RECHECK = 1.0
#: restic's words for a write the storage refused (over SFTP a full disk is a bare failure)
_WRITE_FAILURES = ('sftp: "failure"', "ssh_fx_failure", "no space left", "disk quota")


class ConfigError(HopnhatError):
    """The job's config file is unreadable or invalid."""

    exit_code = EXIT_BAD_INPUT


class AlreadyRunning(HopnhatError):
    """Another run of the same job holds the lock."""


class PreCommandFailed(HopnhatError):
    """A pre-backup command failed or could not start; nothing was backed up."""


# --- config ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepositoryConfig:
    """A restic repository as the job reaches it: ``name`` (the repository host) and restic's
    ``url`` (``sftp:restic-<code>@<host>:/repo``, which the host's ssh config maps; or a rest
    server's URL without credentials, for messages). A rest repository also has
    ``location_file`` (its URL with the system's credentials, which restic reads with
    ``--repository-file``) and ``cacert`` (the CA its server is checked against)."""

    name: str
    url: str
    location_file: Path | None = None
    cacert: Path | None = None


@dataclass(frozen=True)
class JobConfig:
    """The job's config file (JSON, rendered by the ``backup_schedule`` role)."""

    system: str
    tier: int
    host: str
    paths: tuple[str, ...]
    repository: RepositoryConfig
    password_file: Path
    status_file: Path
    textfile: Path
    lock_file: Path
    exclude: tuple[str, ...] = ()
    pre_commands: tuple[str, ...] = ()
    retention: Mapping[str, int] = field(default_factory=dict)
    copy: RepositoryConfig | None = None
    cache_dir: Path | None = None
    restic: str = "restic"
    lock_wait_seconds: float = 600.0
    timeout_seconds: float = 6 * 3600.0
    pre_command_timeout_seconds: float = 3600.0

    @property
    def tags(self) -> tuple[str, ...]:
        return (f"system={self.system}", f"tier={self.tier}", f"host={self.host}")

    def restic_repository(self, which: RepositoryConfig) -> Repository:
        return Repository(url=which.url, password_file=self.password_file,
                          cache_dir=self.cache_dir, name=f"{self.system}@{which.name}",
                          location_file=which.location_file, cacert=which.cacert)


_REQUIRED = ("version", "system", "tier", "host", "paths", "repository", "password_file",
             "status_file", "textfile", "lock_file")
_OPTIONAL = ("exclude", "pre_commands", "retention", "copy", "cache_dir", "restic",
             "lock_wait_seconds", "timeout_seconds", "pre_command_timeout_seconds")


def _strings(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: '{key}' must be a list of non-empty strings")
    return tuple(value)


def _repository(value: Any, key: str, where: str) -> RepositoryConfig:
    if (not isinstance(value, dict) or not {"name", "url"} <= set(value)
            or not set(value) <= {"name", "url", "location_file", "cacert"}
            or not all(isinstance(v, str) and v for v in value.values())):
        raise ConfigError(f"{where}: '{key}' must be {{name, url}} and, for a rest "
                          "repository, location_file and cacert (non-empty strings)")
    if ("location_file" in value) != ("cacert" in value):
        raise ConfigError(f"{where}: '{key}': location_file and cacert go together")
    return RepositoryConfig(
        name=value["name"], url=value["url"],
        location_file=_absolute(value, "location_file", f"{where}: '{key}'")
        if "location_file" in value else None,
        cacert=_absolute(value, "cacert", f"{where}: '{key}'") if "cacert" in value else None)


def _absolute(data: Mapping[str, Any], key: str, where: str) -> Path:
    value = data.get(key)
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(f"{where}: '{key}' must be an absolute path")
    return Path(value)


def _seconds(data: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where}: '{key}' must be a positive number of seconds")
    return float(value)


def parse_config(data: Any, where: str = "config") -> JobConfig:
    """The config from its JSON data. Raises ConfigError naming ``where`` and the key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the config must be a JSON object")
    missing = [k for k in _REQUIRED if k not in data]
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if missing or unknown:
        raise ConfigError(f"{where}: missing {missing or 'nothing'}, unknown {unknown or 'none'}")
    if data["version"] != CONFIG_VERSION:
        raise ConfigError(f"{where}: config version {data['version']!r}; this job reads "
                          f"version {CONFIG_VERSION}")
    for key in ("system", "host"):
        if not isinstance(data[key], str) or not data[key]:
            raise ConfigError(f"{where}: '{key}' must be a non-empty string")
    if isinstance(data["tier"], bool) or not isinstance(data["tier"], int):
        raise ConfigError(f"{where}: 'tier' must be a whole number")
    paths = _strings(data, "paths", where)
    if not paths or not all(p.startswith("/") for p in paths):
        raise ConfigError(f"{where}: 'paths' must list at least one absolute path")
    pre_commands = _strings(data, "pre_commands", where)
    for number, command in enumerate(pre_commands, 1):
        try:
            if not shlex.split(command):
                raise ValueError("empty")
        except ValueError as exc:
            raise ConfigError(f"{where}: pre_commands[{number}] cannot be split into "
                              f"arguments ({exc})") from None
    retention = data.get("retention") or {}
    if not isinstance(retention, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0
            for v in retention.values()):
        raise ConfigError(f"{where}: 'retention' must map keep-kinds to whole numbers >= 0")
    copy = data.get("copy")
    cache_dir = data.get("cache_dir")
    restic = data.get("restic", "restic")
    if not isinstance(restic, str) or not restic:
        raise ConfigError(f"{where}: 'restic' must name the restic program")
    return JobConfig(
        system=data["system"], tier=data["tier"], host=data["host"], paths=paths,
        repository=_repository(data["repository"], "repository", where),
        password_file=_absolute(data, "password_file", where),
        status_file=_absolute(data, "status_file", where),
        textfile=_absolute(data, "textfile", where),
        lock_file=_absolute(data, "lock_file", where),
        exclude=_strings(data, "exclude", where), pre_commands=pre_commands,
        retention={str(k): int(v) for k, v in retention.items() if v > 0},
        copy=None if copy is None else _repository(copy, "copy", where),
        cache_dir=None if cache_dir is None else _absolute(data, "cache_dir", where),
        restic=restic,
        lock_wait_seconds=_seconds(data, "lock_wait_seconds", where, 600.0),
        timeout_seconds=_seconds(data, "timeout_seconds", where, 6 * 3600.0),
        pre_command_timeout_seconds=_seconds(data, "pre_command_timeout_seconds", where,
                                             3600.0),
    )


def load_config(path: Path) -> JobConfig:
    """Read and parse the config file. Raises ConfigError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not JSON ({exc})") from None
    return parse_config(data, str(path))


# --- the lock -------------------------------------------------------------------------------


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold ``flock(LOCK_EX)`` on ``path`` for the block (the same lock ``flock(1)`` takes).
    The holder writes its PID and start time into the file, so a refused run can say who
    holds it. Raises AlreadyRunning when another process holds the lock (without waiting)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            raise AlreadyRunning(
                f"another backup run holds {path} ({holder or 'holder unknown'}): this run "
                "is refused so that two never overlap") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} since {_iso(datetime.now(UTC))}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


# --- the run --------------------------------------------------------------------------------


class ResticRunner(Protocol):
    """What the job needs of :class:`orchestrator.adapters.restic.Restic`."""

    def backup(self, paths: Sequence[str | Path], tags: Sequence[str] = (),
               exclude: Sequence[str] = (), host: str | None = None, *,
               on_progress: Callable[[dict[str, Any]], None] | None = None,
               partial_ok: bool = True) -> BackupResult: ...

    def forget(self, retention: Mapping[str, int | str], prune: bool = True, *,
               host: str | None = None, tags: Sequence[str] = (), group_by: str | None = None,
               dry_run: bool = False) -> ForgetResult: ...

    def copy(self, from_repo: Repository, snapshot_ids: Sequence[str] = ()) -> tuple[str, ...]: ...


ResticFactory = Callable[[Repository], ResticRunner]
CommandRunner = Callable[[Sequence[str], float], Completed]


def default_restic(config: JobConfig, read_space: SpaceReader | None = None, *,
                   version: Version | None = None) -> ResticFactory:
    """restic for the job: waits ``lock_wait_seconds`` for a live lock, removes stale ones,
    and — with ``read_space`` — stops at restic's first retry of a write that the storage's
    free space shows cannot succeed (rather than after its ten, about a minute).
    ``version``: restic's, when the caller has read it (else read here)."""
    def make(repo: Repository) -> ResticRunner:
        storage = next((r for r in (config.repository, config.copy)
                        if r is not None and r.url == repo.url), None)
        give_up = (full_storage(storage, read_space)
                   if storage is not None and read_space is not None else None)
        return Restic(repo, binary=config.restic, timeout=config.timeout_seconds,
                      lock_wait=config.lock_wait_seconds, remove_stale=True, give_up=give_up,
                      version=known)
    known = version or restic_version(config)
    return make


def version_text(version: Version | None) -> str | None:
    """``(0, 18, 1)`` → ``"0.18.1"``; None stays None."""
    return ".".join(str(part) for part in version) if version else None


def restic_version(config: JobConfig) -> Version | None:
    """restic's version from the cache beside the status file (``restic-version.json``),
    when it was written for this very binary (path, size, modification time, inode); else
    asked once (``restic version``) and cached. None when restic is not found: the run's
    first restic command then fails and says so."""
    binary = shutil.which(config.restic)
    if binary is None:
        return None
    try:
        seen = os.stat(binary)
    except OSError:
        return None
    key = [binary, seen.st_size, seen.st_mtime_ns, seen.st_ino]
    cache = config.status_file.with_name(VERSION_CACHE)
    # an unreadable or damaged cache is asked again
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError, AttributeError):
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached.get("binary") == key and len(cached["version"]) == 3:
            return (int(cached["version"][0]), int(cached["version"][1]),
                    int(cached["version"][2]))
    try:
        version = Restic(config.restic_repository(config.repository), binary=binary,
                         timeout=30).version()
    except HopnhatError:
        return None  # the run's restic commands will say what is wrong
    with contextlib.suppress(OSError):
        write_atomically(cache, json.dumps({"binary": key, "version": list(version)}) + "\n")
    return version


def full_storage(repository: RepositoryConfig,
                 read_space: SpaceReader) -> Callable[[Retry], str | None]:
    """A judge of restic's retries: a failed write while ``repository``'s storage has less
    than ``NO_SPACE_BELOW`` free cannot succeed. The space is read at a failed write, at
    most once every ``SPACE_RECHECK`` seconds."""
    seen: dict[str, Any] = {}

    def judge(retry: Retry) -> str | None:
        low = retry.error.lower()
        if not retry.is_write or not any(w in low for w in _WRITE_FAILURES):
            return None
        if time.monotonic() - seen.get("at", -SPACE_RECHECK) >= SPACE_RECHECK:
            seen["at"], seen["space"] = time.monotonic(), read_space(repository)
        space: Space | None = seen["space"]
        if space is None or space.free >= NO_SPACE_BELOW:
            return None
        return (f"the storage of {repository.name} has {_mib(space.free)} free of "
                f"{_mib(space.total)}: stopped at restic's first retry of a write")
    return judge


def default_command(argv: Sequence[str], timeout: float) -> Completed:
    return run(argv, env={"PATH": COMMAND_PATH, "HOME": "/root", "LC_ALL": "C.UTF-8"},
               inherit_env=False, timeout=timeout, cwd="/", input="")


@dataclass(frozen=True)
class Space:
    """A repository's storage, as its file system reports it (bytes)."""

    total: int
    free: int


_SFTP_URL = re.compile(r"^sftp:(?P<dest>[^/:@]+@[^/:]+):(?P<path>/.*)$")
_SFTP_LONG_URL = re.compile(r"^sftp://(?P<dest>[^/:@]+@[^/:]+)(?::(?P<port>\d+))?/(?P<path>.+)$")
_DF_LINE = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\d+%\s*$")


def make_sftp_df_argv(url: str) -> tuple[tuple[str, ...], str] | None:
    """For restic's ``sftp:user@host:/path`` (or ``sftp://user@host[:port]//path``): the
    ``sftp`` batch run — argv and the batch on stdin — whose ``df`` asks the server for the
    path's file system (OpenSSH's statvfs@openssh.com); the host's ssh config reaches the
    host as it does for restic. None for another kind of URL."""
    found = _SFTP_URL.match(url) or _SFTP_LONG_URL.match(url)
    if found is None:
        return None
    port = found.groupdict().get("port")
    argv = ("sftp", "-q", "-b", "-", *(("-P", port) if port else ()), found["dest"])
    return argv, f'df "{found["path"]}"\n'


def parse_sftp_df(text: str) -> Space | None:
    """``sftp``'s ``df`` output (1 KiB blocks: size, used, available, root's available,
    capacity) → Space, or None when it holds no such line."""
    for line in text.splitlines():
        found = _DF_LINE.match(line)
        if found:
            return Space(total=int(found[1]) * 1024, free=int(found[3]) * 1024)
    return None


def repository_space(repository: RepositoryConfig) -> Space | None:
    """The free space of ``repository``'s storage: statvfs of a local path, or ``df`` over
    SFTP. None when it cannot be read (another kind of repository, the host unreachable, a
    server without the statvfs extension)."""
    url = repository.url
    if url.startswith("/"):
        try:
            stat = os.statvfs(url)
        except OSError:
            return None
        return Space(total=stat.f_blocks * stat.f_frsize, free=stat.f_bavail * stat.f_frsize)
    batch = make_sftp_df_argv(url)
    if batch is None:
        return None
    argv, commands = batch
    try:
        done = run(argv, env={"PATH": COMMAND_PATH, "HOME": os.environ.get("HOME", "/root")},
                   inherit_env=False, timeout=SPACE_TIMEOUT, cwd="/", input=commands)
    except HopnhatError:
        return None
    return parse_sftp_df(done.stdout) if done.ok else None


SpaceReader = Callable[[RepositoryConfig], "Space | None"]


class SpaceWatch:
    """A SpaceReader that remembers, per repository, the lowest free space it read in this
    run: while restic's writes fail and are retried the free space swings (restic removes a
    pack it could not finish), so the reading that made restic stop tells more than one
    taken after it stopped."""

    def __init__(self, read_space: SpaceReader) -> None:
        self._read = read_space
        self.lowest: dict[str, Space] = {}

    def __call__(self, repository: RepositoryConfig) -> Space | None:
        space = self._read(repository)
        if space is not None:
            known = self.lowest.get(repository.name)
            if known is None or space.free < known.free:
                self.lowest[repository.name] = space
        return space

    def judged(self, repository: RepositoryConfig) -> Space | None:
        """The lowest reading of this run, or a fresh one."""
        return self.lowest.get(repository.name) or self(repository)


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def judge_space(exc: HopnhatError, repository: RepositoryConfig, status: Status,
                read_space: SpaceWatch | SpaceReader | None) -> HopnhatError:
    """A failure that a full repository may explain — restic's "no space" (which over SFTP is
    only a guess from a bare SSH_FX_FAILURE on a write) or an unclassified one — decided by
    the storage's free space: NoSpace, naming what is free, when it is under
    ``NO_SPACE_BELOW``; a guessed NoSpace with room to spare becomes a plain write failure.
    Other failures, or an unreadable free space, are returned as they are. The space read (a
    SpaceWatch's lowest reading of the run, when it has one) is recorded in
    ``status.repository_space``."""
    if read_space is None or type(exc) not in (NoSpace, ResticCommandError):
        return exc
    assert isinstance(exc, ResticCommandError)
    space = (read_space.judged(repository) if isinstance(read_space, SpaceWatch)
             else read_space(repository))
    if space is None:
        return exc
    status.repository_space = {"repository": repository.name, "total_bytes": space.total,
                               "free_bytes": space.free}
    where = (f"the storage of {repository.name} has {_mib(space.free)} free of "
             f"{_mib(space.total)}")
    fields: dict[str, Any] = {"repository": exc.repository, "command": exc.command,
                              "returncode": exc.returncode, "detail": exc.detail}
    if space.free < NO_SPACE_BELOW:
        return NoSpace(f"restic {exc.command}: repository {exc.repository}: no space left on "
                       f"the repository's storage: {where} (restic: {exc.detail})", **fields)
    if isinstance(exc, NoSpace):
        return ResticCommandError(f"restic {exc.command}: repository {exc.repository}: a write "
                                  f"failed ({exc.detail}), but {where}: not a full disk",
                                  **fields)
    return exc


@dataclass
class Status:
    """What one run did; written as the status file (JSON) and the textfile."""

    system: str
    tier: int
    host: str
    repository: str
    started: datetime
    result: str = FAILED
    finished: datetime | None = None
    duration_seconds: float = 0.0
    stage: str | None = None
    error: dict[str, str] | None = None
    snapshot_id: str | None = None
    bytes: int | None = None
    files: int | None = None
    data_added: int | None = None
    files_new: int | None = None
    files_changed: int | None = None
    warnings: list[str] = field(default_factory=list)
    forget: dict[str, int] | None = None
    copy: dict[str, str] | None = None
    last_success: str | None = None
    last_snapshot: str | None = None
    repository_space: dict[str, Any] | None = None
    #: the version of the restic that ran (None: not known, e.g. restic not found)
    restic_version: str | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.result]

    def fail(self, stage: str, exc: BaseException, result: str = FAILED) -> None:
        """Record a failure at ``stage``: the result becomes the worse of the current one and
        ``result``; the first error is kept as *the* error, later ones go to warnings."""
        self.result = max(self.result, result, key=RESULTS.index)
        if self.error is None:
            self.stage = stage
            self.error = {"class": type(exc).__name__, "message": str(exc)}
        else:
            self.warnings.append(f"{stage}: {type(exc).__name__}: {exc}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "system": self.system, "tier": self.tier, "host": self.host,
            "repository": self.repository, "result": self.result,
            "exit_code": self.exit_code,
            "time": _iso(self.finished) if self.finished else None,
            "started": _iso(self.started),
            "duration_seconds": round(self.duration_seconds, 3),
            "snapshot_id": self.snapshot_id, "bytes": self.bytes, "files": self.files,
            "data_added": self.data_added, "files_new": self.files_new,
            "files_changed": self.files_changed, "stage": self.stage, "error": self.error,
            "warnings": self.warnings, "forget": self.forget, "copy": self.copy,
            "last_success": self.last_success, "last_snapshot": self.last_snapshot,
            "repository_space": self.repository_space, "restic_version": self.restic_version,
        }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _previous(path: Path) -> dict[str, Any]:
    """The last status file, if readable (to carry ``last_success`` forward)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run_pre_commands(commands: Sequence[str], timeout: float, runner: CommandRunner) -> None:
    """Run each command (split into argv with :func:`shlex.split`, no shell). Raises
    PreCommandFailed naming the command's number, program and exit code."""
    for number, command in enumerate(commands, 1):
        argv = shlex.split(command)
        log.info("pre-backup command %d: %s", number, argv[0])
        try:
            done = runner(argv, timeout)
        except HopnhatError as exc:
            raise PreCommandFailed(f"pre-backup command {number} ({argv[0]}): {exc}") from None
        if not done.ok:
            why = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or [""]
            raise PreCommandFailed(f"pre-backup command {number} ({argv[0]}) exited "
                                   f"{done.returncode}: {why[0][:300]}")


def backup(config: JobConfig, *, make_restic: ResticFactory | None = None,
           run_command: CommandRunner = default_command,
           on_progress: Callable[[dict[str, Any]], None] | None = None,
           now: Callable[[], datetime] = lambda: datetime.now(UTC),
           read_space: SpaceReader | None = None) -> Status:
    """One run under the lock: pre-commands → backup → forget → copy. Returns the Status
    (the caller writes it); raises AlreadyRunning when another run holds the lock.
    ``read_space`` (the job passes :func:`repository_space`) reads a repository's free space
    when a failure may mean a full disk; None: no such check."""
    watch = SpaceWatch(read_space) if read_space is not None else None
    version = restic_version(config) if make_restic is None else None
    make = make_restic or default_restic(config, watch, version=version)
    primary = config.restic_repository(config.repository)
    status = Status(config.system, config.tier, config.host, primary.display, started=now(),
                    restic_version=version_text(version))
    previous = _previous(config.status_file)
    status.last_success = previous.get("last_success")
    status.last_snapshot = previous.get("last_snapshot")
    clock = time.monotonic()
    with exclusive_lock(config.lock_file):
        try:
            _stages(config, status, primary, make, run_command, on_progress, watch,
                    cleanup=previous.get("result") in (FAILED, PARTIAL))
        except Exception as exc:  # any failure must still end in a status file
            status.fail("internal", exc)
    status.finished = now()
    status.duration_seconds = time.monotonic() - clock
    if status.snapshot_id is not None:
        status.last_snapshot = _iso(status.finished)
    if status.result == OK:
        status.last_success = _iso(status.finished)
    return status


def _stale_lock_notes(restic: ResticRunner) -> list[str]:
    """What the job says of each stale lock its restic removed (a dead process's lock on this
    host, or one older than 30 minutes: restic's own rule)."""
    removed: list[LockInfo] = list(getattr(restic, "stale_removed", ()))
    return [f"removed a stale lock of PID {lock.pid} on {lock.hostname} (created "
            f"{_iso(lock.time)}; its process is gone or it is older than 30 minutes)"
            for lock in removed]


def _stages(config: JobConfig, status: Status, primary: Repository, make: ResticFactory,
            run_command: CommandRunner,
            on_progress: Callable[[dict[str, Any]], None] | None,
            read_space: SpaceReader | None, cleanup: bool = False) -> None:
    """The run's restic work; ``cleanup`` (the last run failed or was partial, and may have
    left a lock behind): once the backup is made, remove the locks restic calls stale."""
    try:
        run_pre_commands(config.pre_commands, config.pre_command_timeout_seconds, run_command)
    except PreCommandFailed as exc:
        status.fail("pre_command", exc)
        return
    restic = make(primary)
    try:
        _run_restic(config, status, primary, make, restic, on_progress, read_space, cleanup)
    finally:
        for note in _stale_lock_notes(restic):
            log.warning("%s: %s", config.system, note)
            status.warnings.append(note)


def _run_restic(config: JobConfig, status: Status, primary: Repository, make: ResticFactory,
                restic: ResticRunner, on_progress: Callable[[dict[str, Any]], None] | None,
                read_space: SpaceReader | None, cleanup: bool) -> None:
    try:
        result = restic.backup(config.paths, config.tags, config.exclude, config.host,
                               on_progress=on_progress, partial_ok=True)
    except HopnhatError as exc:
        status.fail("backup", judge_space(exc, config.repository, status, read_space))
        return
    status.snapshot_id = result.snapshot_id
    status.bytes = result.total_bytes_processed
    status.files = result.total_files_processed
    status.data_added = result.data_added
    status.files_new = result.files_new
    status.files_changed = result.files_changed
    status.warnings = [*result.errors, *(f"{p}: does not exist" for p in result.skipped)
                       ][:_WARNINGS_KEPT]
    if result.snapshot_id is None:
        status.fail("backup", HopnhatError("restic backup reported no snapshot"))
        return
    status.result = OK
    if result.partial:
        status.result = PARTIAL
        status.stage = "backup"
        status.error = {"class": "IncompleteBackup", "message": (
            f"snapshot {result.snapshot_id} is incomplete: {len(result.errors)} file(s) "
            f"unreadable, {len(result.skipped)} path(s) missing (restic exit 3)")}
    log.info("%s: snapshot %s, %d files, %d bytes (%d added)", config.system,
             result.snapshot_id, status.files, status.bytes, status.data_added)
    remove_stale_locks = getattr(restic, "remove_stale_locks", None)
    if cleanup and remove_stale_locks is not None:
        try:
            remove_stale_locks()
        except HopnhatError as exc:
            status.warnings.append(f"stale locks: not checked ({exc})")
    if config.retention:
        try:
            forgotten = restic.forget(config.retention, prune=True, host=config.host)
            status.forget = {"removed": len(forgotten.removed), "kept": len(forgotten.kept)}
        except HopnhatError as exc:
            status.fail("forget", judge_space(exc, config.repository, status, read_space),
                        PARTIAL)
    if config.copy is not None:
        target = config.restic_repository(config.copy)
        try:
            make(target).copy(primary, [result.snapshot_id])
            status.copy = {"repository": target.display, "result": OK}
        except HopnhatError as exc:
            status.copy = {"repository": target.display, "result": FAILED}
            status.fail("copy", judge_space(exc, config.copy, status, read_space), PARTIAL)


# --- status files ---------------------------------------------------------------------------


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _timestamp(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def textfile(status: Status) -> str:
    """The Prometheus text exposition of ``status`` (for node_exporter's textfile
    collector)."""
    labels = (f'system="{_label(status.system)}",host="{_label(status.host)}",'
              f'tier="{status.tier}"')
    metrics: list[tuple[str, str, str, list[tuple[str, float]]]] = [
        ("hopnhat_backup_last_run_timestamp_seconds", "gauge",
         "When the last backup run of this system on this host finished.",
         [("", status.finished.timestamp() if status.finished else 0.0)]),
        ("hopnhat_backup_result", "gauge",
         "Result of the last run: 1 for the result it had (ok, partial, failed), else 0.",
         [(f',result="{r}"', 1.0 if status.result == r else 0.0) for r in RESULTS]),
        ("hopnhat_backup_exit_code", "gauge", "Exit code of the last run.",
         [("", float(status.exit_code))]),
        ("hopnhat_backup_duration_seconds", "gauge", "How long the last run took.",
         [("", status.duration_seconds)]),
    ]
    if status.snapshot_id is not None:
        metrics += [
            ("hopnhat_backup_bytes_processed", "gauge", "Bytes restic read in the last run.",
             [("", float(status.bytes or 0))]),
            ("hopnhat_backup_files_processed", "gauge", "Files restic read in the last run.",
             [("", float(status.files or 0))]),
            ("hopnhat_backup_data_added_bytes", "gauge",
             "Bytes the last run added to the repository.", [("", float(status.data_added or 0))]),
        ]
    for name, help_text, key in (
            ("hopnhat_backup_last_success_timestamp_seconds",
             "When the last fully successful run finished.", status.last_success),
            ("hopnhat_backup_last_snapshot_timestamp_seconds",
             "When the last run that made a snapshot (ok or partial) finished.",
             status.last_snapshot)):
        stamp = _timestamp(key)
        if stamp is not None:
            metrics.append((name, "gauge", help_text, [("", stamp)]))
    lines = []
    for name, kind, help_text, samples in metrics:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{{{labels}{extra}}} {value:.17g}" for extra, value in samples]
    return "\n".join(lines) + "\n"


def write_status(config: JobConfig, status: Status) -> None:
    """The status file (JSON) and the textfile, each replaced atomically."""
    write_atomically(config.status_file,
                     json.dumps(status.as_dict(), indent=2, ensure_ascii=False) + "\n")
    write_atomically(config.textfile, textfile(status))


# --- entry point ----------------------------------------------------------------------------


def _progress_printer() -> Callable[[dict[str, Any]], None]:
    last = [0.0]

    def show(message: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - last[0] >= 1.0:
            last[0] = now
            done = float(message.get("percent_done") or 0.0)
            print(f"progress {done * 100:.1f}% files {message.get('files_done', 0)} "
                  f"bytes {message.get('bytes_done', 0)}", file=sys.stderr, flush=True)
    return show


def main(argv: Sequence[str] | None = None) -> int:
    """``backup_job.py --config FILE [--progress]``: one run; its status JSON on stdout.
    Exit 0 ok, 3 partial, 1 failed or refused (another run holds the lock), 2 bad config."""
    parser = argparse.ArgumentParser(prog="backup_job.py", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="the job's JSON config")
    parser.add_argument("--progress", action="store_true",
                        help="print restic's progress to stderr about once a second")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="hopnhat-backup: %(levelname)s %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        log.error("%s", exc)
        return exc.exit_code
    try:
        status = backup(config, on_progress=_progress_printer() if args.progress else None,
                        read_space=repository_space)
    except AlreadyRunning as exc:
        log.error("%s: %s", config.system, exc)
        print(json.dumps({"system": config.system, "host": config.host, "result": REFUSED,
                          "exit_code": EXIT_CODES[REFUSED],
                          "error": {"class": type(exc).__name__, "message": str(exc)}}))
        return EXIT_CODES[REFUSED]
    try:
        write_status(config, status)
    except OSError as exc:
        log.error("%s: cannot write the status files: %s", config.system, exc)
        status.fail("status", exc)
    if status.error:
        log.error("%s: %s at %s: %s: %s", config.system, status.result, status.stage,
                  status.error["class"], status.error["message"])
    else:
        log.info("%s: %s in %.1f s", config.system, status.result, status.duration_seconds)
    print(json.dumps(status.as_dict(), ensure_ascii=False))
    return status.exit_code


if __name__ == "__main__":
    sys.exit(main())
