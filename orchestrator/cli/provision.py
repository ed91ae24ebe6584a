"""``hopnhat plan | apply | destroy``: provision the estate's VMs on vCenter.

Thin: select the VMs, connect (one session per vCenter for the run), read the facts, call
the action, render (rich tables and progress on the terminal, or ``--json``).

Exit codes: 0 done (plan: no changes), 1 failure (refused plan, vCenter unreachable,
wrong credentials, every VM failed), 2 bad input (unknown system or site, vault) — except
``plan --detailed-exitcode``, where 2 means "changes pending" and every error is 1 —,
3 partial (some VMs failed, the others were done).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from orchestrator.cli.common import (
    Context,
    JsonOption,
    console,
    context,
    err_console,
    print_json,
    want_json,
)
from orchestrator.cli.locking import LockTimeoutOption, take_estate_lock
from orchestrator.cli.selectors import require_known
from orchestrator.errors import EXIT_FAILURE, HopnhatError, VSphereError

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from orchestrator.actions.backup.gate import GateDecision, GateRequest
    from orchestrator.actions.provision import apply as provision_apply
    from orchestrator.actions.provision import model as provision_model
    from orchestrator.actions.provision.destroy import DestroyPlan
    from orchestrator.actions.provision.model import Plan
    from orchestrator.adapters.vsphere import Endpoint, VCenter
    from orchestrator.adapters.vsphere_facts import Inventory
    from orchestrator.ledger import Ledger

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


def _announced_endpoints(c: Context, sites: Sequence[str], insecure: bool) -> list[Endpoint]:
    """The vCenters of ``sites``, said on stderr (with a warning when TLS is off)."""
    from orchestrator.actions.provision import vcenters as provision_vcenters

    endpoints = provision_vcenters.endpoints(c.paths, sites, insecure)
    if endpoints:
        err_console.print(f"Connecting to {', '.join(e.label for e in endpoints)} …")
    else:
        err_console.print("The selection holds no VM: nothing to read.")
    return endpoints


@contextmanager
def _connected(c: Context, sites: Sequence[str], insecure: bool,
               pool_size: int) -> Iterator[dict[str, VCenter]]:
    from orchestrator.adapters.vsphere import open_vcenters

    with open_vcenters(_announced_endpoints(c, sites, insecure), pool_size) as vcenters:
        yield vcenters


@contextmanager
def _connected_each(c: Context, sites: Sequence[str], insecure: bool, pool_size: int
                    ) -> Iterator[tuple[dict[str, VCenter], dict[str, VSphereError]]]:
    """As :func:`_connected`, but a vCenter that cannot be logged in to does not stop the
    others (plan shows the sites it could read, then names the one it could not)."""
    from orchestrator.adapters.vsphere import open_each_vcenter

    endpoints = _announced_endpoints(c, sites, insecure)
    with open_each_vcenter(endpoints, pool_size) as (vcenters, failed):
        yield vcenters, failed


def _make_plan(c: Context, vcenters: dict[str, VCenter], vms: list[Any]
               ) -> tuple[Plan, dict[str, Inventory]]:
    from orchestrator.actions.provision import plan as provision_plan
    from orchestrator.actions.provision import vcenters as provision_vcenters

    err_console.print("Reading vCenter …")
    facts = provision_vcenters.read_facts(vcenters, provision_vcenters.compared(vms),
                                          c.paths.device_cache)
    return provision_plan.plan(c.estate, vms, facts), facts


def _sites_of(vms: Sequence[Any]) -> list[str]:
    return sorted({vm.site for vm in vms})


# ---------------------------------------------------------------- rendering


UNCHANGED_LISTED = 20  # beyond this many, unchanged VMs are counted, not listed (-v lists)


def render_plan(plan: Plan, verbose: bool = False) -> None:
    """The plan for people: one line per VM (unchanged ones only counted when there are
    many, unless ``verbose``), the capacity it needs, totals."""
    unchanged = [a for a in plan.actions if a.kind == "no-op"]
    list_unchanged = verbose or len(unchanged) <= UNCHANGED_LISTED
    shown = [a for a in plan.actions if list_unchanged or a.kind != "no-op"]
    if shown:
        table = Table(title=f"plan for estate {plan.estate}", show_lines=False)
        for column in ("VM", "system", "site", "action", "detail"):
            table.add_column(column, overflow="fold")
        for action in shown:
            style = _STYLE.get(action.kind, "")
            name = action.name if not action.vm.adopted else \
                f"{action.name}\n[dim]= {escape(action.vm.where())}[/]"
            table.add_row(name, action.vm.system, action.vm.site,
                          f"[{style}]{action.kind}[/]", escape(action.describe()))
        console.print(table)
    if not list_unchanged:
        console.print(f"{len(unchanged)} VMs match the estate (listed with -v or --json).")
    touched = [c for c in plan.capacity if c.planned]
    if touched:
        cap = Table(title="capacity (headroom kept free)")
        for column in ("where", "resource", "in use", "planned", "usable", ""):
            cap.add_column(column, justify="right" if column in ("in use", "planned",
                                                                 "usable") else "left")
        for check in touched:
            cap.add_row(f"{check.kind} {check.datacenter}/{check.name}", check.resource,
                        f"{check.in_use:,.0f}", f"+{check.planned:,.0f}",
                        f"{check.usable:,.0f}",
                        "[green]ok[/]" if check.ok else f"[red]short by {check.short_by:,.0f}[/]")
        console.print(cap)
    for warning in plan.warnings:
        console.print(f"[yellow]note:[/] {escape(warning)}")
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


def _finish(plan: Plan | DestroyPlan, gate: GateDecision,
            result: provision_apply.ApplyResult, verb: str, as_json: bool) -> None:
    """The end of apply and destroy: the result shown (``--json``: with the plan and the
    backup gate's verdict), then exit with its code (3 partial, 1 failed) unless done."""
    if as_json:
        print_json({"plan": plan.as_dict(), "backup_gate": gate.as_dict(),
                    "result": result.as_dict()})
    else:
        _render_result(result, verb)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


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


def _ledger(c: Context) -> Ledger:
    from orchestrator.ledger import Ledger

    return Ledger(c.paths.ledger)


def _backup_gate(c: Context, plan: provision_model.GatedPlan, request: GateRequest, command: str,
                 as_json: bool) -> GateDecision:
    """The backup gate (raises PlanError when it refuses), a backup made first streamed to
    stderr, and the gate's verdict shown."""
    from orchestrator.actions.backup.gate import NOT_NEEDED
    from orchestrator.actions.provision import plan as provision_plan

    def show(host: str, line: str) -> None:
        err_console.print(f"{escape(host)}: {escape(line)}", soft_wrap=True)
    gate = provision_plan.backup_gate(plan, c.paths, request, command=command,
                                 on_line=None if as_json else show)
    if not as_json and (gate.status != NOT_NEEDED or gate.not_backed_up):
        err_console.print(escape(gate.summary()), soft_wrap=True)
    elif not as_json and request.backup_first:
        err_console.print("--backup-first: no VM holding data changes; nothing to back up")
    return gate


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
    from orchestrator.actions.provision import plan as provision_plan
    from orchestrator.actions.provision import vcenters as provision_vcenters

    c = context(ctx)
    try:
        require_known(ctx, systems=system, sites=site)
        vms = provision_vcenters.select(c.estate, system or (), site or ())
        with _connected_each(c, _sites_of(vms), insecure, 2) as (vcenters, failed):
            err_console.print("Reading vCenter …")
            facts, lost = provision_vcenters.read_each(vcenters, provision_vcenters.compared(vms),
                                              c.paths.device_cache)
            the_plan = provision_plan.plan_reachable(c.estate, vms, facts, {**failed, **lost})
        if want_json(ctx, json):
            print_json(the_plan.as_dict())
        else:
            render_plan(the_plan, c.verbose > 0)
        provision_plan.check(the_plan)
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
    from orchestrator.actions.provision import apply as provision_apply
    from orchestrator.actions.provision import plan as provision_plan
    from orchestrator.actions.provision import vcenters as provision_vcenters

    c = context(ctx)
    require_known(ctx, systems=system, sites=site)
    request = gate_request(backup_first, no_backup_gate, reason)
    settings = c.estate.settings.provisioning
    workers = concurrency or settings.concurrency
    as_json = want_json(ctx, json)
    vms = provision_vcenters.select(c.estate, system or (), site or ())
    take_estate_lock(ctx, "apply", lock_timeout)
    with _connected(c, _sites_of(vms), insecure, workers) as vcenters:
        the_plan, facts = _make_plan(c, vcenters, vms)
        if not as_json:
            render_plan(the_plan, c.verbose > 0)
        provision_plan.check(the_plan)
        gate = _backup_gate(c, the_plan, request, "apply", as_json)
        if the_plan.has_changes and not yes and not typer.confirm(
                f"Apply {len(the_plan.pending)} change(s) to vCenter?", err=True):
            err_console.print("cancelled: nothing was changed")
            raise typer.Exit(EXIT_FAILURE)
        with _progress(len(the_plan.pending), as_json) as progress:
            result = provision_apply.apply(
                the_plan, facts, vcenters, ledger=_ledger(c), concurrency=workers,
                clones_per_host=settings.clones_per_host,
                clones_per_datastore=settings.clones_per_datastore,
                guest_ip_timeout=settings.guest_ip_timeout.total_seconds(),
                progress=progress,
                params={"systems": system or [], "sites": site or [],
                        "backup_gate": gate.run_id})
    _finish(the_plan, gate, result, "Apply", as_json)


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
    from orchestrator.actions.provision import destroy as provision_destroy
    from orchestrator.actions.provision import vcenters as provision_vcenters

    c = context(ctx)
    require_known(ctx, systems=[system], sites=site)
    request = gate_request(backup_first, no_backup_gate, reason)
    estate = c.estate
    settings = estate.settings.provisioning
    as_json = want_json(ctx, json)
    take_estate_lock(ctx, "destroy", lock_timeout)
    sites = list(site or estate.sites)
    datacenters = [estate.sites[s].datacenter for s in site or ()]
    names = provision_vcenters.compared(estate.vms_of(system))
    with _connected(c, sites, insecure, settings.concurrency) as vcenters:
        err_console.print("Reading vCenter …")
        facts = provision_vcenters.read_facts(vcenters, names, c.paths.device_cache)
        dplan = provision_destroy.plan_destroy(estate, system, facts, datacenters)
        if not as_json:
            render_destroy(dplan)
        dplan.check()
        if not dplan.actions:
            if as_json:
                print_json({"plan": dplan.as_dict(), "result": None})
            else:
                console.print(f"Nothing to destroy: no VM of system {system} is owned by "
                              f"estate {estate.id}.")
            return
        gate = _backup_gate(c, dplan, request, "destroy", as_json)
        if not yes:
            typed = typer.prompt(f"Type the system's code ({system}) to destroy "
                                 f"{len(dplan.actions)} VM(s)", err=True, default="",
                                 show_default=False)
            if typed.strip() != system:
                err_console.print("cancelled: nothing was destroyed")
                raise typer.Exit(EXIT_FAILURE)
        with _progress(len(dplan.actions), as_json) as progress:
            result = provision_destroy.destroy(dplan, vcenters, ledger=_ledger(c),
                                               concurrency=settings.concurrency,
                                               progress=progress)
    _finish(dplan, gate, result, "Destroy", as_json)
