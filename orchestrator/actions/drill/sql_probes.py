"""A drill's SQL probes: the restored database against what its dump's manifest recorded.

``sql: <dump>`` on a scratch VM, after the recovery steps: the manifest is read from the
restored copy, then, as the database's ``run_as`` user with the engine's own client, the row
count of every table the manifest counted and the newest time of the manifest's newest
column — by the very query the backup job counted them with at dump time
(:mod:`orchestrator.hostjob.dump_commands`), so equal data reads equal. The judgement
(:func:`judge`, pure) wants:

- every count equal to the manifest's;
- the newest time equal to the manifest's;
- with ``newest_within`` (``rpo``: the tier's RPO), the newest record no older than that at
  dump time (``dumped_at − newest`` — what the backup could have lost had the host died
  then);
- and what the estate expects of the dump (its ``tables``, its ``newest``) present in the
  manifest: a table the manifest lacks is named, never passed over.

A manifest missing from the restored copy fails the probe naming it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from orchestrator.actions.drill.manifest import Manifest, read_manifest
from orchestrator.adapters.ssh import Remote
from orchestrator.errors import HopnhatError
from orchestrator.estate.databases import Database
from orchestrator.estate.recovery import Probe
from orchestrator.hostjob import dump_commands as dump_sql
from orchestrator.hostjob.config import DatabaseConfig
from orchestrator.human import duration
from orchestrator.quoting import shell_join, terminal


@dataclass(frozen=True)
class TableCount:
    table: str
    expected: int | None  # None: the manifest has no count of it
    restored: int | None  # None: not read

    @property
    def ok(self) -> bool:
        return self.expected is not None and self.expected == self.restored

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "expected": self.expected, "restored": self.restored,
                "ok": self.ok}


@dataclass(frozen=True)
class Found:
    """What the restored database answered: each table's rows, the newest time."""

    counts: dict[str, int]
    newest: datetime | None


@dataclass(frozen=True)
class SqlProbeResult:
    """One SQL probe on one scratch VM: each table's count at dump time and restored, the
    newest record's time at dump time and restored, its age at dump time against
    ``newest_within``; ``problems`` says each difference (none: it passed)."""

    vm: str
    name: str
    dump: str
    tables: tuple[TableCount, ...] = ()
    newest_table: str | None = None
    newest_column: str | None = None
    newest_expected: datetime | None = None
    newest_restored: datetime | None = None
    newest_within_seconds: float | None = None
    newest_age_seconds: float | None = None
    problems: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        return f"{self.vm}: probe {self.name!r} (sql {self.dump}): {'; '.join(self.problems)}"

    def as_dict(self) -> dict[str, Any]:
        def iso(when: datetime | None) -> str | None:
            return None if when is None else when.isoformat()
        return {"kind": "sql", "vm": self.vm, "name": self.name, "dump": self.dump,
                "tables": [t.as_dict() for t in self.tables],
                "newest": None if self.newest_table is None else {
                    "table": self.newest_table, "column": self.newest_column,
                    "expected": iso(self.newest_expected),
                    "restored": iso(self.newest_restored),
                    "within_seconds": self.newest_within_seconds,
                    "age_at_dump_seconds": None if self.newest_age_seconds is None
                    else round(self.newest_age_seconds, 6)},
                "problems": list(self.problems), "seconds": round(self.seconds, 3),
                "ok": self.ok}


# ---------------------------------------------------------------- judgement (pure)


def within_seconds(probe: Probe, rpo: timedelta) -> float | None:
    """The age the newest record may have at dump time, in seconds (None: not checked)."""
    if probe.newest_within is None:
        return None
    limit = rpo if probe.newest_within == "rpo" else probe.newest_within
    return limit.total_seconds()


def _counts(database: Database, manifest: Manifest, found: Found
            ) -> tuple[list[TableCount], list[str]]:
    tables = [TableCount(t, n, found.counts.get(t)) for t, n in manifest.tables.items()]
    problems = [f"table {t.table}: {t.restored} rows restored, {t.expected} at dump time"
                for t in tables if not t.ok]
    for table in database.tables:
        if table not in manifest.tables:
            tables.append(TableCount(table, None, None))
            problems.append(f"table {table}: the dump's manifest has no row count of it (the "
                            "estate expects one)")
    return tables, problems


