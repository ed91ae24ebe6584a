"""``archive find``: a query over a catalogue, read only from its SQLite file. Pure but for the
connection it is given.

A query is one of:

- **a path prefix** — starts with ``/`` and has no wildcard: every file under it (or that
  file), through the path index;
- **a glob** — has ``*``, ``?`` or ``[…]``: matched against the file's name (as
  ``find -name``), or against the whole path when the pattern has a ``/``; case and
  diacritics do not matter. The pattern's whole words narrow the search through the word
  index first;
- **words** — anything else: every word must begin a word of the path (``quyet 118`` finds
  ``/srv/qlvb/Quyết định/qd-118-2023.pdf``); case and diacritics do not matter.

``--year`` keeps the files last modified in that year (in the estate's time zone).
Results are in path order, newest version first, at most ``limit``.
"""

from __future__ import annotations

import fnmatch
import re
import sqlite3
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from orchestrator.errors import EXIT_BAD_INPUT, HopnhatError

PREFIX, GLOB, WORDS = "prefix", "glob", "words"
MAX_QUERY = 500
_WORD = re.compile(r"[^\W_]+")  # as FTS5's unicode61 cuts words
_GLOB_CHARS = re.compile(r"[*?\[]")
_PAGE = 2_000  # candidates read at a time when a glob filters them


class QueryError(HopnhatError):
    """A query that cannot be searched for (exit 2), named."""

    exit_code = EXIT_BAD_INPUT


@dataclass(frozen=True)
class Query:
    kind: str
    text: str
    words: tuple[str, ...] = ()  # the words' FTS prefix terms
    pattern: str = ""  # the glob, folded
    whole_path: bool = False  # the glob has a '/': match the path, not the name
    year: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "words": list(self.words),
                "year": self.year}


