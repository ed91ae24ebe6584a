"""The judgements of ``hopnhat verify``, as pure functions over what restic reported.

Each takes restic's answers (snapshots, sizes, locks, check's output) and the estate's
targets and returns a :class:`Check`: ``ok``, ``failed`` (the check ran and found something
wrong), ``error`` (it could not run: the repository is unreachable, locked…) or ``skipped``
(nothing to check: no second copy configured, no read-data asked for). No I/O here, so the
tests feed them data directly.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from orchestrator.adapters.restic_results import (
    LockInfo,
    ProcessState,
    Snapshot,
    is_dump,
    lock_verdict,
)
from orchestrator.human import duration, size
from orchestrator.verdicts import (
    ANOMALY,
    CHECKS,
    COPY,
    DELETIONS,
    ERROR,
    FAILED,
    FINAL,
    FRESHNESS,
    LOCKS,
    OK,
    READ_DATA,
    SKIPPED,
    STRUCTURE,
    VANISHED,
)

_SUBSET = re.compile(r"^(?:(?P<n>[1-9]\d*)/(?P<t>[1-9]\d*)|\d+(?:\.\d+)?%)$")


@dataclass(frozen=True)
class Check:
    """One check of one repository: its name (one of :data:`CHECKS`), status, a message for
    people (naming the host, snapshot or lock concerned) and details for machines."""

    name: str
    status: str
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Ok or skipped: nothing to wake anyone for."""
        return self.status in (OK, SKIPPED)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "message": self.message,
                "details": dict(self.details)}


@dataclass(frozen=True)
class HostState:
    """The latest snapshot of one host in a repository: when, how old, how big."""

    host: str
    expected: bool
    snapshots: int
    latest_id: str | None = None
    latest_time: datetime | None = None
    age_seconds: float | None = None
    bytes: int | None = None
    files: int | None = None
    #: the restic that made the latest snapshot, as the snapshot records it (``0.18.1``);
    #: None when it does not (made by restic 0.14 or 0.15)
    restic_version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "expected": self.expected, "snapshots": self.snapshots,
                "latest_id": self.latest_id,
                "latest_time": self.latest_time.isoformat() if self.latest_time else None,
                "age_seconds": self.age_seconds, "bytes": self.bytes, "files": self.files,
                "restic_version": self.restic_version}


def program_version(text: str | None) -> str | None:
    """A snapshot's ``program_version`` (``restic 0.18.1``) → ``0.18.1``; other text as it
    is; None stays None."""
    if not text:
        return None
    return text.removeprefix("restic ").strip() or None


def named(where: str, text: str) -> str:
    """``text`` naming the repository ``where`` (restic's errors already do)."""
    return text if where in text else f"{where}: {text}"


# --- the read-data subset -------------------------------------------------------------------


def parse_subset_option(text: str) -> str:
    """``--read-data-subset``: ``auto`` (the rotation), ``none`` (structure only), ``all``,
    ``n/t`` (1 <= n <= t) or ``x%`` (0 < x <= 100). Returns it normalised; raises ValueError
    naming what is accepted."""
    value = text.strip().lower()
    if value in ("auto", "none", "all"):
        return value
    found = _SUBSET.match(value)
    if found is None:
        raise ValueError(f"{text!r} is not a read-data subset: write auto, none, all, n/t "
                         "(e.g. 3/14) or x% (e.g. 10%)")
    if found["n"] is not None:
        if int(found["n"]) > int(found["t"]):
            raise ValueError(f"{text!r}: n must not exceed t in n/t")
    elif not 0 < float(value[:-1]) <= 100:
        raise ValueError(f"{text!r}: the percentage must be above 0 and at most 100")
    return value


def next_position(last: int | None, total: int) -> int:
    """The rotation's next subset (1-based) after ``last`` of ``total``: 1, 2, … total, 1, …
    so every pack is read once every ``total`` nights. A ``last`` beyond ``total`` (the
    tier's rotation was shortened) wraps like the rest."""
    if total < 1:
        raise ValueError("the rotation needs at least one subset")
    if last is None or last < 1:
        return 1
    return last % total + 1


