"""``hopnhat plan | apply | destroy``: provision the estate's VMs on vCenter.

Thin: select the VMs, connect (one session per vCenter for the run), read the facts, call
the action, render (rich tables and progress on the terminal, or ``--json``).

Exit codes: 0 done (plan: no changes), 1 failure (refused plan, vCenter unreachable,
wrong credentials, every VM failed), 2 bad input (unknown system or site, vault) — except
``plan --detailed-exitcode``, where 2 means "changes pending" and every error is 1 —,
3 partial (some VMs failed, the others were done).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

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
from orchestrator.errors import EXIT_FAILURE, HopnhatError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from orchestrator.actions.backup.gate import GateDecision, GateRequest
    from orchestrator.actions.provision import apply as provision_apply
    from orchestrator.actions.provision.destroy import DestroyPlan
    from orchestrator.actions.provision.flow import Hooks, Provisioned
    from orchestrator.actions.provision.model import CapacityCheck, GatedPlan, Plan, VMAction

P = TypeVar("P", bound="GatedPlan")

# The provisioning actions (pyVmomi) are imported inside the commands: every other command
# starts faster.

SystemOption = Annotated[list[str] | None, typer.Option(
    "--system", help="Only the VMs of this system (by code; repeatable).")]
SiteOption = Annotated[list[str] | None, typer.Option(
    "--site", help="Only the VMs at this site (repeatable).")]
InsecureOption = Annotated[bool, typer.Option(
    "--insecure", help="Do NOT verify vCenter's TLS certificate (warned; for a lab without "
    "a CA bundle only).")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation "
                                         "(automation).")]
BackupFirstOption = Annotated[bool, typer.Option(
    "--backup-first", help="Back up the systems whose data-bearing VMs this run changes, "
    "then go on if those backups succeeded (the backup gate).")]
NoBackupGateOption = Annotated[bool, typer.Option(
    "--no-backup-gate", help="Go on without a fresh backup of the data-bearing VMs this run "
    "changes; needs --reason; the ledger records who and why.")]
ReasonOption = Annotated[str | None, typer.Option(
    "--reason", help="Why the backup gate is overridden (with --no-backup-gate).")]

_STYLE = {"create": "green", "reconfigure": "yellow", "power-on": "cyan", "resume": "magenta",
          "no-op": "dim", "foreign": "bold red", "refused": "bold red", "adopt": "blue",
          "drift": "yellow"}


# ---------------------------------------------------------------- rendering


UNCHANGED_LISTED = 20  # beyond this many, unchanged VMs are counted, not listed (-v lists)


def render_plan(plan: Plan, verbose: bool = False) -> None:
    """The plan for people: one line per VM (unchanged ones only counted when there are
    many, unless ``verbose``), the capacity it needs, totals."""
    unchanged = [a for a in plan.actions if a.kind == "no-op"]
    list_unchanged = verbose or len(unchanged) <= UNCHANGED_LISTED
    shown = [a for a in plan.actions if list_unchanged or a.kind != "no-op"]
    if shown:
        console.print(_vm_table(plan.estate, shown))
    if not list_unchanged:
        console.print(f"{len(unchanged)} VMs match the estate (listed with -v or --json).")
    touched = [c for c in plan.capacity if c.planned]
    if touched:
        console.print(_capacity_table(touched))
    for warning in plan.warnings:
        console.print(f"[yellow]note:[/] {escape(warning)}")
    _render_totals(plan)


def _vm_table(estate: str, actions: Sequence[VMAction]) -> Table:
    """One line per VM: what apply does to it and why."""
    table = Table(title=f"plan for estate {estate}", show_lines=False)
    for column in ("VM", "system", "site", "action", "detail"):
        table.add_column(column, overflow="fold")
    for action in actions:
        style = _STYLE.get(action.kind, "")
        name = action.name if not action.vm.adopted else \
            f"{action.name}\n[dim]= {escape(action.vm.where())}[/]"
        table.add_row(name, action.vm.system, action.vm.site,
                      f"[{style}]{action.kind}[/]", escape(action.describe()))
    return table


def _capacity_table(touched: Sequence[CapacityCheck]) -> Table:
    """What the plan needs of each cluster and datastore it touches, headroom kept."""
    cap = Table(title="capacity (headroom kept free)")
    for column in ("where", "resource", "in use", "planned", "usable", ""):
        cap.add_column(column, justify="right" if column in ("in use", "planned",
                                                             "usable") else "left")
    for check in touched:
        cap.add_row(f"{check.kind} {check.datacenter}/{check.name}", check.resource,
                    f"{check.in_use:,.0f}", f"+{check.planned:,.0f}",
                    f"{check.usable:,.0f}",
                    "[green]ok[/]" if check.ok else f"[red]short by {check.short_by:,.0f}[/]")
    return cap


def _render_totals(plan: Plan) -> None:
    """The plan's totals, the vCenters not read, and "No changes" when there are none."""
    t = plan.totals()
    console.print(
        f"[bold]Plan:[/] {t['create']} to create, {t['adopt']} to adopt, "
        f"{t['reconfigure']} to reconfigure, {t['power-on']} to power on, {t['resume']} to "
        f"finish, {t['no-op']} unchanged, {t['drift']} drifted (shown only), "
        f"{t['foreign'] + t['refused']} refused; +{t['add_cpu']} vCPU, "
        f"+{t['add_memory_mb']:,} MB memory, +{t['add_disk_gb']:,} GB disk")
    for gone in plan.unreachable:
        console.print(f"[bold red]not read:[/] {escape(gone.describe())}", soft_wrap=True)
    if not plan.has_changes and not plan.refusals and not plan.unreachable:
        console.print("No changes: vCenter matches the estate.")


