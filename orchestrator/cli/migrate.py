"""``hopnhat migrate plan | run | sync | cutover | status | report``: move a system to another
site by restore, with a handover record for each step and a parallel run.

Thin: parse, call the migrate actions, render (a line per step as it ends, or ``--json``).
Exit codes: 0 passed, 1 failed (named: the step and the files or probes), 2 bad input
(system, site, state, snapshot), 130 stopped by Ctrl-C or SIGTERM (the target VMs are kept
for the next run).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

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
from orchestrator.interrupts import interrupts

if TYPE_CHECKING:
    from orchestrator.actions.drill.result import StepRecord
    from orchestrator.actions.migrate.plan import MigrationPlan
    from orchestrator.actions.migrate.result import MigrationResult
    from orchestrator.actions.provision.model import Plan

app = typer.Typer(no_args_is_help=True, help=(
    "Move a system to another site by restore: plan, run (copy), sync (during the parallel "
    "run), cutover, status, report. Each run, sync and cutover writes a handover record "
    "(JSON with its SHA-256 in the ledger, a manifest of every file, HTML in Vietnamese or "
    "English) under <state>/evidence/<run id>/. The move is described in the system's file "
    "under migration: (to, vms, stop_writes, start_writes, parallel_run)."))

SystemOption = Annotated[str, typer.Option("--system", help="The system to move (by code).")]
ToOption = Annotated[str, typer.Option("--to", help="The site it moves to (its migration.to).")]
LangOption = Annotated[str, typer.Option("--lang", help="Language of the HTML record: vi or en.")]


class StepLines:
    """Progress on stderr: one line per step as it starts and ends."""

    def step_started(self, name: str) -> None:
        err_console.print(f"… {name}", highlight=False)

    def step_finished(self, record: StepRecord) -> None:
        mark = "[green]✓[/]" if record.ok else "[red]✗[/]"
        detail = f" — {escape(record.detail[:600])}" if record.detail else ""
        err_console.print(f"{mark} {record.name} {record.seconds:.1f} s{detail}",
                          soft_wrap=True)

    def line(self, text: str) -> None:
        err_console.print(f"  {escape(text[:300])}", highlight=False, soft_wrap=True)


def _render(result: MigrationResult) -> None:
    style = {"passed": "bold green", "failed": "bold red"}.get(result.verdict, "bold yellow")
    console.print(f"migrate {result.step} {result.run_id} of {result.system} → {result.to}: "
                  f"[{style}]{result.verdict.upper()}[/]")
    for reason in result.reasons:
        console.print(f"  - {escape(reason)}", soft_wrap=True)
    for check in result.checks:
        d = check.differences
        n = sum(t["files"] for t in check.totals.values())
        size = sum(t["bytes"] for t in check.totals.values())
        line = (f"  {check.vm} ← {check.source} {check.snapshot[:8]}: {n} files, {size} bytes, "
                + ("manifest equal" if d.ok else f"missing {d.counts['missing']}, extra "
                   f"{d.counts['extra']}, different {d.counts['different']}"))
        if check.changes is not None:
            c = check.changes.counts
            line += f"; since last: +{c['added']} ~{c['changed']} -{c['removed']}"
        console.print(escape(line), soft_wrap=True)
    if result.writes_stopped and result.writes_restored is not None:
        console.print("  source writes put back" if result.writes_restored else
                      "  [bold red]source writes NOT put back: check the source[/]")
    if result.parallel_until:
        from orchestrator.actions.migrate.state import _iso
        from orchestrator.human import local_time

        console.print(f"  cut over; the source runs in parallel until "
                      f"{local_time(_iso(result.parallel_until), 'UTC')}")
    if result.manifest_sha256:
        console.print(f"manifest: {result.manifest_file} (SHA-256 {result.manifest_sha256})")
    console.print(f"evidence: {result.evidence} (SHA-256 {result.sha256})")
    console.print(f"report:   {result.html}")


def _step(ctx: typer.Context, step: str, system: str, to: str, snapshot: str, reason: str,
          clean: bool, json: bool, lang: str, lock_timeout: float) -> None:
    from orchestrator.actions.migrate.run import migrate
    from orchestrator.ledger import Ledger
    from orchestrator.reports.migrate import labels

    c = context(ctx)
    require_known(ctx, systems=[system], sites=[to])
    as_json = want_json(ctx, json)
    labels(lang)
    paths = c.paths
    take_estate_lock(ctx, f"migrate {step}", lock_timeout)
    with Ledger(paths.ledger) as ledger, interrupts():
        result = migrate(paths, system, to, step, ledger=ledger, snapshot=snapshot,
                         reason=reason, clean=clean, lang=lang, progress=StepLines())
    if as_json:
        print_json({"run_id": result.run_id, "system": result.system, **result.summary(),
                    "checks": [c.as_dict() for c in result.checks],
                    "probes": [p.as_dict() for p in result.probes], "html": result.html})
    else:
        _render(result)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


SnapshotOption = Annotated[str, typer.Option(
    "--snapshot", help="Restore this snapshot (an id) instead of backing the source up now; "
    "one older than the tier's RPO also needs --reason.")]
ReasonOption = Annotated[str, typer.Option(
    "--reason", help="Why an older snapshot is moved (written in the handover record).")]


def plan(ctx: typer.Context, system: SystemOption, to: ToOption,
         json: JsonOption = False) -> None:
    """Show what a move will do, changing nothing: the VMs built at the target site (and
    the capacity check), the snapshot each restores, what keeps running at the source."""
    from orchestrator.actions.migrate.preview import preview

    c = context(ctx)
    require_known(ctx, systems=[system], sites=[to])
    result = preview(c.paths, system, to)
    building = result.provision
    assert building is not None  # a preview holds the targets' provisioning plan
    if want_json(ctx, json):
        print_json(result.as_dict())
    else:
        _render_move(result, building)
    if building.refusals:
        for refusal in building.refusals:
            err_console.print(f"[red]refused:[/] {escape(refusal)}", soft_wrap=True)
        raise typer.Exit(1)


def _render_move(result: MigrationPlan, building: Plan) -> None:
    """The target VMs and what each receives, the capacity they need, what stays."""
    table = Table(title=f"migrate {result.system} ({escape(result.system_name)}) "
                  f"{', '.join(result.from_sites)} → {result.to}")
    for column in ("target VM", "role", "where", "hardware", "receives", "now in vCenter"):
        table.add_column(column, overflow="fold")
    kinds = {a.name: a.kind for a in building.actions}
    for vm in result.targets:
        table.add_row(vm.name, vm.role, f"{vm.datacenter}/{vm.cluster}, {vm.port_group} "
                      f"{vm.ip}", f"{vm.cpu} vCPU, {vm.memory_mb} MB, "
                      f"{'+'.join(map(str, vm.disks_gb or ()))} GB",
                      vm.source or "—", kinds.get(vm.name, "?"))
    console.print(table)
    for pair in result.pairs:
        have = pair.snapshot
        console.print(f"{pair.target.name} restores a fresh snapshot of {pair.source.name}"
                      + (f" (its newest now: {have.short_id} of {have.time:%Y-%m-%d %H:%M})"
                         if have else " (none yet)"))
    for check in building.capacity:
        console.print(f"capacity: {escape(check.describe())}")
    console.print("stays running at the source (parallel run of "
                  f"{result.parallel_run_seconds / 86400:.0f} days after cutover): "
                  + ", ".join(f"{vm.name} ({vm.site})" for vm in result.staying))


def run(ctx: typer.Context, system: SystemOption, to: ToOption,
        snapshot: SnapshotOption = "latest", reason: ReasonOption = "",
        clean: Annotated[bool, typer.Option(
            "--clean", help="Destroy the target VMs an earlier run built and start over "
            "(default: keep them and go on).")] = False,
        json: JsonOption = False, lang: LangOption = "vi",
        lock_timeout: LockTimeoutOption = 0.0) -> None:
    """Copy a system to its target site: back the source up now, build the target VMs,
    give them the restic client (no backup schedule yet), restore the snapshot, check every
    file against the snapshot (the manifest), run the system's probes."""
    _step(ctx, "run", system, to, snapshot, reason, clean, json, lang, lock_timeout)


