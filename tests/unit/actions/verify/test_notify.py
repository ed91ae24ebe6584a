"""Which event a verification's problems are told as: an attack check → attack_suspected,
freshness → backup_stale, anything else → verify_failed; each problem once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator.actions.verify.checks import Check
from orchestrator.actions.verify.notify import problems
from orchestrator.actions.verify.run import RepositoryReport, Target, VerifyResult
from orchestrator.verdicts import CHECKS, ERROR, FAILED, FOREIGN, FRESHNESS, OK, STRUCTURE


def _report(system: str, bad: dict[str, str]) -> RepositoryReport:
    target = Target(system, 1, "repo-01", None, timedelta(hours=1), 30, (f"{system}-db-01",),
                    ("/srv",), None, None)
    return RepositoryReport(target, target.key, tuple(
        Check(name, bad.get(name, OK), f"{name} says so") for name in CHECKS))


def test_each_problem_goes_to_its_one_event() -> None:
    result = VerifyResult("verify-1", "danang", "none", datetime(2026, 12, 7, tzinfo=UTC), 1.0,
                          (_report("qlvb", {FRESHNESS: FAILED, FOREIGN: FAILED}),
                           _report("dvc", {STRUCTURE: ERROR}), _report("sso", {})))
    assert problems(result) == {
        "backup_stale": ["qlvb@repo-01 freshness failed: freshness says so"],
        "attack_suspected": ["qlvb@repo-01 foreign failed: foreign says so"],
        "verify_failed": ["dvc@repo-01 structure error: structure says so"]}


def test_a_good_night_has_no_problem() -> None:
    result = VerifyResult("verify-1", "danang", "none", datetime(2026, 12, 7, tzinfo=UTC), 1.0,
                          (_report("sso", {}),))
    assert problems(result) == {}
