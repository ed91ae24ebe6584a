"""``hopnhat lab link``: the link between the lab's primary and secondary sites."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from orchestrator.cli.common import JsonOption, console, context, print_json, want_json

app = typer.Typer(no_args_is_help=True, help=(
    "The lab's link to the secondary site (its repository host and drill VMs): cut it so "
    "packets are dropped (connections hang, as when an inter-DC link goes down), limit its "
    "rate, or restore it. Needs a running lab and root."))


def _show(ctx: typer.Context, json: bool, state: dict[str, Any]) -> None:
    if want_json(ctx, json):
        print_json(state)
        return
    line = f"link to the secondary site: {state['state']}"
    if state.get("rate"):
        line += f" (rate {state['rate']}" + (f", latency {state['latency']}"
                                              if state.get("latency") else "") + ")"
    console.print(line, markup=False)
    if state.get("subnets"):
        console.print("behind it: " + ", ".join(state["subnets"]), markup=False)


@app.command()
def cut(ctx: typer.Context, json: JsonOption = False) -> None:
    """Drop every packet to and from the secondary site's networks (nothing is refused:
    transfers hang until their keep-alives give up). Undo with `lab link restore`."""
    from orchestrator.lab import link

    c = context(ctx)
    _show(ctx, json, link.cut(c.state_dir / "lab", c.estate).as_dict())


@app.command()
def slow(
    ctx: typer.Context,
    rate: Annotated[str, typer.Option(help="Rate limit, as tc reads it: 1gbit, 100mbit…")]
    = "1gbit",
    latency: Annotated[str | None, typer.Option(
        help="Added delay (5ms, 20ms…); needs netem in the kernel, refused where it is "
             "missing.")] = None,
    json: JsonOption = False,
) -> None:
    """Limit the rate (and delay) of the secondary site's traffic; replaces an earlier
    `slow`. Undo with `lab link restore`."""
    from orchestrator.lab import link

    c = context(ctx)
    _show(ctx, json, link.slow(c.state_dir / "lab", c.estate, rate, latency).as_dict())


@app.command()
def restore(ctx: typer.Context, json: JsonOption = False) -> None:
    """Undo `cut` and `slow`: the secondary site answers again at full speed."""
    from orchestrator.lab import link

    lab_dir = context(ctx).state_dir / "lab"
    link.require_running_lab(lab_dir)
    link.restore(lab_dir)
    _show(ctx, json, link.status(lab_dir))


@app.command()
def status(ctx: typer.Context, json: JsonOption = False) -> None:
    """Say whether the link is up, cut or slowed, and which subnets are behind it."""
    from orchestrator.lab import link

    _show(ctx, json, link.status(context(ctx).state_dir / "lab"))
