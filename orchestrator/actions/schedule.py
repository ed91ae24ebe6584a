"""``hopnhat schedule install``: the nightly verification (and the maintenance, the vault pull,
the nightly drills, the morning summary) as systemd timers on the control host — hopnhat
schedules nothing itself.

Plan first (the two units, rendered from ``templates/hopnhat-verify.{service,timer}.j2``),
validated as systemd would load them (``systemd-analyze verify``; the calendar with
``systemd-analyze calendar``), then installed into the unit folder. Where systemd runs as
PID 1 the timer is enabled and started; elsewhere (a container, this lab) the units are
installed and validated and the result says plainly that nothing was enabled.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from orchestrator.adapters.systemd import enable_timer, next_elapse, other_init, verify_units
from orchestrator.errors import EXIT_BAD_INPUT, HopnhatError
from orchestrator.quoting import unit_exec_word, unit_path, unit_text, unit_word
from orchestrator.resources import templates_dir

TEMPLATES = templates_dir()
DEFAULT_CALENDAR = "*-*-* 03:30:00"
#: weekly, after that night's verification (a prune is the repository host's heaviest work)
DEFAULT_MAINTAIN_CALENDAR = "Sun *-*-* 05:30:00"
DEFAULT_METRICS_DIR = Path("/var/lib/prometheus/node-exporter")
DEFAULT_REPORTS_DIR = Path("/var/lib/hopnhat/reports")
DEFAULT_UNIT_DIR = Path("/etc/systemd/system")


class ScheduleError(HopnhatError):
    """The units do not validate, or cannot be installed."""

    exit_code = EXIT_BAD_INPUT


@dataclass(frozen=True)
class Units:
    """The rendered units of one estate's verification, and where they go."""

    name: str
    service: str
    timer: str
    unit_dir: Path
    metrics_file: Path | None  # every job's but the summary's
    junit_file: Path | None  # verify's and the drills' only
    on_calendar: str
    html_file: Path | None = None  # the summary's page

    @property
    def files(self) -> dict[Path, str]:
        return {self.unit_dir / f"{self.name}.service": self.service,
                self.unit_dir / f"{self.name}.timer": self.timer}


@dataclass(frozen=True)
class Installed:
    """What ``install`` did: the files written, the next run, whether the timer was
    enabled, and why not when it was not."""

    units: Units
    next_elapse: str
    written: tuple[Path, ...]
    enabled: bool
    why_not: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"unit": self.units.name, "files": [str(p) for p in self.written],
                "on_calendar": self.units.on_calendar, "next_elapse": self.next_elapse,
                "metrics_file": None if self.units.metrics_file is None
                else str(self.units.metrics_file),
                "html_file": None if self.units.html_file is None
                else str(self.units.html_file),
                "junit_file": None if self.units.junit_file is None
                else str(self.units.junit_file), "enabled": self.enabled,
                "why_not": self.why_not}


def hopnhat_program() -> Path:
    """The ``hopnhat`` program beside this Python (the virtualenv's console script)."""
    return Path(sys.executable).with_name("hopnhat")


#: what each job's units run: ``verify`` nightly, ``maintain`` (prune) weekly
TITLES = {"verify": "nightly verification of the backups",
          "drill": "nightly restore drills",
          "maintain": "maintenance of the rest repositories",
          "vault": "vault pull (snapshots copied into the vault)",
          "summary": "morning summary"}
#: the jobs that change the world hold the estate lock: a timer that fires while an
#: operator's apply or migration holds it waits this long for it (then fails, named)
WAITS_FOR_THE_LOCK = {"maintain": "30m", "vault": "30m"}
#: the hopnhat command of each job (its options follow)
COMMANDS = {"verify": ("verify",), "maintain": ("maintain",), "vault": ("vault", "pull"),
            "drill": ("drill", "nightly"), "summary": ("summary",)}
#: the jobs that also write a JUnit XML report (``<job>-<estate>.xml`` in the reports folder)
JUNIT = ("verify", "drill")
#: after the drill window closes, the longest a stopped drill's teardown may take before
#: systemd ends the service
TEARDOWN_GRACE = timedelta(hours=1)


def daily_calendar(start: str, timezone: str) -> str:
    """A daily timer's ``OnCalendar=`` (the drills' when their window opens, the summary's):
    every day at ``start`` (``"01:00"``) in the estate's time zone (systemd reads a zone
    after the time)."""
    return f"*-*-* {start}:00 {timezone}"


