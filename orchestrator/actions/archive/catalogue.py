"""A system's archive catalogue: every file version in its kept snapshots, searchable in
milliseconds without touching the repository.

One SQLite file per system under ``<state>/archive/<estate>/<system>.sqlite`` (0600, folder
0700):

- ``snapshots``: each kept snapshot (ID, time, host, tags), numbered oldest first;
- ``files``: each *version* of a file once — (host, path, size, mtime) — with the oldest
  and newest snapshot that hold it, how many do, and the SHA-256 from a manifest when one
  recorded it (the retirement's, for the final snapshot); rows are in path order;
- ``names``: an FTS5 index over the paths folded (lower case, no diacritics, ``đ`` as
  ``d``: ``quyet dinh`` finds ``Quyết định``); contentless and ``detail=none`` (words and
  prefixes only), with prefix indexes of 1 to 6 characters so that a word's prefix is one
  lookup;
- ``terms``: the index's vocabulary (tens of thousands of words), so that a glob's word cut
  on both sides (``*118*``) becomes the few words that contain it;
- ``days``: the days (UTC) some file was last changed, with the first and last change of
  each, so that ``--year`` of a year without files answers at once (exactly: a year's edge
  days are judged by their first and last change).

Built from ``restic ls --json`` streamed per snapshot into a staging table, grouped once by
SQLite (memory stays flat for millions of entries), written to a temporary file and renamed
into place: a build that fails leaves the previous catalogue as it was. Its SHA-256 goes to
the ledger (fact ``archive.catalogue``), with the file's size, inode and change time; a
catalogue whose file no longer matches is refused until rebuilt (:func:`open_checked`).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.actions.archive.search import fold
from orchestrator.errors import EXIT_BAD_INPUT, HopnhatError
from orchestrator.ledger import Ledger

FACT = "archive.catalogue"  # ledger facts: "<estate>/<system>" → hash and fingerprint
VERSION = 2
DAY_NS = 86_400 * 1_000_000_000
SUFFIX = ".sqlite"

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE snapshots (
  n INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  time TEXT NOT NULL,
  host TEXT NOT NULL,
  tags TEXT NOT NULL,
  final INTEGER NOT NULL
);
CREATE TABLE files (
  id INTEGER PRIMARY KEY,
  host TEXT NOT NULL,
  path TEXT NOT NULL,
  size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  first INTEGER NOT NULL,
  last INTEGER NOT NULL,
  count INTEGER NOT NULL,
  sha256 TEXT
);
"""
INDEXES = """
CREATE INDEX files_path ON files(path);
CREATE VIRTUAL TABLE names USING fts5(path, content='', columnsize=0,
  tokenize="unicode61 remove_diacritics 2", detail=none, prefix='1 2 3 4 5 6');
INSERT INTO names(rowid, path) SELECT id, fold(path) FROM files;
INSERT INTO names(names) VALUES ('optimize');
CREATE VIRTUAL TABLE temp.vocabulary USING fts5vocab(main, names, row);
CREATE TABLE terms (term TEXT PRIMARY KEY) WITHOUT ROWID;
INSERT INTO terms SELECT term FROM temp.vocabulary;
DROP TABLE temp.vocabulary;
CREATE TABLE days (day INTEGER PRIMARY KEY, low_ns INTEGER NOT NULL, high_ns INTEGER NOT NULL);
INSERT INTO days SELECT mtime_ns / 86400000000000, min(mtime_ns), max(mtime_ns) FROM files
  GROUP BY mtime_ns / 86400000000000;
"""


class CatalogueError(HopnhatError):
    """A catalogue that is missing, unreadable or changed since it was built (exit 2)."""

    exit_code = EXIT_BAD_INPUT


@dataclass(frozen=True)
class KeptSnapshot:
    """A snapshot the catalogue lists (oldest first when built)."""

    id: str
    time: str
    host: str
    tags: tuple[str, ...] = ()

    @property
    def final(self) -> bool:
        return "final" in self.tags


