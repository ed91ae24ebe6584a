"""Which systems ``hopnhat drill nightly`` drills tonight, and in what order: a pure
function of the estate, what the ledger says of past drills, and a clock.

- **The window**: tonight's opens at ``nightly_drills.start`` in the estate's time zone and
  lasts ``nightly_drills.length``; at a moment inside it, that window; outside, the next one
  (``is_open`` false: nothing may start).
- **Whose turn**: every drillable system of a tier in ``every_night``; a system of another
  tier on its own nights — every ``P`` nights, where ``P`` is its tier's ``drill_interval``
  in whole days less one (so its drill passes before ``drill due`` calls it overdue), on the
  nights whose number (days since 0001-01-01) is ``h mod P``, ``h`` a stable hash of its
  code (SHA-256: the same on every machine and every run, and the systems of one tier
  spread over different nights); and every system already **overdue** (no passed drill
  within its interval, or none ever), whatever its night.
- **Order**: the overdue first (the one never drilled, then the longest without a passed
  drill), then by tier, then by code.
- **Expected length**: the system's last finished drill's length (passed or failed), from
  which the runner judges whether a drill would still end inside the window.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from orchestrator.actions.drill.plan import data_vms, drillable
from orchestrator.estate.model import Estate

DAY = 86400.0

EVERY_NIGHT, TURN, OVERDUE, NEVER = "every night", "its turn", "overdue", "never drilled"


@dataclass(frozen=True)
class Window:
    """One night's window: when it opens and closes (seconds since the epoch), the local date
    it opens on."""

    night: date
    start: float
    end: float
    timezone: str

    def local(self, when: float) -> str:
        """``when`` in the estate's time zone, with its offset (as people read it)."""
        return datetime.fromtimestamp(when, ZoneInfo(self.timezone)).isoformat(
            timespec="seconds")


def window_at(estate: Estate, now: float) -> Window:
    """The window ``now`` is in, else the next one to open."""
    settings = estate.settings.nightly_drills
    zone = ZoneInfo(estate.settings.timezone)
    today = datetime.fromtimestamp(now, zone).date()
    for night in (today - timedelta(days=1), today, today + timedelta(days=1)):
        opens = datetime.combine(night, settings.opens, tzinfo=zone).timestamp()
        closes = opens + settings.length.total_seconds()
        if now < closes:
            return Window(night, opens, closes, estate.settings.timezone)
    raise AssertionError("a window opens every day")  # pragma: no cover - length <= 24h


