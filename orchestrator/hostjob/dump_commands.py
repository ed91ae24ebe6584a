"""The command lines and SQL of a database dump, built by pure functions (the host job's
:mod:`~orchestrator.hostjob.dumps` runs them). Every value of the estate reaches a program
as its own argv element — never through a shell — and SQL only as a quoted identifier
(PostgreSQL and SQLite ``"…"``, MariaDB `` `…` ``, the quote character doubled).

Standard library only: the ``backup_schedule`` role copies this module to each host.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from orchestrator.hostjob.config import DatabaseConfig

#: printed by the session after each batch of statements, so the job knows the answer ended
SENTINEL = "hopnhat-answer-end"
#: what mariadb-dump writes once its consistent snapshot has begun (``--databases``: after
#: ``START TRANSACTION WITH CONSISTENT SNAPSHOT``; the header before it is all comments)
MARIADB_BEGUN = b"\n-- Current Database: "


def quote_identifier(name: str, engine: str) -> str:
    """``schema.table`` quoted part by part for ``engine``: PostgreSQL and SQLite
    ``"schema"."table"``, MariaDB `` `schema`.`table` `` (the quote inside doubled)."""
    mark = "`" if engine == "mariadb" else '"'
    return ".".join(mark + part.replace(mark, mark * 2) + mark for part in name.split("."))


def as_user(user: str, argv: Sequence[str], current: str) -> tuple[str, ...]:
    """``argv`` run as ``user``: as it is when the job already runs as that user, else
    through ``runuser -u USER --`` (the job runs as root)."""
    if user == current:
        return tuple(argv)
    return ("runuser", "-u", user, "--", *argv)


def dump_file(database: DatabaseConfig) -> str:
    """The file name of the dump in its snapshot: ``<name>.pgdump`` (pg_dump's custom
    format), ``<name>.sql`` (pg_dumpall, mariadb-dump) or ``<name>.sqlite3``."""
    if database.engine == "postgresql":
        return f"{database.name}.sql" if database.whole_cluster else f"{database.name}.pgdump"
    return f"{database.name}.sql" if database.engine == "mariadb" else f"{database.name}.sqlite3"


# --- PostgreSQL -------------------------------------------------------------------------------


def psql_session_argv(database: DatabaseConfig) -> tuple[str, ...]:
    """The psql whose transaction holds the exported snapshot: no psqlrc, unaligned tuples
    only, stop at the first error, never ask for a password."""
    return ("psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "--no-password",
            "--dbname", database.database)


def postgresql_begin() -> str:
    """Open a REPEATABLE READ transaction and export its snapshot: answers ``<snapshot id>``
    then the sentinel."""
    return ("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\n"
            "SELECT pg_export_snapshot();\n"
            f"\\echo {SENTINEL}\n")


def postgresql_counts(database: DatabaseConfig) -> str:
    """In the same transaction (so in the exported snapshot), the counts and the newest time
    (:func:`counts_query`): answers ``count|…|epoch`` then the sentinel; empty when there is
    nothing to read."""
    query = counts_query(database)
    return f"{query}\n\\echo {SENTINEL}\n" if query else ""


def pg_dump_argv(database: DatabaseConfig, snapshot: str | None) -> tuple[str, ...]:
    """``pg_dump --format=custom [--snapshot=ID] --dbname DB``; a whole cluster:
    ``pg_dumpall`` (plain SQL; it takes no snapshot), connecting first to ``DB``."""
    if database.whole_cluster:
        return ("pg_dumpall", "--no-password", "--database", database.database)
    argv: tuple[str, ...] = ("pg_dump", "--format=custom", "--no-password")
    if snapshot is not None:
        argv += (f"--snapshot={snapshot}",)
    return (*argv, "--dbname", database.database)


# --- MariaDB ----------------------------------------------------------------------------------


def mariadb_session_argv(database: DatabaseConfig) -> tuple[str, ...]:
    """The mariadb client whose session holds FLUSH TABLES WITH READ LOCK while it counts
    (in the database): tab-separated answers without headers, each flushed at once."""
    return ("mariadb", "--batch", "--skip-column-names", "--unbuffered",
            f"--database={database.database}")


#: seconds FLUSH TABLES WITH READ LOCK may wait (for a long query holding a table): while
#: it waits the server's writers wait too, so a dump that cannot have its lock soon fails
#: rather than stall the application
MARIADB_LOCK_WAIT = 30


def mariadb_lock(database: DatabaseConfig) -> str:
    """Times in UTC, the global read lock (waiting at most :data:`MARIADB_LOCK_WAIT`), the
    counts (``count<TAB>…<TAB>epoch``), then the sentinel."""
    query = counts_query(database)
    return ("SET time_zone = '+00:00';\n"
            f"SET SESSION lock_wait_timeout = {MARIADB_LOCK_WAIT};\n"
            "FLUSH TABLES WITH READ LOCK;\n"
            + (f"{query}\n" if query else "")
            + f"SELECT '{SENTINEL}';\n")


MARIADB_UNLOCK = "UNLOCK TABLES;\n"


def mariadb_dump_argv(database: DatabaseConfig) -> tuple[str, ...]:
    """``mariadb-dump --single-transaction --routines --events --triggers --databases DB``
    (with ``--databases`` the dump creates and uses its database when loaded)."""
    return ("mariadb-dump", "--single-transaction", "--routines", "--events", "--triggers",
            "--default-character-set=utf8mb4", "--databases", database.database)


# --- SQLite -----------------------------------------------------------------------------------


def sqlite_backup_argv(database: DatabaseConfig, copy: str) -> tuple[str, ...]:
    """``sqlite3 -readonly -bail FILE ".backup 'COPY'"``: SQLite's online backup into
    ``copy`` (a path the job made: no quote in it); read-only, so a missing file fails
    rather than being created empty."""
    if "'" in copy:
        raise ValueError(f"{copy!r}: a quote in the copy's path")
    return ("sqlite3", "-readonly", "-bail", database.database, f".backup '{copy}'")


def sqlite_counts_argv(database: DatabaseConfig, copy: str) -> tuple[str, ...]:
    """The counts and newest value read from the copy (``count|…|value``)."""
    return ("sqlite3", "-readonly", "-bail", "-batch", "-noheader", "-separator", "|", copy,
            counts_query(database))


# --- counts and times -------------------------------------------------------------------------


def counts_query(database: DatabaseConfig) -> str:
    """One SELECT answering, in one row, each table's row count and last the newest time
    (PostgreSQL: seconds since the epoch; MariaDB: the same with ``time_zone`` UTC; SQLite:
    the column's value as stored). Empty when there is nothing to read."""
    engine = database.engine
    # every name below is a quoted identifier (quote_identifier), never text of its own
    parts = [f"(SELECT count(*) FROM {quote_identifier(t, engine)})"  # noqa: S608
             for t in database.tables]
    if database.newest is not None:
        table, column = (quote_identifier(n, engine) for n in database.newest)
        value = {"postgresql": f"extract(epoch FROM max({column}))",
                 "mariadb": f"UNIX_TIMESTAMP(max({column}))"}.get(engine, f"max({column})")
        parts.append(f"(SELECT {value} FROM {table})")  # noqa: S608 - quoted identifiers
    return f"SELECT {', '.join(parts)};" if parts else ""


def counts_argv(database: DatabaseConfig, file: str | None = None) -> tuple[str, ...]:
    """The client that reads :func:`counts_query` alone (outside a dump: a drill's probe of a
    restored database), answering one line for :func:`parse_counts`; ``file``: the SQLite
    file to read (default the database's own). Run it as the database's ``run_as``."""
    query = counts_query(database)
    if database.engine == "postgresql":
        return (*psql_session_argv(database), "-c", query)
    if database.engine == "mariadb":
        return (*mariadb_session_argv(database), "--execute", f"SET time_zone = '+00:00'; {query}")
    return ("sqlite3", "-readonly", "-bail", "-batch", "-noheader", "-separator", "|",
            file or database.database, query)


def parse_counts(database: DatabaseConfig, line: str
                 ) -> tuple[dict[str, int], datetime | None]:
    """The answer of :func:`counts_query` → ({table: rows}, newest time or None). Raises
    ValueError for an answer of the wrong shape."""
    separator = "\t" if database.engine == "mariadb" else "|"
    fields = line.rstrip("\n").split(separator)
    wanted = len(database.tables) + (database.newest is not None)
    if len(fields) != wanted:
        raise ValueError(f"expected {wanted} values, got {line.strip()[:200]!r}")
    counts = {table: int(value) for table, value in zip(database.tables, fields, strict=False)}
    newest = parse_time(fields[-1]) if database.newest is not None else None
    return counts, newest


_EPOCH = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_EPOCH_START = datetime(1970, 1, 1, tzinfo=UTC)


def parse_time(value: str) -> datetime | None:
    """A newest value as the engines answer it → an aware UTC time (None when the table is
    empty): seconds since the epoch, or an ISO 8601 text (without an offset: UTC)."""
    text = value.strip()
    if text in ("", "NULL"):
        return None
    if _EPOCH.fullmatch(text):  # exactly, to the microsecond (a float would round)
        micro = int((Decimal(text) * 1_000_000).to_integral_value(ROUND_HALF_EVEN))
        return _EPOCH_START + timedelta(microseconds=micro)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
