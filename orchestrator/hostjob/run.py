"""One run of the job under its lock: the pre-backup commands, then ``restic backup``,
``forget --prune`` and the second copy, each stage's failure recorded in the run's
:class:`~orchestrator.hostjob.status.Status` (the first error is *the* error; the result is
the worst any stage earned)."""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from orchestrator.adapters.restic import LockInfo, Repository
from orchestrator.adapters.restic_argv import Features
from orchestrator.errors import HopnhatError
from orchestrator.hostjob.config import COMMAND_PATH, JobConfig
from orchestrator.hostjob.contract import FAILED, OK, PARTIAL
from orchestrator.hostjob.dumps import DumpFailed, dump_databases
from orchestrator.hostjob.lock import exclusive_lock
from orchestrator.hostjob.restic import (
    ResticFactory,
    ResticRunner,
    default_restic,
    restic_version,
    version_text,
)
from orchestrator.hostjob.space import SpaceReader, SpaceWatch, judge_space
from orchestrator.hostjob.status import Status, iso, previous_status
from orchestrator.process import Completed, run

log = logging.getLogger("hopnhat.backup")

_WARNINGS_KEPT = 20

CommandRunner = Callable[[Sequence[str], float], Completed]


class PreCommandFailed(HopnhatError):
    """A pre-backup command failed or could not start; nothing was backed up."""


def default_command(argv: Sequence[str], timeout: float) -> Completed:
    """Run a pre-backup command: no shell, ``/`` as its folder, nothing on stdin, and of the
    environment only PATH (:data:`~orchestrator.hostjob.config.COMMAND_PATH`), HOME and a
    UTF-8 locale."""
    return run(argv, env={"PATH": COMMAND_PATH, "HOME": "/root", "LC_ALL": "C.UTF-8"},
               inherit_env=False, timeout=timeout, cwd="/", input="")


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
    ``read_space`` (the job passes :func:`~orchestrator.hostjob.space.repository_space`)
    reads a repository's free space when a failure may mean a full disk; None: no such
    check."""
    watch = SpaceWatch(read_space) if read_space is not None else None
    version = restic_version(config) if make_restic is None else None
    make = make_restic or default_restic(config, watch, version=version)
    primary = config.restic_repository(config.repository)
    status = Status(config.system, config.tier, config.host, primary.display, started=now(),
                    restic_version=version_text(version))
    previous = previous_status(config.status_file)
    status.last_success = previous.get("last_success")
    status.last_snapshot = previous.get("last_snapshot")
    clock = time.monotonic()
    with exclusive_lock(config.lock_file):
        try:
            _stages(config, status, primary, make, run_command, on_progress, watch,
                    cleanup=previous.get("result") in (FAILED, PARTIAL),
                    from_command=version is not None and Features(version).stdin_from_command)
        except Exception as exc:  # any failure must still end in a status file
            status.fail("internal", exc)
    status.finished = now()
    status.duration_seconds = time.monotonic() - clock
    if status.snapshot_id is not None:
        status.last_snapshot = iso(status.finished)
    if status.result == OK:
        status.last_success = iso(status.finished)
    return status


def _stale_lock_notes(restic: ResticRunner) -> list[str]:
    """What the job says of each stale lock its restic removed (a dead process's lock on this
    host, or one older than 30 minutes: restic's own rule)."""
    removed: list[LockInfo] = list(getattr(restic, "stale_removed", ()))
    return [f"removed a stale lock of PID {lock.pid} on {lock.hostname} (created "
            f"{iso(lock.time)}; its process is gone or it is older than 30 minutes)"
            for lock in removed]


def _stages(config: JobConfig, status: Status, primary: Repository, make: ResticFactory,
            run_command: CommandRunner,
            on_progress: Callable[[dict[str, Any]], None] | None,
            read_space: SpaceReader | None, cleanup: bool = False,
            from_command: bool = False) -> None:
    """The run's restic work; ``cleanup`` (the last run failed or was partial, and may have
    left a lock behind): once the backup is made, remove the locks restic calls stale.
    The databases are dumped first (each its own snapshot; ``from_command``: restic 0.17+
    runs the dump programs); a failed dump ends the run there, with no files snapshot."""
    try:
        run_pre_commands(config.pre_commands, config.pre_command_timeout_seconds, run_command)
    except PreCommandFailed as exc:
        status.fail("pre_command", exc)
        return
    restic = make(primary)
    try:
        if config.databases:
            try:
                dumped = dump_databases(config, restic, from_command=from_command)
            except DumpFailed as exc:
                status.fail("dump", exc)
                return
            status.dumps = [d.manifest() for d in dumped]
        _run_restic(config, status, primary, make, restic, on_progress, read_space, cleanup)
    finally:
        for note in _stale_lock_notes(restic):
            log.warning("%s: %s", config.system, note)
            status.warnings.append(note)


def _run_restic(config: JobConfig, status: Status, primary: Repository, make: ResticFactory,
                restic: ResticRunner, on_progress: Callable[[dict[str, Any]], None] | None,
                read_space: SpaceReader | None, cleanup: bool) -> None:
    try:
        paths = (*config.paths, str(config.dumps_dir)) if config.databases else config.paths
        result = restic.backup(paths, config.tags, config.exclude, config.host,
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
            make(target).copy(primary, [result.snapshot_id,
                                        *(str(d["snapshot"]) for d in status.dumps)])
            status.copy = {"repository": target.display, "result": OK}
        except HopnhatError as exc:
            status.copy = {"repository": target.display, "result": FAILED}
            status.fail("copy", judge_space(exc, config.copy, status, read_space), PARTIAL)
