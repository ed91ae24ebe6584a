"""A migration's handover evidence ("biên bản bàn giao dữ liệu điện tử"): for each run, sync
and cutover, under ``<state>/evidence/<run id>/``:

- ``evidence.json`` — the run as data, canonical (UTF-8, keys sorted, 2-space indent, final
  newline), times in UTC; its SHA-256 in ``evidence.json.sha256`` and in the ledger;
- ``manifest.jsonl.gz`` — every entry restored (path, type, size, mode, mtime, SHA-256), its
  own SHA-256 in the evidence;
- ``report.html`` — self-contained, in Vietnamese or English, times in the estate's time
  zone with the offset written, room for the two units' signatures (rendered by
  :mod:`orchestrator.reports.migrate`); ``hopnhat migrate report ID`` renders it again,
  after checking the evidence against both recorded hashes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.actions.drill.evidence import evidence_dir, iso
from orchestrator.actions.migrate import manifest
from orchestrator.actions.report_files import (
    evidence_folder,
    write_evidence_files,
    write_report_file,
)
from orchestrator.errors import EXIT_BAD_INPUT, HopnhatError
from orchestrator.ledger import Ledger
from orchestrator.reports.migrate import handover_report
from orchestrator.settings import Paths

if TYPE_CHECKING:
    from orchestrator.actions.migrate.result import MigrationResult

KIND = "hopnhat-migration-evidence"
VERSION = 1
MANIFEST = "manifest.jsonl.gz"
def store_manifest(paths: Paths, run_id: str,
                   manifests: dict[str, dict[str, manifest.Entry]]) -> tuple[str, str]:
    """Write the run's manifest (every target VM's entries). Out: (file, its SHA-256)."""
    folder = evidence_folder(evidence_dir(paths, run_id))
    text = b"".join(manifest.lines(vm, entries) for vm, entries in sorted(manifests.items()))
    path = folder / MANIFEST
    return str(path), manifest.write(path, text)


def build(paths: Paths, result: MigrationResult) -> dict[str, Any]:
    """The evidence document of a migration run (pure but for reading the estate)."""
    estate = paths.estate
    system = estate.systems[result.system]
    migration = system.migration
    plan = result.plan
    from_sites = plan.from_sites if plan else sorted({vm.site for vm in estate.vms_of(
        result.system)})
    return {
        "kind": KIND, "version": VERSION, "run_id": result.run_id, "step": result.step,
        "estate": result.estate, "operator": result.operator, "timezone": estate.settings.timezone,
        "system": {"code": result.system, "name": system.name, "tier": system.tier},
        "from": {"unit": migration.from_unit if migration else "", "sites": from_sites},
        "to": {"unit": migration.to_unit if migration else "", "site": result.to},
        "started_at": iso(result.started_at), "finished_at": iso(result.finished_at),
        "seconds": round(result.finished_at - result.started_at, 3),
        "verdict": result.verdict, "failed_step": result.failed_step or None,
        "reasons": list(result.reasons),
        "backup_run": result.backup_run, "restic_version": result.restic_version or None,
        "snapshot_reason": result.snapshot_reason or None,
        "paths": list(plan.paths) if plan else [],
        "pairs": [p.as_dict() for p in plan.pairs] if plan else [],
        "checks": [c.as_dict() for c in result.checks],
        "manifest": {"sha256": result.manifest_sha256,
                     "file": MANIFEST if result.manifest_sha256 else None,
                     "entries": sum(sum(t.values()) - t["bytes"] for c in result.checks
                                    for t in c.totals.values())},
        "probes": [p.as_dict() for p in result.probes],
        "steps": [s.as_dict() for s in result.steps],
        "writes_stopped": result.writes_stopped,
        "writes_restored": result.writes_restored,
        "parallel_until": iso(result.parallel_until),
    }


def write_evidence(paths: Paths, result: MigrationResult, ledger: Ledger, lang: str) -> None:
    """Write evidence.json, its .sha256 and report.html; set ``result.sha256``, ``evidence``
    and ``html`` (the ledger records the hash with the run's summary)."""
    doc = build(paths, result)
    folder = evidence_folder(evidence_dir(paths, result.run_id))
    result.sha256, evidence = write_evidence_files(folder, doc)
    result.evidence = str(evidence)
    ledger.event(result.run_id, result.system, "evidence", sha256=result.sha256)
    result.html = str(render(paths, doc, result.sha256, lang))


def load(paths: Paths, ledger: Ledger, run_id: str) -> tuple[dict[str, Any], str]:
    """A migration's stored evidence and its SHA-256, checked against its ``.sha256`` file
    and the hash the ledger recorded. Raises HopnhatError (exit 2) for an unknown run, or
    when the evidence (or its manifest) no longer matches what was recorded."""
    known = {r.id: r for r in ledger.runs("migrate", limit=100_000)}
    run = known.get(run_id)
    if run is None:
        raise HopnhatError(f"no migration run {run_id!r} in the ledger",
                           exit_code=EXIT_BAD_INPUT)
    folder = evidence_dir(paths, run_id)
    path = folder / "evidence.json"
    if not path.is_file():
        raise HopnhatError(f"{path}: missing: the evidence of {run_id} is gone",
                           exit_code=EXIT_BAD_INPUT)
    data = path.read_bytes()
    found = hashlib.sha256(data).hexdigest()
    recorded = [e["sha256"] for e in ledger.events(run_id) if e["kind"] == "evidence"]
    side = (folder / "evidence.json.sha256").read_text().split()[:1] \
        if (folder / "evidence.json.sha256").is_file() else []
    if not recorded or found != recorded[-1] or side != [found]:
        raise HopnhatError(f"{path}: SHA-256 {found} does not match the ledger's "
                           f"{recorded[-1] if recorded else 'record (none)'}: the evidence was "
                           "changed; nothing rendered", exit_code=EXIT_BAD_INPUT)
    doc = json.loads(data)
    want = doc.get("manifest", {}).get("sha256")
    if want:
        text = (folder / MANIFEST).read_bytes() if (folder / MANIFEST).is_file() else b""
        import gzip

        try:
            got = hashlib.sha256(gzip.decompress(text)).hexdigest()
        except (OSError, EOFError):
            got = "unreadable"
        if got != want:
            raise HopnhatError(f"{folder / MANIFEST}: SHA-256 {got} does not match the "
                               f"evidence's {want}: the manifest was changed",
                               exit_code=EXIT_BAD_INPUT)
    return doc, found


def render(paths: Paths, doc: dict[str, Any], sha256: str, lang: str) -> Path:
    """Write ``report.html`` of the evidence ``doc``. Out: its path."""
    zone = doc.get("timezone") or paths.estate.settings.timezone
    out = evidence_dir(paths, doc["run_id"]) / "report.html"
    write_report_file(out, handover_report(doc, sha256, lang, zone))
    return out


def report(paths: Paths, ledger: Ledger, run_id: str, lang: str) -> Path:
    """Render a migration's report again from its checked evidence."""
    doc, sha = load(paths, ledger, run_id)
    return render(paths, doc, sha, lang)