def restic_subset(option: str, last: int | None, total: int) -> tuple[str | None, int | None]:
    """What ``check`` reads for ``option`` (see :func:`parse_subset_option`) tonight:
    restic's ``--read-data-subset`` value (None: structure only; ``"all"``: everything) and,
    for ``auto``, the rotation position that it is."""
    if option == "none":
        return None, None
    if option == "auto":
        position = next_position(last, total)
        return f"{position}/{total}", position
    return option, None


# --- restic check ---------------------------------------------------------------------------


def check_phases(lines: Iterable[str]) -> dict[str, str]:
    """Each line of ``check``'s output → the phase it came in: ``read_data`` from the line
    that starts reading packs (``read group #…``, ``read all data``, ``read …%``), else
    ``structure``."""
    phase = STRUCTURE
    phases: dict[str, str] = {}
    for line in lines:
        text = line.strip()
        if text.startswith("read ") and phase == STRUCTURE:
            phase = READ_DATA
        phases.setdefault(text, phase)
    return phases


def judge_check_run(where: str, subset: str | None, phases: Mapping[str, str], *,
                    notes: Sequence[str] = (), problems: Sequence[str] | None = None,
                    error: str | None = None) -> tuple[Check, Check]:
    """The structure and read-data checks from one ``restic check [--read-data-subset S]``.

    ``where`` names the system and repository; ``phases``: check's output lines → the phase
    each came in (:func:`check_phases`); ``problems``: restic's lines about damage when it
    said the repository contains errors (None when it did not); ``error``: why check could
    not run (locked, unreachable…).
    """
    what = "all data" if subset == "all" else f"read-data subset {subset}"
    if error is not None:
        not_run = Check(READ_DATA, ERROR if subset else SKIPPED,
                        named(where, f"{what} not read: {error}") if subset else "not asked for",
                        {"subset": subset})
        return Check(STRUCTURE, ERROR, named(where, error)), not_run
    if problems is None:
        structure = Check(STRUCTURE, OK, "no errors were found", {"notes": list(notes)})
        if subset is None:
            return structure, Check(READ_DATA, SKIPPED, "not asked for", {"subset": None})
        return structure, Check(READ_DATA, OK, f"{what}: no errors", {"subset": subset})
    found: dict[str, list[str]] = {STRUCTURE: [], READ_DATA: []}
    for line in problems:
        found[phases.get(line.strip(), STRUCTURE)].append(line.strip())
    if not found[STRUCTURE] and not found[READ_DATA]:
        found[STRUCTURE].append("restic reported errors without saying which")
    structure = Check(STRUCTURE, FAILED, f"{where}: the repository's structure has errors: "
                      f"{found[STRUCTURE][0]}", {"problems": found[STRUCTURE]}) \
        if found[STRUCTURE] else Check(STRUCTURE, OK, "no errors were found")
    if found[READ_DATA]:
        data = Check(READ_DATA, FAILED, f"{where}: {what} found damaged data "
                     f"({len(found[READ_DATA])} problem(s)): {found[READ_DATA][0]}",
                     {"subset": subset, "problems": found[READ_DATA]})
    elif subset is None:
        data = Check(READ_DATA, SKIPPED, "not asked for", {"subset": None})
    else:
        data = Check(READ_DATA, OK, f"{what}: no errors", {"subset": subset})
    return structure, data


# --- freshness ------------------------------------------------------------------------------


def _by_host(snapshots: Iterable[Snapshot]) -> dict[str, list[Snapshot]]:
    """Each host's files snapshots, oldest first. A database dump's snapshot is left out: it
    has its own size and one path, so beside the files it would read as a shrink; and a run
    whose dump fails makes no files snapshot, so the files' freshness is the dumps' too."""
    hosts: dict[str, list[Snapshot]] = {}
    for snapshot in sorted((s for s in snapshots if not is_dump(s)), key=lambda s: s.time):
        hosts.setdefault(snapshot.hostname, []).append(snapshot)
    return hosts


