"""The run ledger is opened as a context manager: its connection is closed when the block
ends, whether it ended normally or by an exception."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from orchestrator.ledger import Ledger


def test_the_ledger_closes_its_connection_when_the_block_ends(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        run_id = ledger.start("verify", "example", {})
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        ledger.runs("verify")
    with Ledger(tmp_path / "ledger.sqlite") as again:  # what was written stays
        assert [run.id for run in again.runs("verify")] == [run_id]


def test_the_ledger_closes_its_connection_when_the_block_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="a run that broke"), \
            Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.start("verify", "example", {})
        raise RuntimeError("a run that broke")
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        ledger.runs("verify")


def test_the_history_of_a_kind_is_newest_first_filtered_and_limited(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ids = [ledger.start("verify", "example", {"night": night}) for night in range(5)]
        ledger.start("drill", "example", {"night": 4})
        assert [run.id for run in ledger.history("verify")] == ids[::-1]
        even = ledger.history("verify", of=lambda run: run.params["night"] % 2 == 0, limit=2)
        assert [run.id for run in even] == [ids[4], ids[2]]
