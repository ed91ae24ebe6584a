"""The run ledger: SQLite history of every run (provision, configure, backup, verify,
drill) and what each did, under one run id that ties logs, reports and metrics together;
plus ``facts``: small values carried from one run to the next (verify's read-data rotation,
snapshot sizes already measured), one JSON value per (scope, key).
"""

from __future__ import annotations

import contextlib
import getpass
import itertools
import json
import logging
import os
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  estate TEXT NOT NULL,
  operator TEXT NOT NULL,
  started REAL NOT NULL,
  finished REAL,
  status TEXT NOT NULL,
  params TEXT NOT NULL,
  summary TEXT
);
CREATE INDEX IF NOT EXISTS runs_kind ON runs(kind, started);
CREATE TABLE IF NOT EXISTS events (
  run_id TEXT NOT NULL REFERENCES runs(id),
  at REAL NOT NULL,
  subject TEXT NOT NULL,
  kind TEXT NOT NULL,
  detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events(run_id);
CREATE INDEX IF NOT EXISTS events_subject ON events(subject, kind, at);
CREATE TABLE IF NOT EXISTS facts (
  scope TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  updated REAL NOT NULL,
  PRIMARY KEY (scope, key)
);
"""


log = logging.getLogger(__name__)


def private_folder(folder: Path, ledger: Path | None = None) -> None:
    """Make ``folder`` (the state folder) readable by its owner only: created 0700. An
    existing one that others may read or enter is narrowed to 0700 only when it is
    hopnhat's own — it holds ``ledger`` (a state folder of an older hopnhat) or nothing yet,
    its owner runs hopnhat, it is not sticky; any other folder given as the state folder
    (``/tmp``, a shared one) keeps its mode, with a warning. Raises OSError."""
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True)
        return
    info = folder.stat()
    if not info.st_mode & 0o077:
        return
    ours = (ledger is not None and ledger.exists()) or not any(folder.iterdir())
    if ours and info.st_uid == os.getuid() and not info.st_mode & stat.S_ISVTX:
        folder.chmod(0o700)
    else:
        log.warning("the state folder %s is open to other users (mode %o): hopnhat keeps "
                    "keys and the ledger there; give it a folder of its own, or chmod 700 it",
                    folder, stat.S_IMODE(info.st_mode))


def operator_name() -> str:
    """Who runs hopnhat: $HOPNHAT_OPERATOR, else the login name."""
    return os.environ.get("HOPNHAT_OPERATOR") or getpass.getuser()


def new_run_id(kind: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{kind}-{stamp}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Run:
    id: str
    kind: str
    estate: str
    operator: str
    started: float
    finished: float | None
    status: str
    params: dict[str, Any]
    summary: dict[str, Any] | None


class Ledger:
    """Thread-safe: one connection, one lock (workers of a run record concurrently).

    Opened as a context manager, ``with Ledger(path) as ledger:``, which closes the
    connection when the block ends, by an exception too."""

    def __init__(self, path: Path) -> None:
        private_folder(path.parent, path)
        self.path = path
        self._lock = threading.Lock()
        # Born 0600: SQLite gives the -wal and -shm files it makes the database file's own
        # mode, so a chmod after WAL is on came too late for them (they were 0644). Only a
        # missing file is opened here (O_EXCL): closing any descriptor of an existing one
        # would drop the SQLite locks another connection of this process holds on it.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        path.chmod(0o600)  # a ledger made by an older hopnhat
        for side in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                path.with_name(path.name + side).chmod(0o600)
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._db:
            yield self._db

    def start(self, kind: str, estate: str, params: dict[str, Any]) -> str:
        run_id = new_run_id(kind)
        with self._tx() as db:
            db.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?)",
                       (run_id, kind, estate, operator_name(), time.time(), None, "running",
                        json.dumps(params, default=str), None))
        return run_id

    def event(self, run_id: str, subject: str, kind: str, **detail: Any) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO events VALUES (?,?,?,?,?)",
                       (run_id, time.time(), subject, kind, json.dumps(detail, default=str)))

    def finish(self, run_id: str, status: str, summary: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET finished=?, status=?, summary=? WHERE id=?",
                       (time.time(), status, json.dumps(summary, default=str), run_id))

    def runs(self, kind: str | None = None, limit: int = 50) -> list[Run]:
        # the kind filter is a bound parameter; "%" matches every kind; a limit of -1 none
        query = "SELECT * FROM runs WHERE kind LIKE ? ORDER BY started DESC LIMIT ?"
        args: tuple[Any, ...] = (kind or "%", limit)
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [Run(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]),
                    json.loads(r[8]) if r[8] else None) for r in rows]

    def history(self, kind: str, *, of: Callable[[Run], bool] | None = None,
                limit: int | None = None) -> list[Run]:
        """The runs of ``kind``, newest first: those ``of`` keeps (every one when None), at
        most ``limit`` (all when None). What ``verify history`` and ``drill history`` list."""
        kept = (run for run in self.runs(kind, limit=-1) if of is None or of(run))
        return list(itertools.islice(kept, limit))

    def events(self, run_id: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT at, subject, kind, detail FROM events WHERE run_id=? ORDER BY at",
                (run_id,)).fetchall()
        return [{"at": r[0], "subject": r[1], "kind": r[2], **json.loads(r[3])} for r in rows]

    # --- facts carried between runs --------------------------------------------------------

    def fact(self, scope: str, key: str) -> Any:
        """The value kept under (``scope``, ``key``), or None."""
        return self.facts(scope, [key]).get(key)

    def facts(self, scope: str, keys: Iterable[str]) -> dict[str, Any]:
        """The values kept under ``scope`` for those of ``keys`` that have one."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
                chunk = wanted[start:start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, value FROM facts WHERE scope=? AND key IN ({marks})",  # noqa: S608 - only placeholders
                    (scope, *chunk)).fetchall()
                found.update((r[0], json.loads(r[1])) for r in rows)
        return found

    def facts_of(self, scope: str) -> dict[str, Any]:
        """Every value kept under ``scope``."""
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM facts WHERE scope=?",
                                    (scope,)).fetchall()
        return {r[0]: json.loads(r[1]) for r in rows}

    def set_fact(self, scope: str, key: str, value: Any) -> None:
        """Keep ``value`` (JSON-serialisable) under (``scope``, ``key``), replacing any."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO facts VALUES (?,?,?,?)",
                       (scope, key, json.dumps(value, default=str), time.time()))
