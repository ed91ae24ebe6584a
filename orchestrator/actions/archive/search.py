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
    words: tuple[str, ...] = ()  # FTS prefix terms (words; a glob's whole words)
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


def _glob_words(pattern: str) -> tuple[str, ...]:
    """The words of a glob that begin a word of any matching path: a word counts when it
    starts the pattern (the name's start), or follows a literal non-word character; a word
    cut by a wildcard is kept as a prefix, one that follows a wildcard is dropped."""
    out: list[str] = []
    for literal in re.finditer(r"[^*?\[\]]+|\[[^\]]*\]|[*?\[\]]", pattern):
        piece = literal.group(0)
        if piece in "*?" or piece.startswith("["):
            continue
        for word in _WORD.finditer(piece):
            at = literal.start() + word.start()
            if at == 0 or not (pattern[at - 1].isalnum() or pattern[at - 1] in "*?]_"):
                out.append(word.group(0))
    return tuple(dict.fromkeys(fold(w) for w in out))


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
        depth = 0
        for c in raw:
            depth = 1 if c == "[" else 0 if c == "]" else depth
        if depth:
            raise QueryError(f"query {raw!r}: '[' opens a set of characters that no ']' "
                             "closes")
        whole = "/" in raw
        return Query(GLOB, raw, _glob_words(raw.rsplit("/", 1)[-1] if not whole else raw),
                     fold(raw), whole, year)
    if raw.startswith("/"):
        if any(part in (".", "..") for part in raw.split("/")):
            raise QueryError(f"query {raw!r}: a path with '.' or '..' names no archived "
                             "file; give it as the snapshot lists it")
        return Query(PREFIX, raw, year=year)
    words = tuple(dict.fromkeys(fold(w) for w in _WORD.findall(raw)))
    if not words:
        raise QueryError(f"query {raw!r}: no word to search for (letters or digits)")
    return Query(WORDS, raw, words, year=year)


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

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "host": self.host, "path": self.path,
                "size": self.size, "mtime": datetime.fromtimestamp(
                    self.mtime_ns / 1e9).astimezone().isoformat(timespec="seconds"),
                "mtime_ns": self.mtime_ns, "snapshot": self.snapshot,
                "snapshot_time": self.snapshot_time, "snapshots": self.versions_in,
                "sha256": self.sha256, "final": self.final}


def _year_bounds(year: int, zone: str) -> tuple[int, int]:
    tz = ZoneInfo(zone)
    start = datetime(year, 1, 1, tzinfo=tz).timestamp()
    end = datetime(year + 1, 1, 1, tzinfo=tz).timestamp()
    return int(start * 1e9), int(end * 1e9)


_SELECT = ("SELECT f.host, f.path, f.size, f.mtime_ns, s.id, s.time, f.count, f.sha256, "
           "s.final FROM files f JOIN snapshots s ON s.n = f.last")


def _fts(words: tuple[str, ...]) -> str:
    return " AND ".join('"' + w.replace('"', '""') + '"*' for w in words)


def search(db: sqlite3.Connection, system: str, query: Query, *, limit: int = 50,
           zone: str = "UTC") -> tuple[list[Match], bool]:
    """The first ``limit`` matches of ``query`` in the catalogue ``db``, and whether there
    are more."""
    where: list[str] = []
    args: list[Any] = []
    if query.year is not None:
        where.append("f.mtime_ns >= ? AND f.mtime_ns < ?")
        args += list(_year_bounds(query.year, zone))
    if query.kind == PREFIX:
        prefix = query.text
        where.append("f.path >= ? AND f.path < ?")
        args += [prefix, prefix + "\U0010ffff"]
        if not prefix.endswith("/"):
            where.append("(f.path = ? OR substr(f.path, ?, 1) = '/')")
            args += [prefix, len(prefix) + 1]
    elif query.words:
        where.append("f.id IN (SELECT rowid FROM names WHERE names MATCH ?)")
        args.append(_fts(query.words))
    sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY f.id"
    found: list[Match] = []
    try:
        if query.kind != GLOB:
            rows = db.execute(sql + " LIMIT ?", (*args, limit + 1)).fetchall()
            found = [_match(system, r) for r in rows]
        else:
            cursor = db.execute(sql, args)
            while len(found) <= limit:
                rows = cursor.fetchmany(_PAGE)
                if not rows:
                    break
                for r in rows:
                    subject = r[1] if query.whole_path else r[1].rsplit("/", 1)[-1]
                    if fnmatch.fnmatchcase(fold(subject), query.pattern):
                        found.append(_match(system, r))
                        if len(found) > limit:
                            break
            cursor.close()
    except sqlite3.OperationalError as exc:
        raise QueryError(f"query {query.text!r}: {exc}") from None
    return found[:limit], len(found) > limit


def _match(system: str, r: tuple[Any, ...]) -> Match:
    return Match(system, r[0], r[1], int(r[2]), int(r[3]), r[4], r[5], int(r[6]), r[7],
                 bool(r[8]))
