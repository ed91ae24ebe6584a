"""A system's ``drill:`` block: how its service is brought back on a drill's scratch VMs
(``recovery``) and how it is checked there (``probes``).

```yaml
drill:
  recovery:                         # run in order on each scratch VM after the restore
    - name: start PostgreSQL
      command: "pg_createcluster --start 15 dvc"
      timeout: 5m
    - name: restore the applications database
      restore_database: dvc         # a dump of backup.databases, loaded into the engine
  probes:
    - name: applications as at dump time
      sql: dvc                      # counts and newest record equal to the dump's manifest
      newest_within: rpo            # and the newest record no older than the tier's RPO
    - name: portal answers
      command: "test -d /srv/dvc/documents"
```

A ``command`` (of a recovery step or a probe) is split as a shell would split it
(:func:`shlex.split`, at load time: a quote left open is an error) and sent to the scratch
VM quoted word by word — one program and its arguments, never a shell line (no pipes, no
redirections, no ``$``); ``runuser -u postgres -- psql …`` runs one as another user.
Step names are the drill's step names too: one that is also a step of the drill's own
(``restore``, ``probes``…) is refused. Which dump a ``restore_database`` or ``sql`` names
is checked against ``backup.databases`` by :mod:`orchestrator.estate.checks`.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from orchestrator.estate.databases import Database, DumpName
from orchestrator.estate.schema import STRICT, PositiveDuration, parse_duration
from orchestrator.estate.values import Int, Label, longer_than_zero

#: the drill's own steps, in order: a recovery step may not take one of their names
DRILL_STEPS = ("plan", "provision", "configure", "restore", "check", "probes", "teardown")
Command = Annotated[str, Field(min_length=1, max_length=4096)]
StepName = Annotated[Label, Field(min_length=1)]


class Strict(BaseModel):
    model_config = STRICT


def argv_of(command: str) -> list[str]:
    """``command`` split as a shell would (:func:`shlex.split`). Raises ValueError for a
    quote left open or an empty command."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ValueError(f"cannot be split into words as a shell would ({exc})") from None
    if not argv:
        raise ValueError("names no program")
    return argv


def _splits(command: str | None) -> str | None:
    if command is not None:
        argv_of(command)
    return command


class Probe(Strict):
    """One check of the restored copy: a ``command`` with the exit code (and output) it
    must give, or ``sql: <dump>``: the restored database's row counts and newest record
    equal to what that dump's manifest recorded at dump time, and with ``newest_within``
    (``rpo``: the tier's RPO, or a duration) its newest record no older than that at dump
    time."""

    name: Annotated[str, Field(min_length=1)]
    command: Command | None = None
    sql: DumpName | None = None
    newest_within: timedelta | Literal["rpo"] | None = None
    expect_rc: Int = 0
    expect_stdout: str | None = None
    timeout: PositiveDuration = timedelta(minutes=5)

    _command_splits = field_validator("command")(_splits)

    @field_validator("newest_within", mode="before")
    @classmethod
    def _rpo_or_duration(cls, value: Any) -> Any:
        if value is None or value == "rpo":
            return value
        try:
            return longer_than_zero(parse_duration(value))
        except ValueError:
            raise ValueError(f"{value!r}: write rpo (the tier's RPO) or a duration like "
                             "30m, 1h or 24h") from None

    @model_validator(mode="after")
    def _one_kind(self) -> Probe:
        if (self.command is None) == (self.sql is None):
            raise ValueError("a probe has either command (a program to run) or sql (a dump "
                             "of backup.databases to check against its manifest)")
        if self.sql is not None and (self.expect_rc != 0 or self.expect_stdout is not None):
            raise ValueError("expect_rc and expect_stdout are for a command probe: a sql "
                             "probe expects what the dump's manifest recorded")
        if self.command is not None and self.newest_within is not None:
            raise ValueError("newest_within is for a sql probe")
        return self

    @property
    def argv(self) -> list[str]:
        """The command probe's program and arguments (empty for a sql probe)."""
        return argv_of(self.command) if self.command is not None else []


