"""The judgements of ``hopnhat verify`` that notice an attack on a repository — by a
compromised backup client, or anyone else holding its credentials — as pure functions:

- ``future``: a snapshot dated after verify's clock plus the estate's tolerated clock skew
  (planted to push real snapshots out of ``keep-last``-style retention, or to make a stale
  host look fresh);
- ``foreign``: a snapshot whose host is not one of the system's (written under another
  host's name, or by an intruder's own);
- ``vanished``: a snapshot the previous verification saw that is gone now, and that
  hopnhat's control side did not remove (:mod:`orchestrator.actions.snapshot_log`);
- ``deletions``: files other than locks that the system's own rest-server deleted, by its
  own metrics — none can be while it is append-only.

No I/O here: verify reads the snapshots and the ledger, these judge them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.actions.snapshot_log import Sighting, is_removed, short_key
from orchestrator.actions.verify.checks import Check
from orchestrator.adapters.restic_results import Snapshot
from orchestrator.human import duration
from orchestrator.verdicts import DELETIONS, FAILED, FOREIGN, FUTURE, OK, SKIPPED, VANISHED

#: how many snapshots or hosts a message names before it says "and N more"
SHOWN = 5


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _more(items: Sequence[str]) -> str:
    text = ", ".join(items[:SHOWN])
    return text + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


# --- future ---------------------------------------------------------------------------------


def judge_future(where: str, snapshots: Sequence[Snapshot], now: datetime,
                 clock_skew: timedelta) -> Check:
    """Snapshots dated later than ``now`` + ``clock_skew`` (a client's clock may run that
    far ahead of the control host's; exactly that far is still fine) fail the check, each
    named by host, short ID and time."""
    limit = now + clock_skew
    ahead = sorted((s for s in snapshots if s.time > limit), key=lambda s: (s.time, s.id))
    details: dict[str, Any] = {
        "clock_skew_seconds": clock_skew.total_seconds(), "count": len(ahead),
        "snapshots": [{"id": s.short_id, "host": s.hostname, "time": s.time.isoformat()}
                      for s in ahead]}
    skew = duration(clock_skew.total_seconds(), 'compact')
    if ahead:
        named = [f"host {s.hostname} snapshot {s.short_id} at {_stamp(s.time)} "
                 f"({duration((s.time - now).total_seconds(), 'compact')} ahead)" for s in ahead]
        return Check(FUTURE, FAILED, f"{where}: {len(ahead)} snapshot(s) dated in the future "
                     f"(beyond a clock skew of {skew}): {_more(named)}", details)
    return Check(FUTURE, OK, f"no snapshot dated in the future (clock skew {skew} allowed)",
                 details)


# --- foreign --------------------------------------------------------------------------------


def judge_foreign(where: str, snapshots: Sequence[Snapshot],
                  system_hosts: Collection[str]) -> Check:
    """Snapshots whose host is not one of ``system_hosts`` (every VM the declared estate
    gives the system, retired and migrated ones included) fail the check, naming each such
    host and how many snapshots it has. No host known: skipped (nothing to judge by)."""
    if not system_hosts:
        return Check(FOREIGN, SKIPPED, "the estate names no host of this system",
                     {"count": 0, "hosts": {}})
    counts: dict[str, int] = {}
    for snapshot in snapshots:
        if snapshot.hostname not in system_hosts:
            counts[snapshot.hostname] = counts.get(snapshot.hostname, 0) + 1
    foreign = dict(sorted(counts.items()))
    details: dict[str, Any] = {"count": sum(foreign.values()), "hosts": foreign,
                               "system_hosts": sorted(system_hosts)}
    if foreign:
        named = [f"{host} ({count} snapshot{'s' if count != 1 else ''})"
                 for host, count in foreign.items()]
        return Check(FOREIGN, FAILED, f"{where}: {details['count']} snapshot(s) of host(s) "
                     f"that are not the system's: {_more(named)}", details)
    return Check(FOREIGN, OK, f"every snapshot is of one of the system's {len(system_hosts)} "
                 "host(s)", details)


# --- vanished -------------------------------------------------------------------------------


def vanished_skip_reason(protocol: str) -> str | None:
    """Why ``vanished`` is not judged for a repository reached over ``protocol`` (None: it
    is). On an SFTP host each client runs ``restic forget`` by itself, so snapshots leave
    without the control side knowing; on a REST host clients can only add."""
    if protocol == "rest":
        return None
    return (f"{protocol} repository: its clients prune it themselves (restic forget), so a "
            "snapshot gone is not a sign of attack; on a rest repository host (append-only) "
            "only the control side removes snapshots and this check is meaningful")


def deletions_skip_reason(protocol: str) -> str | None:
    """Why ``deletions`` is not judged for a repository reached over ``protocol``."""
    if protocol == "rest":
        return None
    return f"{protocol} repository: no rest-server counts what its clients delete"


def judge_deletions(where: str, server: str, deleted: Mapping[str, int]) -> Check:
    """``deleted`` (file type → files the system's own append-only server deleted since it
    started): locks go as restic removes its own; any other file means the server was not
    append-only when it went."""
    others = {kind: count for kind, count in sorted(deleted.items())
              if kind != "locks" and count > 0}
    details: dict[str, Any] = {"server": server, "deleted": dict(sorted(deleted.items())),
                               "count": sum(others.values())}
    if others:
        listed = ", ".join(f"{count} {kind}" for kind, count in others.items())
        return Check(DELETIONS, FAILED, f"{where}: the system's own server {server} deleted "
                     f"{listed} file(s) since it started: it cannot while append-only — "
                     "someone changed it", details)
    return Check(DELETIONS, OK, f"{server} deleted no file but "
                 f"{deleted.get('locks', 0)} lock(s) since it started", details)


def judge_vanished(where: str, previous: Mapping[str, Sighting] | None, previous_run: str,
                   snapshots: Sequence[Snapshot], removed: Collection[str],
                   protocol: str) -> Check:
    """Snapshots the previous verification saw (``previous``: ID prefix → host and time;
    None when there was none) that are not among ``snapshots`` now and that the control
    side did not record removing (``removed``: ID prefixes) fail the check, named with their
    host and time. The first verification is the baseline (ok, said so); a repository whose
    clients prune it themselves (``protocol`` sftp) is skipped."""
    skip = vanished_skip_reason(protocol)
    if skip is not None:
        return Check(VANISHED, SKIPPED, skip, {"protocol": protocol})
    if previous is None:
        return Check(VANISHED, OK, f"baseline: {len(snapshots)} snapshot(s) seen for the "
                     "first time; the next verification compares with them",
                     {"count": 0, "baseline": True, "seen": len(snapshots)})
    present = {short_key(s.id) for s in snapshots}
    exact = set(removed)
    gone = [ident for ident in previous if ident not in present]
    unexplained = sorted((i for i in gone if i not in exact and not is_removed(i, removed)),
                         key=lambda i: (previous[i].time, i))
    details: dict[str, Any] = {
        "count": len(unexplained), "baseline": False, "previous_run": previous_run,
        "seen_before": len(previous), "removed_by_hopnhat": len(gone) - len(unexplained),
        "snapshots": [{"id": i[:8], "host": previous[i].host,
                       "time": previous[i].time.isoformat()} for i in unexplained]}
    if unexplained:
        named = [f"{i[:8]} (host {previous[i].host}, {_stamp(previous[i].time)})"
                 for i in unexplained]
        return Check(VANISHED, FAILED, f"{where}: {len(unexplained)} snapshot(s) seen by the "
                     f"previous verification ({previous_run or 'unknown run'}) are gone and "
                     f"hopnhat did not remove them: {_more(named)}", details)
    text = f"none of the {len(previous)} snapshot(s) seen before is gone"
    if gone:
        text = (f"{len(gone)} snapshot(s) seen before are gone, every one removed by hopnhat "
                "(recorded in the ledger)")
    return Check(VANISHED, OK, text, details)
