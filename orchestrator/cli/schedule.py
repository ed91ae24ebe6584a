"""``hopnhat schedule install [--print]``: the nightly ``hopnhat verify`` as a systemd
service and timer on the control host (validated with systemd-analyze), writing metrics to a
textfile folder and JUnit to a reports folder. Exit 0 installed (or printed), 2 the units do
not validate or cannot be written."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

# at the top, not inside install(): its DEFAULT_* are the options' defaults
from orchestrator.actions import schedule as schedule_action
from orchestrator.cli.common import JsonOption, console, context, print_json, want_json

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Schedules on the control host (systemd timers).")


def _duration(value: str) -> timedelta:
    from orchestrator.estate.model import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


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
    """Install the nightly verification and the weekly maintenance of this estate as
    systemd timers on the control host: hopnhat-verify-<estate>.service runs `hopnhat
    verify --metrics … --junit …`, hopnhat-maintain-<estate>.service `hopnhat maintain
    --metrics …` (prunes the rest repositories, whose clients cannot), each started by its
    .timer. Validated with systemd-analyze; enabled only where systemd is PID 1 (elsewhere
    it says so)."""
    c = context(ctx)
    estate = c.estate
    environment = {k: os.environ[k] for k in ("HOPNHAT_VAULT_PASSWORD_FILE",)
                   if os.environ.get(k)}
    units, maintenance = (schedule_action.render_units(
        estate.id, c.estate_dir, c.state_dir, on_calendar=calendar,
        randomized_delay=_duration(randomized_delay), metrics_dir=metrics_dir.absolute(),
        reports_dir=reports_dir.absolute(), unit_dir=unit_dir.absolute(),
        environment=environment, job=job)
        for job, calendar in (("verify", on_calendar), ("maintain", maintain_on_calendar)))
    if print_only:
        nexts = [schedule_action.validate(u) for u in (units, maintenance)]
        if want_json(ctx, json):
            print_json({"unit": units.name, "next_elapse": nexts[0],
                        "files": {str(p): text for p, text in units.files.items()},
                        "maintain": {"unit": maintenance.name, "next_elapse": nexts[1],
                                     "files": {str(p): text for p, text in
                                               maintenance.files.items()}}})
            return
        for path, text in (*units.files.items(), *maintenance.files.items()):
            console.print(f"[bold]# {escape(str(path))}[/]")
            console.print(escape(text), highlight=False, soft_wrap=True)
        console.print(f"validated with systemd-analyze; next verification {nexts[0]}, next "
                      f"maintenance {nexts[1]}; nothing installed (--print)")
        return
    done = schedule_action.install(units)
    maintained = schedule_action.install(maintenance)
    if want_json(ctx, json):
        print_json({**done.as_dict(), "maintain": maintained.as_dict()})
        return
    for path in done.written:
        console.print(f"installed {escape(str(path))}")
    console.print(f"metrics → {escape(str(units.metrics_file))}; JUnit → "
                  f"{escape(str(units.junit_file))}")
    for path in maintained.written:
        console.print(f"installed {escape(str(path))}")
    if done.enabled and maintained.enabled:
        console.print(f"[green]{units.name}.timer and {maintenance.name}.timer enabled and "
                      f"started[/]; next verification {done.next_elapse}, next maintenance "
                      f"{maintained.next_elapse}")
    else:
        console.print(
            f"[bold yellow]{units.name}.timer and {maintenance.name}.timer were installed "
            f"and validated but NOT enabled: {escape(done.why_not or '')}.[/] Nothing runs "
            f"on schedule here; where systemd runs: systemctl daemon-reload && systemctl "
            f"enable --now {units.name}.timer {maintenance.name}.timer "
            f"(OnCalendar={escape(on_calendar)}, next {done.next_elapse}; "
            f"OnCalendar={escape(maintain_on_calendar)}, next {maintained.next_elapse})",
            soft_wrap=True)
