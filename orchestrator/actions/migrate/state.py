"""Where each migration stands, read from the ledger (its runs of kind ``migrate`` are the
migration's whole history; nothing else keeps state):

- ``planned``: declared in the estate, never copied;
- ``copied``: a ``run`` passed (the target holds the snapshot it restored);
- ``in sync``: a ``sync`` passed since (as of its snapshot);
- ``cut over``: a ``cutover`` passed; the source is in its parallel run until a date.

A failed or stopped run changes nothing of that: the last passed one stands.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator.ledger import Ledger, Run

KIND = "migrate"
PLANNED, COPIED, IN_SYNC, CUT_OVER = "planned", "copied", "in sync", "cut over"


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class MigrationState:
    system: str
    name: str
    to: str | None = None
    last_copy: str | None = None        # run id of the last passed run, sync or cutover
    last_copy_at: str | None = None
    last_manifest: str | None = None    # its manifest file
    last_manifest_ok: bool | None = None
    last_run: str | None = None         # the last run of any verdict
    last_run_verdict: str | None = None
    last_run_step: str | None = None
    cut_over_at: str | None = None
    parallel_until: str | None = None
    targets: tuple[str, ...] = ()
    snapshots: dict[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "state": self.name, "to": self.to,
                "last_copy": self.last_copy, "last_copy_at": self.last_copy_at,
                "last_manifest_ok": self.last_manifest_ok, "last_run": self.last_run,
                "last_run_step": self.last_run_step, "last_run_verdict": self.last_run_verdict,
                "cut_over_at": self.cut_over_at, "parallel_until": self.parallel_until,
                "targets": list(self.targets), "snapshots": self.snapshots or {}}


def runs_of(ledger: Ledger, estate: str, code: str) -> list[Run]:
    """The system's migration runs, newest first."""
    return [r for r in ledger.runs(KIND, limit=100_000)
            if r.estate == estate and r.params.get("system") == code]


def state_of(ledger: Ledger, estate: str, code: str) -> MigrationState:
    runs = [r for r in runs_of(ledger, estate, code) if r.summary is not None]
    if not runs:
        return MigrationState(code, PLANNED)
    last = runs[0]
    good = [r for r in runs if r.status == "passed"]
    if not good:
        return MigrationState(code, PLANNED, to=last.params.get("to"), last_run=last.id,
                              last_run_verdict=last.status,
                              last_run_step=last.params.get("step"))
    copy = good[0]
    summary = copy.summary or {}
    step = copy.params.get("step")
    name = CUT_OVER if step == "cutover" else IN_SYNC if step == "sync" else COPIED
    evidence = summary.get("evidence")
    manifest = None if not evidence else evidence.rsplit("/", 1)[0] + "/manifest.jsonl.gz"
    return MigrationState(
        code, name, to=copy.params.get("to"), last_copy=copy.id,
        last_copy_at=_iso(copy.finished), last_manifest=manifest,
        last_manifest_ok=summary.get("manifest_ok"), last_run=last.id,
        last_run_verdict=last.status, last_run_step=last.params.get("step"),
        cut_over_at=_iso(copy.finished) if name == CUT_OVER else None,
        parallel_until=_iso(summary.get("parallel_until")) if name == CUT_OVER else None,
        targets=tuple(summary.get("targets", ())), snapshots=summary.get("snapshots"))
