"""The run's database dumps (stage ``dump``, before the files backup): each of the config's
``databases`` is dumped consistently and streamed into restic as its own snapshot (file
``/<name>.pgdump``, ``.sql`` or ``.sqlite3``; tags ``hopnhat-dump``, ``dump=<name>`` and the
job's), with no full local copy, and then its manifest is written to
``<dumps dir>/<name>.json`` — which the files backup that follows carries.

Consistency, engine by engine:

- PostgreSQL: a psql session opens a REPEATABLE READ transaction and exports its snapshot
  (``pg_export_snapshot()``); the counts and the newest time are read in it and
  ``pg_dump --snapshot=<id>`` dumps that very snapshot, while the session holds it open.
  ``all: true``: ``pg_dumpall`` (no counts).
- MariaDB: a session holds ``FLUSH TABLES WITH READ LOCK`` while it counts; then
  ``mariadb-dump --single-transaction`` starts, and the lock is released as soon as the dump's
  stream shows that its consistent snapshot has begun (:data:`MARIADB_BEGUN`), or when the dump
  ends, whichever comes first. The job relays this dump itself (it must see the stream).
- SQLite: ``.backup`` into a private temporary copy; the counts are read from the copy, which
  is what is streamed.

The stream: with restic 0.17+ (``--stdin-from-command``) restic runs the dump program itself
(a dump exiting non-zero makes no snapshot); otherwise (and for MariaDB) the job relays the
dump's stdout into ``restic backup --stdin`` (``os.splice``, else 1 MiB reads), holding
restic's stdin open until the dump's exit code is known: a dump that fails or writes nothing
has restic stopped before it writes a snapshot. Any failure raises :class:`DumpFailed` naming
the database; the run then makes no files snapshot.

Standard library only: the ``backup_schedule`` role copies this module to each host.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Protocol

from orchestrator.adapters.restic import BackupResult, InputAborted
from orchestrator.adapters.restic_results import DUMP_TAG, Snapshot
from orchestrator.errors import HopnhatError
from orchestrator.files import write_atomically
from orchestrator.hostjob import dump_commands as sql
from orchestrator.hostjob.config import COMMAND_PATH, DatabaseConfig, JobConfig
from orchestrator.process import conversation, reading, run

#: the manifest's format (its ``format`` key)
MANIFEST_FORMAT = 1
_CHUNK = 1 << 20


class DumpFailed(HopnhatError):
    """A database's dump failed (its program, its session or its snapshot): the run fails at
    stage ``dump`` and makes no files snapshot."""


class DumpRestic(Protocol):
    """What the dumps need of :class:`orchestrator.adapters.restic.Restic`."""

    def backup_stdin(self, filename: str, tags: Sequence[str] = (), host: str | None = None,
                     *, command: Sequence[str] | None = None,
                     feed: Callable[[IO[bytes]], bool] | None = None) -> BackupResult: ...

    def snapshots(self, *, host: str | None = None, tags: Sequence[str] = (),
                  paths: Sequence[str] = (), latest: int | None = None,
                  no_lock: bool = False) -> list[Snapshot]: ...


@dataclass(frozen=True)
class Tools:
    """How the job runs the engines' programs: their environment (PATH and a UTF-8 locale,
    nothing of the job's own), the user it runs as, and how long a program or an answer may
    take."""

    timeout: float
    user: str = field(default_factory=lambda: pwd.getpwuid(os.geteuid()).pw_name)
    env: dict[str, str] = field(default_factory=lambda: {
        "PATH": COMMAND_PATH, "HOME": "/root", "LC_ALL": "C.UTF-8"})

    def argv(self, user: str, argv: Sequence[str]) -> tuple[str, ...]:
        return sql.as_user(user, argv, self.user)


@dataclass
class Dumped:
    """One database dumped: its manifest (:meth:`manifest`)."""

    database: DatabaseConfig
    snapshot: str
    file: str
    bytes: int
    dumped_at: datetime
    duration_seconds: float
    tables: dict[str, int]
    newest: datetime | None

    def manifest(self) -> dict[str, Any]:
        """The manifest document (``format: 1``), written as ``<name>.json``."""
        db = self.database
        newest = None if db.newest is None else {
            "table": db.newest[0], "column": db.newest[1],
            "time": None if self.newest is None else self.newest.isoformat()}
        return {"format": MANIFEST_FORMAT, "name": db.name, "engine": db.engine,
                "database": db.database, "all": db.whole_cluster, "snapshot": self.snapshot,
                "file": self.file, "bytes": self.bytes,
                "dumped_at": self.dumped_at.isoformat(timespec="seconds"),
                "duration_seconds": round(self.duration_seconds, 3),
                "tables": dict(self.tables), "newest": newest}


@dataclass
class _Plan:
    """A prepared dump: the program that writes it, what was read at its consistent point,
    and — when the job must watch its stream (MariaDB) — the feed that relays it."""

    argv: tuple[str, ...] = ()
    tables: dict[str, int] = field(default_factory=dict)
    newest: datetime | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    feed: Callable[[IO[bytes]], bool] | None = None


@dataclass
class _Relayed:
    """What the relayed dump did (the last attempt)."""

    returncode: int | None = None
    bytes: int = 0
    stderr: str = ""


def dump_databases(config: JobConfig, restic: DumpRestic, *, from_command: bool,
                   tools: Tools | None = None,
                   now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> list[Dumped]:
    """Dump each database into its own snapshot and write its manifest, in the config's
    order; manifests of databases no longer configured are removed (the files snapshot must
    not carry them). ``from_command``: restic runs the dump (0.17+). Raises DumpFailed."""
    tools = tools or Tools(timeout=config.timeout_seconds)
    _remove_stale_manifests(config)
    done = [dump_one(config, database, restic, from_command=from_command, tools=tools, now=now)
            for database in config.databases]
    _full_ids(restic, config, done)
    for dumped in done:
        try:
            write_atomically(config.dumps_dir / f"{dumped.database.name}.json",
                             json.dumps(dumped.manifest(), indent=2, ensure_ascii=False) + "\n")
        except OSError as exc:
            raise DumpFailed(f"{_named(dumped.database)}: cannot write its manifest: "
                             f"{exc}") from None
    return done


def _remove_stale_manifests(config: JobConfig) -> None:
    names = {f"{d.name}.json" for d in config.databases}
    with contextlib.suppress(FileNotFoundError):
        for path in config.dumps_dir.iterdir():
            if path.suffix == ".json" and path.name not in names:
                path.unlink()


def _named(database: DatabaseConfig) -> str:
    return f"database {database.name} ({database.engine} {database.database})"


def dump_one(config: JobConfig, database: DatabaseConfig, restic: DumpRestic, *,
             from_command: bool, tools: Tools,
             now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Dumped:
    """One database's dump snapshot (see the module's docstring). Raises DumpFailed naming
    the database."""
    started = time.monotonic()
    tags = (*config.tags, DUMP_TAG, f"dump={database.name}")
    filename = sql.dump_file(database)
    relayed = _Relayed()
    try:
        with _prepared(database, tools, relayed, now) as plan:
            if plan.feed is None and from_command:
                result = restic.backup_stdin(filename, tags, config.host, command=plan.argv)
            else:
                feed = plan.feed or _relay_feed(plan.argv, tools, relayed)
                result = restic.backup_stdin(filename, tags, config.host, feed=feed)
    except InputAborted:
        raise DumpFailed(f"{_named(database)}: {_why(relayed)}; restic was stopped before it "
                         "wrote a snapshot") from None
    except HopnhatError as exc:
        raise DumpFailed(f"{_named(database)}: {exc}") from None
    if result.snapshot_id is None or result.total_bytes_processed <= 0:
        raise DumpFailed(f"{_named(database)}: the dump wrote nothing (snapshot "
                         f"{result.snapshot_id or 'none'} holds no data)")
    return Dumped(database=database, snapshot=result.snapshot_full_id or result.snapshot_id,
                  file=f"/{filename}", bytes=result.total_bytes_processed, dumped_at=plan.at,
                  duration_seconds=time.monotonic() - started, tables=plan.tables,
                  newest=plan.newest)


def _why(relayed: _Relayed) -> str:
    if relayed.returncode not in (0, None):
        last = relayed.stderr.strip().splitlines()[-1:] or [""]
        return f"the dump exited {relayed.returncode}: {last[0][:300]}"
    if relayed.returncode == 0 and relayed.bytes == 0:
        return "the dump wrote nothing"
    return "the dump did not finish"


def _full_ids(restic: DumpRestic, config: JobConfig, done: Sequence[Dumped]) -> None:
    """Each dump's full snapshot ID, where restic (0.14) said only the short one: one
    ``restic snapshots`` of the host's dumps for the whole run (each restic command opens the
    repository again, which costs about a second)."""
    short = [d for d in done if len(d.snapshot) < 64]
    if not short:
        return
    try:
        found = restic.snapshots(host=config.host, tags=[DUMP_TAG])
    except HopnhatError as exc:
        raise DumpFailed(f"{_named(short[0].database)}: snapshot {short[0].snapshot} made, "
                         f"but its full ID could not be read: {exc}") from None
    for dumped in short:
        dumped.snapshot = next((s.id for s in found if s.id.startswith(dumped.snapshot)),
                               dumped.snapshot)


# --- each engine's consistent point -------------------------------------------------------------


@contextlib.contextmanager
def _prepared(database: DatabaseConfig, tools: Tools, relayed: _Relayed,
              now: Callable[[], datetime]) -> Iterator[_Plan]:
    if database.engine == "postgresql":
        with _postgresql(database, tools, now) as plan:
            yield plan
    elif database.engine == "mariadb":
        yield _mariadb(database, tools, relayed, now)
    else:
        with _sqlite(database, tools, now) as plan:
            yield plan


@contextlib.contextmanager
def _postgresql(database: DatabaseConfig, tools: Tools,
                now: Callable[[], datetime]) -> Iterator[_Plan]:
    """The exported snapshot held by a psql session for the whole dump."""
    if database.whole_cluster:
        yield _Plan(argv=tools.argv(database.run_as, sql.pg_dump_argv(database, None)),
                    at=now())
        return
    with _Session(tools.argv(database.run_as, sql.psql_session_argv(database)), tools) as psql:
        answer = psql.ask(sql.postgresql_begin())
        at = now()
        if not answer or not answer[0].strip():
            raise DumpFailed("psql exported no snapshot")
        # counted while pg_dump runs (the same snapshot; the answer waits in the pipe): on
        # large tables the counts take seconds that the dump's own time then hides
        counting = sql.postgresql_counts(database)
        if counting:
            psql.send(counting)
        plan = _Plan(argv=tools.argv(database.run_as, sql.pg_dump_argv(database, answer[0])),
                     at=at)
        yield plan
        if counting:
            plan.tables, plan.newest = _counts(database, psql.receive())
        psql.end("COMMIT;\n")


def _counts(database: DatabaseConfig, answer: Sequence[str]
            ) -> tuple[dict[str, int], datetime | None]:
    if not database.tables and database.newest is None:
        return {}, None
    try:
        return sql.parse_counts(database, answer[0] if answer else "")
    except ValueError as exc:
        raise DumpFailed(f"cannot read the counts: {exc}") from None


def _mariadb(database: DatabaseConfig, tools: Tools, relayed: _Relayed,
             now: Callable[[], datetime]) -> _Plan:
    """A plan whose feed takes the global read lock, counts, starts the dump and releases
    the lock once the dump's snapshot has begun; each attempt (restic may retry a locked
    repository) starts over, and the plan keeps the last attempt's counts."""
    plan = _Plan(argv=tools.argv(database.run_as, sql.mariadb_dump_argv(database)))

    def feed(sink: IO[bytes]) -> bool:
        argv = tools.argv(database.run_as, sql.mariadb_session_argv(database))
        with _Session(argv, tools) as session:
            answer = session.ask(sql.mariadb_lock(database))
            plan.at = now()
            plan.tables, plan.newest = _counts(database, answer)
            seen = b""

            def begun(chunk: bytes) -> bool:
                nonlocal seen
                seen = (seen + chunk)[-4096:]
                if sql.MARIADB_BEGUN in seen:
                    session.end(sql.MARIADB_UNLOCK)
                    return True
                return False
            return _relay(plan.argv, sink, tools, relayed, begun)
    plan.feed = feed
    return plan


