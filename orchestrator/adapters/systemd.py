"""systemd's own reading of calendar events (``systemd-analyze calendar``).

The estate's schedules become ``OnCalendar=`` of timers on hosts and on the control host:
systemd is the judge of what they mean. Where ``systemd-analyze`` is not installed, the
estate's own reading (:func:`orchestrator.estate.values.check_calendars`) stands in.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable

from orchestrator.errors import CommandError
from orchestrator.estate.values import check_calendars
from orchestrator.process import run

_FAILED = re.compile(r"^Failed to parse calendar specification '(.*)': (.+)$")


def next_elapse(expression: str) -> tuple[str | None, str]:
    """``(next elapse, "")`` when systemd reads ``expression``, else ``(None, why not)``."""
    done = run(["systemd-analyze", "calendar", "--", expression], timeout=30)
    if not done.ok:
        return None, done.stderr.strip()
    found = re.search(r"Next elapse:\s*(.+)", done.stdout)
    return (found.group(1).strip() if found else "?"), ""


def calendar_problems(expressions: Iterable[str]) -> dict[str, str]:
    """Each expression systemd does not read, with why (one ``systemd-analyze calendar``
    for them all); hopnhat's own reading where systemd-analyze is not installed. Every
    message says who judged."""
    wanted = sorted(set(expressions))
    if not wanted:
        return {}
    if shutil.which("systemd-analyze") is None:
        return check_calendars(wanted)
    try:
        done = run(["systemd-analyze", "calendar", "--", *wanted], timeout=30)
    except CommandError:
        return check_calendars(wanted)
    found: dict[str, str] = {}
    for line in done.stderr.splitlines():
        match = _FAILED.match(line.strip())
        if match and match.group(1) in wanted:
            found[match.group(1)] = (f"not a systemd calendar event: {match.group(2)} "
                                     "[checked by systemd-analyze calendar]")
    if not done.ok and not found:  # failed without naming an expression: each alone
        for expression in wanted:
            if next_elapse(expression)[0] is None:
                found[expression] = ("not a systemd calendar event [checked by "
                                     "systemd-analyze calendar]")
        return found
    # one block for each expression read, in order: one that never elapses (a date past)
    # would never start its timer
    read = [e for e in wanted if e not in found]
    blocks = [b for b in done.stdout.split("\n\n") if "Next elapse:" in b]
    if len(blocks) == len(read):
        for expression, block in zip(read, blocks, strict=True):
            if re.search(r"Next elapse:\s*never", block):
                found[expression] = ("a calendar event that never elapses (its time is "
                                     "past): the timer would never start [checked by "
                                     "systemd-analyze calendar]")
    return found
