"""The handover record's words, in both languages (its times: tests/unit/test_human.py)."""

from __future__ import annotations

import pytest

from orchestrator.errors import HopnhatError
from orchestrator.reports.migrate import labels


def test_record_words_in_both_languages() -> None:
    vi, en = labels("vi"), labels("en")
    assert vi.keys() == en.keys()
    assert vi["title"] == "Biên bản bàn giao dữ liệu điện tử"
    assert en["title"] == "Electronic data handover record"
    with pytest.raises(HopnhatError, match="--lang 'fr'"):
        labels("fr")
