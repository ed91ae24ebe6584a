"""The root ``hopnhat`` app: global options and the command groups."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, ClassVar

import typer

from orchestrator import __version__
from orchestrator.cli.common import Context, HandledGroup, setup_logging


class RootGroup(HandledGroup):
    """hopnhat's commands, in the order ``--help`` lists them; each module is imported when
    its command is used (a command does not pay for the others' imports and options)."""

    lazy: ClassVar[dict[str, tuple[str, str]]] = {
        "estate": ("orchestrator.cli.estate", "app"),
        "drill": ("orchestrator.cli.drill", "app"),
        "backup": ("orchestrator.cli.backup", "app"),
        "lab": ("orchestrator.cli.lab", "app"),
        "verify": ("orchestrator.cli.verify", "app"),
        "alerts": ("orchestrator.cli.alerts", "alerts"),
        "schedule": ("orchestrator.cli.schedule", "app"),
        "plan": ("orchestrator.cli.provision", "plan"),
        "apply": ("orchestrator.cli.provision", "apply"),
        "destroy": ("orchestrator.cli.provision", "destroy"),
        "configure": ("orchestrator.cli.configure", "configure"),
        "discover": ("orchestrator.cli.discover", "discover"),
        "hosts": ("orchestrator.cli.hosts", "app"),
        "migrate": ("orchestrator.cli.migrate", "app"),
        "retire": ("orchestrator.cli.retire", "retire"),
        "archive": ("orchestrator.cli.archive", "app"),
        "maintain": ("orchestrator.cli.maintain", "maintain"),
        "vault": ("orchestrator.cli.vault", "app"),
    }


app = typer.Typer(
    name="hopnhat",
    cls=RootGroup,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    help=(
        "hopnhat (hợp nhất): consolidate merged provinces' data centres into one estate — "
        "provision VMs, configure backups to the secondary data centre, verify repositories, "
        "rehearse restores, move systems between the data centres, retire old ones and find "
        "their records in the archive.\n\n"
        "Exit codes: 0 ok, 1 failure, 2 bad input (estate, vault, options), 3 partial."
    ),
)

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

