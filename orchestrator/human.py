"""Durations and sizes written for people: every way hopnhat writes them, in one place, so
that a report, a terminal table, a check's message and the host job say the same thing the
same way.

- :func:`duration`: seconds (or a timedelta) in one of five styles, each kept for the
  places that write durations that way;
- :func:`size`: a byte count in the unit that fits it (``20.1 MiB``), or in one unit given
  (``8.0 MiB``: numbers set side by side, such as a size against its median);
- :func:`local_time`: a moment in a time zone with its offset written
  (``2026-12-07 10:15:03 +07:00``): the times of the reports people read, in the estate's
  time zone (what machines read — evidence.json, the ledger — stays UTC).

Standard library only, importing nothing of hopnhat's: besides the control side, the backup
job on each host imports it (the backup_schedule role copies it with the modules that job
needs).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal, get_args
from zoneinfo import ZoneInfo

#: the units of the estate's durations (``15m``, ``1h``, ``30d``, ``2w``), in seconds
ESTATE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

DurationStyle = Literal["words", "seconds", "compact", "padded", "estate"]
SizeUnit = Literal["B", "KiB", "MiB", "GiB", "TiB"]
SIZE_UNITS: tuple[SizeUnit, ...] = get_args(SizeUnit)

_A_DIGIT_THAT_IS_NOT_ZERO = re.compile(r"[1-9]")


def _words(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = round(seconds)
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def _seconds(seconds: float) -> str:
    return f"{seconds:.1f} s"


def _compact(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _padded(seconds: float) -> str:
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{seconds:.1f}s"


def _estate(seconds: float) -> str:
    whole = int(seconds)
    for unit in ("w", "d", "h", "m"):
        if whole and whole % ESTATE_UNITS[unit] == 0:
            return f"{whole // ESTATE_UNITS[unit]}{unit}"
    return f"{whole}s"


_STYLES: dict[DurationStyle, Callable[[float], str]] = {
    "words": _words, "seconds": _seconds, "compact": _compact, "padded": _padded,
    "estate": _estate}


def duration(value: float | timedelta | None, style: DurationStyle = "words", *,
             missing: str = "-") -> str:
    """``value`` seconds (or a timedelta) written in ``style``; ``missing`` for None:

    - ``words``: ``42.1 s``, ``3 min 05 s``, ``2 h 10 min``, ``3 d 4 h`` (rounded to the
      second from a minute on) — drill reports, the drill commands' tables;
    - ``seconds``: ``42.1 s``, ``185.0 s`` — how long one run took;
    - ``compact``: ``2s``, ``3m2s``, ``2h2m2s`` (whole seconds, the fraction dropped), as
      restic writes a lock's age — ages of snapshots and locks, clock skews;
    - ``padded``: ``42.1s``, ``3m05s``, ``2h02m03s`` (rounded to the second from a minute
      on) — a drill's reasons, achieved against target;
    - ``estate``: ``45s``, ``90m``, ``1h``, ``30d``, ``2w`` — the shortest exact form in the
      estate's notation, which its loader reads back as written (whole seconds).

    A negative value is its magnitude with a minus sign before it, unless it shows as zero
    (``-0.4`` in ``compact`` is ``0s``)."""
    if value is None:
        return missing
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    text = _STYLES[style](abs(seconds))
    return f"-{text}" if seconds < 0 and _A_DIGIT_THAT_IS_NOT_ZERO.search(text) else text


def size(count: float | None, unit: SizeUnit | None = None, *, missing: str = "-") -> str:
    """``count`` bytes for people: in the largest unit (B, KiB, MiB, GiB, TiB; powers of
    1024) that keeps the number below 1024, or in ``unit`` when given; bytes whole, other
    units to one decimal (``512 B``, ``20.1 MiB``); ``missing`` for None."""
    if count is None:
        return missing
    value = float(count)
    for each in SIZE_UNITS:
        if each == unit or (unit is None and (abs(value) < 1024 or each == SIZE_UNITS[-1])):
            return f"{value:.0f} {each}" if each == "B" else f"{value:.1f} {each}"
        value /= 1024
    raise ValueError(f"{unit!r} is not one of {', '.join(SIZE_UNITS)}")


def local_time(when: datetime | str | None, zone: str, *, missing: str = "—") -> str:
    """``when`` in time zone ``zone`` (an IANA name: ``Asia/Ho_Chi_Minh``) to the second, its
    offset written after it: ``2026-12-07 10:15:03 +07:00``. ``when`` is an aware datetime
    or its ISO 8601 text (``2026-12-07T03:15:03.250Z``, ``…+00:00``), as evidence documents
    hold it; ``missing`` for None or an empty text. Raises ValueError for a time without
    its offset (which moment it is is not known) or text that is not ISO 8601, and
    ``zoneinfo.ZoneInfoNotFoundError`` for a zone the system does not know."""
    if when is None or when == "":
        return missing
    moment = datetime.fromisoformat(when) if isinstance(when, str) else when
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{when!r} has no UTC offset: which moment it is is not known")
    local = moment.astimezone(ZoneInfo(zone))
    offset = local.strftime("%z")  # +0700; +053045 where a zone's offset has seconds
    return f"{local:%Y-%m-%d %H:%M:%S} {offset[:3]}:{offset[3:5]}"
