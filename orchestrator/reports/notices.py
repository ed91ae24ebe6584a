"""The words of the notifications people receive (``notifications.lang``: Vietnamese by
default, or English): a title naming the estate and the event, then the lines that say what
is wrong, then the run they come from.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.reports.html import words

WORDS: dict[str, tuple[str, str]] = {
    "verify_failed": ("backup verification failed", "kiểm tra bản sao lưu không đạt"),
    "backup_stale": ("backups older than their RPO", "bản sao lưu cũ quá RPO"),
    "attack_suspected": ("signs of an attack on the backups",
                         "dấu hiệu tấn công vào bản sao lưu"),
    "drill_failed": ("restore drill failed", "diễn tập khôi phục không đạt"),
    "drill_overdue": ("restore drills overdue", "hệ thống quá hạn diễn tập khôi phục"),
    "summary": ("morning summary", "báo cáo buổi sáng"),
    "could_not_run": ("could not run", "không chạy được"),
    "run": ("run", "lượt chạy"),
    "tier": ("tier", "mức"),
    "last_passed": ("last passed drill", "lần diễn tập đạt gần nhất"),
    "never": ("never", "chưa bao giờ"),
    "interval": ("every", "chu kỳ"),
}


def notice_title(lang: str, event: str, estate: str) -> str:
    """``[hopnhat] <estate>: <what happened>`` in ``lang``."""
    return f"[hopnhat] {estate}: {words(lang, WORDS)[event]}"


def notice_body(lang: str, lines: Sequence[str], run_id: str | None = None) -> str:
    """The lines of a notification, then the run they come from."""
    tail = [f"{words(lang, WORDS)['run']}: {run_id}"] if run_id else []
    return "\n".join([*lines, *tail]) + "\n"


def overdue_line(lang: str, system: str, tier: int, last_passed: str, interval: str) -> str:
    """One system overdue for a drill: ``sso (tier 2): last passed drill <when>; every 90 d``
    (``last_passed`` empty: never)."""
    t = words(lang, WORDS)
    return (f"{system} ({t['tier']} {tier}): {t['last_passed']} {last_passed or t['never']}; "
            f"{t['interval']} {interval}")
