"""What restic commands return, as typed data, and the parsers that read restic's output.

Pure functions only (no subprocess): each takes restic's text and returns dataclasses, so the
runner and the tests share them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from orchestrator.adapters.restic_argv import STALE_LOCK_AGE


def parse_time(text: str) -> datetime:
    """restic's RFC 3339 time with nanoseconds (``2026-11-21T10:31:45.502511813Z`` or with an
    offset) → an aware datetime (microseconds). Raises ValueError for other text."""
    main, _, rest = text.partition(".")
    if rest:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{main}.{rest[:digits][:6].ljust(6, '0')}{rest[digits:]}"
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key, 0)
    return int(value) if isinstance(value, int | float) else 0


def first_json(text: str) -> Any:
    """The first JSON value in ``text`` (``forget --json --prune`` prints prune's prose after
    it on the same stream). Raises ValueError when ``text`` starts with no JSON."""
    stripped = text.lstrip()
    start = min((i for i in (stripped.find("["), stripped.find("{")) if i >= 0), default=-1)
    if start < 0:
        raise ValueError("no JSON in restic's output")
    value, _ = json.JSONDecoder().raw_decode(stripped[start:])
    return value


def json_object(line: str) -> dict[str, Any] | None:
    """``line`` as a JSON object, or None when it is none (prose or stderr interleaved
    with JSON lines, a line cut short)."""
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def error_text(error: Any) -> str:
    """restic's JSON error object as text: 0.14 gives Go's ``{"Op": "read", "Path": …,
    "Err": 5}`` (an errno), later versions ``{"message": …}``."""
    if isinstance(error, dict):
        if "message" in error:
            return str(error["message"])
        err = error.get("Err")
        reason = os.strerror(err) if isinstance(err, int) else str(err)
        return f"{error.get('Op', 'error')}: {reason}"
    return str(error)


# --- backup ---------------------------------------------------------------------------------

#: the length of restic's short snapshot IDs (``short_id``)
SHORT_ID = 8


@dataclass(frozen=True)
class BackupResult:
    """``backup --json``'s summary. ``partial``: restic exited 3 (some files unreadable, listed
    in ``errors``) or skipped a requested path that does not exist (``skipped``) — a snapshot
    exists but is not the whole truth, so it is not a success. ``snapshot_id`` is the short
    ID (8 hex digits) whatever the version: restic 0.14's summary gives only that, 0.17+'s
    the full ID, kept in ``snapshot_full_id`` (None from 0.14)."""

    snapshot_id: str | None
    files_new: int
    files_changed: int
    files_unmodified: int
    dirs_new: int
    dirs_changed: int
    dirs_unmodified: int
    data_added: int
    total_files_processed: int
    total_bytes_processed: int
    total_duration: float
    partial: bool = False
    errors: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    snapshot_full_id: str | None = None

    @property
    def ok(self) -> bool:
        return not self.partial and self.snapshot_id is not None


def parse_backup_output(lines: Iterable[str], returncode: int) -> BackupResult | None:
    """The result from ``backup --json``'s output lines (stdout and stderr, in any order), or
    None when no summary came (the backup failed)."""
    summary: dict[str, Any] | None = None
    errors: list[str] = []
    skipped: list[str] = []
    for line in lines:
        line = line.strip()
        if line.endswith(" does not exist, skipping"):
            skipped.append(line.removesuffix(" does not exist, skipping"))
            continue
        data = json_object(line)
        if data is None:
            continue
        kind = data.get("message_type")
        if kind == "summary":
            summary = data
        elif kind == "error":
            errors.append(f"{data.get('item', '?')}: {error_text(data.get('error'))}")
    if summary is None:
        return None
    snapshot = str(summary.get("snapshot_id") or "") or None
    return BackupResult(
        snapshot_id=snapshot[:SHORT_ID] if snapshot else None,
        snapshot_full_id=snapshot if snapshot and len(snapshot) > SHORT_ID else None,
        files_new=_int(summary, "files_new"), files_changed=_int(summary, "files_changed"),
        files_unmodified=_int(summary, "files_unmodified"), dirs_new=_int(summary, "dirs_new"),
        dirs_changed=_int(summary, "dirs_changed"),
        dirs_unmodified=_int(summary, "dirs_unmodified"),
        data_added=_int(summary, "data_added"),
        total_files_processed=_int(summary, "total_files_processed"),
        total_bytes_processed=_int(summary, "total_bytes_processed"),
        total_duration=float(summary.get("total_duration", 0.0)),
        partial=returncode == 3 or bool(skipped), errors=tuple(errors), skipped=tuple(skipped))


# --- snapshots and forget -------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    id: str
    short_id: str
    time: datetime
    hostname: str
    username: str
    paths: tuple[str, ...]
    tags: tuple[str, ...] = ()
    tree: str = ""
    parent: str | None = None
    #: the source snapshot's ID when this one was made by ``restic copy``
    original: str | None = None
    #: the restic that made it (``restic 0.18.1``): restic 0.16+ records it, 0.14 does not
    program_version: str | None = None


#: the tag of a database dump's snapshot (``hopnhat-dump``, with ``dump=<name>``): a
#: system's "latest snapshot" — for backup status and the gate, verify, drills, migrate,
#: retire and the archive — is its latest *files* snapshot, never one of these
DUMP_TAG = "hopnhat-dump"


def is_dump(snapshot: Snapshot) -> bool:
    """Whether ``snapshot`` holds a database dump (tagged :data:`DUMP_TAG`), not files."""
    return DUMP_TAG in snapshot.tags


def dump_name(snapshot: Snapshot) -> str | None:
    """The dump's name (its ``dump=<name>`` tag), or None for a files snapshot."""
    if not is_dump(snapshot):
        return None
    return next((t.removeprefix("dump=") for t in snapshot.tags if t.startswith("dump=")), None)