class RecoveryStep(Strict):
    """One step that brings the service back on a scratch VM: a ``command`` (start the
    engine, start the application) or ``restore_database: <dump>`` (hopnhat restores that
    dump from the snapshot its restored manifest names and loads it into the running
    engine). It fails the drill when it exits non-zero or outlasts ``timeout``."""

    name: StepName
    command: Command | None = None
    restore_database: DumpName | None = None
    timeout: PositiveDuration = timedelta(hours=1)

    _command_splits = field_validator("command")(_splits)

    @field_validator("name")
    @classmethod
    def _not_a_drill_step(cls, value: str) -> str:
        if value.strip().lower() in DRILL_STEPS:
            raise ValueError(f"{value!r} is the name of one of the drill's own steps "
                             f"({', '.join(DRILL_STEPS)}): name the step for what it does")
        if value != value.strip():
            raise ValueError(f"{value!r} begins or ends with blanks")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> RecoveryStep:
        if (self.command is None) == (self.restore_database is None):
            raise ValueError("a recovery step has either command (a program to run) or "
                             "restore_database (a dump of backup.databases to load)")
        return self

    @property
    def argv(self) -> list[str]:
        """The command step's program and arguments (empty for restore_database)."""
        return argv_of(self.command) if self.command is not None else []


class Drill(Strict):
    recovery: list[RecoveryStep] = []
    probes: list[Probe] = []

    @model_validator(mode="after")
    def _names_once(self) -> Drill:
        seen: set[str] = set()
        for i, step in enumerate(self.recovery):
            if step.name.lower() in seen:
                raise ValueError(f"recovery[{i}].name {step.name!r} names two steps: each "
                                 "step's name says which one failed")
            seen.add(step.name.lower())
        return self


def drill_problems(drill: Drill, databases: Sequence[Database] | None
                   ) -> list[tuple[str, str]]:
    """``(key, problem)`` for each dump a recovery step or a SQL probe of ``drill`` names
    that ``databases`` (the system's ``backup.databases``; None: the system has no backup)
    cannot give it."""
    problems: list[tuple[str, str]] = []
    known = {d.name: d for d in databases or ()}
    restored = {s.restore_database for s in drill.recovery if s.restore_database}
    for i, step in enumerate(drill.recovery):
        if step.restore_database is not None:
            why = _unknown_dump(step.restore_database, databases)
            if why:
                problems.append((f"drill.recovery[{i}].restore_database", why))
    for i, probe in enumerate(drill.probes):
        if probe.sql is None:
            continue
        key = f"drill.probes[{i}].sql"
        why = _unknown_dump(probe.sql, databases)
        if why:
            problems.append((key, why))
            continue
        field, why = _unprobed(known[probe.sql], probe, probe.sql in restored)
        if why:
            problems.append((f"drill.probes[{i}].{field}", why))
    return problems


def _unknown_dump(name: str, databases: Sequence[Database] | None) -> str:
    if databases is None:
        return f"dump {name!r}: the system has no backup to restore it from"
    names = sorted(d.name for d in databases)
    if name not in names:
        return (f"no dump {name!r} in backup.databases "
                f"({'known: ' + ', '.join(names) if names else 'none is declared'})")
    return ""


def _unprobed(database: Database, probe: Probe, restored: bool) -> tuple[str, str]:
    """(key, why) a SQL probe of ``database`` could not check anything, or ("", "")."""
    name = database.name
    if not restored:
        return "sql", (f"dump {name!r} is restored by no recovery step (add one with "
                       f"restore_database: {name}): the probe would find no database")
    if database.whole_cluster:
        return "sql", (f"dump {name!r} is a whole cluster (all: true, pg_dumpall): it "
                       "records no row counts to compare")
    if not database.tables and database.newest is None:
        return "sql", (f"dump {name!r} counts nothing (backup.databases: no tables, no "
                       "newest): the probe would check nothing")
    if probe.newest_within is not None and database.newest is None:
        return "newest_within", (f"needs the newest record's time: dump {name!r} names no "
                                 "newest column (backup.databases: newest)")
    return "", ""
