"""``hopnhat schedule install [--print]``: the nightly ``hopnhat verify`` (and maintain, vault
pull, drill nightly) as systemd services and timers on the control host (validated with
systemd-analyze), writing metrics to a textfile folder and JUnit to a reports folder. Exit 0
installed (or printed), 2 the units do not validate or cannot be written."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

# at the top, not inside install(): its DEFAULT_* are the options' defaults
from orchestrator.actions import schedule as schedule_action
from orchestrator.cli.common import JsonOption, console, context, print_json, want_json

if TYPE_CHECKING:
    from orchestrator.actions.schedule import Installed, Units

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Schedules on the control host (systemd timers).")


def _duration(value: str) -> timedelta:
    from orchestrator.estate.model import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


#: how the output names each job's next run
_WHAT = {"verify": "verification", "maintain": "maintenance", "vault": "vault pull",
         "drill": "drills", "summary": "summary"}


@app.command("install")
def install(
    ctx: typer.Context,
    on_calendar: Annotated[str, typer.Option(
        "--on-calendar", help="When to verify (a systemd calendar event).")
    ] = schedule_action.DEFAULT_CALENDAR,
    randomized_delay: Annotated[str, typer.Option(
        "--randomized-delay", help="Up to this much later, at random (e.g. 10m).")] = "10m",
    metrics_dir: Annotated[Path, typer.Option(
        "--metrics-dir", help="node_exporter's textfile folder.")
    ] = schedule_action.DEFAULT_METRICS_DIR,
    reports_dir: Annotated[Path, typer.Option(
        "--reports-dir", help="Where the JUnit XML report goes.")
    ] = schedule_action.DEFAULT_REPORTS_DIR,
    unit_dir: Annotated[Path, typer.Option(
        "--unit-dir", help="Where the units are installed.")] = schedule_action.DEFAULT_UNIT_DIR,
    maintain_on_calendar: Annotated[str, typer.Option(
        "--maintain-on-calendar", help="When to run `hopnhat maintain` (prune the rest "
        "repositories; a systemd calendar event).")
    ] = schedule_action.DEFAULT_MAINTAIN_CALENDAR,
    print_only: Annotated[bool, typer.Option(
        "--print", help="Show the units (validated) and install nothing.")] = False,
    json: JsonOption = False,
) -> None:
    """Install the nightly verification, the weekly maintenance, the nightly drills and (when
    the estate has a vault) the daily vault pull of this estate as systemd timers on the
    control host:
    hopnhat-verify-<estate>.service runs `hopnhat verify --metrics … --junit …`,
    hopnhat-maintain-<estate>.service `hopnhat maintain --metrics …` (prunes the rest
    repositories, whose clients cannot), hopnhat-vault-<estate>.service `hopnhat vault pull
    --metrics …` at the estate's vault.schedule, hopnhat-drill-<estate>.service `hopnhat drill
    nightly --metrics … --junit …` when the estate's nightly_drills window opens (in its
    timezone), each started by its .timer. Validated with
    systemd-analyze; enabled only where systemd is PID 1 (elsewhere it says so)."""
    c = context(ctx)
    estate = c.estate
    environment = {k: os.environ[k] for k in ("HOPNHAT_VAULT_PASSWORD_FILE",)
                   if os.environ.get(k)}
    calendars = {"verify": on_calendar, "maintain": maintain_on_calendar}
    if estate.settings.vault is not None:
        calendars["vault"] = estate.settings.vault.schedule
    drills = estate.settings.nightly_drills
    calendars["drill"] = schedule_action.daily_calendar(drills.start, estate.settings.timezone)
    notifications = estate.settings.notifications
    calendars["summary"] = schedule_action.daily_calendar(notifications.summary_at,
                                                          estate.settings.timezone)
    # the drills start when their window opens, and may run until it closes and tear down
    delays = {"drill": timedelta(0), "summary": timedelta(0)}
    timeouts = {"drill": drills.length + schedule_action.TEARDOWN_GRACE,
                "summary": timedelta(minutes=30)}
    jobs = {job: schedule_action.render_units(
        estate.id, c.estate_dir, c.state_dir, on_calendar=calendar,
        randomized_delay=delays.get(job, _duration(randomized_delay)),
        metrics_dir=metrics_dir.absolute(), reports_dir=reports_dir.absolute(),
        unit_dir=unit_dir.absolute(), environment=environment, job=job,
        timeout=timeouts.get(job, timedelta(hours=12)),
        send="summary" in notifications.routes) for job, calendar in calendars.items()}
    as_json = want_json(ctx, json)
    if print_only:
        _print_units(jobs, {job: schedule_action.validate(u) for job, u in jobs.items()},
                     as_json)
        return
    done = {job: schedule_action.install(u) for job, u in jobs.items()}
    if as_json:
        print_json({**done["verify"].as_dict(),
                    **{job: d.as_dict() for job, d in done.items() if job != "verify"}})
    else:
        _render_installed(jobs, done, calendars)


def _print_units(jobs: dict[str, Units], nexts: dict[str, str], as_json: bool) -> None:
    """``--print``: each job's units, validated, and when each would run next."""
    units = jobs["verify"]
    if as_json:
        print_json({"unit": units.name, "next_elapse": nexts["verify"],
                    "files": {str(p): text for p, text in units.files.items()},
                    **{job: {"unit": u.name, "next_elapse": nexts[job],
                             "files": {str(p): text for p, text in u.files.items()}}
                       for job, u in jobs.items() if job != "verify"}})
        return
    for u in jobs.values():
        for path, text in u.files.items():
            console.print(f"[bold]# {escape(str(path))}[/]")
            console.print(escape(text), highlight=False, soft_wrap=True)
    console.print("validated with systemd-analyze; " + ", ".join(
        f"next {_WHAT[job]} {nexts[job]}" for job in jobs) + "; nothing installed (--print)")


def _render_installed(jobs: dict[str, Units], done: dict[str, Installed],
                      calendars: dict[str, str]) -> None:
    """The files written, where the reports go, and whether the timers run here."""
    for job, installed in done.items():
        for path in installed.written:
            console.print(f"installed {escape(str(path))}")
        if jobs[job].junit_file is not None:
            console.print(f"metrics → {escape(str(jobs[job].metrics_file))}; JUnit → "
                          f"{escape(str(jobs[job].junit_file))}")
    timers = " ".join(f"{u.name}.timer" for u in jobs.values())
    if all(d.enabled for d in done.values()):
        console.print(f"[green]{escape(timers)} enabled and started[/]; " + ", ".join(
            f"next {_WHAT[job]} {d.next_elapse}" for job, d in done.items()))
    else:
        console.print(
            f"[bold yellow]{escape(timers)} were installed and validated but NOT enabled: "
            f"{escape(done['verify'].why_not or '')}.[/] Nothing runs on schedule here; "
            f"where systemd runs: systemctl daemon-reload && systemctl enable --now "
            f"{escape(timers)} (" + "; ".join(
                f"OnCalendar={escape(calendars[job])}, next {d.next_elapse}"
                for job, d in done.items()) + ")",
            soft_wrap=True)