def render_destroy(dplan: DestroyPlan) -> None:
    table = Table(title=f"destroy system {dplan.system} (estate {dplan.estate})")
    for column in ("VM", "datacenter", "cluster", "IP", "steps"):
        table.add_column(column)
    for action in dplan.actions:
        table.add_row(action.name, action.datacenter, action.cluster, action.ip,
                      " → ".join(action.steps))
    console.print(table)
    for line in dplan.left_alone:
        console.print(f"[yellow]left alone (not ours):[/] {escape(line)}")
    for line in dplan.adopted:
        console.print(f"[bold red]adopted, never destroyed:[/] {escape(line)}")


def _render_result(result: provision_apply.ApplyResult, verb: str) -> None:
    failed = result.failed
    if failed:
        table = Table(title="failed")
        for column in ("VM", "step", "error"):
            table.add_column(column, overflow="fold")
        for outcome in failed:
            table.add_row(outcome.vm, outcome.failed_step, outcome.error)
        err_console.print(table)
    done = len(result.outcomes) - len(failed)
    console.print(f"[bold]{verb}:[/] {done} done, {len(failed)} failed, {result.unchanged} "
                  f"unchanged in {result.seconds:.1f} s — {result.status} (run {result.run_id})")


class RichProgress:
    """apply's progress on stderr: one line per VM in flight, an overall bar, a line per
    VM as it ends."""

    def __init__(self, bar: Progress, total: int) -> None:
        self.bar = bar
        self.overall = bar.add_task("overall", total=total)
        self.rows: dict[str, TaskID] = {}
        self.steps: dict[str, int] = {}

    def started(self, vm: str, steps: Sequence[str]) -> None:
        self.rows[vm] = self.bar.add_task(vm, total=len(steps))
        self.steps[vm] = 0

    def step(self, vm: str, step: str) -> None:
        self.bar.update(self.rows[vm], description=f"{vm}: {step}", completed=self.steps[vm])
        self.steps[vm] += 1

    def finished(self, vm: str, ok: bool, detail: str) -> None:
        self.steps.pop(vm, None)
        self.bar.remove_task(self.rows.pop(vm))
        self.bar.advance(self.overall)
        mark = "[green]✓[/]" if ok else "[red]✗[/]"
        # detail may quote vCenter's own words: escaped, so "[/]" in them is not markup
        self.bar.console.print(f"{mark} {vm} {escape(detail)}", markup=True, highlight=False)


