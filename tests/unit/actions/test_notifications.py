"""An event told to the channels its route names: URLs from the vault, the Apprise adapter
sending for real to receivers on free ports, each outcome in the run's ledger events — a
channel whose URL cannot be read or that fails is reported, never raised."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.actions.notifications import (
    NightlyNotices,
    failed_channels,
    tell,
    tell_drill_failed,
    tell_overdue,
    tell_stale_backups,
)
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths
from tests.helpers import EstateCopy, MailReceiver, WebhookReceiver, route_notifications


def paths_of(estate_copy: EstateCopy, tmp_path: Path) -> Paths:
    return Paths(tmp_path / "state", estate_copy.load())


def test_an_event_goes_to_its_routed_channels_and_the_ledger_says_so(
        estate_copy: EstateCopy, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with MailReceiver() as mail, WebhookReceiver() as hook, WebhookReceiver() as other:
        route_notifications(estate_copy.root, state, {
            "email": mail.mailto(), "hook": f"json://{hook.url[7:]}/hook",
            "other": f"json://{other.url[7:]}/other"},
            {"drill_failed": ["email", "hook"], "summary": ["other"]})
        paths = paths_of(estate_copy, tmp_path)
        with Ledger(paths.ledger) as ledger:
            run_id = ledger.start("drill", paths.estate.id, {})
            sent = tell(paths, "drill_failed", ["qlvb: probe 'web' failed"], run_id=run_id,
                        ledger=ledger)
            events = [e for e in ledger.events(run_id) if e["kind"] == "notification"]
    assert [(s.channel, s.ok) for s in sent] == [("email", True), ("hook", True)]
    assert other.received == []  # the summary's channel hears nothing of a drill
    assert mail.messages[0]["Subject"].endswith("diễn tập khôi phục không đạt")
    assert "qlvb: probe 'web' failed" in mail.messages[0].get_body().get_content()
    payload = hook.received[0].json()
    assert run_id in payload["message"] and payload["title"].startswith("[hopnhat] ")
    assert [(e["subject"], e["ok"], e["event"]) for e in events] == [
        ("email", True, "drill_failed"), ("hook", True, "drill_failed")]


def test_a_channel_that_fails_or_cannot_be_read_is_reported_and_the_rest_still_told(
        estate_copy: EstateCopy, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with WebhookReceiver(status=500) as broken, WebhookReceiver() as good:
        route_notifications(estate_copy.root, state, {
            "broken": f"json://{broken.url[7:]}/k3y-in-path", "good": f"json://{good.url[7:]}"},
            {"verify_failed": ["broken", "good"]}, lang="en")

        def unread(data: dict[str, Any]) -> None:  # a channel the vault has no URL for
            data["notifications"]["channels"]["unread"] = {"url": {"vault": "notify_missing"}}
            data["notifications"]["routes"]["verify_failed"].append("unread")

        estate_copy.edit("estate.yml", unread)
        paths = paths_of(estate_copy, tmp_path)
        sent = tell(paths, "verify_failed", ["qlvb@repo structure failed: pack damaged"])
    assert [(s.channel, s.ok) for s in sent] == [("broken", False), ("good", True),
                                                ("unread", False)]
    assert len(good.received) == 1
    assert good.received[0].json()["title"].endswith("backup verification failed")
    failed = failed_channels(sent)
    assert failed[0].startswith("broken (json://…): ") and "500" in failed[0]
    assert "notify_missing" in failed[1] and "k3y-in-path" not in " ".join(failed)


def test_an_event_without_a_route_tells_no_one(estate_copy: EstateCopy,
                                               tmp_path: Path) -> None:
    with WebhookReceiver() as hook:
        route_notifications(estate_copy.root, tmp_path / "state",
                            {"hook": f"json://{hook.url[7:]}"}, {"summary": ["hook"]})
        assert tell(paths_of(estate_copy, tmp_path), "backup_stale", ["stale"]) == ()
    assert hook.received == []


@dataclass(frozen=True)
class Drilled:
    """A drill's result as tell_drill_failed reads it."""

    system: str
    verdict: str
    drill_id: str = "drill-1"
    reasons: tuple[str, ...] = ()
    failed_step: str = ""
    html: str = ""


