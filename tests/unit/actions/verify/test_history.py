"""``verify history``: the runs of the ledger, newest first; of one system, only the runs
that verified it, with its verdict and what its checks found."""

from __future__ import annotations

from pathlib import Path

from orchestrator.actions.verify.history import history
from orchestrator.ledger import Ledger
from orchestrator.verdicts import ERROR, FAILED, OK, SKIPPED


def test_of_one_system_only_its_runs_with_its_verdict_and_problems(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        both = ledger.start("verify", "example", {})
        ledger.event(both, "qlvb", "repository", checks=[
            {"name": "freshness", "status": FAILED, "message": "qlvb-db-01 is 3 days old"},
            {"name": "copy", "status": SKIPPED, "message": "no second copy configured"},
            {"name": "locks", "status": ERROR, "message": "locks not read"}])
        ledger.finish(both, "failed", {"exit_code": 1,
                                       "repositories": {"qlvb": FAILED, "email": OK}})
        email = ledger.start("verify", "example", {})
        ledger.finish(email, "ok", {"exit_code": 0, "repositories": {"email": OK}})
        rows = history(ledger, "qlvb")
        assert [row["run_id"] for row in history(ledger)] == [email, both]
        assert [row["run_id"] for row in history(ledger, limit=1)] == [email]
    assert [(row["run_id"], row["verdict"], row["problems"]) for row in rows] == [
        (both, FAILED, ["freshness failed: qlvb-db-01 is 3 days old",
                        "locks error: locks not read"])]
    assert rows[0]["repositories"] == {"qlvb": FAILED, "email": OK}
    assert rows[0]["exit_code"] == 1
