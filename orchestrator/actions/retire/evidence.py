"""A retirement's record ("biên bản đóng hệ thống và lưu trữ dữ liệu"), under
``<state>/evidence/<run id>/``, written before any VM is destroyed:

- ``evidence.json`` — canonical JSON (as a migration's), times in UTC; its SHA-256 in
  ``evidence.json.sha256`` and in the ledger;
- ``manifest.jsonl.gz`` — every entry of each final snapshot with its bytes' SHA-256;
- ``report.html`` — self-contained, Vietnamese or English, local times with their offset
  (rendered by :mod:`orchestrator.reports.retire`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.actions.drill.evidence import evidence_dir, iso
from orchestrator.actions.migrate.evidence import MANIFEST
from orchestrator.actions.report_files import (
    evidence_folder,
    write_evidence_files,
    write_report_file,
)
from orchestrator.ledger import Ledger
from orchestrator.reports.retire import retirement_report
from orchestrator.settings import Paths

if TYPE_CHECKING:
    from orchestrator.actions.retire.result import RetireResult

KIND = "hopnhat-retirement-evidence"
VERSION = 1

def build(paths: Paths, result: RetireResult) -> dict[str, Any]:
    """The evidence document of a retirement, before its VMs are destroyed."""
    plan = result.plan
    return {
        "kind": KIND, "version": VERSION, "run_id": result.run_id, "estate": plan.estate,
        "operator": result.operator, "timezone": paths.estate.settings.timezone,
        "system": {"code": plan.system, "name": plan.name, "tier": plan.tier},
        "moved": plan.moved, "targets": list(plan.targets), "reason": plan.reason,
        "parallel_until": plan.parallel_until, "started_at": iso(result.started_at),
        "keep": plan.keep, "keep_until": iso(plan.keep_until), "repository": plan.repository,
        "vms": [{"name": n, "adopted": n in plan.adopted, "data": n in plan.hosts}
                for n in plan.vms],
        "backup_run": result.backup_run, "restic_version": result.restic_version,
        "check": result.check, "finals": result.finals, "kept": result.kept,
        "manifest": {"file": MANIFEST, "sha256": result.manifest_sha256,
                     "per_host": result.manifest_totals},
        "catalogue": {k: v for k, v in result.catalogue.items() if k != "seconds"},
        "steps": [s.as_dict() for s in result.steps],
    }


def write(paths: Paths, result: RetireResult, ledger: Ledger, lang: str) -> None:
    """Write evidence.json, its .sha256 and report.html; the hash goes to the ledger."""
    doc = build(paths, result)
    folder = evidence_folder(evidence_dir(paths, result.run_id))
    result.sha256, evidence = write_evidence_files(folder, doc)
    result.evidence = str(evidence)
    ledger.event(result.run_id, result.plan.system, "evidence", sha256=result.sha256)
    out = folder / "report.html"
    write_report_file(out, retirement_report(doc, result.sha256, lang))
    result.html = str(out)
