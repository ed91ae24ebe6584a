"""The root ``hopnhat`` app: global options and the command groups."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar

import typer
from typer import _click  # Typer's own copy of Click, whose errors it raises

from orchestrator import __version__
from orchestrator.cli.common import Context, HandledGroup, setup_logging
from orchestrator.errors import EXIT_BAD_INPUT, EXIT_USAGE
from orchestrator.quoting import CONTROL, terminal


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
        "summary": ("orchestrator.cli.summary", "summary"),
    }

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(args, self._value_options(ctx,
                                                                                     args)))

    def _value_options(self, ctx: Any, args: list[str]) -> frozenset[str]:
        """The options that take a value of the command ``args`` names (its module loaded,
        no other): their values are never taken for global options."""
        words: list[str] = []
        skip = False
        for arg in args:
            if arg == "--":
                break
            if skip:
                skip = False
            elif arg in GLOBAL_WITH_VALUE:
                skip = True
            elif not arg.startswith("-"):
                words.append(arg)
        command: Any = self.get_command(ctx, words[0]) if words else None
        if command is not None and hasattr(command, "get_command") and len(words) > 1:
            command = command.get_command(ctx, words[1]) or command
        found: set[str] = set()
        for param in getattr(command, "params", ()):
            if getattr(param, "param_type_name", "") == "option" \
                    and not getattr(param, "is_flag", False) and not getattr(param, "count", False):
                found.update(param.opts + param.secondary_opts)
        return frozenset(found)


# a mistyped command line (an unknown command or option, a missing one) exits 64
# (EX_USAGE), not Click's 2; an option's value that is not valid stays 2, bad input, as an
# invalid estate is
_click.exceptions.UsageError.exit_code = EXIT_USAGE
_click.exceptions.BadParameter.exit_code = EXIT_BAD_INPUT
_click.exceptions.MissingParameter.exit_code = EXIT_USAGE

#: what the state folder's path cannot hold: it reaches ssh options (known_hosts, keys)
STATE_REFUSED = re.compile(r'["\x00-\x1f\x7f-\x9f]')

#: global options taking a value, and those that do not (see :func:`hoist_global_options`)
GLOBAL_WITH_VALUE = ("--estate", "--state")
GLOBAL_FLAGS = ("--verbose",)


def hoist_global_options(args: list[str],
                         value_options: frozenset[str] = frozenset()) -> list[str]:
    """``args`` with the global options written after the command moved before it, so that
    ``hopnhat estate validate --estate DIR`` means ``hopnhat --estate DIR estate validate``
    (users type them either way). ``--json`` stays where it is (every command that prints
    takes its own). Nothing after ``--`` moves, nor the value of one of the command's own
    ``value_options`` (``--reason --state`` keeps ``--state`` as the reason)."""
    head: list[str] = []
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        takes_value = args[i] in GLOBAL_WITH_VALUE
        head.append(args[i])
        if takes_value and i + 1 < len(args):
            head.append(args[i + 1])
            i += 1
        i += 1
    moved: list[str] = []
    rest: list[str] = []
    tail = args[i:]
    j = 0
    while j < len(tail):
        arg = tail[j]
        if arg == "--":
            rest += tail[j:]
            break
        if arg in value_options:
            rest += tail[j:j + 2]
            j += 2
            continue
        if arg in GLOBAL_WITH_VALUE and j + 1 < len(tail):
            moved += [arg, tail[j + 1]]
            j += 2
            continue
        if (arg.split("=", 1)[0] in GLOBAL_WITH_VALUE and "=" in arg) or arg in GLOBAL_FLAGS \
                or re.fullmatch(r"-v+", arg):
            moved.append(arg)
        else:
            rest.append(arg)
        j += 1
    return head + moved + rest


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
        "Exit codes: 0 ok, 1 failure, 2 bad input (the estate, the vault, an option's "
        "value), 3 partial, 64 usage (an unknown command or option, a missing one)."
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
    """Global options go before or after the command: hopnhat --estate DIR plan, or
    hopnhat plan --estate DIR."""
    del version
    for name, folder, refused in (("--estate", estate, CONTROL),
                                  ("--state", state, STATE_REFUSED)):
        if refused.search(str(folder)):
            # the state folder's paths reach ssh options (known_hosts, keys), which can hold
            # no double quote; neither folder may hold a control character
            raise typer.BadParameter(f"{terminal(str(folder), 200)} holds a control "
                                     "character" + (" or a double quote" if name == "--state"
                                                    else ""), param_hint=name)
    setup_logging(verbose)
    ctx.obj = Context(estate_dir=estate.absolute(), state_dir=state.absolute(), json=json,
                      verbose=verbose)


def main() -> None:
    """Console-script entry point."""
    # hopnhat's estate models use no pydantic plugin: skip pydantic's search of every
    # installed package's entry points for one (~15 ms of each command's start)
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    app()