def snapshot_from(data: Mapping[str, Any]) -> Snapshot:
    """One snapshot object of restic's JSON. Raises ValueError/KeyError when malformed."""
    ident = str(data.get("id", ""))
    return Snapshot(
        id=ident, short_id=str(data.get("short_id") or ident[:8]), time=parse_time(data["time"]),
        hostname=str(data.get("hostname", "")), username=str(data.get("username", "")),
        paths=tuple(data.get("paths") or ()), tags=tuple(data.get("tags") or ()),
        tree=str(data.get("tree", "")), parent=data.get("parent"),
        original=data.get("original") or None,
        program_version=str(data.get("program_version") or "") or None)


def parse_snapshots(text: str) -> list[Snapshot]:
    """``snapshots --json`` → snapshots, oldest first (restic's order)."""
    data = first_json(text)
    if not isinstance(data, list):
        raise ValueError("snapshots --json did not return a list")
    return [snapshot_from(item) for item in data]


@dataclass(frozen=True)
class ForgetGroup:
    host: str
    paths: tuple[str, ...]
    tags: tuple[str, ...]
    keep: tuple[Snapshot, ...]
    remove: tuple[Snapshot, ...]


@dataclass(frozen=True)
class ForgetResult:
    groups: tuple[ForgetGroup, ...]
    pruned: bool = False

    @property
    def removed(self) -> tuple[Snapshot, ...]:
        return tuple(s for g in self.groups for s in g.remove)

    @property
    def kept(self) -> tuple[Snapshot, ...]:
        return tuple(s for g in self.groups for s in g.keep)


def parse_forget(text: str, *, pruned: bool) -> ForgetResult:
    """``forget --json`` (its JSON comes first, prune's prose may follow) → groups kept and
    removed (``"remove": null`` when none)."""
    data = first_json(text)
    groups = []
    for group in data or ():
        groups.append(ForgetGroup(
            host=str(group.get("host") or ""), paths=tuple(group.get("paths") or ()),
            tags=tuple(group.get("tags") or ()),
            keep=tuple(snapshot_from(s) for s in group.get("keep") or ()),
            remove=tuple(snapshot_from(s) for s in group.get("remove") or ())))
    return ForgetResult(tuple(groups), pruned=pruned)


# --- ls and stats ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """One entry of ``ls --json``: ``type`` is file, dir, symlink, …; ``size`` for files."""

    path: str
    name: str
    type: str
    size: int | None = None
    mode: int | None = None
    mtime: str | None = None
    uid: int | None = None
    gid: int | None = None


def parse_ls_line(line: str) -> Node | None:
    """One line of ``ls --json`` → a Node, or None for the snapshot header line and for lines
    that are not JSON nodes (restic's stderr interleaved)."""
    data = json_object(line)
    if data is None or data.get("struct_type", "node") != "node":
        return None
    if "path" not in data:
        return None
    size = data.get("size")
    uid, gid = data.get("uid"), data.get("gid")
    return Node(path=str(data["path"]), name=str(data.get("name", "")),
                type=str(data.get("type", "")), size=int(size) if size is not None else None,
                mode=data.get("mode"), mtime=data.get("mtime"),
                uid=int(uid) if isinstance(uid, int) else None,
                gid=int(gid) if isinstance(gid, int) else None)


