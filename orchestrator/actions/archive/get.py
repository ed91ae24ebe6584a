"""``archive get``: bring files back from a system's kept snapshots, each checked before it is
left where the operator asked.

For each path asked for, the catalogue names the version (the newest, or the one in
``--snapshot``), the snapshot that holds it, its size and — when a manifest recorded it — its
SHA-256. restic ``dump`` streams the bytes (checking every blob against its own hash) into a
hidden temporary file beside the destination; the file is renamed into place only when its
size and SHA-256 are those recorded; otherwise it is removed and the retrieval refused.
Destinations are ``<to>/<path without its leading />``; a path from the catalogue that would
land outside ``--to`` (``..``, a link in the way) is refused. Every retrieval — who, which
files, from which snapshot, with what result — is a ledger run (kind ``archive-get``).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from orchestrator.errors import EXIT_BAD_INPUT, HopnhatError
from orchestrator.ledger import Ledger, operator_name

KIND = "archive-get"
OK, REFUSED, FAILED = "ok", "refused", "failed"

Dump = Callable[[str, str, BinaryIO], int]  # (snapshot, path, sink) → bytes written


class GetError(HopnhatError):
    """A retrieval that cannot start: a path or snapshot the catalogue does not hold, or a
    destination that is not safe (exit 2)."""

    exit_code = EXIT_BAD_INPUT


@dataclass(frozen=True)
class Wanted:
    """One file to bring back: which version, from which snapshot."""

    path: str
    host: str
    snapshot: str
    size: int
    mtime_ns: int
    sha256: str | None
    destination: Path
    root: Path  # --to

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "host": self.host, "snapshot": self.snapshot,
                "size": self.size, "sha256": self.sha256,
                "destination": str(self.destination)}


@dataclass
class Retrieved:
    wanted: Wanted
    result: str
    detail: str = ""
    sha256: str | None = None
    bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {**self.wanted.as_dict(), "result": self.result, "detail": self.detail,
                "sha256_found": self.sha256, "bytes": self.bytes,
                "checked_against": "manifest" if self.wanted.sha256 else "size"}


@dataclass
class GetResult:
    run_id: str
    system: str
    files: list[Retrieved] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 0 if all(f.result == OK for f in self.files) else 1

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "system": self.system,
                "ok": self.exit_code == 0, "seconds": round(self.seconds, 3),
                "files": [f.as_dict() for f in self.files]}


def relative(path: str) -> str:
    """An archived path → the part below the root. Raises GetError (exit 2) for a path that
    is not absolute, or holds an empty, ``.`` or ``..`` part, or a NUL."""
    parts = path.split("/")
    if (not path.startswith("/") or "\0" in path or len(parts) < 2
            or any(p in ("", ".", "..") for p in parts[1:])):
        raise GetError(f"{path!r}: not a plain absolute path in a snapshot (no '.', '..' or "
                       "empty parts); nothing retrieved")
    return path[1:]


def destination(to: Path, path: str) -> Path:
    """Where ``path`` lands under ``to``, checked to stay inside it once every link on the
    way is followed. Raises GetError (exit 2) otherwise."""
    target = to / relative(path)
    root = os.path.realpath(to)
    parent = os.path.realpath(target.parent)
    if os.path.commonpath([root, parent]) != root:
        raise GetError(f"{path!r}: would land outside --to {to} (through a link); nothing "
                       "retrieved")
    return target


def resolve(db: sqlite3.Connection, system: str, paths: Sequence[str], to: Path, *,
            snapshot: str | None = None, host: str | None = None) -> list[Wanted]:
    """The version of each of ``paths`` to bring back. Raises GetError (exit 2) naming the
    path for one the catalogue does not hold (or not in ``snapshot``), one held by several
    hosts without ``host``, a snapshot the catalogue does not list, or a destination that
    exists or is not safe."""
    chosen = _snapshot(db, system, snapshot) if snapshot is not None else None
    if not to.is_dir():
        raise GetError(f"--to {to}: not a folder")
    return [_wanted(db, system, path, to, chosen, host) for path in dict.fromkeys(paths)]


def _snapshot(db: sqlite3.Connection, system: str, snapshot: str) -> tuple[int, str]:
    """The kept snapshot whose ID starts with ``snapshot`` (at least 8 hex digits): its
    number in the catalogue and its ID. Raises GetError (exit 2) otherwise."""
    rows = db.execute("SELECT n, id FROM snapshots WHERE id LIKE ? || '%'",
                      (snapshot.lower(),)).fetchall()
    if len(snapshot) < 8 or not all(c in "0123456789abcdef" for c in snapshot.lower()):
        raise GetError(f"--snapshot {snapshot!r}: give at least 8 hex digits of an ID "
                       "(hopnhat archive find shows them)")
    if len(rows) != 1:
        raise GetError(f"--snapshot {snapshot}: {'no' if not rows else 'more than one'} "
                       f"kept snapshot of system {system} has that ID")
    return int(rows[0][0]), str(rows[0][1])


def _wanted(db: sqlite3.Connection, system: str, path: str, to: Path,
            chosen: tuple[int, str] | None, host: str | None) -> Wanted:
    """The version of ``path`` to bring back: its latest (in ``chosen``, when given), from
    its one host (or ``host``), to a destination that does not exist yet. Raises GetError
    (exit 2) otherwise."""
    relative(path)
    sql = ("SELECT f.host, f.size, f.mtime_ns, f.sha256, s.id, f.first, f.last FROM files "
           "f JOIN snapshots s ON s.n = f.last WHERE f.path = ?")
    args: list[Any] = [path]
    if host is not None:
        sql += " AND f.host = ?"
        args.append(host)
    rows = db.execute(sql + " ORDER BY f.last DESC", args).fetchall()
    if chosen is not None:
        rows = [r for r in rows if r[5] <= chosen[0] <= r[6]]
    if not rows:
        where = f" in snapshot {chosen[1][:8]}" if chosen else ""
        raise GetError(f"{path!r}: no such file in the kept snapshots of system "
                       f"{system}{where} (hopnhat archive find searches them); nothing "
                       "retrieved")
    hosts = sorted({r[0] for r in rows})
    if len(hosts) > 1:
        raise GetError(f"{path!r}: kept from more than one host ({', '.join(hosts)}); "
                       "choose one with --host")
    r = rows[0]
    snap = chosen[1] if chosen else str(r[4])
    target = destination(to, path)
    if target.exists() or target.is_symlink():
        raise GetError(f"{target}: already exists; nothing retrieved (move it away or "
                       "choose another --to)")
    return Wanted(path, str(r[0]), snap, int(r[1]), int(r[2]), r[3], target, to)


class _Hashing:
    def __init__(self, sink: BinaryIO) -> None:
        self.sink = sink
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.sink.write(data)


def retrieve(wanted: Wanted, dump: Dump) -> Retrieved:
    """Bring one file back (see the module's text). Never leaves a file that was not
    checked."""
    parent = wanted.destination.parent
    parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    root = os.path.realpath(wanted.root)
    if os.path.commonpath([root, os.path.realpath(parent)]) != root:  # a link made since
        return Retrieved(wanted, REFUSED, f"{parent}: now leads outside --to {wanted.root}")
    temporary = parent / f".hopnhat-get-{os.getpid()}-{wanted.destination.name[:64]}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as sink:
            hashing = _Hashing(sink)
            written = dump(wanted.snapshot, wanted.path, hashing)  # type: ignore[arg-type]
            sink.flush()
            os.fsync(sink.fileno())
        found = hashing.digest.hexdigest()
        if written != wanted.size:
            temporary.unlink()
            return Retrieved(wanted, REFUSED, f"{written} bytes restored, the catalogue "
                             f"recorded {wanted.size}: not left in --to", found, written)
        if wanted.sha256 and found != wanted.sha256:
            temporary.unlink()
            return Retrieved(wanted, REFUSED, f"SHA-256 {found} restored, the manifest "
                             f"recorded {wanted.sha256}: not left in --to", found, written)
        os.utime(temporary, ns=(wanted.mtime_ns, wanted.mtime_ns))
        os.replace(temporary, wanted.destination)
        return Retrieved(wanted, OK, "matches the manifest" if wanted.sha256 else
                         "size matches (no manifest hash for this version)", found, written)
    except HopnhatError as exc:
        temporary.unlink(missing_ok=True)
        return Retrieved(wanted, FAILED, str(exc))
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def get(ledger: Ledger, estate: str, system: str, wanted: Sequence[Wanted], dump: Dump, *,
        to: Path, on_file: Callable[[Retrieved], None] | None = None,
        via: str | None = None) -> GetResult:
    """Retrieve each of ``wanted``; the run and each file's result go to the ledger
    (``via``: who asked, when not the operator at the command line)."""
    started = time.monotonic()
    run_id = ledger.start(KIND, estate, {
        "system": system, "operator": operator_name(), "via": via, "to": str(to),
        "paths": [w.path for w in wanted],
        "snapshots": sorted({w.snapshot for w in wanted})})
    result = GetResult(run_id, system)
    try:
        for item in wanted:
            done = retrieve(item, dump)
            result.files.append(done)
            ledger.event(run_id, item.path, done.result, **done.as_dict())
            if on_file is not None:
                on_file(done)
    finally:
        result.seconds = time.monotonic() - started
        ledger.finish(run_id, "passed" if len(result.files) == len(wanted)
                      and result.exit_code == 0 else "failed",
                      {"files": len(result.files),
                       "ok": sum(f.result == OK for f in result.files)})
    return result
