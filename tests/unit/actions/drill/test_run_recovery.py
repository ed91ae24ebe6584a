"""A drill's steps in order with its recovery steps, on a faked scratch VM (vCenter,
provisioning, configure and the files restore stood in for): each recovery step is a timed
step of its own; the RTO ends where the probes end, so it holds the recovery; a failing
recovery step fails the drill at that step, naming it, runs nothing after it (reported as
not run) and still tears down."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator.actions.drill import run as drill_run
from orchestrator.actions.drill.plan import DrillPlan, plan_drill
from orchestrator.actions.drill.result import DrillResult
from orchestrator.adapters.restic import Snapshot
from orchestrator.estate import load_estate
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths
from tests.helpers import REPO, FakeRemote

NEWEST = "2026-12-07T02:55:01.123456+00:00"


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "state", load_estate(REPO / "inventory"))


@pytest.fixture
def vm() -> FakeRemote:
    """The scratch VM of dvc-db-01: it holds the dump's manifest; the restored database
    answers the counts the manifest recorded; the files' SQLite answers ok."""
    fake = FakeRemote()
    dumped = datetime.now(UTC).replace(microsecond=0)
    newest = dumped - timedelta(minutes=5, microseconds=1)
    fake.answer(r"^head .*dumps/dvc\.json", stdout=json.dumps({
        "format": 1, "name": "dvc", "engine": "postgresql", "database": "dvc",
        "snapshot": "5e" * 32, "file": "/dvc.pgdump", "bytes": 4096,
        "dumped_at": dumped.isoformat(), "tables": {
            "applications": 200, "application_status": 640, "attachments": 300},
        "newest": {"table": "application_status", "column": "changed_at",
                   "time": newest.isoformat()}}))
    fake.answer(r"runuser -u postgres -- psql",
                stdout=f"200|640|300|{newest.timestamp():.6f}\n")
    fake.answer(r"^sqlite3 ", stdout="ok\n")
    return fake


@pytest.fixture
def torn_down(monkeypatch: pytest.MonkeyPatch, vm: FakeRemote) -> Iterator[list[str]]:
    """run.py's outside world stood in for: the plan of dvc on one scratch VM, provision and
    configure that only hand over ``vm``, a restore and a check that find nothing wrong, a
    teardown that notes what it would destroy."""
    destroyed: list[str] = []

    def plan(drill: Any, book: Any, selector: str, keep: bool, detail: list[str]
             ) -> DrillPlan:
        snap = Snapshot(id="ab" * 32, short_id="abababab",
                        time=datetime.now(UTC) - timedelta(minutes=10),
                        hostname="dvc-db-01", username="root", paths=("/srv/dvc",))
        made = plan_drill(drill.paths.estate, "dvc", drill.result.drill_id,
                          {"dvc-db-01": snap}, [ipaddress.IPv4Address("127.20.9.10")])
        drill.result.plan = made
        return made

    def provision(drill: Any, plan: DrillPlan) -> None:
        drill.provisioned = True

    def configure(drill: Any, plan: DrillPlan) -> None:
        vm.host = plan.scratch[0].vm.name
        drill.remotes[vm.host] = vm

    def teardown(drill: Any, detail: list[str]) -> None:
        destroyed.extend(v.name for v in drill.result.plan.vms)

    monkeypatch.setattr(drill_run, "_plan", plan)
    monkeypatch.setattr(drill_run, "_provision", provision)
    monkeypatch.setattr(drill_run, "_configure", configure)
    monkeypatch.setattr(drill_run, "_restore_and_read", lambda *a: {})
    monkeypatch.setattr(drill_run, "_check", lambda *a: None)
    monkeypatch.setattr(drill_run, "_teardown", teardown)
    yield destroyed


def drill(paths: Paths) -> DrillResult:
    with Ledger(paths.ledger) as ledger:
        return drill_run.run_drill(paths, "dvc", ledger=ledger)