@contextmanager
def _progress(total: int, quiet: bool) -> Iterator[provision_apply.Progress]:
    from orchestrator.actions.provision.apply import NoProgress

    if quiet or total == 0:  # nothing to show progress of
        yield NoProgress()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        yield RichProgress(bar, total)


def _hooks(request: GateRequest, as_json: bool, render: Callable[[P], None]) -> Hooks[P]:
    """How apply and destroy are shown: where they are on stderr; unless ``--json`` (where
    the plan comes with the result), the plan, a backup made first streamed to stderr and
    the backup gate's verdict; progress bars."""
    from orchestrator.actions.provision.flow import Hooks

    def show(host: str, line: str) -> None:
        err_console.print(f"{escape(host)}: {escape(line)}", soft_wrap=True)

    def gated(gate: GateDecision) -> None:
        from orchestrator.actions.backup.gate import NOT_NEEDED

        if gate.status != NOT_NEEDED or gate.not_backed_up:
            err_console.print(escape(gate.summary()), soft_wrap=True)
        elif request.backup_first:
            err_console.print("--backup-first: no VM holding data changes; nothing to back up")

    def progress(total: int) -> AbstractContextManager[provision_apply.Progress]:
        return _progress(total, as_json)

    if as_json:
        return Hooks(say=err_console.print, progress=progress)
    return Hooks(say=err_console.print, planned=render, backup_line=show, gated=gated,
                 progress=progress)


def _finish(done: Provisioned[Plan] | Provisioned[DestroyPlan], verb: str, cancelled: str,
            as_json: bool) -> None:
    """The end of apply and destroy: refused by the operator, ``cancelled`` said and exit
    1; else the result shown (``--json``: with the plan and the backup gate's verdict),
    then exit with its code (3 partial, 1 failed) unless done."""
    if done.cancelled:
        err_console.print(cancelled)
        raise typer.Exit(EXIT_FAILURE)
    result, gate = done.result, done.gate
    assert result is not None and gate is not None
    if as_json:
        print_json({"plan": done.plan.as_dict(), "backup_gate": gate.as_dict(),
                    "result": result.as_dict()})
    else:
        _render_result(result, verb)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


# ---------------------------------------------------------------- commands


def plan(
    ctx: typer.Context,
    system: SystemOption = None,
    site: SiteOption = None,
    json: JsonOption = False,
    detailed_exitcode: Annotated[bool, typer.Option(
        "--detailed-exitcode", help="Exit 0 when there is no change, 2 when changes are "
        "pending, 1 on any error.")] = False,
    insecure: InsecureOption = False,
) -> None:
    """Show what apply would change in vCenter (reads only).

    One line per VM: create, reconfigure (from → to), power on, finish (a VM an earlier run
    left half-made), no-op with its reason, foreign or refused; then the capacity it needs
    per cluster and datastore, and totals. A refused plan (foreign VM, disk shrink, IP in
    use, capacity short) exits 1. Each site's vCenter is read on its own: one that cannot
    be read (down, login refused) is named with its URL after the plan of the others, and
    the plan exits 1.
    """
    from orchestrator.actions.provision.flow import Hooks, plan_flow

    c = context(ctx)
    as_json = want_json(ctx, json)

    def show(the_plan: Plan) -> None:
        if as_json:
            print_json(the_plan.as_dict())
        else:
            render_plan(the_plan, c.verbose > 0)

    try:
        require_known(ctx, systems=system, sites=site)
        the_plan = plan_flow(c.paths, systems=system or (), sites=site or (),
                             insecure=insecure,
                             hooks=Hooks(say=err_console.print, planned=show))
    except HopnhatError as exc:
        if detailed_exitcode:
            exc.exit_code = EXIT_FAILURE  # 2 means "changes pending" here
        raise
    if detailed_exitcode and the_plan.has_changes:
        raise typer.Exit(2)