@contextlib.contextmanager
def _sqlite(database: DatabaseConfig, tools: Tools,
            now: Callable[[], datetime]) -> Iterator[_Plan]:
    """SQLite's online backup into a private folder, counted there, then streamed."""
    folder = tempfile.mkdtemp(prefix="hopnhat-dump-")
    try:
        if database.run_as != tools.user:
            try:
                account = pwd.getpwnam(database.run_as)
            except KeyError:
                raise DumpFailed(f"run_as {database.run_as}: no such user here") from None
            os.chown(folder, account.pw_uid, account.pw_gid)
        copy = f"{folder}/{database.name}.sqlite3"
        _run(tools.argv(database.run_as, sql.sqlite_backup_argv(database, copy)), tools,
             ".backup")
        at = now()
        tables: dict[str, int] = {}
        newest = None
        if database.tables or database.newest is not None:
            done = _run(tools.argv(database.run_as, sql.sqlite_counts_argv(database, copy)),
                        tools, "the counts")
            tables, newest = _counts(database, done.splitlines())
        yield _Plan(argv=("cat", "--", copy), tables=tables, newest=newest, at=at)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(argv: Sequence[str], tools: Tools, what: str) -> str:
    try:
        done = run(argv, env=tools.env, inherit_env=False, timeout=tools.timeout, cwd="/",
                   input="")
    except HopnhatError as exc:
        raise DumpFailed(f"{what}: {exc}") from None
    if not done.ok:
        last = done.stderr.strip().splitlines()[-1:] or [""]
        raise DumpFailed(f"{what} exited {done.returncode}: "
                         f"{last[0][:300]}")
    return done.stdout


