"""The backup job that runs on a host: ``hopnhat-backup-<code>.service`` starts it, and so
does an operator by hand (``python3 /usr/local/lib/hopnhat/backup_job.py --config …``).

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
``failed`` (exit 1) — no snapshot. A bad config exits 2. The password is never read here:
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
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from orchestrator.adapters.restic import BackupResult, ForgetResult, Repository, Restic
from orchestrator.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_PARTIAL,
    HopnhatError,
)
from orchestrator.process import Completed, run

log = logging.getLogger("hopnhat.backup")

CONFIG_VERSION = 1
OK, PARTIAL, FAILED, REFUSED = "ok", "partial", "failed", "refused"
RESULTS = (OK, PARTIAL, FAILED)
EXIT_CODES = {OK: EXIT_OK, PARTIAL: EXIT_PARTIAL, FAILED: EXIT_FAILURE, REFUSED: EXIT_FAILURE}
#: what pre-backup commands may see of the environment (nothing secret is passed on)
COMMAND_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_WARNINGS_KEPT = 20


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
    ``url`` (``sftp:restic-<code>@<host>:/repo``; the host's ssh config maps it)."""

    name: str
    url: str


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
                          cache_dir=self.cache_dir, name=f"{self.system}@{which.name}")


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
    if (not isinstance(value, dict) or set(value) != {"name", "url"}
            or not all(isinstance(v, str) and v for v in value.values())):
        raise ConfigError(f"{where}: '{key}' must be {{name, url}} (non-empty strings)")
    return RepositoryConfig(name=value["name"], url=value["url"])


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


def default_restic(config: JobConfig) -> ResticFactory:
    def make(repo: Repository) -> ResticRunner:
        return Restic(repo, binary=config.restic, timeout=config.timeout_seconds,
                      lock_wait=config.lock_wait_seconds)
    return make


def default_command(argv: Sequence[str], timeout: float) -> Completed:
    return run(argv, env={"PATH": COMMAND_PATH, "HOME": "/root", "LC_ALL": "C.UTF-8"},
               inherit_env=False, timeout=timeout, cwd="/", input="")


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
           now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Status:
    """One run under the lock: pre-commands → backup → forget → copy. Returns the Status
    (the caller writes it); raises AlreadyRunning when another run holds the lock."""
    make = make_restic or default_restic(config)
    primary = config.restic_repository(config.repository)
    status = Status(config.system, config.tier, config.host, primary.display, started=now())
    previous = _previous(config.status_file)
    status.last_success = previous.get("last_success")
    status.last_snapshot = previous.get("last_snapshot")
    clock = time.monotonic()
    with exclusive_lock(config.lock_file):
        try:
            _stages(config, status, primary, make, run_command, on_progress)
        except Exception as exc:  # any failure must still end in a status file
            status.fail("internal", exc)
    status.finished = now()
    status.duration_seconds = time.monotonic() - clock
    if status.snapshot_id is not None:
        status.last_snapshot = _iso(status.finished)
    if status.result == OK:
        status.last_success = _iso(status.finished)
    return status


def _stages(config: JobConfig, status: Status, primary: Repository, make: ResticFactory,
            run_command: CommandRunner,
            on_progress: Callable[[dict[str, Any]], None] | None) -> None:
    try:
        run_pre_commands(config.pre_commands, config.pre_command_timeout_seconds, run_command)
    except PreCommandFailed as exc:
        status.fail("pre_command", exc)
        return
    restic = make(primary)
    try:
        result = restic.backup(config.paths, config.tags, config.exclude, config.host,
                               on_progress=on_progress, partial_ok=True)
    except HopnhatError as exc:
        status.fail("backup", exc)
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
    if config.retention:
        try:
            forgotten = restic.forget(config.retention, prune=True, host=config.host)
            status.forget = {"removed": len(forgotten.removed), "kept": len(forgotten.kept)}
        except HopnhatError as exc:
            status.fail("forget", exc, PARTIAL)
    if config.copy is not None:
        target = config.restic_repository(config.copy)
        try:
            make(target).copy(primary, [result.snapshot_id])
            status.copy = {"repository": target.display, "result": OK}
        except HopnhatError as exc:
            status.copy = {"repository": target.display, "result": FAILED}
            status.fail("copy", exc, PARTIAL)


# --- status files ---------------------------------------------------------------------------


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` in one rename (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
        status = backup(config, on_progress=_progress_printer() if args.progress else None)
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
