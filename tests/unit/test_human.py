"""Durations and sizes for people: each style at each unit's boundary, zero, negative values
(an age is negative when a clock is ahead), timedeltas, and what stands for a missing
value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.human import DurationStyle, SizeUnit, duration, local_time, size


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "0.0 s"), (42.14, "42.1 s"), (59.9, "59.9 s"), (60, "1 min 00 s"),
    (185.4, "3 min 05 s"), (3599, "59 min 59 s"), (3599.6, "1 h 00 min"),
    (3600, "1 h 00 min"), (7260, "2 h 01 min"), (86399, "23 h 59 min"), (86400, "1 d 0 h"),
    (3 * 86400 + 4 * 3600 + 59, "3 d 4 h"), (400 * 86400, "400 d 0 h"),
])
def test_words_are_seconds_to_a_tenth_then_two_units_from_a_minute_on(
        seconds: float, shown: str) -> None:
    assert duration(seconds) == duration(seconds, "words") == shown


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "0.0 s"), (0.04, "0.0 s"), (12.34, "12.3 s"), (185, "185.0 s"), (86400, "86400.0 s"),
])
def test_seconds_stay_seconds_however_long(seconds: float, shown: str) -> None:
    assert duration(seconds, "seconds") == shown


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "0s"), (2.7, "2s"), (59.99, "59s"), (60, "1m0s"), (182.4, "3m2s"), (3599, "59m59s"),
    (3600, "1h0m0s"), (7322, "2h2m2s"), (90000, "25h0m0s"),
])
def test_compact_is_restics_whole_seconds_with_hours_the_largest_unit(
        seconds: float, shown: str) -> None:
    assert duration(seconds, "compact") == shown


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "0.0s"), (42.14, "42.1s"), (59.4, "59.4s"), (59.6, "1m00s"), (60, "1m00s"),
    (185, "3m05s"), (3599, "59m59s"), (3600, "1h00m00s"), (7323, "2h02m03s"),
    (90000, "25h00m00s"),
])
def test_padded_has_two_digit_minutes_and_seconds(seconds: float, shown: str) -> None:
    assert duration(seconds, "padded") == shown


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "0s"), (45, "45s"), (59.9, "59s"), (90, "90s"), (900, "15m"), (5400, "90m"),
    (3600, "1h"), (86400, "1d"), (3 * 86400, "3d"), (7 * 86400, "1w"), (14 * 86400, "2w"),
    (36 * 3600, "36h"), (86401, "86401s"),
])
def test_estate_is_the_shortest_exact_form(seconds: float, shown: str) -> None:
    assert duration(seconds, "estate") == shown
    assert duration(timedelta(seconds=seconds), "estate") == shown


@pytest.mark.parametrize(("style", "seconds", "shown"), [
    ("words", -5, "-5.0 s"), ("words", -185, "-3 min 05 s"), ("seconds", -1.25, "-1.2 s"),
    ("compact", -182.4, "-3m2s"), ("compact", -7322, "-2h2m2s"), ("padded", -185, "-3m05s"),
    ("estate", -3600, "-1h"),
])
def test_a_negative_duration_is_its_magnitude_with_a_minus_sign(
        style: DurationStyle, seconds: float, shown: str) -> None:
    assert duration(seconds, style) == shown


@pytest.mark.parametrize(("style", "shown"), [
    ("words", "0.0 s"), ("seconds", "0.0 s"), ("compact", "0s"), ("padded", "0.0s"),
    ("estate", "0s")])
def test_a_negative_duration_that_shows_as_zero_has_no_sign(style: DurationStyle,
                                                              shown: str) -> None:
    assert duration(-0.04, style) == shown


def test_a_missing_duration_is_a_dash_or_what_the_caller_asks() -> None:
    assert duration(None) == duration(None, "compact") == "-"
    assert duration(None, missing="—") == "—"


def test_a_timedelta_is_its_seconds() -> None:
    assert duration(timedelta(minutes=3, seconds=5)) == "3 min 05 s"
    assert duration(timedelta(hours=2, seconds=2), "compact") == "2h0m2s"


@pytest.mark.parametrize(("count", "shown"), [
    (0, "0 B"), (1, "1 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
    (1024 ** 2 - 1, "1024.0 KiB"), (1024 ** 2, "1.0 MiB"), (int(20.1 * 1024 ** 2), "20.1 MiB"),
    (1024 ** 3, "1.0 GiB"), (1024 ** 4, "1.0 TiB"), (5 * 1024 ** 5, "5120.0 TiB"),
])
def test_a_size_takes_the_largest_unit_below_1024(count: int, shown: str) -> None:
    assert size(count) == shown


@pytest.mark.parametrize(("count", "unit", "shown"), [
    (0, "MiB", "0.0 MiB"), (8 * 2 ** 20, "MiB", "8.0 MiB"), (3 * 2 ** 30, "MiB", "3072.0 MiB"),
    (512, "MiB", "0.0 MiB"), (2048, "B", "2048 B"), (1024 ** 4, "GiB", "1024.0 GiB"),
])
def test_a_size_in_a_given_unit_stays_in_it(count: int, unit: SizeUnit, shown: str) -> None:
    assert size(count, unit) == shown


def test_a_negative_size_scales_by_its_magnitude() -> None:
    assert size(-2048) == "-2.0 KiB"


def test_a_missing_size_is_a_dash_or_what_the_caller_asks() -> None:
    assert size(None) == "-" and size(None, missing="—") == "—"


def test_a_unit_it_does_not_know_is_refused() -> None:
    with pytest.raises(ValueError, match="'PB' is not one of B, KiB"):
        size(1, "PB")  # type: ignore[arg-type]


# --- times in a time zone -------------------------------------------------------------------

@pytest.mark.parametrize(("when", "zone", "shown"), [
    ("2026-12-07T03:15:03.250Z", "Asia/Ho_Chi_Minh", "2026-12-07 10:15:03 +07:00"),
    ("2026-12-07T03:15:03+00:00", "UTC", "2026-12-07 03:15:03 +00:00"),
    ("2026-12-07T10:15:03+07:00", "Asia/Ho_Chi_Minh", "2026-12-07 10:15:03 +07:00"),
    ("2026-07-01T12:00:00Z", "Europe/Paris", "2026-07-01 14:00:00 +02:00"),  # summer time
    ("2026-03-07T03:15:03Z", "America/St_Johns", "2026-03-06 23:45:03 -03:30"),
    (datetime(2026, 12, 31, 20, 0, tzinfo=UTC), "Asia/Ho_Chi_Minh",
     "2027-01-01 03:00:00 +07:00"),
])
def test_a_time_is_written_in_the_zone_with_its_offset(when: datetime | str, zone: str,
                                                       shown: str) -> None:
    assert local_time(when, zone) == shown


def test_no_time_is_a_dash_or_what_the_caller_asks() -> None:
    assert local_time(None, "UTC") == "—" and local_time("", "UTC", missing="-") == "-"


@pytest.mark.parametrize("when", ["2026-12-07T03:15:03", datetime(2026, 12, 7, 3, 15)])
def test_a_time_without_its_offset_is_refused(when: datetime | str) -> None:
    with pytest.raises(ValueError, match="no UTC offset"):
        local_time(when, "Asia/Ho_Chi_Minh")
