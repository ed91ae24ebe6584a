"""``hopnhat retire --system S``: close a system and keep its records.

Thin: parse, plan, confirm by the system's code, call the retire action, render. Exit codes:
0 retired, 1 a step failed (named; nothing destroyed before the evidence), 2 bad input or a
refusal (unknown system, a parallel run not ended without --reason), 130 stopped.
"""

from __future__ import annotations

from datetime import UTC, datetime
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
from orchestrator.cli.migrate import LangOption, StepLines
from orchestrator.cli.selectors import require_known
from orchestrator.interrupts import interrupts

if TYPE_CHECKING:
    from orchestrator.actions.retire.plan import RetirePlan
    from orchestrator.actions.retire.result import RetireResult


def _render_plan(p: RetirePlan) -> None:
    what = (f"its source VMs (it lives on at {', '.join(p.targets) or 'its targets'})"
            if p.moved else "the whole system")
    console.print(f"[bold]retire {p.system}[/] ({escape(p.name)}), {what}:")
    if p.resume:
        console.print(f"  taking up run {p.resume}: its evidence is written; only the timers "
                      "and the VMs are left")
    else:
        console.print(f"  1. final backup of {', '.join(p.hosts) or '—'} (tagged final)")
        console.print(f"  2. restic check --read-data of repository {p.system}@{p.repository}")
        console.print("  3. every snapshot of those VMs tagged archived, kept until "
                      f"{datetime.fromtimestamp(p.keep_until, UTC):%Y-%m-%d} ({p.keep})")
        console.print("  4. the final snapshots' manifest (SHA-256 of every file)")
        console.print("  5. the archive catalogue; 6. the evidence (JSON, ledger, HTML)")
    console.print("  then the backup timers removed and these VMs [bold red]destroyed[/]: "
                  + ", ".join(f"{n}{' (adopted)' if n in p.adopted else ''}" for n in p.vms))
    if p.reason:
        console.print(f"  reason: {escape(p.reason)}")


def _render(result: RetireResult) -> None:
    style = "bold green" if result.verdict == "passed" else "bold red"
    console.print(f"retire {result.run_id} of {result.plan.system}: "
                  f"[{style}]{result.verdict.upper()}[/]")
    for reason in result.reasons:
        console.print(f"  - {escape(reason)}", soft_wrap=True)
    for host, ident in sorted(result.finals.items()):
        console.print(f"  final snapshot of {host}: {ident[:8]}")
    if result.catalogue.get("versions") is not None:
        console.print(f"  catalogue: {result.catalogue['versions']:,} file versions, SHA-256 "
                      f"{result.catalogue.get('sha256')}")
    if result.destroyed:
        console.print(f"  destroyed: {', '.join(result.destroyed)}")
    if result.evidence:
        console.print(f"evidence: {result.evidence} (SHA-256 {result.sha256})")
    if result.html:
        console.print(f"report:   {result.html}")


def retire(ctx: typer.Context,
           system: Annotated[str, typer.Option("--system", help="The system to retire (by "
                                               "code).")],
           keep: Annotated[str, typer.Option(
               "--keep", help="How long its final and archived snapshots are kept: 10y, "
               "18m, 400d.")] = "10y",
           reason: Annotated[str | None, typer.Option(
               "--reason", help="Why a moved system's source is retired before the end of "
               "its parallel run (recorded).")] = None,
           plan_only: Annotated[bool, typer.Option(
               "--plan", help="Show what would be done and change nothing.")] = False,
           yes: Annotated[bool, typer.Option(
               "--yes", "-y", help="Do not ask for the system's code before destroying.")
           ] = False,
           json: JsonOption = False, lang: LangOption = "vi",
           lock_timeout: LockTimeoutOption = 0.0) -> None:
    """Close a system and keep its records findable for years.

    For a system with a migration, only its source VMs are closed, after the cutover and
    at the end of the parallel run (before it, only with --reason). In order: a final
    backup (tagged final), a full `restic check --read-data`, every snapshot of the closed
    VMs tagged archived (every forget hopnhat runs keeps them), the final snapshots'
    manifest with each file's SHA-256, the archive catalogue (hopnhat archive find/get),
    the evidence (JSON with its SHA-256 in the ledger, HTML in Vietnamese or English) —
    and only then the backup timers removed and the VMs destroyed, adopted ones too. A run
    that fails after its evidence is taken up by the next one. The repository stays and
    verify goes on checking it."""
    from orchestrator.actions.retire.flow import retire_flow
    from orchestrator.actions.retire.plan import plan_retire
    from orchestrator.ledger import Ledger
    from orchestrator.reports.retire import labels

    c = context(ctx)
    require_known(ctx, systems=[system])
    as_json = want_json(ctx, json)
    labels(lang)
    paths = c.paths
    if plan_only:
        with Ledger(paths.ledger) as ledger:
            the_plan = plan_retire(c.estate, ledger, system, keep=keep, reason=reason)
        if as_json:
            print_json({"plan": the_plan.as_dict()})
        else:
            _render_plan(the_plan)
        return

    def confirm(the_plan: RetirePlan) -> bool:
        return yes or typer.prompt(
            f"Type the system's code ({system}) to retire it and destroy "
            f"{len(the_plan.vms)} VM(s)", err=True, default="",
            show_default=False).strip() == system

    take_estate_lock(ctx, "retire", lock_timeout)
    with interrupts():
        done = retire_flow(paths, system, confirm=confirm, keep=keep, reason=reason,
                           planned=None if as_json else _render_plan, lang=lang,
                           progress=StepLines())
    if done.result is None:
        err_console.print("cancelled: nothing was changed")
        raise typer.Exit(1)
    if as_json:
        print_json(done.result.as_dict())
    else:
        _render(done.result)
    if done.result.exit_code:
        raise typer.Exit(done.result.exit_code)
