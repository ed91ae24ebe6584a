"""The HTML of a migration's handover record ("biên bản bàn giao dữ liệu điện tử"), from its
evidence document (``templates/migration-report.html.j2``): self-contained, in Vietnamese or
English, times in the estate's time zone with the offset written
(``2026-12-06 15:04:05 +07:00``: :func:`orchestrator.human.local_time`), room for the two
units' signatures.

Pure functions of the document: reading the evidence and writing the file are the actions'
(:mod:`orchestrator.actions.migrate.evidence`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.human import local_time
from orchestrator.reports.html import render, words

WORDS: dict[str, tuple[str, str]] = {
    "title": ("Electronic data handover record", "Biên bản bàn giao dữ liệu điện tử"),
    "step_run": ("copy (migrate run)", "sao chép (migrate run)"),
    "step_sync": ("synchronisation (migrate sync)", "đồng bộ (migrate sync)"),
    "step_cutover": ("cutover (migrate cutover)", "chuyển đổi (migrate cutover)"),
    "run_id": ("Record", "Mã biên bản"),
    "estate": ("Estate", "Hạ tầng"),
    "system": ("System", "Hệ thống"),
    "kind": ("Operation", "Nội dung"),
    "from": ("Handed over by", "Bên giao"),
    "to": ("Received by", "Bên nhận"),
    "site": ("site", "trung tâm dữ liệu"),
    "operator": ("Operator", "Người thực hiện"),
    "started": ("Started", "Bắt đầu"),
    "finished": ("Finished", "Kết thúc"),
    "verdict": ("Verdict", "Kết luận"),
    "passed": ("COMPLETE", "ĐẦY ĐỦ"),
    "failed": ("NOT COMPLETE", "KHÔNG ĐẦY ĐỦ"),
    "aborted": ("STOPPED", "BỊ DỪNG"),
    "reasons": ("Reasons", "Lý do"),
    "snapshots": ("Snapshots handed over", "Bản sao lưu được bàn giao"),
    "source_vm": ("Source VM", "Máy nguồn"),
    "target_vm": ("Target VM", "Máy đích"),
    "snapshot": ("Snapshot", "Bản sao lưu"),
    "snapshot_time": ("Taken", "Thời điểm sao lưu"),
    "reason": ("Chosen because", "Lý do chọn"),
    "per_path": ("Files and bytes per path", "Số tệp và dung lượng theo thư mục"),
    "path": ("Path", "Thư mục"),
    "files": ("Files", "Số tệp"),
    "dirs": ("Folders", "Số thư mục"),
    "others": ("Other entries", "Mục khác"),
    "bytes": ("Bytes", "Dung lượng (byte)"),
    "manifest": ("Manifest", "Bảng kê"),
    "manifest_sha": ("SHA-256 of the manifest", "SHA-256 của bảng kê"),
    "manifest_file": ("Kept beside this record as", "Lưu kèm biên bản tại"),
    "differences": ("Differences found", "Sai khác phát hiện"),
    "none": ("none", "không có"),
    "missing": ("missing", "thiếu"),
    "extra": ("extra", "thừa"),
    "different": ("different", "khác"),
    "deleted": ("Removed before the check (deleted at the source)",
                "Đã xóa trước khi kiểm tra (đã bị xóa ở nguồn)"),
    "changes": ("Changes since the previous record", "Thay đổi so với lần trước"),
    "added": ("added", "thêm"),
    "changed": ("changed", "sửa"),
    "removed": ("removed", "xóa"),
    "probes": ("Probes on the target", "Kiểm tra trên máy đích"),
    "probe": ("Probe", "Phép kiểm tra"),
    "result": ("Result", "Kết quả"),
    "ok": ("ok", "đạt"),
    "not_ok": ("FAILED", "KHÔNG ĐẠT"),
    "steps": ("Steps", "Các bước"),
    "step": ("Step", "Bước"),
    "seconds": ("Seconds", "Giây"),
    "writes": ("Writes at the source", "Ghi dữ liệu ở nguồn"),
    "writes_stopped": ("stopped for the cutover", "đã dừng để chuyển đổi"),
    "writes_restored": ("put back (cutover failed)", "đã khôi phục (chuyển đổi không thành)"),
    "writes_not_restored": ("NOT put back: check the source", "CHƯA khôi phục: kiểm tra nguồn"),
    "parallel_until": ("Source runs in parallel until", "Hệ thống cũ chạy song song đến"),
    "evidence_sha": ("SHA-256 of this record (evidence.json)",
                     "SHA-256 của biên bản (evidence.json)"),
    "signatures": ("Signatures", "Chữ ký"),
    "sign_from": ("For the handing-over unit", "Đại diện bên giao"),
    "sign_to": ("For the receiving unit", "Đại diện bên nhận"),
    "sign_hint": ("(signature, full name, position)", "(ký, ghi rõ họ tên, chức vụ)"),
    "restic_version": ("restic on the target", "restic trên máy đích"),
    "times_in": ("Times are in", "Thời gian theo múi giờ"),
}


def labels(lang: str) -> dict[str, str]:
    """The handover record's words in ``lang``. Raises HopnhatError (exit 2) for a language
    other than vi and en."""
    return words(lang, WORDS)


def handover_report(doc: Mapping[str, Any], sha256: str, lang: str, zone: str) -> str:
    """The HTML of migration evidence ``doc`` (whose SHA-256 is ``sha256``), times in
    ``zone``. Raises HopnhatError (exit 2) for a language other than vi and en."""
    return render("migration-report.html.j2", doc=doc, sha256=sha256, t=labels(lang),
                  lang=lang, zone=zone, when=lambda v: local_time(v, zone))