def render_units(estate: str, estate_dir: Path, state_dir: Path, *,
                 on_calendar: str = DEFAULT_CALENDAR,
                 randomized_delay: timedelta = timedelta(minutes=10),
                 metrics_dir: Path = DEFAULT_METRICS_DIR, reports_dir: Path = DEFAULT_REPORTS_DIR,
                 unit_dir: Path = DEFAULT_UNIT_DIR, program: Path | None = None,
                 environment: dict[str, str] | None = None,
                 timeout: timedelta = timedelta(hours=12), job: str = "verify",
                 send: bool = False) -> Units:
    """The service and timer of estate ``estate``'s ``job`` (``verify``, ``maintain``,
    ``vault``, ``drill`` or ``summary``; pure: nothing is written or run). ``send``: the
    summary is also sent to its route's channels (its page is written either way)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    if job not in TITLES:
        raise ValueError(f"no scheduled job {job!r}")
    name = f"hopnhat-{job}-{estate}"
    summary = job == "summary"
    metrics_file = None if summary else \
        metrics_dir / f"hopnhat_{job}_{estate.replace('-', '_')}.prom"
    junit_file = reports_dir / f"{job}-{estate}.xml" if job in JUNIT else None
    html_file = reports_dir / f"summary-{estate}.html" if summary else None
    argv: list[object] = [program or hopnhat_program(), "--estate", estate_dir, "--state",
                          state_dir, *COMMANDS[job]]
    if metrics_file is not None:
        argv += ["--metrics", metrics_file]
    if junit_file is not None:
        argv += ["--junit", junit_file]
    if html_file is not None:
        argv += ["--html", html_file, *(["--send"] if send else [])]
    if job in WAITS_FOR_THE_LOCK:
        argv += ["--lock-timeout", WAITS_FOR_THE_LOCK[job]]
    # systemd units, not HTML: values are escaped for systemd by the filters instead
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), undefined=StrictUndefined,
                      autoescape=False, keep_trailing_newline=True, trim_blocks=True,  # noqa: S701
                      lstrip_blocks=True)
    env.filters.update(systemd_word=unit_word, systemd_path=unit_path, unit_text=unit_text)
    values = {"estate": estate, "unit": name, "estate_dir": estate_dir, "job": job,
              "title": TITLES[job],
              "state_dir": state_dir, "metrics_file": metrics_file, "junit_file": junit_file,
              "html_file": html_file, "send": send,
              "exec_start": " ".join(unit_exec_word(a) for a in argv),
              "environment": dict(sorted((environment or {}).items())),
              "timeout_seconds": int(timeout.total_seconds()), "on_calendar": on_calendar,
              # a drill stopped tears its scratch VMs down before it exits
              "stop_timeout_seconds": 600 if job == "drill" else 60,
              "randomized_delay_seconds": int(randomized_delay.total_seconds())}
    return Units(name, env.get_template("hopnhat-verify.service.j2").render(values),
                 env.get_template("hopnhat-verify.timer.j2").render(values), unit_dir,
                 metrics_file, junit_file, on_calendar, html_file)


def check_calendar(on_calendar: str) -> str:
    """systemd's own reading of ``on_calendar``: its next elapse. Raises ScheduleError when
    systemd does not understand it."""
    elapse, why = next_elapse(on_calendar)
    if elapse is None:
        raise ScheduleError(f"OnCalendar={on_calendar!r} is not a systemd calendar event: "
                            f"{why}")
    return elapse


def validate(units: Units) -> str:
    """Load the units as systemd would (``systemd-analyze verify``: syntax, the program of
    ExecStart, timer → service) and check the calendar; returns the next elapse. Any line
    verify prints about these units fails them (it exits 0 on mere warnings). Raises
    ScheduleError naming the problem."""
    next_elapse = check_calendar(units.on_calendar)
    done = verify_units({path.name: text for path, text in units.files.items()})
    about = [line for line in done.stderr.splitlines() if units.name in line]
    if done.returncode != 0 or about:
        detail = "; ".join(about or done.stderr.strip().splitlines()[-3:])
        raise ScheduleError(f"{units.name}: systemd-analyze verify refused the units: {detail}")
    return next_elapse


def install(units: Units, *, enable: bool = True) -> Installed:
    """Validate, then write the units (atomically) and make the metrics and reports folders;
    enable and start the timer where systemd is PID 1 and ``enable``. Raises ScheduleError
    when the units do not validate or a file cannot be written, CommandError when systemctl
    fails."""
    from orchestrator.files import write_atomically

    next_elapse = validate(units)
    try:
        for folder in (units.unit_dir, *(f.parent for f in (units.metrics_file,
                                                            units.junit_file, units.html_file)
                                         if f is not None)):
            folder.mkdir(parents=True, exist_ok=True)
        for path, text in units.files.items():
            write_atomically(path, text, 0o644)
    except OSError as exc:
        raise ScheduleError(f"{units.name}: cannot install the units: {exc}") from None
    written = tuple(units.files)
    pid1 = other_init()
    if pid1 is not None or not enable:
        why = "not asked to" if not enable else f"systemd is not PID 1 on this host (PID 1 " \
            f"is {pid1})"
        return Installed(units, next_elapse, written, False, why)
    enable_timer(f"{units.name}.timer")
    return Installed(units, next_elapse, written, True)
