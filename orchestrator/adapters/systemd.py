"""systemd on the control host: its own reading of calendar events (``systemd-analyze
calendar``) and of unit files (``systemd-analyze verify``), whether it runs as PID 1, and
enabling a timer (``systemctl``).

The estate's schedules become ``OnCalendar=`` of timers on hosts and on the control host:
systemd is the judge of what they mean. Where ``systemd-analyze`` is not installed,
:func:`calendar_problems` says so (CommandError) and the estate's loader lets its own reading
(:func:`orchestrator.estate.values.check_calendars`) stand in.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from orchestrator.process import Completed, run

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
    for them all); every message says who judged. Raises CommandError when systemd-analyze
    is not installed or does not answer (then the caller judges by other means)."""
    wanted = sorted(set(expressions))
    if not wanted:
        return {}
    done = run(["systemd-analyze", "calendar", "--", *wanted], timeout=30)
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


def verify_units(units: Mapping[str, str]) -> Completed:
    """``systemd-analyze verify`` of unit files given as name → text (``x.service``,
    ``x.timer``), written to a private scratch folder that is removed afterwards: systemd
    loads them as it would (syntax, the program of ExecStart, timer → service). Out: what it
    said (it exits 0 on mere warnings: the caller judges its stderr). Raises CommandError when
    systemd-analyze is missing or does not answer."""
    with tempfile.TemporaryDirectory(prefix="hopnhat-units-") as scratch:
        files = []
        for name, text in units.items():
            target = Path(scratch) / name
            target.write_text(text, encoding="utf-8")
            files.append(str(target))
        return run(["systemd-analyze", "verify", *files], timeout=60)


def other_init() -> str | None:
    """None when systemd runs as PID 1 (sd_booted()'s test), else what PID 1 is."""
    if Path("/run/systemd/system").is_dir():
        return None
    try:
        return Path("/proc/1/comm").read_text().strip() or "?"
    except OSError:
        return "?"


def enable_timer(timer: str) -> None:
    """Make systemd read its unit files again, then enable and start ``timer`` (a unit name,
    ``x.timer``). Raises CommandError when systemctl fails."""
    systemctl = shutil.which("systemctl") or "systemctl"
    run([systemctl, "daemon-reload"], check=True, timeout=120)
    run([systemctl, "enable", "--now", timer], check=True, timeout=120)
