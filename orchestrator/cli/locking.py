"""The estate lock as commands take it: the ``--lock-timeout`` option and
:func:`take_estate_lock`, which each command that changes the world calls once its input is
checked and before it touches anything (see :mod:`orchestrator.estate_lock`)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.common import context, err_console, shown

if TYPE_CHECKING:
    from orchestrator.estate_lock import Holder

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")
_UNIT = {None: 1, "s": 1, "m": 60, "h": 3600}


def parse_lock_timeout(value: str | float) -> float:
    """``"30s"``, ``"5m"``, ``"1h"`` or a number of seconds (``"45"``, ``"0"``) → seconds.
    Raises typer.BadParameter (a usage error) for anything else."""
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(value)
    if match is None:
        raise typer.BadParameter(f"{value!r} is not a duration: write it like 30s, 5m, 1h "
                                 "or a number of seconds")
    return float(match.group(1)) * _UNIT[match.group(2)]


LockTimeoutOption = Annotated[float, typer.Option(
    "--lock-timeout", parser=parse_lock_timeout, metavar="DURATION", show_default=False,
    help="When another command that changes the estate holds its lock (<state>/lock), "
    "wait up to this long for it (30s, 5m, or seconds), then give up naming the holder "
    "(exit 1). Default: do not wait.")]


def _when(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def take_estate_lock(ctx: typer.Context, command: str, timeout: float) -> None:
    """Hold the estate lock until ``ctx``'s command ends (however it ends; a process that
    dies frees it too). Waits up to ``timeout`` seconds for another holder, saying so on
    stderr; raises EstateLockedError (exit 1) naming it after that. A lock whose holder
    ended without letting go is taken over, said on stderr."""
    from orchestrator.estate_lock import hold

    def waiting(holder: Holder | None) -> None:
        who = holder.describe() if holder is not None else "a process that wrote no record"
        err_console.print(f"waiting up to {_when(timeout)} for the estate lock, held by "
                          f"{shown(who)} …", soft_wrap=True)

    def took_over(holder: Holder) -> None:
        why = "its process is gone" if holder.process_gone() else \
            "it ended without letting go"
        err_console.print(f"took over the lock of {shown(holder.describe())}: {why}",
                          soft_wrap=True)

    ctx.with_resource(hold(context(ctx).state_dir, command, timeout=timeout,
                           on_wait=waiting, on_takeover=took_over))
