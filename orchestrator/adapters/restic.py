"""hopnhat's restic adapter: one :class:`Restic` per repository, typed results, typed errors.

The pieces live in sibling modules, the public names re-exported here:
:mod:`~orchestrator.adapters.restic_argv` (the repository, version features, environment and the
pure argv builders), :mod:`~orchestrator.adapters.restic_results` (results and their parsers),
:mod:`~orchestrator.adapters.restic_errors` (errors classified from restic's output) and
:mod:`~orchestrator.adapters.restic_stream` (reading a running restic's output line by line).

Every restic process starts through :mod:`orchestrator.process`: short commands with
:func:`~orchestrator.process.run`; commands whose output is streamed (backup progress, check,
restore, ``ls`` of millions of files) with :func:`~orchestrator.process.spawn`, their output
(stdout and stderr together) read line by line from a private FIFO. The environment is built
from nothing (:func:`make_environment`); the password is only ever a file's path in it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import socket
import tarfile
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import IO, Any, BinaryIO, TypeVar
from zoneinfo import ZoneInfo

from orchestrator.adapters.restic_argv import (
    Features,
    Repository,
    Version,
    make_backup_argv,
    make_backup_stdin_argv,
    make_cat_lock_argv,
    make_check_argv,
    make_copy_argv,
    make_dump_argv,
    make_environment,
    make_forget_argv,
    make_init_argv,
    make_list_locks_argv,
    make_ls_argv,
    make_restore_argv,
    make_snapshots_argv,
    make_stats_argv,
    make_tag_argv,
    make_unlock_argv,
    make_version_argv,
    parse_version,
    retention_flags,
    ssh_command,
    with_retry_lock,
)
from orchestrator.adapters.restic_errors import (
    AccessDenied,
    ConnectionLost,
    IncompleteBackup,
    InputAborted,
    LockHolder,
    NoRepository,
    NoSpace,
    QuotaExceeded,
    RepositoryDamaged,
    RepositoryLocked,
    ResticCommandError,
    Retry,
    WrongPassword,
    classify,
    futile_quota_retry,
    futile_sftp_retry,
    parse_retry,
    ssh_said_why,
    with_note,
)
from orchestrator.adapters.restic_results import (
    BackupResult,
    CheckResult,
    CheckSummary,
    ForgetResult,
    Listing,
    LockInfo,
    Node,
    RestoreResult,
    Snapshot,
    StaleLockReport,
    Stats,
    lock_verdict,
    message_lines,
    parse_backup_output,
    parse_check,
    parse_check_json,
    parse_forget,
    parse_lock,
    parse_ls_line,
    parse_restore,
    parse_snapshots,
    parse_stats,
)
from orchestrator.adapters.restic_stream import KEEP_LINES, Stream, process_state
from orchestrator.errors import CommandError, ResticError
from orchestrator.process import Completed, reading, run

__all__ = [
    "AccessDenied",
    "BackupResult",
    "CheckResult",
    "CheckSummary",
    "ConnectionLost",
    "Features",
    "ForgetResult",
    "IncompleteBackup",
    "InputAborted",
    "Listing",
    "LockHolder",
    "LockInfo",
    "NoRepository",
    "NoSpace",
    "Node",
    "QuotaExceeded",
    "Repository",
    "RepositoryDamaged",
    "RepositoryLocked",
    "Restic",
    "ResticCommandError",
    "RestoreResult",
    "Retry",
    "Snapshot",
    "StaleLockReport",
    "Stats",
    "WrongPassword",
    "retention_flags",
    "ssh_command",
]

T = TypeVar("T")
#: how often one command removes stale locks before it only waits (a bound, not a policy)
_STALE_REMOVALS = 3
LineCallback = Callable[[str], None]


class Restic:
    """restic against one repository.

    ``timeout``: seconds any one restic command may take. ``lock_wait``: how long a command
    that finds the repository locked keeps trying (restic's ``--retry-lock`` from 0.16, else
    hopnhat retries every ``lock_poll`` seconds) before raising RepositoryLocked.
    ``on_start``: called with the PID of each streamed restic process (tests, operators).
    ``version``: restic's version when the caller knows it (else asked once, when needed).
    ``remove_stale``: a command that finds the repository locked first removes the locks
    restic itself calls stale (:meth:`remove_stale_locks`: a dead process's lock on this host,
    or one older than 30 minutes) and tries again at once; live locks are waited for (by
    restic 0.16+ only after that: it waits for a stale lock like for a live one).
    A streamed command is stopped at restic's first retry that cannot succeed — on an SFTP
    repository whose ssh has gone (restic would retry ten times over about a minute), or when
    ``give_up`` (the caller's judgement of a :class:`Retry`) gives a reason — and fails with
    the reason in its message.
    Every method raises a :class:`ResticError` subclass on failure (never returns None for
    one): the classified ones of :mod:`~orchestrator.adapters.restic_errors`, or a plain
    ResticCommandError (restic missing, timed out, or an unclassified failure).
    """

    def __init__(self, repo: Repository, binary: str = "restic", timeout: float = 6 * 3600.0,
                 *, lock_wait: float = 0.0, lock_poll: float = 5.0,
                 on_start: Callable[[int], None] | None = None,
                 remove_stale: bool = False,
                 give_up: Callable[[Retry], str | None] | None = None,
                 version: Version | None = None) -> None:
        self.repo = repo
        self.give_up = give_up
        self.binary = binary
        self.timeout = timeout
        self.lock_wait = lock_wait
        self.lock_poll = lock_poll
        self.on_start = on_start
        self.remove_stale = remove_stale
        #: every stale lock this instance removed (:meth:`remove_stale_locks`)
        self.stale_removed: list[LockInfo] = []
        self._version: Version | None = version  # known: never asked

    # --- plumbing ---------------------------------------------------------------------------

    def version(self) -> Version:
        """restic's version, e.g. ``(0, 14, 0)`` (asked once per instance)."""
        if self._version is None:
            with self._named("version"):
                done = run((self.binary, *make_version_argv()[1:]), env=self._base_env(),
                           inherit_env=False, timeout=30, input="")
            if not done.ok:
                raise ResticError(f"{self.binary} version exited {done.returncode}")
            self._version = parse_version(done.stdout)
        return self._version

    @property
    def features(self) -> Features:
        """What this restic version offers (see :class:`Features`)."""
        return Features(self.version())

    def _base_env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": os.environ.get("HOME", "/root"), "TMPDIR": tempfile.gettempdir()}

    def _env(self, from_repo: Repository | None = None) -> dict[str, str]:
        for repo in (self.repo, from_repo):
            if repo is not None and not repo.password_file.is_file():
                raise ResticError(f"repository {repo.display}: password file "
                                  f"{repo.password_file} is missing")
        base = self._base_env()
        return make_environment(self.repo, path=base["PATH"], home=base["HOME"],
                                tmpdir=base["TMPDIR"], from_repo=from_repo,
                                features=self.features if from_repo else None)

    def _argv(self, argv: Sequence[str], wait: float = 0.0) -> tuple[str, ...]:
        """``argv`` with this binary; ``wait`` > 0: restic waits that long for a lock itself
        (``--retry-lock``, given only to restic 0.16+ by :meth:`_locking`)."""
        argv = (self.binary, *argv[1:])
        return with_retry_lock(argv, wait) if wait > 0 else argv

    @contextlib.contextmanager
    def _named(self, command: str) -> Iterator[None]:
        """CommandError (restic missing, timeout) re-raised as a ResticError naming the
        repository and the command."""
        try:
            yield
        except CommandError as exc:
            raise ResticCommandError(f"restic {command}: repository {self.repo.display}: {exc}",
                                     repository=self.repo.display, command=command,
                                     detail=str(exc)) from None

    def _fail(self, output: str, returncode: int, command: str) -> ResticCommandError:
        error = classify(output, returncode, repo=self.repo, command=command,
                         exit_codes=self.features.exit_codes)
        if (isinstance(error, ConnectionLost) and self.repo.sftp_command
                and "unable to start the sftp session" in output
                and not ssh_said_why(output)):
            # restic (0.14 and 0.18) may exit before it has copied ssh's stderr, or all of it
            # (a race): ask ssh itself
            error = classify(output + "\n" + self._ssh_says(), returncode, repo=self.repo,
                             command=command, exit_codes=self.features.exit_codes)
        return error

    def _ssh_says(self) -> str:
        """What the repository's ssh command says when run alone (stdin empty, so the sftp
        subsystem ends at once), as restic would show it: ``subprocess ssh: …`` lines."""
        assert self.repo.sftp_command
        try:
            done = run(self.repo.sftp_command, env=self._base_env(), inherit_env=False,
                       timeout=30, input="")
        except CommandError as exc:
            return f"subprocess ssh: {exc}"
        return "\n".join(f"subprocess ssh: {line}" for line in done.stderr.splitlines()
                         if line.strip())

    def _run(self, argv: Sequence[str], command: str, *, locking: bool = True,
             from_repo: Repository | None = None, ok_codes: tuple[int, ...] = (0,)) -> Completed:
        def attempt(wait: float) -> Completed:
            with self._named(command):
                done = run(self._argv(argv, wait), env=self._env(from_repo),
                           inherit_env=False, timeout=self.timeout, input="")
            if done.returncode not in ok_codes:
                raise self._fail(done.stderr, done.returncode, command)
            return done
        return self._locking(attempt) if locking else attempt(0.0)

    def _stream(self, argv: Sequence[str], command: str, on_line: LineCallback | None = None,
                *, keep: Callable[[str], bool] = lambda line: True,
                ok_codes: tuple[int, ...] = (0,)) -> tuple[int, tuple[str, ...]]:
        """Run a streamed command to its end; returns (exit code, kept lines)."""
        def attempt(wait: float) -> tuple[int, tuple[str, ...]]:
            stopped: str | None = None
            with self._named(command):
                stream = self._start(argv, wait)
                for line in stream.lines():
                    if keep(line):
                        stream.tail.append(line)
                    if on_line is not None:
                        on_line(line)
                    if stopped is None and "returned error, retrying after" in line:
                        stopped = self._futile(line)
                        if stopped is not None:
                            stream.stop()
            code = stream.returncode if stream.returncode is not None else 1
            if stopped is not None:
                raise with_note(self._fail("\n".join(stream.tail), code or 1, command), stopped)
            if code not in ok_codes:
                raise self._fail("\n".join(stream.tail), code, command)
            return code, tuple(stream.tail)
        return self._locking(attempt)

    def _futile(self, line: str) -> str | None:
        """Why restic's retry on ``line`` cannot succeed (so restic is stopped), or None."""
        retry = parse_retry(line)
        if retry is None:
            return None
        if self.repo.sftp_command is not None or self.repo.url.startswith("sftp:"):
            reason = futile_sftp_retry(retry)
            if reason is not None:
                return reason
        reason = futile_quota_retry(retry)
        if reason is not None:
            return reason
        return self.give_up(retry) if self.give_up is not None else None

    def _start(self, argv: Sequence[str], wait: float = 0.0) -> Stream:
        stream = Stream(self._argv(argv, wait), self._env(), self.timeout)
        if self.on_start is not None:
            self.on_start(stream.pid)
        return stream

    def _locking(self, attempt: Callable[[float], T]) -> T:
        """``attempt(wait)`` until it does not fail as locked, for up to ``lock_wait`` s.

        restic 0.16+ waits for a lock itself: ``attempt`` gets the seconds left (it passes
        them as ``--retry-lock``); with 0.14, hopnhat tries again every ``lock_poll`` s
        (``attempt(0)``). With ``remove_stale``, the stale locks in the way are removed and
        the attempt repeated at once — before restic is asked to wait, since restic waits
        for a stale lock like for any other (it removes none by itself).
        """
        deadline = time.monotonic() + self.lock_wait
        started = time.monotonic()
        restic_waits = self.lock_wait > 0 and self.features.retry_lock
        stale_tried = not self.remove_stale  # restic's own wait only once stale ones are gone
        removals = 0
        while True:
            left = deadline - time.monotonic()
            wait = left if restic_waits and stale_tried and left >= 1.0 else 0.0
            try:
                return attempt(wait)
            except RepositoryLocked as exc:
                if self.remove_stale and removals < _STALE_REMOVALS and self._unlock_stale():
                    removals += 1
                    continue
                stale_tried = True
                left = deadline - time.monotonic()
                if self.lock_wait <= 0 or left <= 0 or (restic_waits and wait > 0):
                    waited = time.monotonic() - started
                    raise (exc.after_wait(waited) if self.lock_wait > 0 else exc) from None
                if not restic_waits:
                    threading.Event().wait(min(self.lock_poll, left))  # bounded pause
                elif left < 1.0:
                    threading.Event().wait(left)  # too little left for restic's --retry-lock

    def _unlock_stale(self) -> bool:
        """Remove the stale locks (if restic can do so safely); True when one went. A failure
        to list or remove them leaves the wait as it was."""
        try:
            return bool(self.remove_stale_locks().removed)
        except ResticError:
            return False

    # --- commands ---------------------------------------------------------------------------

    def init(self, *, exist_ok: bool = False, chunker_from: Repository | None = None) -> str | None:
        """Create the repository; returns its ID, or None when it exists and ``exist_ok``."""
        argv = make_init_argv(self.repo, chunker_from=chunker_from, features=self.features)
        try:
            done = self._run(argv, "init", locking=False, from_repo=chunker_from)
        except ResticCommandError as exc:
            if exist_ok and "already exists" in exc.detail:
                return None
            raise
        found = re.search(r"created restic repository (\w+)", done.stdout)
        return found.group(1) if found else ""

    def backup(self, paths: Sequence[str | Path], tags: Sequence[str] = (),
               exclude: Sequence[str] = (), host: str | None = None, *,
               on_progress: Callable[[dict[str, Any]], None] | None = None,
               partial_ok: bool = True, time: datetime | None = None) -> BackupResult:
        """Back up ``paths``; ``on_progress`` receives restic's JSON status messages; ``time``
        sets the snapshot's time (default now). Exit 3 (unreadable files) gives a result with
        ``partial=True`` — or IncompleteBackup when not ``partial_ok``."""
        def each(line: str) -> None:
            if on_progress is not None and line.startswith('{"message_type":"status"'):
                with contextlib.suppress(ValueError):
                    on_progress(_json(line))
        argv = make_backup_argv(self.repo, paths, tags, exclude, host, json=True, time=time,
                                zone=restic_local_zone())
        code, lines = self._stream(argv, "backup", each, keep=_not_status, ok_codes=(0, 3))
        result = parse_backup_output(lines, code)
        if result is None:
            raise self._fail("\n".join(lines), code, "backup")
        if result.partial and not partial_ok:
            raise IncompleteBackup(
                f"restic backup: repository {self.repo.display}: snapshot "
                f"{result.snapshot_id} is incomplete ({len(result.errors)} unreadable, "
                f"{len(result.skipped)} missing)", result=result, repository=self.repo.display,
                command="backup", returncode=code)
        return result

    def backup_stdin(self, filename: str, tags: Sequence[str] = (), host: str | None = None,
                     *, command: Sequence[str] | None = None,
                     feed: Callable[[IO[bytes]], bool] | None = None) -> BackupResult:
        """Back up one stream as the snapshot's file ``/<filename>``: what ``command`` writes
        (restic 0.17+ runs it: ``--stdin-from-command``; it exiting non-zero fails the backup
        with no snapshot) or what ``feed(stdin)`` writes to restic's stdin (``--stdin``; see
        :meth:`Stream.feed`: it returns True when its input is complete, False to have restic
        stopped before it writes a snapshot, raising InputAborted). ``feed`` may be called
        again when the repository was locked (it must start over)."""
        if (command is None) == (feed is None):
            raise ValueError("backup_stdin: give a command or a feed")
        argv = make_backup_stdin_argv(self.repo, filename, tags, host, command=command)
        if command is not None:
            said: deque[str] = deque(maxlen=3)  # the program's own stderr, as restic relays it

            def each(line: str) -> None:
                if line.startswith("subprocess "):
                    said.append(line.strip()[:300])
            try:
                code, lines = self._stream(argv, "backup", each, keep=_not_status,
                                           ok_codes=(0, 3))
            except ResticCommandError as exc:
                raise (with_note(exc, " / ".join(said)) if said else exc) from None
        else:
            assert feed is not None
            code, lines = self._locking(lambda wait: self._fed(argv, feed, wait))
        result = parse_backup_output(lines, code)
        if result is None:
            raise self._fail("\n".join(lines), code, "backup")
        return result

    def _fed(self, argv: Sequence[str], feed: Callable[[IO[bytes]], bool],
             wait: float) -> tuple[int, tuple[str, ...]]:
        """One ``backup --stdin`` with ``feed`` writing its input (see :meth:`backup_stdin`)."""
        tail: deque[str] = deque(maxlen=KEEP_LINES)
        with self._named("backup"):
            stream = Stream(self._argv(argv, wait), self._env(), self.timeout, stdin=True)
            if self.on_start is not None:
                self.on_start(stream.pid)
            feeding = stream.feed(feed)
            try:
                tail.extend(line for line in stream.lines() if _not_status(line))
            finally:
                stream.close()
                feeding.join()
        code = stream.returncode if stream.returncode is not None else 1
        if feeding.error is not None:
            raise feeding.error
        if not feeding.complete and not feeding.broken:
            # a restic stopped while it took its lock (the signal raced it, or it was killed
            # after the grace time) leaves that lock behind: stale now, so remove it
            self._unlock_stale()
            raise InputAborted(f"restic backup: repository {self.repo.display}: stopped before "
                               "it wrote a snapshot: its input failed",
                               repository=self.repo.display, command="backup", returncode=code)
        if code not in (0, 3):
            raise self._fail("\n".join(tail), code, "backup")
        return code, tuple(tail)

    def snapshots(self, *, host: str | None = None, tags: Sequence[str] = (),
                  paths: Sequence[str] = (), latest: int | None = None,
                  no_lock: bool = False) -> list[Snapshot]:
        """The repository's snapshots (filtered), oldest first; ``no_lock`` reads without
        taking a lock (beside a running ``check``, which holds an exclusive one)."""
        argv = make_snapshots_argv(self.repo, host=host, tags=tags, paths=paths, latest=latest,
                                   no_lock=no_lock)
        return parse_snapshots(self._run(argv, "snapshots").stdout)

    def forget(self, retention: Mapping[str, int | str], prune: bool = True, *,
               host: str | None = None, tags: Sequence[str] = (), group_by: str | None = None,
               dry_run: bool = False) -> ForgetResult:
        """Apply ``retention`` (see :func:`retention_flags`), then prune unless told not to."""
        argv = make_forget_argv(self.repo, retention, prune, host=host, tags=tags,
                                group_by=group_by, dry_run=dry_run)
        return parse_forget(self._run(argv, "forget").stdout, pruned=prune and not dry_run)

    def check(self, read_data_subset: str | None = None, *,
              on_line: LineCallback | None = None) -> CheckResult:
        """``check`` (plus ``--read-data``/``--read-data-subset``); lines go to ``on_line`` as
        they come. restic 0.18+ runs with ``--json`` (:attr:`Features.check_json`): the result
        carries its summary, and ``on_line`` gets the text of its messages (never the JSON);
        before, check's text is all there is. Raises RepositoryDamaged naming the problems
        when restic finds errors."""
        if not self.features.check_json:
            _, lines = self._stream(make_check_argv(self.repo, read_data_subset), "check",
                                    on_line)
            return parse_check(lines, read_data_subset)

        def each(line: str) -> None:
            if on_line is not None:
                for text in message_lines(line) or ([] if line.startswith("{") else [line]):
                    on_line(text)
        _, lines = self._stream(make_check_argv(self.repo, read_data_subset, json=True),
                                "check", each)
        try:
            return parse_check_json(lines, read_data_subset)
        except ValueError as exc:
            raise ResticCommandError(
                f"restic check: repository {self.repo.display}: {exc}",
                repository=self.repo.display, command="check", returncode=0,
                detail=str(exc)) from None

    def restore(self, snapshot: str, target: str | Path, include: Sequence[str] | None = None,
                verify: bool = True, *, host: str | None = None,
                on_line: LineCallback | None = None) -> RestoreResult:
        """Restore ``snapshot`` (an ID or ``latest``) into ``target``; ``verify`` re-reads every
        restored file against the repository (restore --verify)."""
        if verify and not self.features.restore_verify:
            raise ResticError(f"restic {self.version()} has no restore --verify")
        argv = make_restore_argv(self.repo, snapshot, target, include, verify, host=host)
        _, lines = self._stream(argv, "restore", on_line)
        return parse_restore(snapshot, Path(target), lines)

    def ls(self, snapshot: str, paths: Sequence[str] = (), *,
           host: str | None = None) -> Generator[Node, None, None]:
        """The snapshot's nodes, one at a time while restic lists them (memory stays flat for
        millions of files). Stopping early (``close()``, or leaving a ``for`` loop and
        dropping the generator) stops restic. Raises the classified error at the
        end (or at once, if restic fails before listing anything)."""
        argv = make_ls_argv(self.repo, snapshot, paths, host=host)

        def first(wait: float) -> tuple[Stream, Iterator[str], list[str]]:
            # start, and read up to the first node: a lock failure comes before any node and
            # can still be retried by _locking
            with self._named("ls"):
                stream = self._start(argv, wait)
                lines = stream.lines()
                head: list[str] = []
                for line in lines:
                    head.append(line)
                    if parse_ls_line(line) is not None:
                        return stream, lines, head
            code = stream.returncode if stream.returncode is not None else 1
            if code != 0:
                raise self._fail("\n".join(head[-KEEP_LINES:]), code, "ls")
            return stream, lines, head

        stream, lines, head = self._locking(first)
        errors: deque[str] = deque(maxlen=KEEP_LINES)
        try:
            with self._named("ls"):
                for line in itertools.chain(head, lines):
                    node = parse_ls_line(line)
                    if node is not None:
                        yield node
                    elif not line.startswith("{"):
                        errors.append(line)
        finally:
            stream.close()
        if stream.returncode != 0:
            raise self._fail("\n".join(errors), stream.returncode or 1, "ls")

    def _read(self, argv: Sequence[str], command: str, consume: Callable[[Any], T]) -> T:
        """Run ``argv`` and hand its binary stdout to ``consume``; restic's failure (or the
        consumer's wrong turn) classified, naming the repository. No lock retry: the
        commands read (a shared lock)."""
        with self._named(command), reading(self._argv(argv), env=self._env(),
                                           inherit_env=False, timeout=self.timeout) as out:
            value = consume(out.stdout)
        if out.returncode != 0:
            raise self._fail(out.stderr, out.returncode or 1, command)
        return value

    def dump(self, snapshot: str, path: str, sink: BinaryIO) -> int:
        """Write the bytes of file ``path`` of ``snapshot`` to ``sink`` (restic checks each
        blob against its hash as it reads it). Out: the number of bytes."""
        def copy(stdout: Any) -> int:
            total = 0
            for chunk in iter(lambda: stdout.read(1 << 20), b""):
                sink.write(chunk)
                total += len(chunk)
            return total
        return self._read(make_dump_argv(self.repo, snapshot, path), "dump", copy)

    def dump_tree(self, snapshot: str, each: Callable[[tarfile.TarInfo, IO[bytes] | None],
                                                      None], path: str = "/") -> None:
        """Stream ``path`` (a folder; the whole snapshot by default) of ``snapshot`` as tar
        and call ``each(member, its bytes or None)`` per entry, in restic's order (names:
        paths without the leading ``/``). Memory stays flat whatever the size."""
        def walk(stdout: Any) -> None:
            with tarfile.open(fileobj=stdout, mode="r|") as archive:
                for member in archive:
                    each(member, archive.extractfile(member) if member.isfile() else None)
        try:
            self._read(make_dump_argv(self.repo, snapshot, path), "dump", walk)
        except tarfile.TarError as exc:
            raise ResticCommandError(f"restic dump: repository {self.repo.display}: not a "
                                     f"tar stream: {exc}", repository=self.repo.display,
                                     command="dump", detail=str(exc)) from None

    def tag(self, snapshot_ids: Sequence[str], add: Sequence[str]) -> None:
        """Add ``add`` to each of ``snapshot_ids`` (restic writes each again: new IDs)."""
        self._run(make_tag_argv(self.repo, snapshot_ids, add), "tag")

    def listing(self, snapshot: str, paths: Sequence[str] = ()) -> Listing:
        """Counts and total file size of ``snapshot`` (streamed through :meth:`ls`)."""
        totals = Listing()
        for node in self.ls(snapshot, paths):
            totals.add(node)
        return totals

    def stats(self, snapshot_ids: Sequence[str] = (), mode: str = "restore-size", *,
              no_lock: bool = False) -> Stats:
        """``stats --json`` for ``snapshot_ids`` (all when empty); ``no_lock`` as for
        :meth:`snapshots`."""
        return parse_stats(self._run(make_stats_argv(self.repo, snapshot_ids, mode,
                                                     no_lock=no_lock), "stats").stdout)

    def copy(self, from_repo: Repository, snapshot_ids: Sequence[str] = ()) -> tuple[str, ...]:
        """Copy ``snapshot_ids`` (all when empty) from ``from_repo`` into this repository;
        returns restic's output lines (0.14 has no JSON for copy)."""
        argv = make_copy_argv(from_repo, self.repo, snapshot_ids, features=self.features)
        done = self._run(argv, "copy", from_repo=from_repo)
        return tuple(line for line in (done.stdout + done.stderr).splitlines() if line.strip())

    # --- locks ------------------------------------------------------------------------------

    def locks(self) -> list[LockInfo]:
        """Every lock in the repository (a lock removed while being read is left out)."""
        ids = self._run(make_list_locks_argv(self.repo), "list locks", locking=False).stdout
        found = []
        for lock_id in ids.split():
            lock = self._cat_lock(lock_id)
            if lock is not None:
                found.append(lock)
        return found

    def _cat_lock(self, lock_id: str) -> LockInfo | None:
        """The lock ``lock_id``, or None when it went before it was read (its holder ended
        meanwhile). restic before 0.16 retries reading a missing file ten times, over about
        45 s, before it says so: it is stopped at its first retry of the missing lock."""
        gone = False
        with self._named("cat lock"):
            stream = Stream(self._argv(make_cat_lock_argv(self.repo, lock_id)), self._env(),
                            self.timeout)
            for line in stream.lines():
                stream.tail.append(line)
                retry = parse_retry(line)
                if (not gone and retry is not None and retry.subject.startswith("<lock/")
                        and _missing(retry.error)):
                    gone = True
                    stream.stop()
        lines = list(stream.tail)
        if gone or (stream.returncode != 0 and _missing("\n".join(lines))):
            return None
        if stream.returncode != 0:
            raise self._fail("\n".join(lines), stream.returncode or 1, "cat lock")
        # stdout and stderr come as one stream: the lock's JSON starts at a line of "{"
        start = next((i for i, line in enumerate(lines) if line.startswith("{")), len(lines))
        return parse_lock(lock_id, "\n".join(lines[start:]))

    def wait_for_unlock(self, max_wait: float, poll: float = 5.0, *,
                        exclusive: bool = True) -> None:
        """Return once no lock stands in the way (any lock for an ``exclusive`` command, an
        exclusive lock for another), polling every ``poll`` s; raise RepositoryLocked naming
        the oldest holder and its age when ``max_wait`` s pass first."""
        started = time.monotonic()
        while True:
            blocking = [lock for lock in self.locks() if exclusive or lock.exclusive]
            if not blocking:
                return
            waited = time.monotonic() - started
            if waited >= max_wait:
                lock = min(blocking, key=lambda item: item.time)
                age = (datetime.now(UTC) - lock.time).total_seconds()
                holder = LockHolder(pid=lock.pid, host=lock.hostname, user=lock.username,
                                    uid=lock.uid, gid=lock.gid, created=lock.time, age=age,
                                    exclusive=lock.exclusive, lock_id=lock.id[:8])
                raise RepositoryLocked(
                    f"repository {self.repo.display} is locked by {holder.describe()}; still "
                    f"locked after waiting {waited:.0f} s", holder=holder, waited=waited,
                    repository=self.repo.display, command="wait for unlock")
            threading.Event().wait(min(poll, max(0.0, max_wait - waited)))

    def remove_stale_locks(self) -> StaleLockReport:
        """Remove the locks restic itself calls stale (older than 30 minutes, or made on this
        host by a process that is gone) with restic's own ``unlock`` — run only when hopnhat's
        check finds a stale lock and no lock that unlock would mishandle (see
        :func:`lock_verdict`). Live locks are never touched."""
        now = datetime.now(UTC)
        host = socket.gethostname()
        judged = [(lock, *lock_verdict(lock, now=now, this_host=host, process=process_state))
                  for lock in self.locks()]
        stale = [lock for lock, verdict, _ in judged if verdict == "stale"]
        kept = tuple((lock, why) for lock, verdict, why in judged if verdict == "live")
        unsafe = tuple((lock, why) for lock, verdict, why in judged if verdict == "unsafe")
        if not stale or unsafe:
            return StaleLockReport(kept=kept, unsafe=unsafe, pending=tuple(stale))
        self._run(make_unlock_argv(self.repo), "unlock", locking=False)
        left = {lock.id for lock in self.locks()}
        removed = tuple(lock for lock in stale if lock.id not in left)
        self.stale_removed.extend(removed)
        return StaleLockReport(removed=removed, kept=kept,
                               pending=tuple(lock for lock in stale if lock.id in left),
                               unlock_ran=True)


def read_snapshots(repo: Repository, argv: Sequence[str], env: Mapping[str, str], *,
                   timeout: float) -> list[Snapshot]:
    """Run ``argv`` — a ``snapshots --json`` command line its caller built (its restic
    binary, its flags) — with exactly ``env``, nothing of hopnhat's own environment. Out:
    the snapshots, oldest first. Raises a ResticError naming the repository (classified
    from restic's output when restic ran)."""
    try:
        done = run(argv, env=env, inherit_env=False, timeout=timeout, input="")
    except CommandError as exc:
        raise ResticError(f"restic snapshots: repository {repo.display}: {exc}") from None
    if not done.ok:
        raise classify(done.stderr, done.returncode, repo=repo, command="snapshots")
    return parse_snapshots(done.stdout)


def restic_local_zone() -> tzinfo:
    """The zone restic takes as local time in the environment :func:`make_environment` builds
    (no TZ): Go's rule, /etc/localtime, else UTC."""
    try:
        with open("/etc/localtime", "rb") as handle:
            return ZoneInfo.from_file(handle)
    except (OSError, ValueError):
        return UTC


def _json(line: str) -> dict[str, Any]:
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("not an object")
    return data


def _missing(text: str) -> bool:
    """Whether restic's ``text`` says a file is not there (local or SFTP repository)."""
    return "does not exist" in text or "no such file" in text


def _not_status(line: str) -> bool:
    """Lines worth keeping from ``backup --json``: everything but the (many) progress ones."""
    return not line.startswith(('{"message_type":"status"', '{"message_type":"verbose_status"'))

