"""What an estate value may contain, by where it flows: one place for every rule.

- names and codes (:data:`Name`, :data:`Code`): they become VM names, unit names, users,
  file names, metric labels;
- one-line text (:data:`Label`): titles and names people read; they reach reports, unit
  descriptions and terminals;
- paths (:data:`AbsPath`): absolute, normalised, no ``..``, no control character (they
  reach restic, ssh and unit files on hosts);
- schedules (:data:`Schedule`): systemd's calendar grammar (``OnCalendar=``), checked when
  the estate is loaded by :func:`check_calendars` (``systemd-analyze calendar`` where
  present, else :func:`calendar_problem`, hopnhat's reading of the grammar's common
  subset);
- durations (:func:`longer_than_zero` where zero makes no sense);
- strict numbers (:data:`Int`, :data:`Float`, :data:`Bool`): no booleans for numbers
  (``cpu: yes`` is not 1 vCPU), no infinities or NaN, no words for booleans.

The loader also refuses a control character in any key or string of any file (see
:func:`control_characters`), so no value can end a line in a unit file or an SSH option, or
drive a terminal. How each value is quoted where it lands is :mod:`orchestrator.quoting`.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, Field, Strict

from orchestrator.quoting import CONTROL, terminal

Int = Annotated[int, Strict()]
Float = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Bool = Annotated[bool, Strict()]

Name = Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Code = Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{1,15}$")]
Label = Annotated[str, Field(max_length=200)]


def _absolute_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"{terminal(value, 80)!s} is not an absolute path (write it from /)")
    parts = value.split("/")
    if ".." in parts or "." in parts:
        raise ValueError(f"{terminal(value, 80)} holds '.' or '..': write the path it means")
    if posixpath.normpath(value) != value and value != "/":
        raise ValueError(f"{terminal(value, 80)} is not written plainly: write "
                         f"{posixpath.normpath(value)}")
    return value


AbsPath = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_absolute_path)]
#: a folder on a repository host that its role writes into unit files (ReadWritePaths=),
#: environment files and sshd's config: plain characters only (no blank, %, $, comma,
#: colon), which each of them takes as they are
HostFolder = Annotated[AbsPath, Field(max_length=255, pattern=r"^/[A-Za-z0-9._@+/-]*$")]


def longer_than_zero(value: timedelta) -> timedelta:
    """The validator of durations where zero makes no sense (an RPO, a timeout)."""
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


Schedule = Annotated[str, Field(min_length=1, max_length=200)]


def _key(at: str, key: object) -> str:
    """A key path as problems write it (``tiers[1].rpo``, ``vms[0].cpu``)."""
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{at}[{key}]"
    return f"{at}.{key}" if at else str(key)


def control_characters(data: Any, at: str = "") -> Iterator[tuple[str, str]]:
    """``(key path, problem)`` for each key or string of parsed YAML ``data`` that holds a
    control character (a line break, tab, escape sequence…)."""
    if isinstance(data, dict):
        for key, value in data.items():
            path = _key(at, key)
            if isinstance(key, str) and CONTROL.search(key):
                yield terminal(at or "", 120), (f"the key {terminal(key, 80)} holds a control "
                                                "character")
                continue
            yield from control_characters(value, path)
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from control_characters(value, f"{at}[{i}]")
    elif isinstance(data, str):
        found = CONTROL.search(data)
        if found:
            yield terminal(at, 120), (f"holds a control character ({terminal(found.group(0))} "
                                      f"at position {found.start() + 1}): one line of plain "
                                      "text")


#: past this, a number means nothing in an estate (where the largest are seconds and
#: bytes) and is refused before anything formats it: past 4300 digits Python cannot even
#: print it
HUGE = 10**30


def huge_numbers(data: Any, at: str = "") -> Iterator[tuple[str, str]]:
    """``(key path, problem)`` for each number (key or value) of parsed YAML ``data``
    beyond :data:`HUGE` (YAML builds integers of any length: ``0xfff…``, ``59:59:…``)."""
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, int) and abs(key) >= HUGE:
                yield at, "a key is a number too large to be one"
                continue
            yield from huge_numbers(value, _key(at, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from huge_numbers(value, f"{at}[{i}]")
    elif isinstance(data, int) and not isinstance(data, bool) and abs(data) >= HUGE:
        yield at, "a number too large to mean anything here"


# --- systemd calendar events -------------------------------------------------------------

_SHORTHANDS = {"minutely", "hourly", "daily", "monthly", "weekly", "yearly", "annually",
               "quarterly", "semiannually"}
_DAYS = {"mon": 0, "monday": 0, "tue": 1, "tuesday": 1, "wed": 2, "wednesday": 2, "thu": 3,
         "thursday": 3, "fri": 4, "friday": 4, "sat": 5, "saturday": 5, "sun": 6,
         "sunday": 6}
CALENDAR_SUBSET = ("a shorthand (hourly, daily, weekly…), or [weekdays] [[YYYY-]MM-DD] "
                   "[HH:MM[:SS]] [UTC or a time zone], each part a value, *, a list (a,b), "
                   "a range (a..b) or a repetition (a/n)")


def _component(text: str, low: int, high: int, what: str, *, seconds: bool = False) -> None:
    """One date or time component: ``*``, ``5``, ``1,15``, ``1..5``, ``0/15``, ``*/2``."""
    for item in text.split(","):
        base, _, step = item.partition("/")
        if step:
            _repetition(step, what, seconds=seconds)
        if base == "*":
            if step:  # systemd refuses it (cron's habit): 0/15, not */15
                raise ValueError(f"{what} {item!r}: write a repetition from a value "
                                 f"(0/{step}), not from *")
            continue
        _value_or_range(base, item, low, high, what, seconds=seconds)


def _repetition(step: str, what: str, *, seconds: bool) -> None:
    """The ``n`` of a repetition ``a/n``: a number (with a fraction, for seconds) above 0."""
    if not re.fullmatch(r"\d+(\.\d+)?" if seconds else r"\d+", step):
        raise ValueError(f"{what} repetition {step!r} is not a number")
    if float(step) <= 0:
        raise ValueError(f"{what} repetition must be more than 0")


def _value_or_range(base: str, item: str, low: int, high: int, what: str, *,
                    seconds: bool) -> None:
    """``5`` or ``1..5`` (of ``item``): numbers within ``low``..``high``, a range forwards."""
    ends = base.split("..")
    if len(ends) > 2 or not all(ends):
        raise ValueError(f"{what} {item!r} is not a value, a range or a repetition")
    for end in ends:
        pattern = r"\d{1,2}(\.\d{1,6})?" if seconds else r"\d{1,4}"
        if not re.fullmatch(pattern, end):
            raise ValueError(f"{what} {end!r} is not a number")
        if not low <= float(end) <= high:
            raise ValueError(f"{what} {end} is outside {low}..{high}")
    if len(ends) == 2 and float(ends[0]) > float(ends[1]):
        raise ValueError(f"{what} range {base!r} runs backwards")


def _weekdays(text: str) -> bool:
    """Whether ``text`` is a weekday list (``Mon``, ``Mon..Fri``, ``Sat,Sun``). A range
    that wraps (``Fri..Mon``), which systemd refuses: ValueError."""
    for item in text.split(","):
        ends = item.split("..")
        if len(ends) > 2 or not all(e.lower() in _DAYS for e in ends):
            return False
        if len(ends) == 2 and _DAYS[ends[0].lower()] > _DAYS[ends[1].lower()]:
            raise ValueError(f"weekday range {item!r} wraps past Sunday: write it as two "
                             "(Fri..Sun,Mon)")
    return True


def _date(text: str) -> None:
    parts = text.split("-")
    if len(parts) == 2 and "~" in parts[1]:  # MM~DD: days counted from the month's end
        month, _, day = parts[1].partition("~")
        parts = [parts[0], month, day]
    if len(parts) == 2:
        parts = ["*", *parts]
    if len(parts) != 3:
        raise ValueError(f"date {text!r} is not [YYYY-]MM-DD")
    year, month, day = parts
    if "~" in month:
        month, _, day = month.partition("~")
    _component(year, 1970, 2199, "year")
    _component(month, 1, 12, "month")
    _component(day, 1, 31, "day")


def _time(text: str) -> None:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"time {text!r} is not HH:MM or HH:MM:SS")
    _component(parts[0], 0, 23, "hour")
    _component(parts[1], 0, 59, "minute")
    if len(parts) == 3:
        _component(parts[2], 0, 59, "second", seconds=True)


def _zone(text: str) -> bool:
    if text.upper() == "UTC":
        return True
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def calendar_problem(expression: str) -> str | None:
    """hopnhat's own reading of a systemd calendar event (the subset in
    :data:`CALENDAR_SUBSET`): None when it reads, else why not."""
    text = " ".join(expression.split())
    if not text:
        return "the schedule is empty"
    if text.lower() in _SHORTHANDS:
        return None
    words = text.split(" ")
    try:
        weekday = bool(words) and _weekdays(words[0])
        if weekday:
            words = words[1:]
        if words and words[-1][0].isalpha():  # dates and times start with a digit or *
            if not _zone(words[-1]):
                raise ValueError(f"{words[-1]!r} is neither a weekday nor a time zone")
            words = words[:-1]
        if not words and not weekday:
            raise ValueError("no weekday, date or time")
        _date_and_time(words)
    except ValueError as exc:
        return f"{exc} (write {CALENDAR_SUBSET})"
    return None


def _date_and_time(words: list[str]) -> None:
    """What follows the weekdays and precedes the time zone: ``[[YYYY-]MM-DD] [HH:MM[:SS]]``
    (ValueError if not)."""
    if len(words) > 2:
        raise ValueError("too many parts")
    if len(words) == 2:
        _date(words[0])
        _time(words[1])
    elif words and ":" in words[0]:
        _time(words[0])
    elif words:
        _date(words[0])


CalendarCheck = Callable[[Iterable[str]], dict[str, str]]
"""Judges schedules: their problems by expression (none for those that read), and says in
each message who judged it. One that cannot judge (its program missing) raises CommandError:
the loader then judges by :func:`check_calendars`."""


def check_calendars(expressions: Iterable[str]) -> dict[str, str]:
    """:data:`CalendarCheck` by hopnhat's own reading (:func:`calendar_problem`), for where
    ``systemd-analyze`` is not at hand."""
    found = {}
    for expression in expressions:
        problem = calendar_problem(expression)
        if problem is not None:
            found[expression] = (f"not a systemd calendar event: {problem} [checked by "
                                 "hopnhat's reading of the grammar: systemd-analyze not "
                                 "found]")
    return found
