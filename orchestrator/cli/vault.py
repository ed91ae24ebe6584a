"""``hopnhat vault pull``: copy every system's snapshots into the estate's vault.

Thin: plan (no vault, an unknown system or one the vault does not hold: exit 2, before
anything is touched), read the secrets (a missing key: exit 2), pull, render. Exit codes:
0 every system copied (or already up to date), 1 one failed (named), 2 bad input, 130
stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from orchestrator.cli.common import (
    JsonOption,
    console,
    context,
    err_console,
    print_json,
    want_json,
)
from orchestrator.cli.locking import LockTimeoutOption, take_estate_lock
from orchestrator.cli.selectors import require_known
from orchestrator.interrupts import interrupts

if TYPE_CHECKING:
    from orchestrator.actions.vault import Outcome

app = typer.Typer(no_args_is_help=True, help=(
    "The vault: an isolated copy of every system's snapshots at a third location that no "
    "backup client reaches (vault: in estate.yml). The control host pulls into it; "
    "deleting or damaging a repository never deletes from it."))


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
    from orchestrator.actions.vault import last_successes, plan_pull, require_secrets
    from orchestrator.actions.vault import pull as run_pull
    from orchestrator.estate.secrets import Secrets
    from orchestrator.reports import write_report
    from orchestrator.reports.vault_metrics import render_vault_metrics

    c = context(ctx)
    require_known(ctx, systems=system)
    as_json = want_json(ctx, json)
    targets = plan_pull(c.estate, system or [])
    secrets = Secrets(c.paths)
    require_secrets(c.paths, targets, secrets)  # a missing key: exit 2, nothing touched
    take_estate_lock(ctx, "vault pull", lock_timeout)
    before = last_successes(c.paths) if metrics is not None else {}

    def show(outcome: Outcome) -> None:
        if not as_json:
            console.print(_line(outcome), soft_wrap=True)

    if not as_json:
        err_console.print(f"Pulling {len(targets)} system(s) into the vault …")
    with interrupts():
        result = run_pull(c.paths, targets, on_outcome=show, secrets=secrets)
    if metrics is not None:
        write_report(metrics, render_vault_metrics(c.estate.id, result, before))
    if as_json:
        print_json(result.as_dict())
    else:
        failed = [o for o in result.outcomes if o.status == "failed"]
        copied = sum(len(o.copied) for o in result.outcomes)
        console.print(f"vault pull {'ok' if not failed else 'FAILED'}: "
                      f"{len(result.outcomes)} system(s), {copied} snapshot(s) copied, "
                      f"{len(failed)} failed in {result.seconds:.1f} s — run {result.run_id}")
    raise typer.Exit(result.exit_code)