def host_states(snapshots: Sequence[Snapshot], expected_hosts: Sequence[str], now: datetime,
                sizes: Mapping[str, tuple[int, int]]) -> tuple[HostState, ...]:
    """Per host (the expected ones first, then any other that backs up here): its snapshot
    count and latest snapshot, that snapshot's age at ``now`` and its size
    (``sizes``: snapshot ID → (bytes, files), where known)."""
    hosts = _by_host(snapshots)
    states = []
    for host in [*expected_hosts, *sorted(set(hosts) - set(expected_hosts))]:
        series = hosts.get(host, [])
        if not series:
            states.append(HostState(host, True, 0))
            continue
        latest = series[-1]
        size = sizes.get(latest.id)
        states.append(HostState(
            host, host in expected_hosts, len(series), latest.id, latest.time,
            (now - latest.time).total_seconds(), size[0] if size else None,
            size[1] if size else None, program_version(latest.program_version)))
    return tuple(states)


def judge_freshness(where: str, states: Sequence[HostState], rpo: timedelta) -> Check:
    """Every expected host's latest snapshot must be at most ``rpo`` old (an estate with no
    expected host: every host that backs up here, and at least one)."""
    judged = [s for s in states if s.expected] or list(states)
    limit = rpo.total_seconds()
    details: dict[str, Any] = {"rpo_seconds": limit, "hosts": {
        s.host: s.age_seconds for s in judged}}
    if not judged:
        return Check(FRESHNESS, FAILED,
                     f"{where}: no snapshot at all (RPO {duration(limit, 'compact')})", details)
    missing = [s.host for s in judged if s.latest_time is None]
    stale = [s for s in judged if s.age_seconds is not None and s.age_seconds > limit]
    problems = [f"host {host}: no snapshot" for host in missing]
    problems += [f"host {s.host}: stale, latest snapshot {s.latest_id and s.latest_id[:8]} is "
                 f"{duration(s.age_seconds or 0, 'compact')} old" for s in stale]
    if problems:
        return Check(FRESHNESS, FAILED, f"{where}: " + "; ".join(problems)
                     + f" (RPO {duration(limit, 'compact')})", details)
    oldest = max(s.age_seconds or 0.0 for s in judged)
    return Check(FRESHNESS, OK, "latest snapshot of every host at most "
                 f"{duration(oldest, 'compact')} old (RPO {duration(limit, 'compact')})",
                 details)


# --- anomalies ------------------------------------------------------------------------------


def baseline_ids(snapshots: Sequence[Snapshot], host: str, history: int) -> list[str]:
    """IDs of ``host``'s latest snapshot and the ``history`` before it (their sizes are what
    :func:`judge_anomaly` needs), latest first."""
    series = _by_host(snapshots).get(host, [])
    return [s.id for s in reversed(series[-(history + 1):])]


def change_pct(value: float, median: float) -> float | None:
    """How far ``value`` is from ``median``, in % of the median (None for a median of 0)."""
    if median == 0:
        return None
    return (value - median) / median * 100.0


def _normal(path: str) -> str:
    return path.rstrip("/") or "/"


def _size_text(value: float, unit: str) -> str:
    """A size in MiB whatever it is (set beside its median, one unit reads best), or a count
    of files."""
    return size(value, "MiB") if unit == "bytes" else f"{value:.0f} files"