@dataclass
class Listing:
    """Totals over a snapshot's nodes (filled while streaming)."""

    files: int = 0
    dirs: int = 0
    others: int = 0
    total_size: int = 0

    def add(self, node: Node) -> None:
        if node.type == "file":
            self.files += 1
            self.total_size += node.size or 0
        elif node.type == "dir":
            self.dirs += 1
        else:
            self.others += 1


@dataclass(frozen=True)
class Stats:
    """``stats --json``; which fields restic fills depends on the mode."""

    total_size: int
    total_file_count: int
    snapshots_count: int = 0
    total_blob_count: int = 0
    total_uncompressed_size: int = 0
    raw: dict[str, Any] = field(default_factory=dict)


def parse_stats(text: str) -> Stats:
    data = first_json(text)
    if not isinstance(data, dict):
        raise ValueError("stats --json did not return an object")
    return Stats(total_size=_int(data, "total_size"),
                 total_file_count=_int(data, "total_file_count"),
                 snapshots_count=_int(data, "snapshots_count"),
                 total_blob_count=_int(data, "total_blob_count"),
                 total_uncompressed_size=_int(data, "total_uncompressed_size"), raw=data)


# --- check ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckSummary:
    """restic 0.18's ``check --json`` summary. restic prints one on every ``check``, also
    when it could not run (a lock in the way: ``num_errors`` 1), so it alone does not say
    that the repository is damaged: the exit code does."""

    num_errors: int
    broken_packs: tuple[str, ...] = ()
    suggest_repair_index: bool = False
    suggest_prune: bool = False


@dataclass(frozen=True)
class CheckResult:
    """A clean ``check``: its output lines (0.18 with ``--json``: the text of its messages,
    the summary left out), restic's non-critical remarks (such as packs not referenced in any
    index, which ``prune`` tidies) and, from 0.18, its JSON summary."""

    lines: tuple[str, ...]
    notes: tuple[str, ...] = ()
    read_data_subset: str | None = None
    summary: CheckSummary | None = None


#: what a :class:`CheckResult`'s notes say of restic 0.18's hints (``check --json`` prints no
#: prose for them)
PRUNE_NOTE = ("restic suggests `restic prune`: the repository holds pack files no index "
              "refers to, or packs mixing tree and data blobs (non-critical)")
REPAIR_INDEX_NOTE = ("restic suggests `restic repair index`: the index lists duplicate "
                     "packs (non-critical)")


def parse_check(lines: Iterable[str], read_data_subset: str | None) -> CheckResult:
    """A clean ``check``'s text output (restic 0.14–0.17) → CheckResult."""
    kept = tuple(line.rstrip() for line in lines if line.strip())
    notes = tuple(line for line in kept if "not referenced in any index" in line
                  or "non-critical" in line or "additional files were found" in line)
    return CheckResult(kept, notes, read_data_subset)


def check_summary(lines: Iterable[str]) -> CheckSummary | None:
    """The last ``{"message_type": "summary", …}`` line of ``check --json``'s output (stdout
    and stderr in any order), or None when there is none (restic before 0.18, or a check cut
    short)."""
    found: CheckSummary | None = None
    for line in lines:
        data = json_object(line.strip())
        if data is None or data.get("message_type") != "summary" or "num_errors" not in data:
            continue
        found = CheckSummary(
            num_errors=_int(data, "num_errors"),
            broken_packs=tuple(str(p) for p in data.get("broken_packs") or ()),
            suggest_repair_index=bool(data.get("suggest_repair_index")),
            suggest_prune=bool(data.get("suggest_prune")))
    return found


def message_lines(line: str) -> list[str] | None:
    """The text lines of one of restic 0.18's JSON message lines that carry only a
    ``message`` (``check --json``'s errors, any command's ``exit_error``); ``[]`` for its
    summary line; None for any other line (prose, or another JSON shape)."""
    data = json_object(line.strip())
    if data is None:
        return None
    kind = data.get("message_type")
    if kind == "summary" and "num_errors" in data:
        return []
    if kind in ("error", "exit_error") and isinstance(data.get("message"), str) \
            and "item" not in data:
        return [text for text in data["message"].splitlines() if text.strip()]
    return None