def _newest(database: Database, manifest: Manifest, found: Found,
            within: float | None) -> tuple[float | None, list[str]]:
    newest = manifest.newest
    if newest is None:
        wanted = database.newest is not None or within is not None
        return None, ["the dump's manifest records no newest record's time (the estate "
                      "expects one)"] if wanted else []
    problems = []
    if newest.time != found.newest:
        shown = "none" if found.newest is None else found.newest.isoformat()
        problems.append(f"newest {newest.table}.{newest.column}: {shown} restored, "
                        f"{'none' if newest.time is None else newest.time.isoformat()} "
                        "at dump time")
    if newest.time is None:
        return None, problems + (["no newest record to hold to newest_within"]
                                 if within is not None else [])
    age = (manifest.dumped_at - newest.time).total_seconds()
    if within is not None and age > within:
        problems.append(f"the newest record was {duration(age)} old at dump time, more than "
                        f"newest_within {duration(within)}")
    return age, problems


def judge(vm: str, probe: Probe, database: Database, manifest: Manifest, found: Found,
          rpo: timedelta, seconds: float = 0.0) -> SqlProbeResult:
    """SQL probe ``probe`` of ``database`` on scratch VM ``vm``: ``found`` (the restored
    database) against ``manifest`` (see the module's doc). Pure."""
    within = within_seconds(probe, rpo)
    tables, problems = _counts(database, manifest, found)
    age, late = _newest(database, manifest, found, within)
    newest = manifest.newest
    return SqlProbeResult(
        vm, probe.name, database.name, tuple(tables),
        newest.table if newest else None, newest.column if newest else None,
        newest.time if newest else None, found.newest if newest else None, within, age,
        tuple(problems + late), seconds)


def failed(vm: str, probe: Probe, dump: str, why: str, seconds: float = 0.0
           ) -> SqlProbeResult:
    """A SQL probe that could not read what it compares (no manifest, no answer)."""
    return SqlProbeResult(vm, probe.name, dump, problems=(why,), seconds=seconds)


# ---------------------------------------------------------------- the query


def counted(database: Database, manifest: Manifest) -> DatabaseConfig:
    """The database as the backup job counted it: the manifest's tables and newest column
    (so the restored copy is read by the very query the dump was)."""
    newest = (manifest.newest.table, manifest.newest.column) if manifest.newest else None
    return DatabaseConfig(name=database.name, engine=database.engine,
                          database=database.database, tables=tuple(manifest.tables),
                          newest=newest, run_as=database.user)


def query_argv(config: DatabaseConfig) -> tuple[str, ...]:
    """The engine's client asking the restored database what the backup job asked at dump
    time (:func:`~orchestrator.hostjob.dump_commands.counts_argv`), as its ``run_as``
    user: one answer line."""
    return dump_sql.as_user(config.run_as, dump_sql.counts_argv(config), "root")


def read_database(remote: Remote, database: Database, manifest: Manifest,
                  timeout: float) -> Found:
    """The restored database's counts of the manifest's tables and its newest time, read
    on ``remote``. Raises HopnhatError when the client fails or answers nonsense."""
    config = counted(database, manifest)
    if not config.tables and config.newest is None:
        return Found({}, None)
    done = remote.run(shell_join(query_argv(config)), timeout=timeout)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise HopnhatError(f"{database.engine} client exited {done.returncode}: "
                           f"{terminal(said[0], 300)}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    try:
        counts, newest = dump_sql.parse_counts(config, lines[-1] if lines else "")
    except ValueError as exc:
        raise HopnhatError(f"{database.engine} client's answer is not the counts: "
                           f"{terminal(str(exc), 300)}") from None
    return Found(counts, newest)


def run_sql_probe(remote: Remote, probe: Probe, database: Database,
                  rpo: timedelta) -> SqlProbeResult:
    """SQL probe ``probe`` on ``remote`` (see the module's doc). A failure to read the
    manifest or the database is a failed result naming it, not an exception."""
    started = time.monotonic()
    vm = remote.target.host
    try:
        manifest = read_manifest(remote, database.name)
        found = read_database(remote, database, manifest, probe.timeout.total_seconds())
    except HopnhatError as exc:
        return failed(vm, probe, database.name, str(exc), time.monotonic() - started)
    return judge(vm, probe, database, manifest, found, rpo, time.monotonic() - started)
