"""``hopnhat retire`` from end to end, the one flow the CLI calls: plan, show, the operator's
confirmation (``confirm``: refused, nothing is changed), then the retirement, all with one
ledger open."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.actions.migrate.run import Progress
from orchestrator.actions.retire.plan import RetirePlan, plan_retire
from orchestrator.actions.retire.result import RetireResult
from orchestrator.actions.retire.run import retire
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths


@dataclass(frozen=True)
class Retired:
    """The plan, and the retirement's result (None: the operator refused it)."""

    plan: RetirePlan
    result: RetireResult | None


def retire_flow(paths: Paths, system: str, *, confirm: Callable[[RetirePlan], bool],
                keep: str = "10y", reason: str | None = None,
                planned: Callable[[RetirePlan], None] | None = None, lang: str = "vi",
                progress: Progress | None = None) -> Retired:
    """Plan the retirement of ``system`` (:func:`~.plan.plan_retire`: raises PlanError, exit
    2, for a refusal), show it through ``planned``, ask ``confirm``, then :func:`~.run.retire`
    it."""
    with Ledger(paths.ledger) as ledger:
        the_plan = plan_retire(paths.estate, ledger, system, keep=keep, reason=reason)
        if planned is not None:
            planned(the_plan)
        if not confirm(the_plan):
            return Retired(the_plan, None)
        return Retired(the_plan, retire(paths, the_plan, ledger=ledger, lang=lang,
                                        progress=progress))
