"""``hopnhat maintain``: prune the rest repositories from the control host.

Thin: plan (unknown systems refused, exit 2, before anything is touched), run, render.
Exit codes: 0 every repository done (or skipped, saying why), 1 one failed (named), 2 bad
input, 130 stopped.
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
    from orchestrator.actions.maintain.run import Outcome


def _line(outcome: Outcome, dry_run: bool) -> str:
    t = outcome.target
    where = f"{t.system}@{t.repository}"
    if outcome.status == "skipped":
        return f"- {where}: skipped ({outcome.target.skipped})"
    if outcome.status == "failed":
        return f"[red]✗[/] {where}: {escape(outcome.error or 'failed')}"
    verb = "would remove" if dry_run else "removed"
    return (f"[green]✓[/] {where}: {verb} {len(outcome.removed)} snapshot(s), kept "
            f"{outcome.kept} ({', '.join(f'keep-{k} {v}' for k, v in t.policy.items())}) "
            f"in {outcome.seconds:.1f} s")


def maintain(
    ctx: typer.Context,
    system: Annotated[list[str] | None, typer.Option(
        "--system", "-s", help="Only this system (repeat for more). Default: every system "
        "with a backup.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Say what the retention would remove; remove nothing.")] = False,
    metrics: Annotated[Path | None, typer.Option(
        "--metrics", help="Write a Prometheus textfile here (last success per repository, "
        "what was removed, the exit code).")] = None,
    json: JsonOption = False,
    lock_timeout: LockTimeoutOption = 0.0,
) -> None:
    """Prune the repositories of rest repository hosts from the control host.

    Their backup clients can only add (each system's rest-server is append-only), so
    retention is applied here: through the host's maintenance endpoint (the control host's
    own credentials, on no client), each system's retention as keep-within rules relative
    to its newest snapshot that is not dated in the future (planted future snapshots push
    nothing out), snapshots tagged final or archived always kept, then prune. Every
    snapshot removed is recorded in the ledger, so `hopnhat verify` can tell these removals
    from anyone else's. Locks: waited for (verification.lock_wait), stale ones removed, a
    live owner's never. Repositories of SFTP hosts are skipped: their clients prune them.
    `hopnhat schedule install` installs a weekly timer for this.
    """
    from orchestrator.actions.maintain.plan import plan_maintenance
    from orchestrator.actions.maintain.run import last_successes, require_secrets
    from orchestrator.actions.maintain.run import maintain as run_maintain
    from orchestrator.estate.secrets import Secrets
    from orchestrator.reports import write_report
    from orchestrator.reports.maintain_metrics import render_maintain_metrics

    c = context(ctx)
    require_known(ctx, systems=system)
    as_json = want_json(ctx, json)
    paths = c.paths
    targets = plan_maintenance(c.estate, system or [])
    secrets = Secrets(paths)
    require_secrets(paths, targets, secrets)  # a missing key: exit 2, nothing touched
    if not dry_run:
        take_estate_lock(ctx, "maintain", lock_timeout)
    before = last_successes(paths) if metrics is not None else {}

    def show(outcome: Outcome) -> None:
        if not as_json:
            console.print(_line(outcome, dry_run), soft_wrap=True)

    if not as_json:
        err_console.print(f"Maintaining {len(targets)} repository(ies) …")
    with interrupts():
        result = run_maintain(paths, targets, dry_run=dry_run, on_outcome=show,
                              secrets=secrets)
    if metrics is not None:
        write_report(metrics, render_maintain_metrics(c.estate.id, result, before))
    if as_json:
        print_json(result.as_dict())
    else:
        failed = [o for o in result.outcomes if o.status == "failed"]
        removed = sum(len(o.removed) for o in result.outcomes)
        console.print(f"maintain {'(dry run) ' if dry_run else ''}"
                      f"{'ok' if not failed else 'FAILED'}: {len(result.outcomes)} "
                      f"repository(ies), {removed} snapshot(s) "
                      f"{'would be ' if dry_run else ''}removed, {len(failed)} failed in "
                      f"{result.seconds:.1f} s — run {result.run_id}")
    raise typer.Exit(result.exit_code)
