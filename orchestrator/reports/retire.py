"""The HTML of a retirement's record ("biên bản đóng hệ thống và lưu trữ dữ liệu"), from its
evidence document (``templates/retirement-report.html.j2``): self-contained, in Vietnamese or
English, times in the estate's time zone with the offset written
(``2026-12-06 15:04:05 +07:00``), room for the operator's and the head of unit's
signatures.

Pure functions of the document: writing the evidence and the file are the actions'
(:mod:`orchestrator.actions.retire.evidence`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.human import local_time
from orchestrator.reports.html import render, words

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


def labels(lang: str) -> dict[str, str]:
    """The retirement record's words in ``lang``. Raises HopnhatError (exit 2) for a
    language other than vi and en."""
    return words(lang, WORDS)


def retirement_report(doc: Mapping[str, Any], sha256: str, lang: str) -> str:
    """The HTML of retirement evidence ``doc`` (whose SHA-256 is ``sha256``), times in the
    estate's time zone it records. Raises HopnhatError (exit 2) for a language other than vi
    and en."""
    zone = doc["timezone"]
    return render("retirement-report.html.j2", doc=doc, sha256=sha256, t=labels(lang),
                  lang=lang, zone=zone, when=lambda v: local_time(v, zone))
