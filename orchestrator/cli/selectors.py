"""The estate things a command line names (``--system``, ``--site``, ``--to``, ``--host``),
refused when unknown (exit 2, named, with the closest known names) before the command
connects anywhere or changes anything: each command calls :func:`require_known` first."""

from __future__ import annotations

from collections.abc import Sequence

import typer

from orchestrator.cli.common import context


def require_known(ctx: typer.Context, *, systems: Sequence[str] | None = (),
                  sites: Sequence[str] | None = (), hosts: Sequence[str] | None = ()) -> None:
    """Raise PlanError (exit 2) naming each of ``systems``, ``sites`` and ``hosts`` that the
    estate's files do not have. Reads only the estate's files (not the ledger, no vault)."""
    from orchestrator.actions.selection import require_known as check

    check(context(ctx).declared, systems=systems or (), sites=sites or (), hosts=hosts or ())
