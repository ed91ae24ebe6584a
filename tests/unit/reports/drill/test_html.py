"""The drill and rehearsal reports rendered from their documents: labels in the language
asked, each system's RTO beside its bar, the history chart labelled by when each drill
started, and nothing fetched from outside."""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestrator.actions.drill.evidence import build
from orchestrator.actions.drill.plan import plan_drill
from orchestrator.actions.drill.result import DrillResult, StepRecord
from orchestrator.adapters.restic import Snapshot
from orchestrator.errors import HopnhatError
from orchestrator.estate import load_estate
from orchestrator.reports.drill.html import PastDrill, drill_report, rehearsal_report
from orchestrator.settings import Paths
from tests.helpers import REPO

DRILL = "drill-20261101T101500Z-3fa2c1"
ZONE = "Asia/Ho_Chi_Minh"
STARTED = datetime(2026, 11, 1, 10, 15, tzinfo=UTC).timestamp()


def _system(code: str, group: int, verdict: str, start: float, seconds: float,
            rto: float | None) -> dict[str, Any]:
    return {"system": code, "group": group, "depends_on": [], "verdict": verdict,
            "reason": "" if verdict == "passed" else "probes: <broke>", "drill_id": f"d-{code}",
            "start": start, "seconds": seconds, "end": start + seconds, "rpo_seconds": 60.0,
            "rto_seconds": rto, "rto_target_seconds": 14400.0, "evidence_sha256": "",
            "report": ""}


REHEARSAL = {"kind": "hopnhat-rehearsal-evidence", "version": 1, "rehearsal_id": "r-1",
             "estate": "danang", "operator": "op", "started_at": "2026-11-01T10:15:00.000Z",
             "finished_at": "2026-11-01T10:20:00.000Z", "total_seconds": 300.0,
             "groups": [["sso"], ["qlvb"]], "parallel": 2, "verdict": "failed",
             "systems": [_system("sso", 1, "passed", 0.0, 185.0, 185.0),
                         _system("qlvb", 2, "failed", 185.0, 100.0, None)]}


def test_a_rehearsal_report_gives_each_system_its_rto_and_the_total_time() -> None:
    html = rehearsal_report(REHEARSAL, "ab" * 32, "en", ZONE)
    assert "1. sso" in html and "(RTO 3 min 05 s)" in html and "2. qlvb" in html
    assert '<td id="total">5 min 00 s</td>' in html
    assert "probes: &lt;broke&gt;" in html and "ab" * 32 in html
    assert "http" not in html.replace("http://www.w3.org/2000/svg", "")


def test_a_rehearsal_report_speaks_vietnamese_and_nothing_else_but_english() -> None:
    assert "Báo cáo diễn tập khôi phục thảm họa" in rehearsal_report(REHEARSAL, "", "vi", ZONE)
    with pytest.raises(HopnhatError, match="--lang 'fr'"):
        rehearsal_report(REHEARSAL, "", "fr", ZONE)


def _drill_doc() -> dict[str, Any]:
    """The evidence of a passed drill of qlvb (named "… (QLVB)" in the example estate)."""
    paths = Paths(Path("/nonexistent"), load_estate(REPO / "inventory"))
    snap = Snapshot(id="ab" * 32, short_id="abababab",
                    time=datetime(2026, 11, 1, 9, 45, tzinfo=UTC), hostname="qlvb-db-01",
                    username="root", paths=("/srv/qlvb",))
    plan = plan_drill(paths.estate, "qlvb", DRILL, {"qlvb-db-01": snap},
                      [ipaddress.IPv4Address("127.20.9.10")])
    steps = [StepRecord(n, i * 2.0, 2.0, True) for i, n in enumerate(
        ("plan", "provision", "configure", "restore", "check", "probes", "teardown"))]
    return build(paths, DrillResult(DRILL, "danang", "qlvb", "op", STARTED, STARTED + 14.0,
                                    plan, "passed", [], steps, "0.14.0", rpo_seconds=1800.0,
                                    rto_seconds=12.0))


def test_a_drill_report_charts_the_history_by_when_each_drill_started_in_the_zone() -> None:
    doc = _drill_doc()
    earlier = PastDrill(STARTED - 86400, 600.0, 30.0, False)
    html = drill_report(doc, "cd" * 32, "en", [earlier, PastDrill(STARTED, 1800.0, 12.0, True)],
                        ZONE)
    assert "10-31 17:15" in html and "11-01 17:15" in html  # 10:15 UTC at +07:00
    assert "restore --verify" in html and "cd" * 32 in html
    assert "first recorded drill" not in html
    alone = drill_report(doc, "cd" * 32, "en", [PastDrill(STARTED, 1800.0, 12.0, True)], ZONE)
    assert "This is the system&#39;s first recorded drill." in alone


def test_report_times_are_in_the_estates_zone_with_the_offset_and_never_utc_with_z() -> None:
    doc = _drill_doc()
    assert doc["started_at"] == "2026-11-01T10:15:00.000Z"  # the evidence stays UTC
    html = drill_report(doc, "", "vi", [PastDrill(STARTED, 1800.0, 12.0, True)], ZONE)
    assert "<td>2026-11-01 17:15:00 +07:00</td>" in html  # started
    assert "<td>2026-11-01 17:15:14 +07:00</td>" in html  # finished
    assert "<td>2026-11-01 16:45:00 +07:00</td>" in html  # the snapshot's time
    assert "Thời gian theo múi giờ Asia/Ho_Chi_Minh" in html
    rehearsal = rehearsal_report(REHEARSAL, "", "en", "Europe/Paris")
    assert "<td>2026-11-01 11:15:00 +01:00</td>" in rehearsal
    assert "<td>2026-11-01 11:20:00 +01:00</td>" in rehearsal
    for text in (html, rehearsal):
        assert not re.search(r"\d:\d\d(\.\d+)?Z|\bUTC\b", text)


def test_a_drill_reports_title_names_the_system_once() -> None:
    doc = _drill_doc()
    assert doc["system"]["name"] == "Quản lý văn bản và điều hành (QLVB)"
    html = drill_report(doc, "", "vi", [PastDrill(STARTED, 1800.0, 12.0, True)], ZONE)
    title = "Báo cáo diễn tập khôi phục: Quản lý văn bản và điều hành (QLVB)</h1>"
    assert title in html and html.count("(QLVB)") == 2  # the title and the system's row
    assert "(QLVB) (QLVB)" not in html and "(qlvb)" not in html
    renamed = {**doc, "system": {**doc["system"], "name": "Quản lý văn bản"}}
    html = drill_report(renamed, "", "en", [PastDrill(STARTED, 1800.0, 12.0, True)], ZONE)
    assert "Restore drill report: Quản lý văn bản (QLVB)</h1>" in html
