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
