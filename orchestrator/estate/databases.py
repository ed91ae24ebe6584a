"""``backup.databases`` of a system: the databases its backup dumps, each into its own
snapshot, before the files backup (the host job's :mod:`orchestrator.hostjob.dumps`).

```yaml
databases:
  - name: dvc                    # the dump's name: its snapshot's file, tag and manifest
    engine: postgresql           # postgresql | mariadb | sqlite
    database: dvc                # postgresql/mariadb: the database; sqlite: the file
    tables: [applications, application_status]      # row counts read at dump time
    newest: {table: application_status, column: changed_at}   # the newest record's time
    # all: true                  # postgresql only: the whole cluster (pg_dumpall)
    # run_as: postgres           # the OS user the engine's tools run as
```

Every value here reaches a command line on a host (as its own argv element, never through a
shell) or an SQL text (as a quoted identifier): the patterns below keep them to plain names,
so a hostile value is refused when the estate is loaded, naming the file and key.
"""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from orchestrator.estate.values import Bool

#: a dump's name: a file name, a tag value (``dump=<name>``) and a manifest's name
DumpName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,30}$")]
#: an SQL identifier hopnhat quotes (``"…"`` for PostgreSQL, `` `…` `` for MariaDB): plain
#: letters, digits, ``_`` and ``$``, optionally ``schema.table``
Identifier = Annotated[str, Field(max_length=129,
                                  pattern=r"^[A-Za-z_][A-Za-z0-9_$]{0,62}"
                                          r"(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?$")]
#: a Unix user name (``runuser -u``)
UserName = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")]

ENGINES = ("postgresql", "mariadb", "sqlite")
#: the user each engine's tools run as by default (peer / unix_socket authentication)
DEFAULT_RUN_AS = {"postgresql": "postgres", "mariadb": "root", "sqlite": "root"}


class Newest(BaseModel):
    """The column whose largest value is the newest record's time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: Identifier
    column: Identifier


class Database(BaseModel):
    """One database the backup dumps (see the module's docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: DumpName
    engine: Literal["postgresql", "mariadb", "sqlite"]
    database: str
    whole_cluster: Bool = Field(default=False, alias="all")
    tables: Annotated[list[Identifier], Field(max_length=200)] = []
    newest: Newest | None = None
    run_as: UserName | None = None

    @model_validator(mode="after")
    def _engine_rules(self) -> Database:
        if self.engine == "sqlite":
            if not _plain_file(self.database):
                raise ValueError(f"database: {self.database[:80]!r} is not the SQLite file's "
                                 "absolute path, written plainly (no '.', '..' or //)")
        elif not _plain_database(self.database):
            raise ValueError(f"database: {self.database[:80]!r} is not a plain database "
                             "name (letters, digits, _, $ and -, not starting with -)")
        if self.whole_cluster:
            if self.engine != "postgresql":
                raise ValueError("all: true (pg_dumpall) is for engine postgresql only")
            if self.tables or self.newest is not None:
                raise ValueError("all: true dumps the whole cluster: no tables or newest then "
                                 "(name a database to count its rows)")
        if len(set(self.tables)) != len(self.tables):
            raise ValueError("tables: a table is named twice")
        return self

    @property
    def user(self) -> str:
        """The OS user the engine's tools run as."""
        return self.run_as or DEFAULT_RUN_AS[self.engine]


def _plain_database(value: str) -> bool:
    """A database's name as its engine's tools take it: never an option (``-…``), a
    connection string (``=``) or a URI (``:``)."""
    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$-]{0,63}", value) is not None


def _plain_file(value: str) -> bool:
    """An absolute file path written plainly (the loader already refuses control
    characters)."""
    return (value.startswith("/") and len(value) <= 4096 and not value.endswith("/")
            and posixpath.normpath(value) == value and ".." not in value.split("/"))


def _unique_names(databases: list[Database]) -> list[Database]:
    seen: set[str] = set()
    for database in databases:
        if database.name in seen:
            raise ValueError(f"two databases are named {database.name!r}: each dump needs "
                             "its own name (its snapshot, tag and manifest)")
        seen.add(database.name)
    return databases


#: ``backup.databases``: names unique within the system
Databases = Annotated[list[Database], AfterValidator(_unique_names)]
