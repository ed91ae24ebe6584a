"""``hopnhat lab``: the embedded lab of real parts (vcsim, sshd guests, repository host)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from orchestrator.cli.common import JsonOption, console, context, print_json, want_json
from orchestrator.cli.link import app as link_app

if TYPE_CHECKING:
    from orchestrator.lab.control import Part

# The lab's modules are imported inside the commands: every other command starts faster.

app = typer.Typer(no_args_is_help=True, help=(
    "The embedded lab: vcsim (vSphere API simulator), one real sshd guest per powered-on VM, "
    "and the secondary DC's repository host — real parts on loopback. Needs root."))

app.add_typer(link_app, name="link")


def _render(parts: list[Part]) -> None:
    table = Table(title="lab")
    for column in ("part", "kind", "address", "PID", "state"):
        table.add_column(column)
    for part in parts:
        table.add_row(part.name, part.kind, part.address, str(part.pid),
                      "[green]running[/]" if part.alive else "[red]dead[/]")
    console.print(table)


@app.command()
def build(ctx: typer.Context) -> None:
    """Build the lab's Go parts from the project's pinned Go modules: vcsim (govmomi's
    simulator), a current restic and rest-server (quick when already built)."""
    from orchestrator.lab import gobuild

    for name, binary in gobuild.build_all(context(ctx).state_dir / "lab").items():
        console.print(f"{name}: {binary}")


@app.command()
def up(
    ctx: typer.Context,
    clone_delay: Annotated[int | None, typer.Option(
        help="Milliseconds vcsim waits in each CloneVM_Task (realistic clone times).")] = None,
    json: JsonOption = False,
) -> None:
    """Start the lab (idempotent: running parts are left alone). Generates the lab's vault,
    SSH keys and TLS certificate on first use."""
    from orchestrator.lab import control

    c = context(ctx)
    parts = control.up(c.paths, delays=None if clone_delay is None
                       else {"CloneVM_Task": clone_delay})
    if want_json(ctx, json):
        print_json([p.as_dict() for p in parts])
    else:
        _render(parts)


@app.command()
def status(ctx: typer.Context, json: JsonOption = False) -> None:
    """List each part of the lab with its address and PID. Exit 1 if a part has died."""
    from orchestrator.lab import control

    parts = control.status(context(ctx).state_dir / "lab")
    if want_json(ctx, json):
        print_json([p.as_dict() for p in parts])
    elif parts:
        _render(parts)
    else:
        console.print("the lab is not running")
    if any(not p.alive for p in parts):
        raise typer.Exit(1)


@app.command()
def down(ctx: typer.Context, json: JsonOption = False) -> None:
    """Stop every process the lab started, by its recorded PID. Leaves nothing running."""
    from orchestrator.lab import control

    stopped = control.down(context(ctx).state_dir / "lab")
    if want_json(ctx, json):
        print_json({"stopped": stopped})
    else:
        console.print(f"stopped {len(stopped)} process(es)")
