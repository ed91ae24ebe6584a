"""A retirement's record ("biên bản đóng hệ thống và lưu trữ dữ liệu"), under
``<state>/evidence/<run id>/``, written before any VM is destroyed:

- ``evidence.json`` — canonical JSON (as a migration's), times in UTC; its SHA-256 in
  ``evidence.json.sha256`` and in the ledger;
- ``manifest.jsonl.gz`` — every entry of each final snapshot with its bytes' SHA-256;
- ``report.html`` — self-contained, Vietnamese or English, local times with their offset.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from orchestrator.actions.drill.evidence import canonical, evidence_dir, iso
from orchestrator.actions.migrate.evidence import MANIFEST, environment, labels, local_time
from orchestrator.actions.report_files import evidence_folder, write_report_file
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths

if TYPE_CHECKING:
    from orchestrator.actions.retire.run import RetireResult

KIND = "hopnhat-retirement-evidence"
VERSION = 1

WORDS: dict[str, tuple[str, str]] = {
    "title": ("System retirement and archive record",
              "Biên bản đóng hệ thống và lưu trữ dữ liệu"),
    "moved": ("source VMs closed after the migration's parallel run",
              "đóng các máy nguồn sau thời gian chạy song song"),
    "whole": ("the whole system closed", "đóng toàn bộ hệ thống"),
    "run_id": ("Record", "Mã biên bản"),
    "estate": ("Estate", "Hạ tầng"),
    "system": ("System", "Hệ thống"),
    "operator": ("Operator", "Người thực hiện"),
    "reason": ("Reason given", "Lý do"),
    "started": ("Started", "Bắt đầu"),
    "keep_until": ("Records kept until", "Lưu giữ đến"),
    "repository": ("Repository", "Kho sao lưu"),
    "vms": ("VMs closed (destroyed after this record)",
            "Máy ảo được đóng (xoá sau khi lập biên bản)"),
    "adopted": ("taken over", "tiếp nhận"),
    "finals": ("Final snapshots", "Bản sao lưu cuối cùng"),
    "host": ("VM", "Máy"),
    "snapshot": ("Snapshot", "Bản sao lưu"),
    "kept": ("Snapshots kept", "Các bản sao lưu được lưu giữ"),
    "time": ("Taken", "Thời điểm"),
    "check": ("Repository check", "Kiểm tra kho"),
    "check_ok": ("every byte read (restic check --read-data): no error",
                 "đọc toàn bộ dữ liệu (restic check --read-data): không có lỗi"),
    "manifest": ("Manifest of the final snapshots", "Danh mục tệp của bản sao lưu cuối"),
    "path": ("Path", "Thư mục"),
    "files": ("Files", "Số tệp"),
    "dirs": ("Folders", "Số thư mục"),
    "bytes": ("Bytes", "Dung lượng (byte)"),
    "manifest_sha": ("SHA-256 of the manifest", "SHA-256 của danh mục"),
    "catalogue": ("Archive catalogue", "Danh mục tra cứu"),
    "versions": ("file versions", "phiên bản tệp"),
    "snapshots": ("snapshots", "bản sao lưu"),
    "catalogue_sha": ("SHA-256 of the catalogue", "SHA-256 của danh mục tra cứu"),
    "steps": ("Steps", "Các bước"),
    "step": ("Step", "Bước"),
    "seconds": ("Seconds", "Giây"),
    "find_hint": ("Find a record later", "Tra cứu sau này"),
    "evidence_sha": ("SHA-256 of this record (evidence.json)",
                     "SHA-256 của biên bản (evidence.json)"),
    "signatures": ("Signatures", "Chữ ký"),
    "sign_op": ("Operator", "Người thực hiện"),
    "sign_head": ("Head of unit", "Thủ trưởng đơn vị"),
    "sign_hint": ("(signature, full name, position)", "(ký, ghi rõ họ tên, chức vụ)"),
    "times_in": ("Times are in", "Thời gian theo múi giờ"),
}


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
    data = canonical(doc)
    result.sha256 = hashlib.sha256(data).hexdigest()
    write_report_file(folder / "evidence.json", data)
    write_report_file(folder / "evidence.json.sha256", f"{result.sha256}  evidence.json\n")
    result.evidence = str(folder / "evidence.json")
    ledger.event(result.run_id, result.plan.system, "evidence", sha256=result.sha256)
    zone = doc["timezone"]
    html = environment().get_template("retirement-report.html.j2").render(
        doc=doc, sha256=result.sha256, t=labels(lang, WORDS), lang=lang, zone=zone,
        when=lambda v: local_time(v, zone))
    out = folder / "report.html"
    write_report_file(out, html)
    result.html = str(out)
