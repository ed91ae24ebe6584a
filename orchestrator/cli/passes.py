"""What the CLI says around a pass over the estate's repositories (``hopnhat maintain``,
``hopnhat vault pull``; their flows: :mod:`orchestrator.actions.passes`): the hooks it gives
the flow — the estate lock, how many repositories on stderr, a line per system as it is done
— and the end: the result as JSON or its summary line, then the exit with its code."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar

import typer

from orchestrator.cli.common import console, err_console, print_json
from orchestrator.cli.locking import take_estate_lock

if TYPE_CHECKING:
    from orchestrator.actions.passes import Hooks, Outcome
    from orchestrator.reports.passes import Target

T = TypeVar("T", bound="Target")
Out = TypeVar("Out", bound="Outcome")


class Result(Protocol):
    """A pass's result, as the CLI shows it."""

    @property
    def exit_code(self) -> int: ...

    def as_dict(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=Result)


def pass_hooks(ctx: typer.Context, command: str, lock_timeout: float, *, as_json: bool,
               planned: Callable[[Sequence[T]], str],
               line: Callable[[Out], str]) -> Hooks[T, Out]:
    """The estate lock taken as ``command`` (waiting up to ``lock_timeout`` seconds); unless
    the output is JSON, ``planned``'s sentence on stderr and each outcome's ``line``."""
    from orchestrator.actions.passes import Hooks

    def said(targets: Sequence[T]) -> None:
        if not as_json:
            err_console.print(planned(targets))

    def shown(outcome: Out) -> None:
        if not as_json:
            console.print(line(outcome), soft_wrap=True)

    return Hooks(lock=lambda: take_estate_lock(ctx, command, lock_timeout), planned=said,
                 outcome=shown)


def ended(result: R, *, as_json: bool, summary: Callable[[R], str]) -> NoReturn:
    """The result as JSON, or its ``summary``; exit with its code."""
    if as_json:
        print_json(result.as_dict())
    else:
        console.print(summary(result))
    raise typer.Exit(result.exit_code)
