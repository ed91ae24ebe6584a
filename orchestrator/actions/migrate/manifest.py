"""A migration's manifest: every entry of a snapshot under the system's backup paths, with
its path, type, size, permission bits, mtime and — for a file — the SHA-256 of its bytes,
and the comparisons made with it. Pure.

The snapshot's side is ``restic ls --json`` (path, type, size, mode, mtime); the bytes' side
is the restored tree on the target VM, which ``restic restore --verify`` has just checked
against the snapshot's own content-addressed blobs. A restored tree that differs from the
listing in any entry (missing, extra, another type, size, mode or mtime) fails the check
and is named; the SHA-256 sums make the handover checkable later by anyone with
``sha256sum`` (and let a sync say which files changed).

Stored as gzip'd JSON lines sorted by path (``manifest.jsonl.gz``, written the same way
every time); its own SHA-256 is that of the uncompressed lines.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator.actions.report_files import write_report_file
from orchestrator.adapters.restic_results import Node

SHOWN = 50  # files named per kind of difference; the counts are always whole

_TYPES = {"file": "f", "dir": "d", "symlink": "l"}
_GO_SETUID, _GO_SETGID, _GO_STICKY = 1 << 23, 1 << 22, 1 << 20
_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


@dataclass(frozen=True)
class Entry:
    """One manifest line: ``t`` f (file), d (folder), l (link) or o (other)."""

    path: str
    type: str
    mode: int
    mtime_ns: int
    size: int = 0
    sha256: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "type": self.type,
                               "mode": f"{self.mode:04o}", "mtime_ns": self.mtime_ns}
        if self.type == "f":
            out["size"] = self.size
            out["sha256"] = self.sha256
        return out


def go_permissions(mode: int) -> int:
    """restic's (Go's) file mode → the Unix permission bits (``0o4755``)."""
    out = mode & 0o777
    if mode & _GO_SETUID:
        out |= 0o4000
    if mode & _GO_SETGID:
        out |= 0o2000
    if mode & _GO_STICKY:
        out |= 0o1000
    return out


def mtime_ns(text: str) -> int:
    """An RFC 3339 time with up to nanoseconds (restic's) → ns since the epoch. Raises
    ValueError for another form."""
    found = _RFC3339.match(text)
    if found is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    base, frac, zone = found.groups()
    seconds = int(datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
                  .timestamp())
    return seconds * 1_000_000_000 + int((frac or "0")[:9].ljust(9, "0"))


def from_node(node: Node) -> Entry:
    """A snapshot's entry (no SHA-256: restic keeps none for a whole file)."""
    return Entry(node.path, _TYPES.get(node.type, "o"), go_permissions(int(node.mode or 0)),
                 mtime_ns(node.mtime) if node.mtime else 0,
                 node.size or 0 if node.type == "file" else 0)


def from_scan(line: Mapping[str, Any]) -> Entry:
    """A scanned entry (:mod:`orchestrator.actions.migrate.tree`)."""
    return Entry(str(line["p"]), str(line["t"]), int(line["m"]), int(line["n"]),
                 int(line.get("s", 0)), line.get("h"))


@dataclass(frozen=True)
class Differences:
    """The restored tree against the snapshot: entries missing, extra, or different (with
    what differs), whole counts and the first :data:`SHOWN` of each."""

    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    different: tuple[tuple[str, str], ...] = ()
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.counts.values())

    def sentences(self, vm: str) -> list[str]:
        out = []
        for kind, items in (("missing", self.missing), ("extra", self.extra)):
            n = self.counts.get(kind, 0)
            if n:
                out.append(f"{vm}: {n} {kind} entr{'y' if n == 1 else 'ies'}: "
                           + ", ".join(json.dumps(p) for p in items[:5])
                           + (" …" if n > 5 else ""))
        n = self.counts.get("different", 0)
        if n:
            out.append(f"{vm}: {n} entr{'y differs' if n == 1 else 'ies differ'}: "
                       + ", ".join(f"{json.dumps(p)} ({why})" for p, why in self.different[:5])
                       + (" …" if n > 5 else ""))
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "counts": dict(self.counts), "missing": list(self.missing),
                "extra": list(self.extra),
                "different": [{"path": p, "what": w} for p, w in self.different]}


