"""``hopnhat maintain``: prune the rest repositories from the control host.

Thin: parse, call the maintain flow (:mod:`orchestrator.actions.maintain.flow`: plan —
unknown systems refused, exit 2, before anything is touched — the estate lock, the pass, the
metrics file) with a line per repository as it is done, then the summary (or ``--json``).
Exit codes: 0 every repository done (or skipped, saying why), 1 one failed (named), 2 bad
input, 130 stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from orchestrator.cli.common import JsonOption, context, want_json
from orchestrator.cli.locking import LockTimeoutOption
from orchestrator.cli.passes import ended, pass_hooks
from orchestrator.cli.selectors import require_known

if TYPE_CHECKING:
    from orchestrator.actions.maintain.plan import Target
    from orchestrator.actions.maintain.run import MaintainResult, Outcome


def _planned(targets: Sequence[Target]) -> str:
    return f"Maintaining {len(targets)} repository(ies) …"


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


def _summary(result: MaintainResult) -> str:
    failed = [o for o in result.outcomes if o.status == "failed"]
    removed = sum(len(o.removed) for o in result.outcomes)
    dry_run = result.dry_run
    return (f"maintain {'(dry run) ' if dry_run else ''}"
            f"{'ok' if not failed else 'FAILED'}: {len(result.outcomes)} "
            f"repository(ies), {removed} snapshot(s) "
            f"{'would be ' if dry_run else ''}removed, {len(failed)} failed in "
            f"{result.seconds:.1f} s — run {result.run_id}")


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
    from orchestrator.actions.maintain.flow import maintain_flow

    c = context(ctx)
    require_known(ctx, systems=system)
    as_json = want_json(ctx, json)
    hooks = pass_hooks(ctx, "maintain", lock_timeout, as_json=as_json, planned=_planned,
                       line=partial(_line, dry_run=dry_run))
    result = maintain_flow(c.paths, system or (), dry_run=dry_run, metrics=metrics,
                           hooks=hooks)
    ended(result, as_json=as_json, summary=_summary)
