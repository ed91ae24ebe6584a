"""``hopnhat vault pull``: copy every system's snapshots into the estate's vault.

Thin: parse, call the pull's flow (:func:`orchestrator.actions.vault.pull_flow`: plan — no
vault, an unknown system or one the vault does not hold: exit 2, before anything is touched
— the secrets, a missing key: exit 2 — the estate lock, the pull, the metrics file) with a
line per system as it is done, then the summary (or ``--json``). Exit codes: 0 every system
copied (or already up to date), 1 one failed (named), 2 bad input, 130 stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from orchestrator.cli.common import JsonOption, context, want_json
from orchestrator.cli.locking import LockTimeoutOption
from orchestrator.cli.passes import ended, pass_hooks
from orchestrator.cli.selectors import require_known

if TYPE_CHECKING:
    from orchestrator.actions.vault import Outcome, PullResult, Target

app = typer.Typer(no_args_is_help=True, help=(
    "The vault: an isolated copy of every system's snapshots at a third location that no "
    "backup client reaches (vault: in estate.yml). The control host pulls into it; "
    "deleting or damaging a repository never deletes from it."))


def _planned(targets: Sequence[Target]) -> str:
    return f"Pulling {len(targets)} system(s) into the vault …"


def _line(outcome: Outcome) -> str:
    t = outcome.target
    where = f"{t.system}: {t.repository} → {t.vault}"
    if outcome.status == "failed":
        return f"[red]✗[/] {escape(where)}: {escape(outcome.error or 'failed')}"
    what = (f"copied {len(outcome.copied)} snapshot(s)" if outcome.copied
            else "up to date")
    made = ", its vault repository made" if outcome.created else ""
    return (f"[green]✓[/] {escape(where)}: {what}{made}; the vault holds {outcome.held} "
            f"in {outcome.seconds:.1f} s")


def _summary(result: PullResult) -> str:
    failed = [o for o in result.outcomes if o.status == "failed"]
    copied = sum(len(o.copied) for o in result.outcomes)
    return (f"vault pull {'ok' if not failed else 'FAILED'}: "
            f"{len(result.outcomes)} system(s), {copied} snapshot(s) copied, "
            f"{len(failed)} failed in {result.seconds:.1f} s — run {result.run_id}")


@app.command()
def pull(
    ctx: typer.Context,
    system: Annotated[list[str] | None, typer.Option(
        "--system", "-s", help="Only this system (repeat for more). Default: every system "
        "the vault holds.")] = None,
    metrics: Annotated[Path | None, typer.Option(
        "--metrics", help="Write a Prometheus textfile here (last success per system, what "
        "was copied, the exit code).")] = None,
    json: JsonOption = False,
    lock_timeout: LockTimeoutOption = 0.0,
) -> None:
    """Copy each system's snapshots the vault lacks into it, from the control host.

    The control host reads the system's repository (a rest host's maintenance endpoint, or
    an SFTP host's account) and runs restic copy into the system's repository on the vault
    (its maintenance endpoint, the control host's own credentials: no client has them).
    The vault repository is made on first use with the source's chunker parameters, the
    same repository password. Copying only adds: what is deleted or damaged in a
    repository stays in the vault (a damaged blob fails the pull instead of being copied).
    Each pull is recorded in the ledger; `hopnhat verify` fails a system whose snapshots
    older than verification.copy_grace are not in the vault. `hopnhat schedule install`
    installs a daily timer for this (vault.schedule).
    """
    from orchestrator.actions.vault import pull_flow

    c = context(ctx)
    require_known(ctx, systems=system)
    as_json = want_json(ctx, json)
    hooks = pass_hooks(ctx, "vault pull", lock_timeout, as_json=as_json, planned=_planned,
                       line=_line)
    result = pull_flow(c.paths, system or (), metrics=metrics, hooks=hooks)
    ended(result, as_json=as_json, summary=_summary)
