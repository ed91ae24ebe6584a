"""``drill history`` and ``drill due`` from the ledger's drill runs."""

from __future__ import annotations

import time
from pathlib import Path

from orchestrator.actions.drill.history import due, history
from orchestrator.estate import load_estate
from orchestrator.ledger import Ledger
from tests.helpers import EXAMPLE_ESTATE

ESTATE = load_estate(EXAMPLE_ESTATE)


def test_the_history_of_one_system_holds_its_drills_newest_first(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        first = ledger.start("drill", ESTATE.id, {"system": "qlvb"})
        ledger.finish(first, "failed", {"rto_seconds": 900.0})
        other = ledger.start("drill", ESTATE.id, {"system": "email"})
        ledger.finish(other, "passed", {})
        second = ledger.start("drill", ESTATE.id, {"system": "qlvb"})
        ledger.finish(second, "passed", {"rpo_seconds": 60.0, "sha256": "ab"})
        assert [r.drill_id for r in history(ledger)] == [second, other, first]
        rows = history(ledger, "qlvb")
        overdue = {row.system: row.overdue for row in due(ESTATE, ledger, time.time())}
    assert [(r.drill_id, r.verdict, r.rpo_seconds, r.sha256) for r in rows] == [
        (second, "passed", 60.0, "ab"), (first, "failed", None, None)]
    assert overdue["qlvb"] is False and overdue["email"] is False
    assert overdue["dvc"] is True  # never drilled
