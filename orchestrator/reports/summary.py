"""The morning summary as people read it — an HTML page (``templates/summary.html.j2``,
self-contained, the e-mail's HTML part too) and plain text (the e-mail's text part, chat
channels) — in Vietnamese or English, times in the estate's time zone with the offset.

Rendered from the summary's document (``Summary.as_dict()`` of
:mod:`orchestrator.actions.summary`), so this module imports no action.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.human import duration, local_time
from orchestrator.reports.html import render, system_title, words

WORDS: dict[str, tuple[str, str]] = {
    "title": ("Morning summary", "Báo cáo buổi sáng"),
    "estate": ("Estate", "Hệ thống hạ tầng"),
    "window": ("Covers", "Khoảng thời gian"),
    "generated": ("Made", "Lập lúc"),
    "times_in": ("times in", "giờ theo múi"),
    "all_good": ("Everything is in order.", "Mọi thứ đều ổn."),
    "problems": ("things need attention", "việc cần xử lý"),
    "backups": ("Backups", "Sao lưu"),
    "backups_from": ("as the verification {run} of {time} saw them, aged to now",
                     "theo lượt kiểm tra {run} lúc {time}, tuổi tính đến hiện tại"),
    "no_verify": ("No verification has run: the backups' state is not known.",
                  "Chưa có lượt kiểm tra nào: chưa biết tình trạng sao lưu."),
    "old_verify": ("No verification ran in this window: the backups' state may be old.",
                   "Không có lượt kiểm tra nào trong khoảng này: tình trạng sao lưu có thể "
                   "đã cũ."),
    "system": ("System", "Hệ thống"),
    "tier": ("Tier", "Mức"),
    "host": ("Host", "Máy"),
    "latest": ("Latest snapshot", "Bản sao lưu mới nhất"),
    "age": ("Age / RPO", "Tuổi / RPO"),
    "state": ("State", "Tình trạng"),
    "fresh": ("fresh", "đạt"),
    "stale": ("STALE", "QUÁ HẠN"),
    "none": ("NONE", "CHƯA CÓ"),
    "verifications": ("Verifications", "Kiểm tra bản sao lưu"),
    "no_verifications": ("None in this window.", "Không có trong khoảng này."),
    "run": ("Run", "Lượt chạy"),
    "started": ("Started", "Bắt đầu"),
    "verdict": ("Verdict", "Kết quả"),
    "repositories": ("Repositories", "Kho sao lưu"),
    "not_ok": ("Not ok", "Không đạt"),
    "ok": ("ok", "đạt"),
    "failed": ("FAILED", "KHÔNG ĐẠT"),
    "passed": ("passed", "đạt"),
    "aborted": ("stopped", "đã dừng"),
    "running": ("running", "đang chạy"),
    "drills": ("Restore drills", "Diễn tập khôi phục"),
    "no_drills": ("None in this window.", "Không có trong khoảng này."),
    "rpo": ("Achieved RPO", "RPO đạt được"),
    "rto": ("Achieved RTO", "RTO đạt được"),
    "overdue": ("Drills overdue", "Quá hạn diễn tập"),
    "no_overdue": ("None.", "Không có."),
    "last_passed": ("Last passed drill", "Lần diễn tập đạt gần nhất"),
    "interval": ("Interval", "Chu kỳ"),
    "never": ("never", "chưa bao giờ"),
    "footer": ("Read from hopnhat's ledger; no repository was opened to make it.",
               "Lập từ sổ ghi của hopnhat; không mở kho sao lưu nào để lập báo cáo này."),
}


def labels(lang: str) -> dict[str, str]:
    """The summary's words in ``lang`` (HopnhatError, exit 2, for other than vi and en)."""
    return words(lang, WORDS)


def summary_title(doc: Mapping[str, Any], lang: str) -> str:
    """``[hopnhat] <estate>: <Morning summary> <date> — <n things need attention | ok>``."""
    t = labels(lang)
    day = local_time(doc["generated"], doc["timezone"])[:10]
    state = f"{doc['problems']} {t['problems']}" if doc["problems"] else t["ok"]
    return f"[hopnhat] {doc['estate_name']}: {t['title']} {day} — {state}"


def _helpers(doc: Mapping[str, Any], lang: str) -> dict[str, Any]:
    t = labels(lang)
    names = doc.get("names", {})
    return {
        "t": t, "doc": doc, "lang": lang,
        "when": lambda v: local_time(v, doc["timezone"]),
        "named": lambda code: system_title(names.get(code, ""), code),
        "span": lambda s: "—" if s is None else duration(float(s), "words"),
        "word": lambda key: t.get(key, key),
    }


def summary_html(doc: Mapping[str, Any], lang: str) -> str:
    """The summary as a self-contained HTML page."""
    return render("summary.html.j2", **_helpers(doc, lang))


def _backup_lines(doc: Mapping[str, Any], h: Mapping[str, Any]) -> list[str]:
    t, when, named, span, word = h["t"], h["when"], h["named"], h["span"], h["word"]
    lines = [f"{t['backups']}:"]
    if doc["backups_from"] is None:
        lines.append(f"  {t['no_verify']}")
    elif doc["stale_source"]:
        lines.append(f"  {t['old_verify']}")
    for b in doc["backups"]:
        if b["state"] != "fresh":
            lines.append(f"  {word(b['state'])}: {named(b['system'])} {b['host']} — "
                         f"{when(b['latest_time'])} ({span(b['age_seconds'])} / "
                         f"{span(b['rpo_seconds'])})")
    good = sum(b["state"] == "fresh" for b in doc["backups"])
    return [*lines, f"  {t['fresh']}: {good}/{len(doc['backups'])}"]


def _run_lines(doc: Mapping[str, Any], h: Mapping[str, Any]) -> list[str]:
    t, when, named, span, word = h["t"], h["when"], h["named"], h["span"], h["word"]
    lines = [f"{t['verifications']}:"]
    for v in doc["verifications"]:
        bad = "; ".join(f"{s}: {', '.join(c)}" for s, c in v["failed"].items())
        lines.append(f"  {when(v['started'])} {word(v['status'])}"
                     + (f" — {bad}" if bad else ""))
    lines += [] if doc["verifications"] else [f"  {t['no_verifications']}"]
    lines.append(f"{t['drills']}:")
    for d in doc["drills"]:
        lines.append(f"  {when(d['started'])} {named(d['system'])} {word(d['verdict'])} "
                     f"RPO {span(d['rpo_seconds'])} RTO {span(d['rto_seconds'])}")
    lines += [] if doc["drills"] else [f"  {t['no_drills']}"]
    lines.append(f"{t['overdue']}:")
    for o in doc["overdue"]:
        last = when(o["last_passed"]) if o["last_passed"] else t["never"]
        lines.append(f"  {named(o['system'])} — {t['last_passed']}: {last}")
    return lines + ([] if doc["overdue"] else [f"  {t['no_overdue']}"])


def summary_text(doc: Mapping[str, Any], lang: str) -> str:
    """The summary as plain text: a headline, then a line for each thing that needs
    attention and a count of what is in order, section by section."""
    h = _helpers(doc, lang)
    head = [summary_title(doc, lang),
            f"{h['t']['window']}: {h['when'](doc['since'])} → {h['when'](doc['generated'])}",
            ""]
    return "\n".join([*head, *_backup_lines(doc, h), *_run_lines(doc, h)]) + "\n"