def parse_check_json(lines: Iterable[str], read_data_subset: str | None) -> CheckResult:
    """A clean ``check --json``'s output (restic 0.18+) → CheckResult: the summary, its
    hints as notes, the text of any message as lines. Raises ValueError when no summary came
    (not restic 0.18's JSON)."""
    kept = [line.strip() for line in lines if line.strip()]
    summary = check_summary(kept)
    if summary is None:
        raise ValueError("check --json printed no summary")
    text: list[str] = []
    for line in kept:
        messages = message_lines(line)
        text.extend([line] if messages is None else messages)
    notes = ((PRUNE_NOTE,) if summary.suggest_prune else ()) + (
        (REPAIR_INDEX_NOTE,) if summary.suggest_repair_index else ())
    return CheckResult(tuple(text), notes, read_data_subset, summary)


# --- restore --------------------------------------------------------------------------------


_VERIFIED = re.compile(r"finished verifying (\d+) files")


@dataclass(frozen=True)
class RestoreResult:
    """A finished ``restore``: where to, how many files ``--verify`` checked (None when not
    verified), and restic's output lines."""

    snapshot: str
    target: Path
    verified_files: int | None
    lines: tuple[str, ...] = ()


def parse_restore(snapshot: str, target: Path, lines: Iterable[str]) -> RestoreResult:
    kept = tuple(line for line in lines if line.strip())
    found = [int(m.group(1)) for line in kept if (m := _VERIFIED.search(line))]
    return RestoreResult(snapshot, target, found[-1] if found else None, kept)


# --- locks ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockInfo:
    """One lock file (``cat lock ID``)."""

    id: str
    time: datetime
    exclusive: bool
    hostname: str
    username: str
    pid: int
    uid: int = 0
    gid: int = 0


def parse_lock(lock_id: str, text: str) -> LockInfo:
    """``cat lock ID``'s JSON (uid/gid left out when 0) → LockInfo."""
    data = first_json(text)
    return LockInfo(id=lock_id, time=parse_time(data["time"]),
                    exclusive=bool(data.get("exclusive")), hostname=str(data.get("hostname", "")),
                    username=str(data.get("username", "")), pid=int(data.get("pid", 0)),
                    uid=_int(data, "uid"), gid=_int(data, "gid"))


ProcessState = Literal["gone", "restic", "other", "unknown"]
Verdict = Literal["stale", "live", "unsafe"]


def lock_verdict(lock: LockInfo, *, now: datetime, this_host: str,
                 process: Callable[[int], ProcessState]) -> tuple[Verdict, str]:
    """Whether restic itself would call ``lock`` stale, and why.

    restic (internal/restic/lock.go): stale when older than 30 minutes, or made on this host
    by a process that is gone. restic 0.14 probes the process with SIGHUP (restic ignores it):
    if the PID now belongs to another program, restic would keep the lock *and* send that
    program SIGHUP; if the PID is not ours to signal (EPERM), restic would remove a lock whose
    holder may be alive. Both are "unsafe": then hopnhat runs no ``restic unlock`` at all.
    ``process(pid)``: "gone", "restic", "other" or "unknown".
    """
    age = (now - lock.time).total_seconds()
    if age > STALE_LOCK_AGE:
        return "stale", f"older than 30 minutes ({age / 60:.0f} min)"
    if lock.hostname != this_host:
        return "live", f"held on another host ({lock.hostname})"
    state = process(lock.pid)
    if state == "gone":
        return "stale", f"process {lock.pid} is gone"
    if state == "restic":
        return "live", f"process {lock.pid} is alive"
    if state == "other":
        return "unsafe", (f"PID {lock.pid} now belongs to another program; restic unlock "
                          "would send it SIGHUP")
    return "unsafe", f"process {lock.pid} cannot be probed (not ours to signal)"


@dataclass(frozen=True)
class StaleLockReport:
    """What :meth:`Restic.remove_stale_locks` did: stale locks removed; live locks kept (with
    the reason); locks restic's unlock would mishandle (``unsafe``, with the reason — then
    nothing is removed); stale locks still there (``pending``); whether ``restic unlock`` ran.
    """

    removed: tuple[LockInfo, ...] = ()
    kept: tuple[tuple[LockInfo, str], ...] = ()
    unsafe: tuple[tuple[LockInfo, str], ...] = ()
    pending: tuple[LockInfo, ...] = ()
    unlock_ran: bool = False