def fold(text: str) -> str:
    """Lower case without diacritics (``Quyết định`` → ``quyet dinh``; ``đ`` → ``d``), as the
    FTS index sees words."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().replace("đ", "d"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def glob_terms(pattern: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """A (folded) glob's words, by how they sit in any matching name or path: ``exact`` (a
    whole word: a literal separator or the pattern's edge on both sides), ``prefix`` (the
    word begins there, a wildcard follows) and ``inner`` (a wildcard comes before it: it is
    somewhere inside a word). A set (``[…]``) counts as a wildcard."""
    masked = re.sub(r"\[[^\]]*\]", "?", pattern)
    exact: list[str] = []
    prefix: list[str] = []
    inner: list[str] = []
    for word in _WORD.finditer(masked):
        at, end = word.start(), word.end()
        before = masked[at - 1] if at else ""
        after = masked[end] if end < len(masked) else ""
        if before in ("*", "?"):
            inner.append(word.group(0))
        elif after in ("*", "?"):
            prefix.append(word.group(0))
        else:
            exact.append(word.group(0))
    return (tuple(dict.fromkeys(exact)), tuple(dict.fromkeys(prefix)),
            tuple(dict.fromkeys(inner)))


def parse(text: str, year: int | None = None) -> Query:
    """The query ``text`` → :class:`Query`. Raises :class:`QueryError` (exit 2) naming what is
    wrong: empty, too long, a control character, an unclosed ``[``, a prefix with ``..``, or
    no word to search for; a year outside 1970–9999."""
    if year is not None and not 1970 <= year <= 9999:
        raise QueryError(f"--year {year}: not a year between 1970 and 9999")
    raw = text.strip()
    if not raw:
        raise QueryError("empty query: give words, a glob such as '*.pdf', or a path such "
                         "as /srv/qlvb/2023")
    if len(raw) > MAX_QUERY:
        raise QueryError(f"query of {len(raw)} characters: at most {MAX_QUERY}")
    if any(unicodedata.category(c) == "Cc" for c in raw):
        raise QueryError(f"query {raw!r}: a control character is not searchable")
    if _GLOB_CHARS.search(raw):
        return _glob_query(raw, year)
    if raw.startswith("/"):
        return _path_query(raw, year)
    words = tuple(dict.fromkeys(fold(w) for w in _WORD.findall(raw)))
    if not words:
        raise QueryError(f"query {raw!r}: no word to search for (letters or digits)")
    return Query(WORDS, raw, words, year=year)


def _glob_query(raw: str, year: int | None) -> Query:
    """The glob ``raw`` → :class:`Query`; :class:`QueryError` for an unclosed ``[``."""
    depth = 0
    for c in raw:
        depth = 1 if c == "[" else 0 if c == "]" else depth
    if depth:
        raise QueryError(f"query {raw!r}: '[' opens a set of characters that no ']' "
                         "closes")
    return Query(GLOB, raw, (), fold(raw), "/" in raw, year)


def _path_query(raw: str, year: int | None) -> Query:
    """The path ``raw`` (from ``/``) → :class:`Query`; :class:`QueryError` for one with a
    ``.`` or ``..``."""
    if any(part in (".", "..") for part in raw.split("/")):
        raise QueryError(f"query {raw!r}: a path with '.' or '..' names no archived "
                         "file; give it as the snapshot lists it")
    return Query(PREFIX, raw, year=year)


@dataclass(frozen=True)
class Match:
    system: str
    host: str
    path: str
    size: int
    mtime_ns: int
    snapshot: str  # the newest kept snapshot that holds this version
    snapshot_time: str
    versions_in: int  # kept snapshots that hold it
    sha256: str | None
    final: bool  # the version is in the final snapshot

    def changed(self, zone: str) -> datetime:
        """When the file was last changed, in ``zone``."""
        return datetime.fromtimestamp(self.mtime_ns / 1e9, ZoneInfo(zone))

    def as_dict(self, zone: str = "UTC") -> dict[str, Any]:
        return {"system": self.system, "host": self.host, "path": self.path,
                "size": self.size, "mtime": self.changed(zone).isoformat(timespec="seconds"),
                "mtime_ns": self.mtime_ns, "snapshot": self.snapshot,
                "snapshot_time": self.snapshot_time, "snapshots": self.versions_in,
                "sha256": self.sha256, "final": self.final}


def _year_bounds(year: int, zone: str) -> tuple[int, int]:
    tz = ZoneInfo(zone)
    start = datetime(year, 1, 1, tzinfo=tz).timestamp()
    end = datetime(year + 1, 1, 1, tzinfo=tz).timestamp()
    return int(start * 1e9), int(end * 1e9)


_FROM_FILES = ("SELECT f.host, f.path, f.size, f.mtime_ns, s.id, s.time, f.count, f.sha256, "
               "s.final FROM files f JOIN snapshots s ON s.n = f.last")
_FROM_NAMES = ("SELECT f.host, f.path, f.size, f.mtime_ns, s.id, s.time, f.count, f.sha256, "
               "s.final FROM names JOIN files f ON f.id = names.rowid "
               "JOIN snapshots s ON s.n = f.last")
CONTAINED = 200  # words a cut word may stand for before it no longer narrows the search


def _quoted(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


def _match(db: sqlite3.Connection, query: Query) -> str | None:
    """The FTS expression of ``query`` ("" when nothing narrows it; None when no word of the
    index can match, so nothing does)."""
    if query.kind == WORDS:
        return " AND ".join(_quoted(w) + "*" for w in query.words)
    subject = query.pattern if query.whole_path else query.pattern.rsplit("/", 1)[-1]
    exact, prefix, inner = glob_terms(subject)
    parts = [_quoted(w) for w in exact] + [_quoted(w) + "*" for w in prefix]
    for word in inner:
        terms = [r[0] for r in db.execute("SELECT term FROM terms WHERE instr(term, ?) > 0 "
                                          "LIMIT ?", (word, CONTAINED + 1))]
        if not terms:
            return None
        if len(terms) <= CONTAINED:
            parts.append("(" + " OR ".join(map(_quoted, terms)) + ")")
    return " AND ".join(parts)


def search(db: sqlite3.Connection, system: str, query: Query, *, limit: int = 50,
           zone: str = "UTC") -> tuple[list[Match], bool]:
    """The first ``limit`` matches of ``query`` in the catalogue ``db``, and whether there
    are more. Each answer is one index lookup (a path range, or FTS terms in row order)
    read up to the limit: milliseconds whatever the catalogue's size, but for a glob whose
    words do not narrow it."""
    try:
        found_by = _sql(db, query, zone)
        if found_by is None:
            return [], False
        sql, args = found_by
        if query.kind != GLOB:
            rows = db.execute(sql + " LIMIT ?", (*args, limit + 1)).fetchall()
            found = [_match_row(system, r) for r in rows]
        else:
            found = _glob_matches(db.execute(sql, args), system, query, limit)
    except sqlite3.OperationalError as exc:
        raise QueryError(f"query {query.text!r}: {exc}") from None
    return found[:limit], len(found) > limit


def _sql(db: sqlite3.Connection, query: Query, zone: str) -> tuple[str, list[Any]] | None:
    """The SELECT of ``query``'s candidates in the order they are answered, and its
    arguments; None when nothing can match (no file changed in the year asked, or no word
    of the index matches)."""
    where: list[str] = []
    args: list[Any] = []
    if query.year is not None:
        low, high = _year_bounds(query.year, zone)
        if not _changed_between(db, low, high):
            return None
        where.append("f.mtime_ns >= ? AND f.mtime_ns < ?")
        args += [low, high]
    if query.kind == PREFIX:
        under, under_args = _under(query.text)
        return (_FROM_FILES + " WHERE " + " AND ".join([*where, under])
                + " ORDER BY f.path, f.id", args + under_args)
    expression = _match(db, query)
    if expression is None:
        return None
    if expression:
        return (_FROM_NAMES + " WHERE " + " AND ".join(["names MATCH ?", *where])
                + " ORDER BY names.rowid", [expression, *args])
    return (_FROM_FILES + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY f.id", args)


def _changed_between(db: sqlite3.Connection, low: int, high: int) -> bool:
    """Whether a file of the catalogue was changed at or after ``low`` and before ``high``
    (nanoseconds): its table of days with changes answers without reading the files."""
    day = 86_400 * 1_000_000_000
    return db.execute("SELECT 1 FROM days WHERE day BETWEEN ? AND ? AND high_ns >= ? "
                      "AND low_ns < ? LIMIT 1",
                      (low // day, high // day, low, high)).fetchone() is not None


def _under(prefix: str) -> tuple[str, list[Any]]:
    """The condition (and its arguments) for the paths under ``prefix``: with a final ``/``,
    what is under that folder; else the file itself, or what is under it as a folder."""
    if prefix.endswith("/"):
        return "f.path >= ? AND f.path < ?", [prefix, prefix + "\U0010ffff"]
    return ("f.path >= ? AND f.path < ? AND (f.path = ? OR substr(f.path, ?, 1) = '/')",
            [prefix, prefix + "/\U0010ffff", prefix, len(prefix) + 1])


def _glob_matches(cursor: sqlite3.Cursor, system: str, query: Query, limit: int
                  ) -> list[Match]:
    """The rows of ``cursor`` whose name (or whole path) the glob matches, read a page at a
    time until there are more than ``limit``."""
    found: list[Match] = []
    while len(found) <= limit:
        rows = cursor.fetchmany(_PAGE)
        if not rows:
            break
        for r in rows:
            name = r[1] if query.whole_path else r[1].rsplit("/", 1)[-1]
            if fnmatch.fnmatchcase(fold(name), query.pattern):
                found.append(_match_row(system, r))
                if len(found) > limit:
                    break
    cursor.close()
    return found


def _match_row(system: str, r: tuple[Any, ...]) -> Match:
    return Match(system, r[0], r[1], int(r[2]), int(r[3]), r[4], r[5], int(r[6]), r[7],
                 bool(r[8]))
