"""`hopnhat lab` without a lab, or without root: clear words, nothing started."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from tests.helpers import REPO


def test_lab_up_without_root_says_it_needs_root_and_starts_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    result = CliRunner().invoke(app, ["--estate", str(REPO / "inventory"), "--state",
                                      str(tmp_path), "lab", "up"])
    assert result.exit_code == 1
    assert "needs root" in result.output
    assert not (tmp_path / "lab" / "pids").exists()


def test_lab_status_without_a_lab_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--state", str(tmp_path), "lab", "status"])
    assert result.exit_code == 0
    assert "not running" in result.output


def test_lab_down_needs_no_estate(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--estate", str(tmp_path / "nowhere"), "--state",
                                      str(tmp_path), "lab", "down", "--json"])
    assert result.exit_code == 0
    assert '"stopped": []' in result.output