def sync(ctx: typer.Context, system: SystemOption, to: ToOption,
         snapshot: SnapshotOption = "latest", reason: ReasonOption = "",
         json: JsonOption = False, lang: LangOption = "vi",
         lock_timeout: LockTimeoutOption = 0.0) -> None:
    """Bring the target up to date during the parallel run: a new snapshot of the source
    restored over it as a delta (what the source deleted is deleted), the manifest again,
    and what changed since the last record."""
    _step(ctx, "sync", system, to, snapshot, reason, False, json, lang, lock_timeout)


def cutover(ctx: typer.Context, system: SystemOption, to: ToOption,
            json: JsonOption = False, lang: LangOption = "vi",
            lock_timeout: LockTimeoutOption = 0.0) -> None:
    """Hand over: stop writes at the source (the estate's stop_writes), a final sync, the
    manifest and the probes, then the target's backup schedule; the source then runs in
    parallel until the end of migration.parallel_run. If any step fails, the source is put
    back (start_writes) and nothing is recorded as cut over."""
    _step(ctx, "cutover", system, to, "latest", "", False, json, lang, lock_timeout)


def status(ctx: typer.Context,
           system: Annotated[list[str] | None, typer.Option(
               "--system", help="Only this system (repeatable).")] = None,
           drift: Annotated[bool, typer.Option(
               "--drift/--no-drift", help="Read each source VM now for what changed since "
               "the last copy.")] = True,
           json: JsonOption = False) -> None:
    """Every migration the estate declares: its state (planned, copied, in sync, cut over),
    the last manifest's result, the end of the parallel run, and the drift at the source
    since the last copy."""
    from orchestrator.actions.migrate.status import status as read_status
    from orchestrator.ledger import Ledger

    c = context(ctx)
    require_known(ctx, systems=system)
    as_json = want_json(ctx, json)
    paths = c.paths
    with Ledger(paths.ledger) as ledger:
        found = read_status(paths, ledger, system, drift=drift)
    if as_json:
        print_json({"migrations": [s.as_dict() for s in found]})
        return
    table = Table(title="migrations")
    for column in ("system", "to", "state", "last copy", "manifest", "parallel run until",
                   "drift at the source", "last run"):
        table.add_column(column, overflow="fold")
    for s in found:
        st = s.state
        drifts = "; ".join(
            f"{d.source}: " + (f"+{d.counts['added']} ~{d.counts['changed']} "
                               f"-{d.counts['removed']}" if d.counts is not None
                               else f"unknown ({d.error[:80]})") for d in s.drift) or "—"
        manifest = {True: "equal", False: "DIFFERENT", None: "—"}[st.last_manifest_ok]
        table.add_row(st.system, s.to, st.name, st.last_copy_at or "—", manifest,
                      st.parallel_until or "—", escape(drifts),
                      f"{st.last_run_step or '—'} {st.last_run_verdict or ''}".strip())
    console.print(table)


def report(ctx: typer.Context,
           run_id: Annotated[str, typer.Argument(help="The migration run's id.")],
           lang: LangOption = "vi", json: JsonOption = False) -> None:
    """Render a handover record's HTML again from its evidence — refused (exit 2) when the
    evidence or its manifest no longer matches the hash the ledger recorded."""
    from orchestrator.actions.migrate.evidence import report as render
    from orchestrator.ledger import Ledger
    from orchestrator.reports.migrate import labels

    c = context(ctx)
    labels(lang)
    with Ledger(c.paths.ledger) as ledger:
        out = render(c.paths, ledger, run_id, lang)
    if want_json(ctx, json):
        print_json({"run_id": run_id, "html": str(out)})
    else:
        console.print(f"report: {out}")


app.command("plan")(plan)
app.command("run")(run)
app.command("sync")(sync)
app.command("cutover")(cutover)
app.command("status")(status)
app.command("report")(report)
