"""A database dump's manifest, as the restored files snapshot holds it on a scratch VM.

The backup job writes one JSON document per dump, ``/var/lib/hopnhat/dumps/<name>.json``,
once that dump's own snapshot exists, and backs it up inside the run's files snapshot; so a
drill that restored the files snapshot finds, beside the files, which dump snapshot belongs
to them and what the database held at dump time::

    {"format": 1, "name": "dvc", "engine": "postgresql", "database": "dvc",
     "snapshot": "<full id>", "file": "/dvc.pgdump", "bytes": 123,
     "dumped_at": "2026-12-07T03:00:00+00:00", "duration_seconds": 1.2,
     "tables": {"applications": 20000, …},
     "newest": {"table": "application_status", "column": "changed_at",
                "time": "2026-12-07T02:59:58+00:00"}}

The document came from a host: every field is checked here (its shape, a snapshot id of hex
digits, a file name of plain characters) before any of it reaches a command line, and then
goes there quoted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestrator.adapters.ssh import Remote
from orchestrator.errors import HopnhatError
from orchestrator.hostjob.contract import DUMPS_DIR
from orchestrator.quoting import shell_join, terminal

FORMAT = 1
#: where the job leaves a dump's manifest (and so where the restored copy has it)
MANIFEST = DUMPS_DIR + "/{name}.json"
MANIFEST_MAX = 1 << 20  # bytes: a manifest is a few hundred
_SNAPSHOT = re.compile(r"^[0-9a-f]{64}$")
_FILE = re.compile(r"^/[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
#: a table or column as the estate may name one (``schema.table``): the manifest's names
#: reach SQL (quoted), and nothing else is what the estate asked to be counted
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}(\.[A-Za-z_][A-Za-z0-9_$]{0,62})?$")


class ManifestError(HopnhatError):
    """A dump's manifest is missing from the restored copy, or is not one."""


@dataclass(frozen=True)
class Newest:
    """The newest record's time at dump time (None: the table was empty)."""

    table: str
    column: str
    time: datetime | None


@dataclass(frozen=True)
class Manifest:
    """What a dump's manifest says (see the module's doc)."""

    name: str
    engine: str
    database: str
    snapshot: str
    file: str
    bytes: int
    dumped_at: datetime
    tables: dict[str, int]
    newest: Newest | None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "engine": self.engine, "database": self.database,
                "snapshot": self.snapshot, "file": self.file, "bytes": self.bytes,
                "dumped_at": self.dumped_at.isoformat(), "tables": dict(self.tables),
                "newest": None if self.newest is None else {
                    "table": self.newest.table, "column": self.newest.column,
                    "time": None if self.newest.time is None
                    else self.newest.time.isoformat()}}


def manifest_path(name: str) -> str:
    """Where dump ``name``'s manifest is on a host (and on a scratch VM after the restore)."""
    return MANIFEST.format(name=name)


def _time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{what} is not a time")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{what} {terminal(value, 40)!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        raise ValueError(f"{what} {terminal(value, 40)!r} has no UTC offset")
    return when


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _name(value: Any) -> bool:
    return isinstance(value, str) and _IDENTIFIER.match(value) is not None


def _tables(value: Any) -> dict[str, int]:
    if not isinstance(value, Mapping) or not all(
            _name(k) and _count(v) for k, v in value.items()):
        raise ValueError("tables is not a mapping of table name → row count")
    return dict(value)


def _newest(value: Any) -> Newest | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not _name(value.get("table")) \
            or not _name(value.get("column")):
        raise ValueError("newest is not {table, column, time}")
    time = value.get("time")
    return Newest(value["table"], value["column"],
                  None if time is None else _time(time, "newest.time"))


def _fields(name: str, doc: Mapping[str, Any]) -> Manifest:
    if doc.get("format") != FORMAT:
        raise ValueError(f"format {terminal(doc.get('format'), 20)!r}, not {FORMAT}")
    if doc.get("name") != name:
        raise ValueError(f"it names dump {terminal(doc.get('name'), 40)!r}")
    snapshot, file, size = doc.get("snapshot"), doc.get("file"), doc.get("bytes")
    if not isinstance(snapshot, str) or not _SNAPSHOT.match(snapshot):
        raise ValueError("snapshot is not a full snapshot id (64 hex digits)")
    if not isinstance(file, str) or not _FILE.match(file):
        raise ValueError("file is not one plain file name at the snapshot's root")
    if not isinstance(size, int) or not _count(size):
        raise ValueError("bytes is not a count")
    engine, database = doc.get("engine"), doc.get("database")
    if not isinstance(engine, str) or not isinstance(database, str):
        raise ValueError("engine or database is not a text")
    return Manifest(name, engine, database, snapshot, file, size,
                    _time(doc.get("dumped_at"), "dumped_at"), _tables(doc.get("tables", {})),
                    _newest(doc.get("newest")))


def parse_manifest(name: str, text: str) -> Manifest:
    """Dump ``name``'s manifest from its JSON ``text``. Raises ManifestError saying what is
    wrong with it."""
    where = manifest_path(name)
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise ValueError("it is not a JSON object")
        return _fields(name, doc)
    except ValueError as exc:
        raise ManifestError(f"{where}: not a dump manifest: {exc}") from None


def read_manifest(remote: Remote, name: str, timeout: float = 60.0) -> Manifest:
    """Dump ``name``'s manifest as the restored copy on ``remote`` holds it. Raises
    ManifestError when it is not there (the restored backup made no such dump) or is not
    a manifest."""
    where = manifest_path(name)
    done = remote.run(shell_join(["head", "-c", str(MANIFEST_MAX), "--", where]),
                      timeout=timeout)
    if done.returncode != 0:
        raise ManifestError(f"{remote.target.host}: no manifest of dump {name!r} in the "
                            f"restored copy ({where}): the snapshot restored holds no "
                            f"such dump")
    return parse_manifest(name, done.stdout)
