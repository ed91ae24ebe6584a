"""A drill's evidence: canonical JSON and its SHA-256, the HTML report written in both
languages, and a rehearsal that fails a dependant of a failed system (the pictures:
tests/unit/reports/drill/test_svg.py)."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestrator.actions.drill import rehearse as drill_rehearse
from orchestrator.actions.drill.evidence import load_evidence, write_evidence
from orchestrator.actions.drill.plan import plan_drill
from orchestrator.actions.drill.result import DrillResult, StepRecord
from orchestrator.actions.report_files import canonical
from orchestrator.adapters.restic import Snapshot
from orchestrator.errors import HopnhatError
from orchestrator.estate import load_estate
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths
from tests.helpers import REPO

DRILL = "drill-20261101T101500Z-3fa2c1"


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "state", load_estate(REPO / "inventory"))


def a_result(paths: Paths) -> DrillResult:
    snap = Snapshot(id="ab" * 32, short_id="abababab",
                    time=datetime(2026, 11, 1, 9, 45, tzinfo=UTC), hostname="qlvb-db-01",
                    username="root", paths=("/srv/qlvb",))
    plan = plan_drill(paths.estate, "qlvb", DRILL, {"qlvb-db-01": snap},
                      [ipaddress.IPv4Address("127.20.9.10")])
    started = datetime(2026, 11, 1, 10, 15, tzinfo=UTC).timestamp()
    steps = [StepRecord(n, i * 2.0, 2.0, True) for i, n in enumerate(
        ("plan", "provision", "configure", "restore", "check", "probes", "teardown"))]
    return DrillResult(DRILL, "danang", "qlvb", "an operator <b>", started,
                       started + 14.0, plan, "passed", [], steps, "0.14.0",
                       rpo_seconds=1800.0, rto_seconds=12.0)


def test_evidence_is_canonical_json_whose_sha256_is_recorded(paths: Paths) -> None:
    result = a_result(paths)
    with Ledger(paths.ledger) as ledger:
        write_evidence(paths, result, ledger, "en")
        raw = Path(result.evidence).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == result.sha256
        doc = json.loads(raw)
        assert canonical(doc) == raw
        assert (doc["achieved"], doc["within_targets"]) == (
            {"rpo_seconds": 1800.0, "rto_seconds": 12.0}, {"rpo": True, "rto": True})
        assert Path(result.evidence + ".sha256").read_text() == \
            f"{result.sha256}  evidence.json\n"
        html = Path(result.html).read_text()
        assert result.sha256 in html and "Restore drill report" in html
        assert "an operator &lt;b&gt;" in html  # escaped
        assert "http" not in html.replace("http://www.w3.org/2000/svg", "")  # self-contained
        Path(result.evidence).write_bytes(raw.replace(b"passed", b"failed"))
        with pytest.raises(HopnhatError, match="the evidence was changed"):
            load_evidence(paths, DRILL)


def test_a_report_and_its_evidence_are_0640_in_folders_0750_in_a_state_folder_0700(
        paths: Paths) -> None:
    old = os.umask(0o022)  # an operator's usual umask
    try:
        result = a_result(paths)
        with Ledger(paths.ledger) as ledger:
            write_evidence(paths, result, ledger, "en")
    finally:
        os.umask(old)
    folder = Path(result.evidence).parent
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert modes == {"evidence.json": 0o640, "evidence.json.sha256": 0o640,
                     "report.html": 0o640}
    assert [stat.S_IMODE(p.stat().st_mode) for p in (folder, folder.parent, paths.state)] \
        == [0o750, 0o750, 0o700]


def test_the_report_speaks_vietnamese(paths: Paths) -> None:
    result = a_result(paths)
    with Ledger(paths.ledger) as ledger:
        write_evidence(paths, result, ledger, "vi")
    html = Path(result.html).read_text()
    for words in ("Báo cáo diễn tập khôi phục", "ĐẠT", "Mục tiêu RTO", "RTO đạt được"):
        assert words in html


def test_a_failed_system_fails_its_dependants_without_running_them(
        paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []

    def fake(paths_: Paths, code: str, **_: Any) -> DrillResult:
        ran.append(code)
        result = a_result(paths_)
        result.system = code
        result.drill_id = f"drill-20261101T101500Z-00000{len(ran)}"
        if code == "sso":
            result.verdict, result.reasons = "failed", ["probes: sso broke"]
        with Ledger(paths_.ledger) as ledger:
            write_evidence(paths_, result, ledger)
        return result

    monkeypatch.setattr(drill_rehearse, "run_drill", fake)
    groups = drill_rehearse.levels(paths.estate, ["sso", "lgsp", "qlvb"])
    with Ledger(paths.ledger) as ledger:
        result = drill_rehearse.rehearse(paths, groups, ledger=ledger)
    assert ran == ["sso"]
    outcome = {s.system: (s.verdict, s.reason) for s in result.systems}
    assert outcome == {"sso": ("failed", "probes: sso broke"),
                       "lgsp": ("not run", "dependency sso failed"),
                       "qlvb": ("not run", "dependency sso failed")}
    assert result.verdict == "failed" and result.exit_code == 1
    assert "dependency sso failed" in Path(result.html).read_text()
