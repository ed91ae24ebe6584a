"""``nightly_drills:`` of estate.yml: when ``hopnhat drill nightly`` drills, and how much.

The window opens every night at ``start`` (a time of day in the estate's ``timezone``) and
lasts ``length``: ``hopnhat schedule install``'s drill timer starts the night's drills when
it opens, and a drill that would run past its end is stopped (torn down) and the systems
still waiting are reported "not run: window closed". At most ``max_scratch_vms`` scratch
VMs exist at once (a system's drill makes one per data-bearing VM). The tiers of
``every_night`` are drilled every night; the other tiers each in its turn, set by the
tier's ``drill_interval`` and spread over the nights (see
:mod:`orchestrator.actions.drill.tonight`).

Its own module, so that estate/model.py only names it (model.py imports it; it imports
nothing of model.py).
"""

from __future__ import annotations

import re
from datetime import time, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from orchestrator.estate.schema import TimeOfDay
from orchestrator.estate.values import Int
from orchestrator.human import ESTATE_UNITS, duration

_LENGTH = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")


def _length(value: object) -> timedelta:
    """``"4h"``, ``"90m"`` (or whole seconds) → timedelta: between 1 minute and 24 hours
    (the window of one night ends before the next one opens)."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and (match := _LENGTH.match(value)):
        seconds = int(match.group(1)) * ESTATE_UNITS[match.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration: write it like 90m or 4h")
    if not 60 <= seconds <= 24 * 3600:
        raise ValueError(f"{value!r}: the window lasts between 1m and 24h")
    return timedelta(seconds=seconds)


WindowLength = Annotated[timedelta, BeforeValidator(_length),
                         PlainSerializer(lambda v: duration(v, "estate"), return_type=str)]


class NightlyDrills(BaseModel):
    """``nightly_drills:`` of estate.yml (see the module's doc)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: TimeOfDay = "01:00"
    length: WindowLength = timedelta(hours=4)
    max_scratch_vms: Annotated[Int, Field(ge=1, le=64)] = 2
    every_night: Annotated[list[Int], Field(max_length=16)] = [1]

    @property
    def opens(self) -> time:
        """The time of day the window opens."""
        hour, minute = self.start.split(":")
        return time(int(hour), int(minute))

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start, "length_seconds": self.length.total_seconds(),
                "max_scratch_vms": self.max_scratch_vms, "every_night": list(self.every_night)}
