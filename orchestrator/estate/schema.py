"""The schema's building blocks, shared by :mod:`orchestrator.estate.model` and the models
beside it (``recovery``, ``databases``, …) so that none of them imports another in a circle:
:data:`STRICT`, the configuration of every estate model (unknown keys forbidden, frozen),
and durations as the estate writes them (``15m``, ``1h``, ``30d``).

Each module declares its own ``class Strict(BaseModel): model_config = STRICT``: ruff knows
a pydantic model (whose list defaults pydantic copies) only by a base class of the same file.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, ConfigDict, PlainSerializer

from orchestrator.estate.values import longer_than_zero
from orchestrator.human import ESTATE_UNITS, duration

#: every estate model: unknown keys are refused (a typo is an error, not a default), frozen
STRICT = ConfigDict(extra="forbid", frozen=True)
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")


def parse_duration(value: object) -> timedelta:
    """``"15m"``, ``"1h"``, ``"30d"``, ``"2w"`` (or a number of seconds) → timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration is written like 15m, 1h, 24h or 30d")
    seconds: int | float | None = None
    if isinstance(value, int | float):
        seconds = value
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            seconds = int(match.group(1)) * ESTATE_UNITS[match.group(2)]
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        raise ValueError(f"{value!r} is not a duration: write it like 15m, 1h, 24h or 30d")
    if seconds < 0:
        raise ValueError(f"{value!r} is not a duration: a duration cannot be negative")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:  # .inf, or more than timedelta holds (~2.7 million years)
        raise ValueError(f"{value!r} is too long for a duration") from None


def _written(value: timedelta) -> str:
    """A duration as the estate writes it, the shortest exact form: 3600 s → ``"1h"``."""
    return duration(value, "estate")


Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(_written, return_type=str)
]
#: a duration where zero makes no sense (an RPO, a timeout)
PositiveDuration = Annotated[
    timedelta, BeforeValidator(parse_duration), AfterValidator(longer_than_zero),
    PlainSerializer(_written, return_type=str)
]


def _time_of_day(value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        raise ValueError(f"{value!r} is not a time of day: write it like \"01:00\" (24-hour, "
                         "the estate's timezone)")
    return value


#: a time of day, ``"HH:MM"`` on the 24-hour clock, in the estate's ``timezone``
TimeOfDay = Annotated[str, BeforeValidator(_time_of_day)]