def test_recovery_steps_run_in_order_as_steps_of_their_own_and_the_rto_holds_them(
        paths: Paths, vm: FakeRemote, torn_down: list[str]) -> None:
    result = drill(paths)
    assert result.verdict == "passed", result.reasons
    assert [(s.name, s.kind) for s in result.steps] == [
        ("plan", "drill"), ("provision", "drill"), ("configure", "drill"), ("restore", "drill"),
        ("check", "drill"), ("start PostgreSQL", "recovery"),
        ("restore the applications database", "recovery"), ("probes", "drill"),
        ("teardown", "drill")]
    steps = {s.name: s for s in result.steps}
    assert result.rto_seconds is not None
    assert steps["probes"].start >= steps["restore the applications database"].end
    assert result.rto_seconds == pytest.approx(steps["probes"].end, abs=0.05)
    assert "pg_createcluster --start --locale C.UTF-8 15 dvc" in vm.commands[0]
    assert "dump dvc (snapshot 5e5e5e5e" in steps["restore the applications database"].detail
    assert [d.manifest.name for d in result.databases] == ["dvc"]
    assert [(p.name, p.ok) for p in result.probes] == [
        ("applications as at dump time", True), ("database integrity", True)]
    assert (result.not_run, result.probes_not_run, torn_down) == (
        [], [], ["drill-" + result.drill_id[-6:] + "-dvc-db-01"])
    doc = json.loads(Path(result.evidence).read_text())
    assert [s["kind"] for s in doc["steps"]].count("recovery") == 2
    assert doc["recovery"][1] == {"name": "restore the applications database",
                                  "restore_database": "dvc", "timeout_seconds": 3600.0}
    assert doc["databases"][0]["snapshot"] == "5e" * 32
    assert doc["probes"][0]["kind"] == "sql" and doc["probes"][0]["ok"]
    html = Path(result.html).read_text()
    assert "recovery: start PostgreSQL" in html and 'id="sql-probes"' in html


def test_a_failing_recovery_step_fails_the_drill_there_runs_nothing_after_and_tears_down(
        paths: Paths, vm: FakeRemote, torn_down: list[str]) -> None:
    vm.answer(r"pg_createcluster", rc=1, stderr="Error: cluster configuration already exists")
    result = drill(paths)
    assert (result.verdict, result.failed_step) == ("failed", "start PostgreSQL")
    assert result.reasons == ["start PostgreSQL: drill-" + result.drill_id[-6:] + "-dvc-db-01: "
                              "pg_createcluster exited 1: Error: cluster configuration "
                              "already exists"]
    assert [(n.name, n.kind) for n in result.not_run] == [
        ("restore the applications database", "recovery"), ("probes", "drill")]
    assert result.probes_not_run == ["applications as at dump time", "database integrity"]
    assert len(vm.commands) == 1 and not result.probes and result.rto_seconds is None
    assert torn_down and result.steps[-1].name == "teardown"
    summary = result.summary()
    assert summary["not_run"][0] == {"name": "restore the applications database",
                                     "kind": "recovery"}
    html = Path(result.html).read_text()
    assert html.count("NOT RUN") == 4  # two steps, two probes


def test_a_drill_that_fails_before_the_recovery_reports_every_recovery_step_not_run(
        paths: Paths, monkeypatch: pytest.MonkeyPatch, torn_down: list[str]) -> None:
    from orchestrator.errors import HopnhatError

    def broken(*args: Any) -> None:
        raise HopnhatError("restic restore exited 1")
    monkeypatch.setattr(drill_run, "_restore_and_read", broken)
    result = drill(paths)
    assert result.failed_step == "restore"
    assert [n.name for n in result.not_run] == [
        "check", "start PostgreSQL", "restore the applications database", "probes"]
    assert torn_down


def test_a_step_that_fails_because_the_drill_was_stopped_ends_it_aborted(
        paths: Paths, monkeypatch: pytest.MonkeyPatch, torn_down: list[str]) -> None:
    """Stopped from another thread (a rehearsal's Ctrl-C, the nightly window's end) while
    restoring: the restore fails as its SSH sessions are cut, and the drill is aborted, not
    failed, once its scratch VM is torn down."""
    from orchestrator.actions.drill.result import DrillAborted

    def cut(drill: Any, plan: DrillPlan, samples: int) -> None:
        drill.cancel.abort()
        raise drill_run._StepFailed("restore", ["restore: the connection was lost"])
    monkeypatch.setattr(drill_run, "_restore_and_read", cut)
    with pytest.raises(DrillAborted):
        drill(paths)
    with Ledger(paths.ledger) as ledger:
        (run,) = ledger.runs("drill")
    assert run.status == "aborted" and torn_down
