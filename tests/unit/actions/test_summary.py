"""The morning summary from the ledger alone: backups as the latest verification saw them,
aged to now; the verifications and drills of the window; drills overdue — rendered as text
and HTML in Vietnamese (English on request), times in the estate's time zone with the
offset, and sent to the summary's channels (mail with an HTML and a text part)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator.actions.summary import summarise
from orchestrator.cli import app
from orchestrator.estate import Estate
from orchestrator.ledger import Ledger
from orchestrator.reports.summary import summary_html, summary_text, summary_title
from tests.helpers import EstateCopy, MailReceiver, route_notifications

NOW = datetime(2026, 12, 7, 0, 30, tzinfo=UTC)  # 07:30 in Hà Nội / Đà Nẵng
HOUR = 3600.0


def _record(ledger: Ledger, kind: str, started: datetime, status: str,
            params: dict[str, Any], summary: dict[str, Any],
            events: Sequence[dict[str, Any]] = ()) -> str:
    run_id = ledger.start(kind, "danang", params)
    for event in events:
        ledger.event(run_id, event["system"], "repository", **event)
    ledger.finish(run_id, status, summary)
    ledger._db.execute("UPDATE runs SET started=? WHERE id=?",  # runs of the past
                       (started.timestamp(), run_id))
    ledger._db.commit()
    return run_id


def _host(name: str, taken: datetime) -> dict[str, Any]:
    return {"host": name, "expected": True, "snapshots": 3, "latest_time": taken.isoformat()}


def fill(ledger: Ledger) -> dict[str, str]:
    """A night: verify at 03:30 (+07:00) found qlvb fresh and dvc's snapshot 2 h old (RPO
    1 h: stale); a drill of qlvb passed at 02:00, one of sso failed; one of video 3 days ago
    (outside the window)."""
    verified = NOW - timedelta(hours=4)
    ids = {"verify": _record(ledger, "verify", verified, "failed", {}, {
        "exit_code": 1, "repositories": {"qlvb": "ok", "dvc": "failed"},
        "failed": {"dvc": ["freshness"]}}, [
        {"system": "qlvb", "tier": 1, "rpo_seconds": 24 * HOUR,
         "hosts": [_host("qlvb-db-01", verified - timedelta(minutes=20)),
                   {"host": "old-vm", "expected": False, "latest_time": None}]},
        {"system": "dvc", "tier": 1, "rpo_seconds": HOUR,
         "hosts": [_host("dvc-db-01", verified - timedelta(hours=2))]}])}
    ids["passed"] = _record(ledger, "drill", NOW - timedelta(hours=5, minutes=30), "passed",
                            {"system": "qlvb"}, {"rpo_seconds": 1800.0, "rto_seconds": 420.0})
    ids["failed"] = _record(ledger, "drill", NOW - timedelta(hours=5), "failed",
                            {"system": "sso"}, {"rpo_seconds": None, "rto_seconds": None})
    ids["old"] = _record(ledger, "drill", NOW - timedelta(days=3), "passed",
                         {"system": "video"}, {"rpo_seconds": 60.0, "rto_seconds": 60.0})
    return ids


@pytest.fixture
def estate(estate_copy: EstateCopy) -> Estate:
    return estate_copy.load()


def test_the_summary_reads_the_night_from_the_ledger(estate: Estate, tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ids = fill(ledger)
        made = summarise(estate, ledger, now=NOW.timestamp())
    assert made.backups_from == ids["verify"] and not made.stale_source
    states = {(b.system, b.host): b.state for b in made.backups}
    assert states == {("dvc", "dvc-db-01"): "stale", ("qlvb", "qlvb-db-01"): "fresh"}
    aged = next(b for b in made.backups if b.system == "qlvb")
    assert aged.age_seconds == pytest.approx(4 * HOUR + 20 * 60)  # counted to now
    assert [(v.run_id, v.failed) for v in made.verifications] == [
        (ids["verify"], {"dvc": ["freshness"]})]
    assert [(d.system, d.verdict) for d in made.drills] == [("sso", "failed"),
                                                            ("qlvb", "passed")]
    overdue = {o.system for o in made.overdue}
    assert "qlvb" not in overdue and "sso" in overdue and "video" not in overdue
    # stale dvc, the failed verification, the failed drill, every overdue system
    assert made.problems == 1 + 1 + 1 + len(made.overdue)


def test_a_backup_fresh_at_night_is_stale_by_morning_and_an_old_verify_is_named(
        estate: Estate, tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        fill(ledger)
        later = summarise(estate, ledger, now=(NOW + timedelta(days=1)).timestamp())
    assert {b.state for b in later.backups} == {"stale"}  # 24 h 20 min > qlvb's 24 h
    assert later.stale_source and later.verifications == () and later.drills == ()


def test_text_and_html_in_vietnamese_or_english_with_local_times(
        estate: Estate, tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        fill(ledger)
        doc = summarise(estate, ledger, now=NOW.timestamp()).as_dict()
    text = summary_text(doc, "vi")
    assert text.startswith("[hopnhat] Thành phố Đà Nẵng") and "Báo cáo buổi sáng 2026-12-07" in text
    assert "QUÁ HẠN: Cổng dịch vụ công và hệ thống TTHC (DVC) dvc-db-01 — " \
           "2026-12-07 01:30:00 +07:00 (6 h 00 min / 1 h 00 min)" in text
    assert "2026-12-07 03:30:00 +07:00 KHÔNG ĐẠT — dvc: freshness" in text
    assert "2026-12-07 02:00:00 +07:00 Quản lý văn bản và điều hành (QLVB) đạt" in text
    english = summary_text(doc, "en")
    assert "Morning summary" in english and "STALE" in english and "FAILED" in english
    page = summary_html(doc, "vi")
    assert '<html lang="vi">' in page and 'id="backups"' in page
    assert "2026-12-07 07:30:00 +07:00" in page  # made at
    assert "QLVB" in page and "2026-12-07 03:10:00 +07:00" in page  # qlvb's snapshot
    assert summary_title(doc, "en").endswith(f"— {doc['problems']} things need attention")


def test_summary_sends_mail_with_html_and_text_and_prints_json(
        estate_copy: EstateCopy, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with Ledger(state / "ledger.sqlite") as ledger:
        fill(ledger)
    page = tmp_path / "out" / "summary.html"
    with MailReceiver() as mail:
        route_notifications(estate_copy.root, state, {"email": mail.mailto()},
                            {"summary": ["email"]})
        done = CliRunner().invoke(app, [
            "--estate", str(estate_copy.root), "--state", str(state), "summary", "--send",
            "--json", "--html", str(page), "--since", "30d"])
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert doc["notifications"] == [{"channel": "email", "target": "mailto://…",
                                     "event": "summary", "ok": True, "error": None}]
    assert {d["system"] for d in doc["drills"]} == {"qlvb", "sso", "video"}
    message = mail.messages[0]
    assert message["Subject"].startswith("[hopnhat] Thành phố Đà Nẵng")
    parts = {p.get_content_type(): p.get_content() for p in message.walk()
             if not p.is_multipart()}
    assert 'id="drills"' in parts["text/html"] and "Diễn tập khôi phục" in parts["text/plain"]
    assert page.read_text().startswith("<!DOCTYPE html>")


def test_a_language_other_than_vi_or_en_is_bad_input(estate_copy: EstateCopy,
                                                     tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["--estate", str(estate_copy.root), "--state",
                                    str(tmp_path), "summary", "--lang", "fr"])
    assert done.exit_code == 2 and "--lang 'fr'" in done.output


# --- the summary's timer (hopnhat schedule install) -----------------------------------------


def test_the_summary_timer_writes_the_page_each_morning_and_sends_it_when_routed(
        tmp_path: Path) -> None:
    import sys

    from orchestrator.actions import schedule

    def units(send: bool) -> Any:
        return schedule.render_units(
            "danang", tmp_path / "estate", tmp_path / "state", job="summary", send=send,
            on_calendar=schedule.daily_calendar("07:00", "Asia/Ho_Chi_Minh"),
            metrics_dir=tmp_path / "metrics", reports_dir=tmp_path / "reports",
            unit_dir=tmp_path / "units", program=Path(sys.executable),
            randomized_delay=timedelta(0), timeout=timedelta(minutes=30))

    routed = units(send=True)
    assert routed.name == "hopnhat-summary-danang" and routed.metrics_file is None
    assert f"--state {tmp_path}/state summary --html {tmp_path}/reports/summary-danang.html " \
        "--send\n" in routed.service
    assert "--metrics" not in routed.service
    assert "OnCalendar=*-*-* 07:00:00 Asia/Ho_Chi_Minh" in routed.timer
    assert " 00:00:00 UTC" in schedule.validate(routed)  # 07:00 at UTC+7, as systemd reads it
    assert "summary --html" in units(send=False).service
    assert "--send" not in units(send=False).service


def test_schedule_install_prints_the_summary_timer_at_the_estates_summary_at(
        estate_copy: EstateCopy, tmp_path: Path) -> None:
    estate_copy.replace("estate.yml", "nightly_drills:",
                        'notifications:\n  summary_at: "06:45"\nnightly_drills:')
    argv = ["--estate", str(estate_copy.root), "--state", str(tmp_path / "s"), "schedule",
            "install", "--print"]
    done = CliRunner().invoke(app, [*argv, "--json"])
    assert done.exit_code == 0, done.output
    summary = json.loads(done.output)["summary"]
    assert summary["unit"] == "hopnhat-summary-danang"
    assert summary["next_elapse"].endswith(" 23:45:00 UTC")  # 06:45 at UTC+7
    estate_copy.replace("estate.yml", '  summary_at: "06:45"', '  summary_at: "7h"')
    bad = CliRunner().invoke(app, argv)
    assert bad.exit_code == 2 and "summary_at" in bad.output and "7h" in bad.output