def judge_anomaly(where: str, snapshots: Sequence[Snapshot], expected_hosts: Sequence[str],
                  expected_paths: Sequence[str], sizes: Mapping[str, tuple[int, int]], *,
                  history: int = 7, min_history: int = 3, shrink_pct: float = 50.0,
                  growth_pct: float = 200.0) -> Check:
    """Per expected host, the latest snapshot against the median of the ``history`` before
    it (``sizes``: snapshot ID → (total bytes, file count)): failed when either dropped by
    more than ``shrink_pct`` % or grew by more than ``growth_pct`` %; failed too when an
    expected host has no snapshot or its latest lacks an expected path. Fewer than
    ``min_history`` earlier snapshots with a known size: not judged (said in the message)."""
    hosts = _by_host(snapshots)
    problems: list[str] = []
    notes: list[str] = []
    details: dict[str, Any] = {}
    for host in expected_hosts or sorted(hosts):
        series = hosts.get(host, [])
        if not series:
            problems.append(f"host {host}: no snapshot")
            continue
        latest = series[-1]
        have = {_normal(p) for p in latest.paths}
        lacking = [p for p in expected_paths if _normal(p) not in have]
        if lacking:
            problems.append(f"host {host}: latest snapshot {latest.short_id} lacks "
                            f"{', '.join(lacking)}")
        earlier = [sizes[s.id] for s in series[-(history + 1):-1] if s.id in sizes]
        now_size = sizes.get(latest.id)
        if now_size is None or len(earlier) < min_history:
            notes.append(f"host {host}: {len(earlier)} earlier snapshot(s) of {min_history} "
                         "needed to judge size")
            continue
        host_details: dict[str, Any] = {"snapshot": latest.short_id, "baseline": len(earlier)}
        for index, unit in ((0, "bytes"), (1, "files")):
            median = float(statistics.median(v[index] for v in earlier))
            change = change_pct(float(now_size[index]), median)
            host_details[unit] = {"latest": now_size[index], "median": median,
                                  "change_pct": change}
            if change is None:
                continue
            if change < -shrink_pct or change > growth_pct:
                way = "dropped" if change < 0 else "grew"
                limit = shrink_pct if change < 0 else growth_pct
                problems.append(
                    f"host {host}: {unit} {way} {abs(change):.0f}% (limit {limit:g}%): latest "
                    f"snapshot {latest.short_id} has {_size_text(now_size[index], unit)}, the "
                    f"median of the {len(earlier)} before it {_size_text(median, unit)}")
        details[host] = host_details
    details["notes"] = notes
    if problems:
        return Check(ANOMALY, FAILED, f"{where}: " + "; ".join(problems), details)
    text = "sizes and file counts within limits" if not notes else "; ".join(notes)
    return Check(ANOMALY, OK, text, details)


# --- the second copy ------------------------------------------------------------------------


def missing_from_copy(source: Sequence[Snapshot], copy: Sequence[Snapshot]) -> list[Snapshot]:
    """Source snapshots that the copy lacks. A copy made by ``restic copy`` has its own ID and
    names the source's in ``original``; a copy of the files keeps the ID; either counts, and
    so does a copy snapshot of the same time, host and paths."""
    present = {s.id for s in copy} | {s.original for s in copy if s.original}
    similar = {(s.time, s.hostname, tuple(sorted(s.paths))) for s in copy}
    return [s for s in sorted(source, key=lambda s: s.time)
            if s.id not in present and (s.original is None or s.original not in present)
            and (s.time, s.hostname, tuple(sorted(s.paths))) not in similar]


def judge_copy(where: str, copy_where: str, source: Sequence[Snapshot],
               copy: Sequence[Snapshot], now: datetime, grace: timedelta, *,
               what: str = "the second copy") -> Check:
    """The second copy (``what``: or the vault) must hold every source snapshot older than
    ``grace`` (younger ones may still be on their way); its lag is how long the oldest
    missing snapshot has existed (0 when none is missing)."""
    missing = missing_from_copy(source, copy)
    lag = (now - missing[0].time).total_seconds() if missing else 0.0
    overdue = [s for s in missing if (now - s.time) > grace]
    details = {"copy": copy_where, "missing": [s.short_id for s in missing],
               "overdue": [s.short_id for s in overdue], "lag_seconds": max(lag, 0.0),
               "copy_snapshots": len(copy)}
    if overdue:
        shown = ", ".join(f"{s.short_id} ({s.hostname}, "
                          f"{duration((now - s.time).total_seconds(), 'compact')} old)"
                          for s in overdue[:5])
        more = f" and {len(overdue) - 5} more" if len(overdue) > 5 else ""
        return Check(COPY, FAILED, f"{where}: {what} {copy_where} lacks "
                     f"{len(overdue)} snapshot(s): {shown}{more}; lag {duration(lag, 'compact')}",
                     details)
    if missing:
        return Check(COPY, OK, f"{len(missing)} snapshot(s) younger than "
                     f"{duration(grace.total_seconds(), 'compact')} not copied yet", details)
    return Check(COPY, OK, f"every snapshot is in {copy_where}", details)


# --- locks ----------------------------------------------------------------------------------