def apply(
    ctx: typer.Context,
    system: SystemOption = None,
    site: SiteOption = None,
    yes: YesOption = False,
    concurrency: Annotated[int | None, typer.Option(
        "--concurrency", min=1, max=64, help="VMs converged at once (default: the estate's "
        "provisioning.concurrency).")] = None,
    json: JsonOption = False,
    insecure: InsecureOption = False,
    backup_first: BackupFirstOption = False,
    no_backup_gate: NoBackupGateOption = False,
    reason: ReasonOption = None,
    lock_timeout: LockTimeoutOption = 0.0,
) -> None:
    """Make vCenter match the estate (shows the plan, then asks).

    Per VM: clone → mark → reconfigure → customize → power on → wait for its IP → mark it
    provisioned, VMs in parallel, bounded per host and datastore. A failed VM does not stop
    the others (exit 3: partial); a rerun finishes what was left. With nothing to change,
    apply makes no vCenter task.

    Backup gate: a reconfigure of a VM that holds data is refused (exit 1, before any task)
    unless that VM's latest snapshot is younger than its tier's RPO; --backup-first backs
    the systems up first, --no-backup-gate --reason "…" overrides (recorded in the ledger).
    """
    from orchestrator.actions.backup.gate import gate_request
    from orchestrator.actions.provision.flow import apply_flow

    c = context(ctx)
    require_known(ctx, systems=system, sites=site)
    request = gate_request(backup_first, no_backup_gate, reason)
    as_json = want_json(ctx, json)

    def confirm(the_plan: Plan) -> bool:
        return yes or typer.confirm(f"Apply {len(the_plan.pending)} change(s) to vCenter?",
                                    err=True)

    take_estate_lock(ctx, "apply", lock_timeout)
    done = apply_flow(c.paths, confirm=confirm, systems=system or (), sites=site or (),
                      concurrency=concurrency, insecure=insecure, gate=request,
                      hooks=_hooks(request, as_json,
                                   lambda the_plan: render_plan(the_plan, c.verbose > 0)))
    _finish(done, "Apply", "cancelled: nothing was changed", as_json)


def destroy(
    ctx: typer.Context,
    system: Annotated[str, typer.Option("--system", help="The system whose VMs go (by code).")],
    site: SiteOption = None,
    yes: YesOption = False,
    json: JsonOption = False,
    insecure: InsecureOption = False,
    backup_first: BackupFirstOption = False,
    no_backup_gate: NoBackupGateOption = False,
    reason: ReasonOption = None,
    lock_timeout: LockTimeoutOption = 0.0,
) -> None:
    """Power off and destroy one system's VMs that this estate owns.

    Only VMs carrying this estate's ownership mark for the system are touched; anything
    else, even of the same name, is left alone. Asks you to type the system's code, unless
    --yes.

    Backup gate: refused (exit 1, before any task) unless the latest snapshot of each VM
    that holds data is younger than its tier's RPO; --backup-first backs the system up
    first, --no-backup-gate --reason "…" overrides (recorded in the ledger).
    """
    from orchestrator.actions.backup.gate import gate_request
    from orchestrator.actions.provision.flow import destroy_flow

    c = context(ctx)
    require_known(ctx, systems=[system], sites=site)
    request = gate_request(backup_first, no_backup_gate, reason)
    as_json = want_json(ctx, json)

    def confirm(dplan: DestroyPlan) -> bool:
        return yes or typer.prompt(
            f"Type the system's code ({system}) to destroy {len(dplan.actions)} VM(s)",
            err=True, default="", show_default=False).strip() == system

    take_estate_lock(ctx, "destroy", lock_timeout)
    done = destroy_flow(c.paths, system, confirm=confirm, sites=site or (),
                        insecure=insecure, gate=request,
                        hooks=_hooks(request, as_json, render_destroy))
    if not done.plan.actions:  # nothing of the system's is this estate's
        if as_json:
            print_json({"plan": done.plan.as_dict(), "result": None})
        else:
            console.print(f"Nothing to destroy: no VM of system {system} is owned by "
                          f"estate {done.plan.estate}.")
        return
    _finish(done, "Destroy", "cancelled: nothing was destroyed", as_json)
