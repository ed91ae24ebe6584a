"""The root ``hopnhat`` app: global options and the command groups."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from orchestrator import __version__
from orchestrator.cli import backup as backup_cli
from orchestrator.cli import configure as configure_cli
from orchestrator.cli import drill as drill_cli
from orchestrator.cli import estate as estate_cli
from orchestrator.cli import lab as lab_cli
from orchestrator.cli import provision as provision_cli
from orchestrator.cli import schedule as schedule_cli
from orchestrator.cli import verify as verify_cli
from orchestrator.cli.common import Context, HandledGroup, setup_logging

app = typer.Typer(
    name="hopnhat",
    cls=HandledGroup,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    help=(
        "hopnhat (hợp nhất): consolidate merged provinces' data centres into one estate — "
        "provision VMs, configure backups to the secondary data centre, verify repositories "
        "and rehearse restores.\n\n"
        "Exit codes: 0 ok, 1 failure, 2 bad input (estate, vault, options), 3 partial."
    ),
)
app.add_typer(estate_cli.app, name="estate")
app.add_typer(drill_cli.app, name="drill")
app.add_typer(backup_cli.app, name="backup")
app.add_typer(lab_cli.app, name="lab")
app.add_typer(verify_cli.app, name="verify")
app.add_typer(schedule_cli.app, name="schedule")
app.command("plan")(provision_cli.plan)
app.command("apply")(provision_cli.apply)
app.command("destroy")(provision_cli.destroy)
app.command("configure")(configure_cli.configure)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hopnhat {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    estate: Annotated[Path, typer.Option(
        "--estate", envvar="HOPNHAT_ESTATE", help="The estate directory (sites/, systems/, "
        "estate.yml).", show_default="./inventory")] = Path("inventory"),
    state: Annotated[Path, typer.Option(
        "--state", envvar="HOPNHAT_STATE", help="hopnhat's state folder (ledger, keys, "
        "known_hosts, lab).", show_default="./.hopnhat")] = Path(".hopnhat"),
    json: Annotated[bool, typer.Option("--json", help="JSON output for machines.")] = False,
    verbose: Annotated[int, typer.Option("-v", "--verbose", count=True,
                                         help="More detail on stderr (-vv for debug).")] = 0,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Global options come before the command: hopnhat --estate DIR plan."""
    del version
    setup_logging(verbose)
    ctx.obj = Context(estate_dir=estate.absolute(), state_dir=state.absolute(), json=json,
                      verbose=verbose)


def main() -> None:
    """Console-script entry point."""
    # hopnhat's estate models use no pydantic plugin: skip pydantic's search of every
    # installed package's entry points for one (~15 ms of each command's start)
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    app()