# --- the relay ------------------------------------------------------------------------------------


def _relay_feed(argv: Sequence[str], tools: Tools,
                relayed: _Relayed) -> Callable[[IO[bytes]], bool]:
    def feed(sink: IO[bytes]) -> bool:
        return _relay(argv, sink, tools, relayed, None)
    return feed


def _relay(argv: Sequence[str], sink: IO[bytes], tools: Tools, relayed: _Relayed,
           watch: Callable[[bytes], bool] | None) -> bool:
    """Run the dump and copy its stdout into ``sink`` (restic's stdin) until it ends; True
    only when it exited 0 having written something. ``watch`` sees the first chunks until it
    returns True (then the rest is spliced without being looked at)."""
    relayed.returncode, relayed.bytes, relayed.stderr = None, 0, ""
    with reading(argv, env=tools.env, inherit_env=False, timeout=tools.timeout) as dump:
        relayed.bytes = copy_stream(dump.stdout.fileno(), sink.fileno(), watch)
    relayed.returncode, relayed.stderr = dump.returncode, dump.stderr
    return dump.returncode == 0 and relayed.bytes > 0


def copy_stream(source: int, target: int, watch: Callable[[bytes], bool] | None = None) -> int:
    """Copy ``source`` to ``target`` (file descriptors) until end of file; returns the bytes
    copied. Chunks pass through ``watch`` until it returns True; then ``os.splice`` moves
    the rest inside the kernel (where it is refused, large reads and writes do)."""
    total = 0
    while watch is not None:
        chunk = os.read(source, _CHUNK)
        if not chunk:
            return total
        if watch(chunk):
            watch = None
        _write_all(target, chunk)
        total += len(chunk)
    splice = getattr(os, "splice", None)
    while splice is not None:
        try:
            moved = splice(source, target, _CHUNK)
        except OSError as exc:
            if isinstance(exc, BrokenPipeError):
                raise
            break  # EINVAL: not pipes; read and write instead
        if moved == 0:
            return total
        total += moved
    for chunk in iter(lambda: os.read(source, _CHUNK), b""):
        _write_all(target, chunk)
        total += len(chunk)
    return total