@dataclass(frozen=True)
class FileEntry:
    """A file of one snapshot, as ``restic ls`` says (mtime in ns since the epoch)."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Built:
    """What :func:`build` made."""

    file: Path
    sha256: str
    snapshots: int
    versions: int
    entries: int  # file entries read, over every snapshot
    bytes: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"file": str(self.file), "sha256": self.sha256, "snapshots": self.snapshots,
                "versions": self.versions, "entries": self.entries, "bytes": self.bytes,
                "seconds": round(self.seconds, 3)}


def location(state: Path, estate: str, system: str) -> Path:
    return state / "archive" / estate / f"{system}{SUFFIX}"


def fact_key(estate: str, system: str) -> str:
    return f"{estate}/{system}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(path: Path) -> dict[str, int]:
    """What changes whenever the file's bytes do (``ctime`` cannot be set back)."""
    st = path.stat()
    return {"size": st.st_size, "ino": st.st_ino, "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns}


Hashes = Mapping[tuple[str, str, int, int], str]  # (host, path, size, mtime_ns) → SHA-256
Lister = Callable[[KeptSnapshot], Iterable[FileEntry]]


def build(target: Path, *, estate: str, system: str, snapshots: Iterable[KeptSnapshot],
          files_of: Lister, hashes: Hashes | None = None,
          on_snapshot: Callable[[KeptSnapshot, int], None] | None = None,
          batch: int = 50_000) -> Built:
    """Build the catalogue of ``snapshots`` (oldest first) at ``target``: each snapshot's
    files from ``files_of`` (streamed), the SHA-256 of a version from ``hashes`` when known.
    Written beside ``target`` and renamed over it when complete; the folder is made 0700,
    the file 0600. Out: :class:`Built` (its SHA-256 is the file's)."""
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(target.parent, 0o700)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    entries = 0
    try:
        with closing(sqlite3.connect(temporary, isolation_level=None)) as db:
            db.create_function("fold", 1, fold, deterministic=True)
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            db.execute("PRAGMA temp_store=FILE")
            db.execute("PRAGMA cache_size=-262144")  # 256 MiB
            db.executescript(SCHEMA)
            db.execute("CREATE TEMP TABLE stage (host TEXT, path TEXT, size INTEGER, "
                       "mtime_ns INTEGER, n INTEGER)")
            db.execute("BEGIN")
            count = 0
            for n, snap in enumerate(snapshots, start=1):
                count = n
                db.execute("INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?)",
                           (n, snap.id, snap.time, snap.host, ",".join(snap.tags),
                            int(snap.final)))
                rows: list[tuple[str, str, int, int, int]] = []
                seen = 0
                for entry in files_of(snap):
                    rows.append((snap.host, entry.path, entry.size, entry.mtime_ns, n))
                    if len(rows) >= batch:
                        db.executemany("INSERT INTO stage VALUES (?, ?, ?, ?, ?)", rows)
                        seen += len(rows)
                        rows.clear()
                db.executemany("INSERT INTO stage VALUES (?, ?, ?, ?, ?)", rows)
                seen += len(rows)
                entries += seen
                if on_snapshot is not None:
                    on_snapshot(snap, seen)
            db.execute(
                "INSERT INTO files (host, path, size, mtime_ns, first, last, count) "
                "SELECT host, path, size, mtime_ns, min(n), max(n), count(*) FROM stage "
                "GROUP BY host, path, size, mtime_ns ORDER BY path, max(n) DESC, host")
            db.execute("DROP TABLE stage")
            if hashes:
                db.execute("CREATE TEMP TABLE sums (host TEXT, path TEXT, size INTEGER, "
                           "mtime_ns INTEGER, sha256 TEXT)")
                db.executemany("INSERT INTO temp.sums VALUES (?, ?, ?, ?, ?)",
                               ((*key, value) for key, value in hashes.items()))
                db.execute("CREATE INDEX temp.sums_key ON sums(path, host, size, mtime_ns)")
                db.execute(
                    "UPDATE files SET sha256 = (SELECT s.sha256 FROM temp.sums s WHERE "
                    "s.path = files.path AND s.host = files.host AND s.size = files.size "
                    "AND s.mtime_ns = files.mtime_ns)")
            db.execute("COMMIT")
            db.executescript(INDEXES)
            db.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("version", str(VERSION)), ("estate", estate), ("system", system),
                ("built_at", str(int(time.time())))])
            versions = db.execute("SELECT count(*) FROM files").fetchone()[0]
        with temporary.open("rb+") as f:
            os.fsync(f.fileno())
        digest = sha256_of(temporary)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return Built(target, digest, count, versions, entries, target.stat().st_size,
                 time.monotonic() - started)


def record(ledger: Ledger, estate: str, system: str, built: Built) -> None:
    """The catalogue's hash and fingerprint in the ledger (what :func:`open_checked` holds
    the file to)."""
    ledger.set_fact(FACT, fact_key(estate, system), {
        "sha256": built.sha256, "file": str(built.file), **fingerprint(built.file)})


def catalogued(ledger: Ledger, estate: str) -> dict[str, dict[str, Any]]:
    """The systems whose catalogue the ledger knows: system → its recorded fact."""
    prefix = f"{estate}/"
    return {key.removeprefix(prefix): value for key, value in ledger.facts_of(FACT).items()
            if key.startswith(prefix) and isinstance(value, dict)}


def open_checked(ledger: Ledger, state: Path, estate: str, system: str) -> sqlite3.Connection:
    """The system's catalogue, read-only, once it is known to be the one built: the file's
    fingerprint as recorded, or else its SHA-256 as recorded (the fingerprint is then
    recorded anew). Raises :class:`CatalogueError` (exit 2) when there is none, or when the
    file changed: it must be rebuilt (``hopnhat archive index``)."""
    path = location(state, estate, system)
    recorded = ledger.fact(FACT, fact_key(estate, system))
    rebuild = f"rebuild it with `hopnhat archive index --system {system}`"
    if not isinstance(recorded, dict) or not path.is_file():
        what = "is missing" if isinstance(recorded, dict) else "was never built"
        build = rebuild if isinstance(recorded, dict) else rebuild.replace("rebuild", "build")
        raise CatalogueError(f"system {system}: the archive catalogue {path} {what}; "
                             f"{build}")
    now = fingerprint(path)
    if any(now.get(k) != recorded.get(k) for k in ("size", "ino", "mtime_ns", "ctime_ns")):
        found = sha256_of(path)
        if found != recorded.get("sha256"):
            raise CatalogueError(
                f"system {system}: the archive catalogue {path} was changed since it was "
                f"built (SHA-256 {found}, the ledger recorded {recorded.get('sha256')}); "
                f"nothing read from it; {rebuild}")
        ledger.set_fact(FACT, fact_key(estate, system), {**recorded, **now})
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, check_same_thread=False)
    try:
        version = db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
    except sqlite3.DatabaseError as exc:
        db.close()
        raise CatalogueError(f"system {system}: {path}: not a catalogue ({exc}); "
                             f"{rebuild}") from None
    if version is None or version[0] != str(VERSION):
        db.close()
        raise CatalogueError(f"system {system}: {path}: catalogue version "
                             f"{version[0] if version else '?'}, this hopnhat reads "
                             f"{VERSION}; {rebuild}")
    return db
