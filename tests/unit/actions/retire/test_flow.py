"""retire as one flow: the plan shown, the operator's confirmation, then the retirement —
refused, nothing runs and nothing is recorded. The retirement itself is a fake here (it
needs hosts and repositories)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.actions.retire import flow
from orchestrator.actions.retire.flow import retire_flow
from orchestrator.actions.retire.plan import RetirePlan
from orchestrator.actions.retire.result import RetireResult
from orchestrator.errors import PlanError
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths
from tests.helpers import EstateCopy


@pytest.fixture
def paths(estate_copy: EstateCopy) -> Paths:
    return Paths(estate_copy.root / "state", estate_copy.load())


@pytest.fixture
def retired(monkeypatch: pytest.MonkeyPatch) -> list[RetirePlan]:
    """The plans the (fake) retirement carried out."""
    done: list[RetirePlan] = []

    def fake(paths: Paths, the_plan: RetirePlan, *, ledger: Ledger, **_: Any) -> RetireResult:
        done.append(the_plan)
        return RetireResult("retire-1", the_plan, "tester", 0.0)

    monkeypatch.setattr(flow, "retire", fake)
    return done


def runs(paths: Paths) -> list[str]:
    with Ledger(paths.ledger) as ledger:
        return [run.kind for run in ledger.runs()]


def test_refused_at_the_confirmation_nothing_is_retired_or_recorded(
        paths: Paths, retired: list[RetirePlan]) -> None:
    shown: list[RetirePlan] = []
    asked: list[RetirePlan] = []

    def confirm(the_plan: RetirePlan) -> bool:
        asked.append(the_plan)
        return False

    done = retire_flow(paths, "qlvb", confirm=confirm, planned=shown.append)
    assert done.result is None
    assert shown == asked == [done.plan] and done.plan.system == "qlvb"
    assert retired == []
    assert runs(paths) == []


def test_confirmed_the_plan_shown_is_the_one_retired(
        paths: Paths, retired: list[RetirePlan]) -> None:
    done = retire_flow(paths, "qlvb", confirm=lambda the_plan: True, keep="7y")
    assert done.result is not None and retired == [done.plan]
    assert done.plan.keep == "7y"


def test_a_refused_plan_asks_no_one(paths: Paths, retired: list[RetirePlan]) -> None:
    def never(the_plan: RetirePlan) -> bool:
        raise AssertionError("the operator was asked")

    with pytest.raises(PlanError, match="--keep 'ten years'"):
        retire_flow(paths, "qlvb", confirm=never, keep="ten years")
    assert retired == []