def _write_all(target: int, chunk: bytes) -> None:
    view = memoryview(chunk)
    while view:
        view = view[os.write(target, view):]


class _Session:
    """A database client's session (psql, mariadb) the job talks to: statements written to
    its stdin, answers read up to :data:`SENTINEL`. Leaving the block ends it (its
    transaction or lock goes with it); an answer that does not come within the tools'
    timeout kills it."""

    def __init__(self, argv: Sequence[str], tools: Tools) -> None:
        self.argv = tuple(argv)
        self.tools = tools
        self.proc: subprocess.Popen[bytes] | None = None
        self.ended = False

    def __enter__(self) -> _Session:
        self.proc = conversation(self.argv, env=self.tools.env, inherit_env=False, cwd="/")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
            for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                with contextlib.suppress(OSError):
                    if pipe is not None:
                        pipe.close()

    def ask(self, statements: str) -> list[str]:
        """Write ``statements``; the answer's lines before the sentinel (see
        :meth:`receive`)."""
        self.send(statements)
        return self.receive()

    def send(self, statements: str) -> None:
        """Write ``statements`` (their answer is read by :meth:`receive`). Raises DumpFailed
        when the session has ended."""
        proc = self.proc
        assert proc is not None and proc.stdin is not None
        try:
            proc.stdin.write(statements.encode())
            proc.stdin.flush()
        except BrokenPipeError:
            raise DumpFailed(f"{self._program()}: {self._error()}") from None

    def receive(self) -> list[str]:
        """The next answer's lines, up to the sentinel. Raises DumpFailed when the session
        ends first (an SQL error: ON_ERROR_STOP, or mariadb's batch mode) or the answer does
        not come within the tools' timeout."""
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        timer = threading.Timer(self.tools.timeout, proc.kill)
        timer.daemon = True
        timer.start()
        try:
            lines: list[str] = []
            for raw in iter(proc.stdout.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if line == sql.SENTINEL:
                    return lines
                lines.append(line)
        finally:
            timer.cancel()
        raise DumpFailed(f"{self._program()}: {self._error()}")

    def _program(self) -> str:
        return self.argv[4] if self.argv[0] == "runuser" else self.argv[0]

    def _error(self) -> str:
        proc = self.proc
        assert proc is not None and proc.stderr is not None
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        lines = [line.strip() for line in
                 proc.stderr.read().decode("utf-8", "replace").splitlines() if line.strip()]
        said = next((line for line in lines if line.startswith(("ERROR", "FATAL"))),
                    lines[-1] if lines else None)
        return (said[:300] if said else
                f"the session ended (exit {proc.returncode}) without an answer")

    def end(self, statements: str) -> None:
        """Say the last ``statements`` (COMMIT, UNLOCK TABLES) and close the session."""
        if self.ended or self.proc is None or self.proc.stdin is None:
            return
        self.ended = True
        with contextlib.suppress(OSError):
            self.proc.stdin.write(statements.encode())
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=self.tools.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
