"""Retirement's rules without a lab: when it may run, what it closes, how the estate looks
afterwards, the kept-period arithmetic, the command that removes a host's timer, and verify's
judgement of the final snapshots."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.actions.retire.plan import keep_until, plan_retire
from orchestrator.actions.retire.run import timer_removal_command
from orchestrator.actions.retire.state import apply, resumable, retirements
from orchestrator.actions.verify.checks import judge_final
from orchestrator.adapters.restic import Snapshot
from orchestrator.errors import PlanError
from orchestrator.ledger import Ledger
from orchestrator.verdicts import FAILED, OK, SKIPPED
from tests.helpers import EstateCopy

NOW = datetime(2026, 12, 6, tzinfo=UTC).timestamp()


def _cutover(ledger: Ledger, estate: str, until: float) -> None:
    run_id = ledger.start("migrate", estate, {"system": "qlvbqn", "to": "danang",
                                              "step": "cutover"})
    ledger.finish(run_id, "passed", {"evidence": f"/s/{run_id}/evidence.json",
                                     "parallel_until": until, "targets": ["qlvbqn-db-02"]})


def test_a_moved_system_is_refused_before_its_cutover_and_its_parallel_runs_end(
        estate_copy: EstateCopy, tmp_path: object) -> None:
    estate = estate_copy.load()
    with Ledger(estate_copy.root / "ledger.sqlite") as ledger:
        with pytest.raises(PlanError, match="its migration is planned") as caught:
            plan_retire(estate, ledger, "qlvbqn", now=NOW)
        assert caught.value.exit_code == 2
        _cutover(ledger, estate.id, NOW + 200 * 86400)
        with pytest.raises(PlanError, match="parallel run lasts until 2027-06-24"):
            plan_retire(estate, ledger, "qlvbqn", now=NOW)
        plan = plan_retire(estate, ledger, "qlvbqn", reason="  early, by decision 118 ", now=NOW)
        assert plan.moved and plan.vms == ("qlvbqn-db-01",) == plan.adopted == plan.hosts
        assert plan.targets == ("qlvbqn-db-02",) and plan.reason == "early, by decision 118"
        assert plan_retire(estate, ledger, "qlvbqn", now=NOW + 201 * 86400).reason is None


def test_a_system_without_migration_is_retired_whole_and_the_wrong_ways_are_named(
        estate_copy: EstateCopy) -> None:
    estate = estate_copy.load()
    with Ledger(estate_copy.root / "ledger.sqlite") as ledger:
        plan = plan_retire(estate, ledger, "qlvb", now=NOW)
        assert not plan.moved and set(plan.vms) == {vm.name for vm in estate.vms_of("qlvb")}
        assert set(plan.hosts) == {vm.name for vm in estate.vms_of("qlvb") if vm.data}
        for code, keep, says in [("qvlb", "10y", "no system 'qvlb'"),
                                 ("qlvb", "ten years", "--keep 'ten years'"),
                                 ("qlvb", "0y", "--keep '0y'"), ("qlvb", "101y", "hundred")]:
            with pytest.raises(PlanError, match=says) as caught:
                plan_retire(estate, ledger, code, keep=keep, now=NOW)
            assert caught.value.exit_code == 2
        without = [c for c, s in estate.systems.items() if s.backup is None]
        if without:
            with pytest.raises(PlanError, match="has no backup"):
                plan_retire(estate, ledger, without[0], now=NOW)


def test_keep_counts_calendar_years_months_and_days() -> None:
    start = datetime(2024, 2, 29, 12, tzinfo=UTC).timestamp()
    assert datetime.fromtimestamp(keep_until("10y", start), UTC) == datetime(
        2034, 2, 28, 12, tzinfo=UTC)  # no 29 February: the month's 28th
    assert datetime.fromtimestamp(keep_until("18m", start), UTC) == datetime(
        2025, 8, 29, 12, tzinfo=UTC)
    assert keep_until("400d", start) - start == timedelta(days=400).total_seconds()


def test_after_retirement_the_estate_has_no_retired_vm_and_a_moved_system_its_targets(
        estate_copy: EstateCopy) -> None:
    estate = estate_copy.load()
    with Ledger(estate_copy.root / "ledger.sqlite") as ledger:
        assert apply(estate, retirements(ledger, estate.id)) is estate
        whole = ledger.start("retire", estate.id, {"system": "qlvb"})
        qlvb = [vm.name for vm in estate.vms_of("qlvb")]
        ledger.finish(whole, "passed", {"vms": qlvb, "hosts": qlvb[:1],
                                        "finals": {qlvb[0]: "f" * 64}, "moved": False})
        moved = ledger.start("retire", estate.id, {"system": "qlvbqn"})
        ledger.finish(moved, "failed", {"vms": ["qlvbqn-db-01"], "evidence_sha256": "e" * 64})
        assert resumable(ledger, estate.id, "qlvbqn") is not None  # evidence written: take up
        after = apply(estate, retirements(ledger, estate.id))
        assert after.vms_of("qlvb") == [] and after.vms_of("qlvbqn") == estate.vms_of("qlvbqn")
        ledger.finish(ledger.start("retire", estate.id, {"system": "qlvbqn"}), "passed",
                      {"vms": ["qlvbqn-db-01"], "hosts": ["qlvbqn-db-01"], "moved": True})
        after = apply(estate, retirements(ledger, estate.id))
        assert [vm.name for vm in after.vms_of("qlvbqn")] == ["qlvbqn-db-02"]
        assert after.targets_of("qlvbqn") == [] and "qlvb" in after.systems
        assert resumable(ledger, estate.id, "qlvbqn") is None
        with pytest.raises(PlanError, match="was retired by run"):
            plan_retire(estate, ledger, "qlvb", now=NOW)


def test_the_timer_removal_command_is_quoted_and_says_when_a_file_stays(tmp_path: object
                                                                       ) -> None:
    line = timer_removal_command("qlvb")
    assert "systemctl disable --now hopnhat-backup-qlvb.timer" in line
    assert "/etc/hopnhat/backup-qlvb.json" in line
    done = subprocess.run(["sh", "-n", "-c", line], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "'" in timer_removal_command("a b;rm")  # never reaches the shell bare


def _snap(ident: str, host: str, *tags: str) -> Snapshot:
    return Snapshot(ident, ident[:8], datetime(2026, 1, 1, tzinfo=UTC), host, "root",
                    ("/srv",), tags)


def test_verify_flags_a_final_snapshot_missing_or_untagged() -> None:
    finals = {"db-01": "f" * 64, "db-02": "e" * 64}
    kept = [_snap("f" * 64, "db-01", "final", "archived"),
            _snap("e" * 64, "db-02", "final", "archived")]
    assert judge_final("q@repo", kept, finals).status == OK
    assert judge_final("q@repo", kept, {}).status == SKIPPED
    gone = judge_final("q@repo", kept[:1], finals)
    assert gone.status == FAILED and "host db-02: the final snapshot eeeeeeee" in gone.message
    untagged = judge_final("q@repo", [kept[0], _snap("e" * 64, "db-02")], finals)
    assert untagged.status == FAILED and "lost its final tag" in untagged.message


def test_damage_found_by_the_check_stops_the_retirement_before_anything_is_destroyed(
        estate_copy: EstateCopy, monkeypatch: pytest.MonkeyPatch) -> None:
    from contextlib import contextmanager
    from pathlib import Path
    from typing import Any

    from orchestrator.actions.backup.run import BackupRun, HostBackup
    from orchestrator.actions.retire import run as retire_run
    from orchestrator.adapters.restic_errors import RepositoryDamaged
    from orchestrator.settings import Paths

    estate = estate_copy.load()
    with Ledger(estate_copy.root / "ledger.sqlite") as ledger:
        plan = plan_retire(estate, ledger, "qlvb", now=NOW)
        made = "c" * 64

        def backups(paths: Any, clients: Any, **kw: Any) -> BackupRun:
            return BackupRun("backup-1", tuple(HostBackup(h, "qlvb", "ok", "job", made)
                                               for h in plan.hosts), 1.0)

        class Damaged:
            repo = type("R", (), {"display": "qlvb@repo-qnam-01"})()

            def snapshots(self) -> list[Snapshot]:
                return [_snap(made, h) for h in plan.hosts]

            def tag(self, ids: Any, tags: Any) -> None:
                del ids, tags

            def version(self) -> tuple[int, int, int]:
                return (0, 18, 1)

            def check(self, subset: str, on_line: Any = None) -> None:
                assert subset == "all"  # every byte read
                raise RepositoryDamaged("restic check: pack 1234abcd: ciphertext verification "
                                        "failed", repository="qlvb@repo-qnam-01", command="check")

        @contextmanager
        def repository(*a: Any, **kw: Any) -> Any:
            yield None
        closed: list[str] = []
        monkeypatch.setattr(retire_run, "run_backups", backups)
        monkeypatch.setattr(retire_run, "open_repository", repository)
        monkeypatch.setattr(retire_run, "_close", lambda work: closed.append("destroyed"))
        paths = Paths(Path(estate_copy.root) / "state", estate)
        result = retire_run.retire(paths, plan, ledger=ledger, secrets=object(),  # type: ignore[arg-type]
                                   make_restic=lambda repo: Damaged())  # type: ignore[arg-type,return-value]
        assert result.verdict == "failed" and result.failed_step == "check"
        assert "1234abcd" in result.reasons[0] and "nothing was destroyed" in result.reasons[0]
        assert closed == [] and [s.name for s in result.steps] == ["final backup", "check"]
        assert ledger.runs("retire")[0].status == "failed"
        assert retirements(ledger, estate.id) == {}  # the system is not retired