def _why(want: Entry, got: Entry) -> str:
    if want.type != got.type:
        return f"type {want.type} in the snapshot, {got.type} restored"
    reasons = []
    if want.type == "f" and want.size != got.size:
        reasons.append(f"size {want.size} → {got.size}")
    if want.mode != got.mode:
        reasons.append(f"mode {want.mode:04o} → {got.mode:04o}")
    # a folder's mtime moves whenever an entry in it does; a link's is not kept by all
    if want.type == "f" and want.mtime_ns != got.mtime_ns:
        reasons.append("mtime")
    if want.type == "f" and got.sha256 is None:
        reasons.append("unreadable")
    return ", ".join(reasons)


def compare(snapshot: Mapping[str, Entry], restored: Mapping[str, Entry]) -> Differences:
    """The restored entries against the snapshot's (both: path → Entry)."""
    missing = sorted(p for p in snapshot if p not in restored)
    extra = sorted(p for p in restored if p not in snapshot)
    different = []
    for path in sorted(snapshot.keys() & restored.keys()):
        why = _why(snapshot[path], restored[path])
        if why:
            different.append((path, why))
    return Differences(tuple(missing[:SHOWN]), tuple(extra[:SHOWN]), tuple(different[:SHOWN]),
                       {"missing": len(missing), "extra": len(extra),
                        "different": len(different)})


@dataclass(frozen=True)
class Changes:
    """What a sync changed against the previous manifest: files added, changed (another
    SHA-256, size or type) and removed — whole counts and the first :data:`SHOWN`."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "added": list(self.added),
                "changed": list(self.changed), "removed": list(self.removed)}


def changes(before: Mapping[str, Entry], after: Mapping[str, Entry]) -> Changes:
    added = sorted(p for p in after if p not in before)
    removed = sorted(p for p in before if p not in after)
    changed = sorted(p for p in after.keys() & before.keys()
                     if (before[p].type, before[p].size, before[p].sha256)
                     != (after[p].type, after[p].size, after[p].sha256))
    return Changes(tuple(added[:SHOWN]), tuple(changed[:SHOWN]), tuple(removed[:SHOWN]),
                   {"added": len(added), "changed": len(changed), "removed": len(removed)})


def totals(entries: Iterable[Entry], roots: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per backup path: files, folders, others and bytes."""
    out = {root: {"files": 0, "dirs": 0, "others": 0, "bytes": 0} for root in roots}
    for e in entries:
        root = next((r for r in roots if e.path == r or e.path.startswith(r.rstrip("/") + "/")),
                    None)
        if root is None:
            continue
        t = out[root]
        if e.type == "f":
            t["files"] += 1
            t["bytes"] += e.size
        elif e.type == "d":
            t["dirs"] += 1
        else:
            t["others"] += 1
    return out


# ---------------------------------------------------------------- stored form


def lines(vm: str, entries: Mapping[str, Entry]) -> bytes:
    """The manifest's canonical text for ``vm``: one JSON object per entry, sorted."""
    return b"".join(
        (json.dumps({"vm": vm, **entries[p].as_dict()}, ensure_ascii=False, sort_keys=True)
         + "\n").encode() for p in sorted(entries))


def write(path: Path, text: bytes) -> str:
    """Write ``text`` gzip'd (no name, no time: the same bytes every time) to ``path``.
    Out: the SHA-256 of ``text``."""
    write_report_file(path, gzip.compress(text, compresslevel=6, mtime=0))
    return hashlib.sha256(text).hexdigest()


def read(path: Path) -> dict[str, dict[str, Entry]]:
    """A stored manifest: VM → path → Entry."""
    out: dict[str, dict[str, Entry]] = {}
    for raw in gzip.decompress(path.read_bytes()).splitlines():
        d = json.loads(raw)
        out.setdefault(d["vm"], {})[d["path"]] = Entry(
            d["path"], d["type"], int(d["mode"], 8), int(d["mtime_ns"]), int(d.get("size", 0)),
            d.get("sha256"))
    return out
