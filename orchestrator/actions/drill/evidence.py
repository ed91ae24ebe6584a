"""A drill's evidence: one JSON document an auditor can check, and an HTML report of it.

Under ``<state>/evidence/<drill id>/``:

- ``evidence.json`` — the drill as data (system, tier, targets and achieved RPO/RTO, steps
  and timings, checks, probe outputs, snapshot, restic version, operator…), written in
  canonical form (UTF-8, keys sorted, 2-space indent, final newline);
- ``evidence.json.sha256`` — its SHA-256 in ``sha256sum`` form (``sha256sum -c`` checks
  it); the same digest is in the ledger and printed in the report;
- ``report.html`` — self-contained (inline CSS and SVG: the timeline of the steps against
  the RTO target, and achieved RPO/RTO over the system's drills), labels in Vietnamese or
  English (``--lang vi|en``), rendered by :mod:`orchestrator.reports.drill.html`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.actions.drill.plan import step_dict
from orchestrator.actions.report_files import (
    canonical,
    evidence_folder,
    write_evidence_files,
    write_report_file,
)
from orchestrator.errors import EXIT_BAD_INPUT, HopnhatError
from orchestrator.ledger import Ledger
from orchestrator.reports.drill.html import PastDrill, drill_report
from orchestrator.settings import Paths

if TYPE_CHECKING:
    from orchestrator.actions.drill.result import DrillResult

KIND = "hopnhat-drill-evidence"
VERSION = 1


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def digest(data: Any) -> str:
    return hashlib.sha256(canonical(data)).hexdigest()


def evidence_dir(paths: Paths, run_id: str) -> Path:
    return paths.state / "evidence" / run_id


def build(paths: Paths, result: DrillResult) -> dict[str, Any]:
    """The evidence document of a drill (pure but for reading the estate)."""
    plan = result.plan
    system = paths.estate.systems[result.system]
    tier = paths.estate.tier(system.tier)
    targets = {"rpo_seconds": tier.rpo.total_seconds(), "rto_seconds": tier.rto.total_seconds()}
    rpo, rto = result.rpo_seconds, result.rto_seconds
    return {
        "kind": KIND, "version": VERSION, "drill_id": result.drill_id,
        "estate": result.estate, "operator": result.operator,
        "system": {"code": result.system, "name": system.name, "tier": system.tier},
        "started_at": iso(result.started_at), "finished_at": iso(result.finished_at),
        "seconds": round(result.finished_at - result.started_at, 3),
        "verdict": result.verdict, "reasons": list(result.reasons),
        "failed_step": result.failed_step or None,
        "targets": targets,
        "achieved": {"rpo_seconds": None if rpo is None else round(rpo, 3),
                     "rto_seconds": None if rto is None else round(rto, 3)},
        "within_targets": {
            "rpo": None if rpo is None else rpo <= targets["rpo_seconds"],
            "rto": None if rto is None else rto <= targets["rto_seconds"]},
        "site": plan.site if plan else None, "network": plan.network if plan else None,
        "repository_host": plan.repository_host if plan else None,
        "paths": list(plan.paths) if plan else [],
        "snapshots": [{"vm": s.source.name, "id": s.snapshot.id,
                       "short_id": s.snapshot.short_id, "time": s.snapshot.time.isoformat(),
                       "hostname": s.snapshot.hostname, "paths": list(s.snapshot.paths),
                       "tags": list(s.snapshot.tags)} for s in plan.scratch] if plan else [],
        "restic_version": result.restic_version or None,
        "scratch_vms": [s.as_dict() for s in plan.scratch] if plan else [],
        "steps": [s.as_dict() for s in result.steps],
        "checks": [c.as_dict() for c in result.checks],
        "recovery": [step_dict(s) for s in plan.recovery] if plan else [],
        "databases": [d.as_dict() for d in result.databases],
        "probes": [p.as_dict() for p in result.probes],
        "not_run": [n.as_dict() for n in result.not_run],
        "probes_not_run": list(result.probes_not_run),
        "kept": result.kept,
    }


def write_evidence(paths: Paths, result: DrillResult, ledger: Ledger,
                   lang: str = "en") -> None:
    """Write evidence.json, its .sha256 and report.html; set ``result.sha256``, ``evidence``
    and ``html``."""
    doc = build(paths, result)
    folder = evidence_folder(evidence_dir(paths, result.drill_id))
    result.sha256, evidence = write_evidence_files(folder, doc)
    result.evidence = str(evidence)
    result.html = str(render_report(paths, result.drill_id, ledger, lang))


def load_evidence(paths: Paths, run_id: str) -> tuple[dict[str, Any], str]:
    """A stored evidence document and its SHA-256, checked against the ``.sha256`` file.
    Raises HopnhatError (exit 2) when there is none, or when it does not match."""
    folder = evidence_dir(paths, run_id)
    path = folder / "evidence.json"
    if not path.is_file():
        raise HopnhatError(f"no evidence for {run_id!r} under {folder.parent}",
                           exit_code=EXIT_BAD_INPUT)
    data = path.read_bytes()
    found = hashlib.sha256(data).hexdigest()
    stored = (folder / "evidence.json.sha256").read_text().split()[0]
    if found != stored:
        raise HopnhatError(f"{path}: SHA-256 {found} does not match the recorded {stored}: "
                           "the evidence was changed")
    return json.loads(data), found


def _history(ledger: Ledger, doc: dict[str, Any]) -> list[PastDrill]:
    """The system's drills before this one (from the ledger) and this one (from its
    evidence), oldest first: the last 20."""
    this = doc["drill_id"]
    runs = [r for r in ledger.runs("drill", limit=100_000)
            if r.params.get("system") == doc["system"]["code"] and r.summary is not None
            and r.id != this and (iso(r.started) or "") < doc["started_at"]]
    drills = []
    for run in sorted(runs, key=lambda r: r.started)[-19:]:
        s = run.summary or {}
        drills.append(PastDrill(run.started, s.get("rpo_seconds"), s.get("rto_seconds"),
                                s.get("verdict") == "passed"))
    started = datetime.fromisoformat(doc["started_at"].replace("Z", "+00:00")).timestamp()
    drills.append(PastDrill(started, doc["achieved"]["rpo_seconds"],
                            doc["achieved"]["rto_seconds"], doc["verdict"] == "passed"))
    return drills


def render_report(paths: Paths, run_id: str, ledger: Ledger, lang: str = "en") -> Path:
    """(Re-)write ``report.html`` of drill ``run_id`` from its stored, checked evidence, with
    the system's drill history from the ledger. Out: the report's path."""
    doc, sha = load_evidence(paths, run_id)
    out = evidence_dir(paths, run_id) / "report.html"
    write_report_file(out, drill_report(doc, sha, lang, _history(ledger, doc),
                                        paths.estate.settings.timezone))
    return out
