"""The handover record's words and times: local with the offset written, in both languages."""

from __future__ import annotations

import pytest

from orchestrator.errors import HopnhatError
from orchestrator.reports.migrate import labels, local_time


def test_record_times_are_local_with_the_offset_and_words_in_both_languages() -> None:
    assert local_time("2026-12-06T08:04:05Z", "Asia/Ho_Chi_Minh") == \
        "2026-12-06 15:04:05 UTC+07:00"
    assert local_time(None, "Asia/Ho_Chi_Minh") == "—"
    vi, en = labels("vi"), labels("en")
    assert vi.keys() == en.keys()
    assert vi["title"] == "Biên bản bàn giao dữ liệu điện tử"
    assert en["title"] == "Electronic data handover record"
    with pytest.raises(HopnhatError, match="--lang 'fr'"):
        labels("fr")