@dataclass(frozen=True)
class Due:
    system: str
    overdue: bool
    tier: int = 1
    last_passed: str | None = None
    interval_seconds: float = 30 * 86400.0


def test_a_failed_drill_and_overdue_systems_are_told_a_passed_or_stopped_one_is_not(
        estate_copy: EstateCopy, tmp_path: Path) -> None:
    with WebhookReceiver() as hook:
        route_notifications(estate_copy.root, tmp_path / "state",
                            {"hook": f"json://{hook.url[7:]}"},
                            {"drill_failed": ["hook"], "drill_overdue": ["hook"]}, lang="en")
        paths = paths_of(estate_copy, tmp_path)
        assert tell_drill_failed(paths, Drilled("qlvb", "passed")) == ()
        assert tell_drill_failed(paths, Drilled("qlvb", "aborted")) == ()
        failed = tell_drill_failed(paths, Drilled(
            "qlvb", "failed", reasons=("recovery step 'start PostgreSQL' failed",),
            html="/var/lib/hopnhat/drills/drill-1/report.html"))
        nightly = NightlyNotices(paths)
        nightly.overdue([Due("sso", True, 2, "2026-10-01T01:00:00+00:00"), Due("dvc", False)])
        assert tell_overdue(paths, [Due("dvc", False)]) == ()
    assert [s.ok for s in (*failed, *nightly.sent)] == [True, True]
    drill, overdue = (r.json() for r in hook.received)
    assert drill["title"].endswith("restore drill failed")
    assert drill["message"].splitlines() == [
        "qlvb: recovery step 'start PostgreSQL' failed",
        "/var/lib/hopnhat/drills/drill-1/report.html", "run: drill-1"]
    assert overdue["message"].splitlines() == [
        "sso (tier 2): last passed drill 2026-10-01 08:00:00 +07:00; every 30 d 0 h"]


def test_drill_due_tells_the_overdue_only_when_asked(estate_copy: EstateCopy,
                                                      tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from orchestrator.cli import app

    state = tmp_path / "state"
    base = ["--estate", str(estate_copy.root), "--state", str(state), "drill", "due", "--json"]
    with WebhookReceiver() as hook:
        route_notifications(estate_copy.root, state, {"hook": f"json://{hook.url[7:]}"},
                            {"drill_overdue": ["hook"]})
        quiet = CliRunner().invoke(app, base)
        told = CliRunner().invoke(app, [*base, "--notify"])
    assert quiet.exit_code == told.exit_code == 1  # no drill has ever passed: all overdue
    assert len(hook.received) == 1
    lines = hook.received[0].json()["message"].splitlines()
    assert {line.split(" ")[0] for line in lines} == {r["system"] for r in json.loads(
        told.stdout)}
    assert all("lần diễn tập đạt gần nhất chưa bao giờ" in line for line in lines)


def test_backup_status_tells_the_stale_hosts(estate_copy: EstateCopy, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from orchestrator.actions.backup.status import HostState, StatusReport, SystemState

    taken = datetime(2026, 12, 6, 20, 0, tzinfo=UTC)
    report = StatusReport("danang", datetime(2026, 12, 7, tzinfo=UTC), (
        SystemState("qlvb", "QLVB", 1, 3600.0, "repo-01", (
            HostState("qlvb-db-01", "stale", "abc", taken, 4 * 3600.0),
            HostState("qlvb-app-01", "fresh", "def", taken, 60.0))),
        SystemState("sso", "SSO", 2, 86400.0, "repo-01", (
            HostState("sso-app-01", "fresh", "123", taken, 60.0),))))
    with WebhookReceiver() as hook:
        route_notifications(estate_copy.root, tmp_path / "state",
                            {"hook": f"json://{hook.url[7:]}"}, {"backup_stale": ["hook"]})
        sent = tell_stale_backups(paths_of(estate_copy, tmp_path), report)
    assert [s.ok for s in sent] == [True]
    assert hook.received[0].json()["message"].splitlines() == [
        "qlvb qlvb-db-01: stale — 2026-12-07 03:00:00 +07:00 (4 h 00 min / RPO 1 h 00 min)"]