def judge_locks(where: str, locks: Sequence[LockInfo], now: datetime, this_host: str,
                process: Callable[[int], ProcessState], own_pids: Iterable[int] = ()) -> Check:
    """Locks in the repository, other than verify's own (``own_pids`` on ``this_host``):
    live ones are reported (holder, age); stale ones (restic's rule: older than 30 minutes,
    or a process gone on this host) and ones whose holder cannot be told alive fail the
    check. Verify never removes a lock."""
    own = set(own_pids)
    others = [lock for lock in locks if not (lock.hostname == this_host and lock.pid in own)]
    described: list[dict[str, Any]] = []
    bad = []
    for lock in sorted(others, key=lambda item: item.time):
        verdict, why = lock_verdict(lock, now=now, this_host=this_host, process=process)
        age = (now - lock.time).total_seconds()
        entry = {"id": lock.id[:8], "exclusive": lock.exclusive, "host": lock.hostname,
                 "pid": lock.pid, "user": lock.username, "since": lock.time.isoformat(),
                 "age_seconds": age, "verdict": verdict, "why": why}
        described.append(entry)
        if verdict != "live":
            kind = "exclusive " if lock.exclusive else ""
            bad.append(f"{verdict} {kind}lock {lock.id[:8]} by PID {lock.pid} on "
                       f"{lock.hostname} ({lock.username}), {duration(age, 'compact')} old: {why}")
    details = {"locks": described, "stale": len(bad)}
    if bad:
        return Check(LOCKS, FAILED, f"{where}: " + "; ".join(bad) + " (verify removes no "
                     "lock; `restic unlock` removes stale ones)", details)
    if described:
        return Check(LOCKS, OK, "; ".join(
            f"live lock by PID {d['pid']} on {d['host']}, "
            f"{duration(float(d['age_seconds']), 'compact')} old" for d in described), details)
    return Check(LOCKS, OK, "no lock", details)


# --- verdicts -------------------------------------------------------------------------------


def verdict(checks: Iterable[Check]) -> str:
    """A repository's verdict: ``error`` if a check could not run, else ``failed`` if one
    failed, else ``ok``."""
    statuses = {check.status for check in checks}
    if ERROR in statuses:
        return ERROR
    return FAILED if FAILED in statuses else OK


def judge_final(where: str, snapshots: Sequence[Snapshot], finals: Mapping[str, str]) -> Check:
    """A retirement's final snapshots (host → ID) must all still be in the repository,
    tagged ``final``: the records kept for years are there."""
    if not finals:
        return Check(FINAL, SKIPPED, "not retired")
    present = {s.id: s for s in snapshots}
    problems = []
    for host, ident in sorted(finals.items()):
        found = present.get(ident)
        if found is None:
            problems.append(f"host {host}: the final snapshot {ident[:8]} of its retirement "
                            "is missing")
        elif "final" not in found.tags:
            problems.append(f"host {host}: snapshot {ident[:8]} lost its final tag")
    if problems:
        return Check(FINAL, FAILED, f"{where}: " + "; ".join(problems), {"finals": dict(finals)})
    return Check(FINAL, OK, "the final snapshot of every retired host is kept: "
                 + ", ".join(f"{h} {i[:8]}" for h, i in sorted(finals.items())),
                 {"finals": dict(finals)})


def retired_checks(retired_at: str) -> tuple[Check, Check]:
    """Freshness and anomalies of a system retired whole: no backup is expected any more."""
    why = f"retired on {retired_at}: no new snapshot is expected"
    return Check(FRESHNESS, SKIPPED, why), Check(ANOMALY, SKIPPED, why)


def error_checks(where: str, error: str, *, copy: bool, subset: str | None,
                 retired: bool = False, vanished_skipped: str | None = None,
                 deletions_skipped: str | None = None) -> tuple[Check, ...]:
    """Every check of a repository that could not be read at all (``error`` says why);
    ``vanished_skipped``: why ``vanished`` is not judged for this repository, if it is not
    (:func:`verify_attacks.vanished_skip_reason`)."""
    checks = []
    for name in CHECKS:
        if name == COPY and not copy:
            checks.append(Check(name, SKIPPED, "no second copy configured"))
        elif name == FINAL and not retired:
            checks.append(Check(name, SKIPPED, "not retired"))
        elif name == VANISHED and vanished_skipped is not None:
            checks.append(Check(name, SKIPPED, vanished_skipped))
        elif name == DELETIONS and deletions_skipped is not None:
            checks.append(Check(name, SKIPPED, deletions_skipped))
        elif name == READ_DATA and subset is None:
            checks.append(Check(name, SKIPPED, "not asked for"))
        else:
            checks.append(Check(name, ERROR, named(where, error)))
    return tuple(checks)