def period_nights(interval_seconds: float) -> int:
    """Every how many nights a system whose tier's ``drill_interval`` is ``interval_seconds``
    has its turn: the interval in whole days less one, at least 1."""
    return max(1, int(interval_seconds // DAY) - 1)


def slot(code: str, period: int) -> int:
    """System ``code``'s night among every ``period`` (stable across machines and runs)."""
    return int.from_bytes(hashlib.sha256(code.encode()).digest()[:8], "big") % period


def next_turn(code: str, period: int, after: date) -> date:
    """The first night from ``after`` on that is ``code``'s turn."""
    wait = (slot(code, period) - after.toordinal()) % period
    return after + timedelta(days=wait)


@dataclass(frozen=True)
class Standing:
    """What the ledger says of one drillable system's drills, as of a moment."""

    system: str
    tier: int
    interval_seconds: float
    last_passed: float | None  # when its last passed drill started
    last_seconds: float | None  # how long its last passed (else failed) drill took

    def overdue(self, now: float) -> bool:
        return self.last_passed is None or now - self.last_passed > self.interval_seconds


@dataclass(frozen=True)
class Turn:
    """A system drilled tonight: why, how many scratch VMs its drill makes, how long it is
    expected to take (unknown before its first drill)."""

    system: str
    tier: int
    why: str
    overdue: bool
    scratch_vms: int
    expected_seconds: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "tier": self.tier, "why": self.why,
                "overdue": self.overdue, "scratch_vms": self.scratch_vms,
                "expected_seconds": self.expected_seconds}


@dataclass(frozen=True)
class Later:
    """A drillable system whose turn is not tonight: its next night."""

    system: str
    tier: int
    next_night: date
    every_nights: int

    def as_dict(self) -> dict[str, Any]:
        return {"system": self.system, "tier": self.tier,
                "next_night": self.next_night.isoformat(), "every_nights": self.every_nights}


@dataclass(frozen=True)
class NightPlan:
    """Tonight: the window, whether it is open now, the systems in the order they are
    drilled, those whose turn is another night, and the scratch-VM limit."""

    estate: str
    window: Window
    is_open: bool
    max_scratch_vms: int
    turns: tuple[Turn, ...]
    later: tuple[Later, ...]

    def as_dict(self) -> dict[str, Any]:
        w = self.window
        return {"estate": self.estate, "night": w.night.isoformat(), "timezone": w.timezone,
                "window_start": w.local(w.start), "window_end": w.local(w.end),
                "open": self.is_open, "max_scratch_vms": self.max_scratch_vms,
                "tonight": [t.as_dict() for t in self.turns],
                "later": [x.as_dict() for x in self.later]}


def plan_night(estate: Estate, standings: Sequence[Standing], now: float) -> NightPlan:
    """Tonight's plan (see the module's doc) from each drillable system's ``standings``."""
    window = window_at(estate, now)
    settings = estate.settings.nightly_drills
    judged_at = max(now, window.start)
    turns: list[tuple[tuple[Any, ...], Turn]] = []
    later: list[Later] = []
    for s in standings:
        period = period_nights(s.interval_seconds)
        overdue = s.overdue(judged_at)
        every = s.tier in settings.every_night
        if not (overdue or every or next_turn(s.system, period, window.night) == window.night):
            later.append(Later(s.system, s.tier, next_turn(s.system, period, window.night),
                               period))
            continue
        why = (NEVER if s.last_passed is None else OVERDUE) if overdue else (
            EVERY_NIGHT if every else TURN)
        turn = Turn(s.system, s.tier, why, overdue, len(data_vms(estate, s.system)),
                    s.last_seconds)
        turns.append(((not overdue, s.last_passed or 0.0, s.tier, s.system), turn))
    turns.sort(key=lambda pair: pair[0])
    return NightPlan(estate.id, window, window.start <= now < window.end,
                     settings.max_scratch_vms, tuple(t for _, t in turns),
                     tuple(sorted(later, key=lambda x: (x.next_night, x.tier, x.system))))


def standings_from(estate: Estate, drills: Sequence[Mapping[str, Any]]) -> list[Standing]:
    """Each drillable system's :class:`Standing` from ``drills``: the ledger's drill runs of
    this estate as ``{system, status, started, seconds}``, in any order."""
    passed: dict[str, float] = {}
    # (system, passed?) → (started, seconds) of the latest such drill: a drill's expected
    # length is its last passed one's (a failed drill may have stopped at its plan), else its
    # last failed one's
    last: dict[tuple[str, bool], tuple[float, float]] = {}
    for run in drills:
        code, started = str(run["system"]), float(run["started"])
        if run["status"] == "passed":
            passed[code] = max(passed.get(code, 0.0), started)
        key = (code, run["status"] == "passed")
        if run["status"] in ("passed", "failed") and run.get("seconds") is not None \
                and started >= last.get(key, (-1.0, 0.0))[0]:
            last[key] = (started, float(run["seconds"]))
    found = []
    for code in sorted(estate.systems):
        if drillable(estate, code):
            continue
        tier = estate.systems[code].tier
        interval = estate.tier(tier).drill_interval.total_seconds()
        length = last.get((code, True)) or last.get((code, False))
        found.append(Standing(code, tier, interval, passed.get(code),
                              None if length is None else length[1]))
    return found
