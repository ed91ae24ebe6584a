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
import tempfile
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
from orchestrator.hostjob.config import DatabaseConfig, JobConfig
from orchestrator.hostjob.dump_io import (
    DumpFailed,
    Relayed,
    Session,
    Tools,
    relay,
    relay_feed,
    run_program,
)

__all__ = ["DumpFailed", "DumpRestic", "Dumped", "Tools", "dump_databases", "dump_one"]

#: the manifest's format (its ``format`` key)
MANIFEST_FORMAT = 1


class DumpRestic(Protocol):
    """What the dumps need of :class:`orchestrator.adapters.restic.Restic`."""

    def backup_stdin(self, filename: str, tags: Sequence[str] = (), host: str | None = None,
                     *, command: Sequence[str] | None = None,
                     feed: Callable[[IO[bytes]], bool] | None = None) -> BackupResult: ...

    def snapshots(self, *, host: str | None = None, tags: Sequence[str] = (),
                  paths: Sequence[str] = (), latest: int | None = None,
                  no_lock: bool = False) -> list[Snapshot]: ...


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
    relayed = Relayed()
    try:
        with _prepared(database, tools, relayed, now) as plan:
            if plan.feed is None and from_command:
                result = restic.backup_stdin(filename, tags, config.host, command=plan.argv)
            else:
                feed = plan.feed or relay_feed(plan.argv, tools, relayed)
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


def _why(relayed: Relayed) -> str:
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
def _prepared(database: DatabaseConfig, tools: Tools, relayed: Relayed,
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
    with Session(tools.argv(database.run_as, sql.psql_session_argv(database)), tools) as psql:
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


def _mariadb(database: DatabaseConfig, tools: Tools, relayed: Relayed,
             now: Callable[[], datetime]) -> _Plan:
    """A plan whose feed takes the global read lock, counts, starts the dump and releases
    the lock once the dump's snapshot has begun; each attempt (restic may retry a locked
    repository) starts over, and the plan keeps the last attempt's counts."""
    plan = _Plan(argv=tools.argv(database.run_as, sql.mariadb_dump_argv(database)))

    def feed(sink: IO[bytes]) -> bool:
        argv = tools.argv(database.run_as, sql.mariadb_session_argv(database))
        with Session(argv, tools) as session:
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
            return relay(plan.argv, sink, tools, relayed, begun)
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
        run_program(tools.argv(database.run_as, sql.sqlite_backup_argv(database, copy)), tools,
             ".backup")
        at = now()
        tables: dict[str, int] = {}
        newest = None
        if database.tables or database.newest is not None:
            done = run_program(tools.argv(database.run_as, sql.sqlite_counts_argv(database, copy)),
                        tools, "the counts")
            tables, newest = _counts(database, done.splitlines())
        yield _Plan(argv=("cat", "--", copy), tables=tables, newest=newest, at=at)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


