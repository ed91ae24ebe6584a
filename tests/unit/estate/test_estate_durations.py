"""Durations are written ``15m``, ``1h``, ``30d``, ``2w`` (or seconds) and read back as
written from the shortest exact form (tests/unit/test_human.py has that form's table)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrator.estate.model import parse_duration
from orchestrator.human import duration


@pytest.mark.parametrize(("written", "seconds"), [
    ("45s", 45), ("15m", 900), ("1h", 3600), ("24h", 86400), ("30d", 30 * 86400),
    ("2w", 14 * 86400), (" 5 m ", 300), ("0s", 0), (90, 90), (timedelta(hours=2), 7200),
])
def test_parse_duration_reads_a_number_and_a_unit(written: object, seconds: int) -> None:
    assert parse_duration(written) == timedelta(seconds=seconds)


@pytest.mark.parametrize("written", [
    "1.5h", "1h30m", "15 minutes", "15M", "", "h", "-1h", True, None, [15],
    -60, float("nan"), float("inf"), 10**20, "99999999999999w",
])
def test_parse_duration_refuses_what_is_not_a_duration_with_a_value_error(written: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(written)


@pytest.mark.parametrize("written", ["45s", "15m", "1h", "30d", "2w"])
def test_the_shortest_exact_form_reads_back_as_written(written: object) -> None:
    assert duration(parse_duration(written), "estate") == written
