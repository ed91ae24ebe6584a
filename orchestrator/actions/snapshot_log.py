"""What the control side knows of each repository's snapshots, kept in the ledger, so that
``verify`` can tell a snapshot hopnhat removed from one that vanished behind its back.

Two records per repository (``system@repository-host``):

- **seen** — after each verification that could list the repository's snapshots, the
  snapshots it saw (:func:`record_seen`, :func:`last_seen`): one ledger fact, replaced each
  time, the IDs cut to their first :data:`ID_CHARS` hex digits (64 bits: no two snapshots
  of one repository share them) with each snapshot's host and time, hosts written once;
- **removed** — every snapshot the control side itself removed or replaced
  (:func:`record_removed`, :func:`removed_since`, :func:`removed_ids`): one fact per
  snapshot under the repository's own scope, with why and the run that did it. Callers:
  the maintenance pass (``forget`` by the system's retention) and ``retire``
  (``restic tag`` writes each snapshot again under a new ID and deletes the old one).

Record a removal as soon as its IDs are known — before the ``forget`` or ``tag`` that
removes them is best: a verification running meanwhile must not find them gone and
unexplained. A removal recorded whose command then failed excuses nothing that is still
there: ``vanished`` only looks at snapshots that are gone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator.adapters.restic_results import Snapshot
from orchestrator.ledger import Ledger

SEEN = "verify.snapshots"  # ledger facts: system@repository-host → the snapshots last seen
REMOVED = "snapshots.removed"  # scope prefix: snapshots.removed:system@host → ID → removal
#: hex digits of a snapshot ID kept (restic's short IDs are 8: too few to keep for years)
ID_CHARS = 16
#: the shortest ID prefix a removal may be recorded by (restic's short ID)
MIN_ID_CHARS = 8


def repository_key(system: str, repository: str) -> str:
    """``system@repository-host``: how the ledger names a system's repository (as verify's
    ``Target.key``)."""
    return f"{system}@{repository}"


def short_key(snapshot_id: str) -> str:
    """The part of a snapshot ID that the records keep."""
    return snapshot_id[:ID_CHARS].lower()


@dataclass(frozen=True)
class Sighting:
    """A snapshot as a verification saw it."""

    host: str
    time: datetime


@dataclass(frozen=True)
class Seen:
    """The snapshots one verification saw in a repository: ID (:func:`short_key`) → host and
    time; ``at`` when (Unix time), ``run_id`` the verify run."""

    at: float
    run_id: str
    snapshots: Mapping[str, Sighting]


@dataclass(frozen=True)
class Removal:
    """A snapshot the control side removed or replaced: when (Unix time), why, by which run."""

    snapshot: str
    at: float
    why: str
    run_id: str


# --- seen by verify -------------------------------------------------------------------------


def seen_value(snapshots: Sequence[Snapshot], run_id: str, at: float) -> dict[str, Any]:
    """The ledger's compact form of ``snapshots``: hosts once, then per snapshot its ID
    (:func:`short_key`), the index of its host and its time in whole Unix seconds."""
    hosts = sorted({s.hostname for s in snapshots})
    index = {host: i for i, host in enumerate(hosts)}
    return {"at": round(at, 3), "run_id": run_id, "hosts": hosts,
            "snapshots": [[short_key(s.id), index[s.hostname], int(s.time.timestamp())]
                          for s in sorted(snapshots, key=lambda s: (s.time, s.id))]}


def parse_seen(value: Any) -> Seen | None:
    """:func:`seen_value`'s form back (None for nothing or a value it did not write)."""
    if not isinstance(value, dict) or not isinstance(value.get("snapshots"), list):
        return None
    hosts = [str(h) for h in value.get("hosts", [])]
    seen: dict[str, Sighting] = {}
    for entry in value["snapshots"]:
        ident, host, stamp = entry
        seen[str(ident)] = Sighting(hosts[int(host)] if 0 <= int(host) < len(hosts) else "?",
                                    datetime.fromtimestamp(int(stamp), UTC))
    return Seen(float(value.get("at", 0.0)), str(value.get("run_id", "")), seen)


def record_seen(ledger: Ledger, system: str, repository: str,
                snapshots: Sequence[Snapshot], run_id: str, at: float | None = None) -> None:
    """Keep ``snapshots`` as those the verification ``run_id`` saw in ``system``'s repository
    on ``repository`` (the host's name), replacing what the one before saw."""
    ledger.set_fact(SEEN, repository_key(system, repository),
                    seen_value(snapshots, run_id, time.time() if at is None else at))


def last_seen(ledger: Ledger, system: str, repository: str) -> Seen | None:
    """What the last verification of the repository that could list it saw (None: none
    has yet)."""
    return parse_seen(ledger.fact(SEEN, repository_key(system, repository)))


# --- removed by the control side ------------------------------------------------------------


def _scope(system: str, repository: str) -> str:
    return f"{REMOVED}:{repository_key(system, repository)}"


def record_removed(ledger: Ledger, system: str, repository: str, ids: Iterable[str],
                   why: str, run_id: str) -> None:
    """Record that hopnhat's control side removed (or replaced) the snapshots ``ids`` of
    ``system``'s repository on repository host ``repository``: ``why`` in the operator's
    words (``maintain: retention keep-within 30d``, ``retire: tagged archived``) and the
    ledger run that did it. Whole IDs are best; a prefix of at least 8 hex digits (restic's
    short ID) is accepted. Raises ValueError for a shorter one (it would excuse too much)."""
    wanted = [i.strip().lower() for i in ids]
    short = [i for i in wanted if len(i) < MIN_ID_CHARS]
    if short:
        raise ValueError(f"snapshot IDs need at least {MIN_ID_CHARS} hex digits: "
                         + ", ".join(repr(i) for i in short))
    at = round(time.time(), 3)
    for ident in dict.fromkeys(wanted):
        ledger.set_fact(_scope(system, repository), short_key(ident),
                        {"at": at, "why": why, "run_id": run_id})


def removed_since(ledger: Ledger, system: str, repository: str,
                  since: float = 0.0) -> dict[str, Removal]:
    """The snapshots of the repository the control side recorded removing at or after
    ``since`` (Unix time; 0: ever): ID as recorded (:func:`short_key`) → the removal."""
    found = {}
    for ident, value in ledger.facts_of(_scope(system, repository)).items():
        if isinstance(value, dict) and float(value.get("at", 0.0)) >= since:
            found[ident] = Removal(ident, float(value["at"]), str(value.get("why", "")),
                                   str(value.get("run_id", "")))
    return found


def removed_ids(ledger: Ledger, system: str, repository: str) -> frozenset[str]:
    """The IDs (:func:`short_key`) of every snapshot of the repository the control side
    recorded removing."""
    return frozenset(removed_since(ledger, system, repository))


def is_removed(snapshot: str, removed: Iterable[str]) -> bool:
    """Whether ``snapshot`` (an ID or its :func:`short_key`) is among ``removed``, whose
    entries may be shorter prefixes (at least 8 hex digits)."""
    key = short_key(snapshot)
    return any(key.startswith(r) or r.startswith(key) for r in removed)
