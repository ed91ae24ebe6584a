"""``hopnhat drill run | rehearse | nightly | due | history | report``: restore drills and DR
rehearsals with RPO/RTO evidence.

Thin: parse, call the drill actions, render (rich lines as the steps go, or ``--json``).
Exit codes: 0 passed (``due``: nothing overdue), 1 failed (``due``: something overdue),
2 bad input, 3 (``nightly``) some systems not run or stopped, 130 stopped by Ctrl-C or SIGTERM
(the scratch VMs were torn down).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from orchestrator.cli.common import (
    JsonOption,
    MetricsOption,
    console,
    context,
    err_console,
    print_json,
    want_json,
    warn_unsent,
)
from orchestrator.cli.selectors import require_known
from orchestrator.interrupts import interrupts

if TYPE_CHECKING:
    from orchestrator.actions.drill.nightly import NightlyResult
    from orchestrator.actions.drill.plan import DrillPlan
    from orchestrator.actions.drill.result import DrillResult, StepRecord
    from orchestrator.actions.drill.tonight import NightPlan

# The drill actions (pyVmomi, paramiko, jinja2) are imported inside the commands: every
# other command starts faster.

app = typer.Typer(no_args_is_help=True, help=(
    "Restore drills and DR rehearsals at the secondary site, with RPO/RTO evidence (JSON and "
    "HTML under <state>/evidence/)."))

LangOption = Annotated[str, typer.Option("--lang", help="Language of the HTML report: vi or "
                                         "en.")]


class StepLines:
    """A drill's progress on stderr: the plan, then one line per step as it ends."""

    def __init__(self, prefix: bool = False) -> None:
        self.prefix = prefix

    def _tag(self, drill_id: str) -> str:
        return f"[dim]{drill_id}[/] " if self.prefix else ""

    def planned(self, plan: DrillPlan) -> None:
        from orchestrator.human import duration

        table = Table(title=f"drill {plan.drill_id}: {escape(plan.system_name)} (tier "
                      f"{plan.tier}, RPO {duration(plan.rpo_seconds)}, RTO "
                      f"{duration(plan.rto_seconds)})")
        for column in ("scratch VM", "restores", "snapshot", "where"):
            table.add_column(column)
        for s in plan.scratch:
            table.add_row(s.vm.name, s.source.name,
                          f"{s.snapshot.short_id} of {s.snapshot.time:%Y-%m-%d %H:%M:%S}",
                          f"{s.vm.datacenter}/{s.vm.cluster}, {s.vm.port_group} {s.vm.ip}")
        err_console.print(table)
        recovery = ", ".join(s.name for s in plan.recovery)
        if recovery:
            err_console.print(f"recovery: {escape(recovery)}", soft_wrap=True)
        probes = ", ".join(p.name for p in plan.probes) or "none"
        err_console.print(f"probes: {escape(probes)}; "
                          f"{'scratch VMs KEPT afterwards' if plan.keep else 'teardown after'}")

    def step_started(self, drill_id: str, step: str) -> None:
        err_console.print(f"{self._tag(drill_id)}… {escape(step)}", highlight=False)

    def step_finished(self, drill_id: str, step: StepRecord) -> None:
        mark = "[green]✓[/]" if step.ok else "[red]✗[/]"
        detail = f" — {escape(step.detail)}" if step.detail else ""
        err_console.print(f"{self._tag(drill_id)}{mark} {escape(step.name)} {step.seconds:.1f} s"
                          f"{detail}", soft_wrap=True)


def render_result(result: DrillResult) -> None:
    from orchestrator.human import duration

    style = {"passed": "bold green", "failed": "bold red"}.get(result.verdict, "bold yellow")
    plan = result.plan
    console.print(f"drill {result.drill_id} of {result.system}: [{style}]"
                  f"{result.verdict.upper()}[/]")
    for reason in result.reasons:
        console.print(f"  - {escape(reason)}", soft_wrap=True)
    if plan is not None:
        rpo = "—" if result.rpo_seconds is None else duration(result.rpo_seconds)
        rto = "—" if result.rto_seconds is None else duration(result.rto_seconds)
        console.print(f"achieved RPO {rpo} (target {duration(plan.rpo_seconds)}), achieved RTO "
                      f"{rto} (target {duration(plan.rto_seconds)})")
    console.print(f"evidence: {result.evidence} (SHA-256 {result.sha256})")
    console.print(f"report:   {result.html}")


def run(
    ctx: typer.Context,
    system: Annotated[str, typer.Option("--system", help="The system to drill (by code).")],
    snapshot: Annotated[str, typer.Option(
        "--snapshot", help="'latest' (each data VM's newest snapshot) or a snapshot id.")
    ] = "latest",
    keep: Annotated[bool, typer.Option(
        "--keep", help="Leave the scratch VMs running afterwards (to look around).")] = False,
    json: JsonOption = False,
    lang: LangOption = "en",
) -> None:
    """Restore a system at the secondary site onto scratch VMs and prove it works.

    Plan (shown first) → provision scratch VMs on the drill network → give them the restic
    client → restic restore --verify → check files, sizes and sampled hashes against the
    snapshot → the system's recovery steps (drill.recovery: start the engine, restore a
    database dump) → run the system's probes (SQL probes against the dump's manifest) →
    measure RPO and RTO (which includes the recovery) against the tier's targets →
    tear the scratch VMs down (also on failure and Ctrl-C, unless --keep). Production VMs
    and repositories are only read.
    """
    from orchestrator.actions.drill.run import run_drill
    from orchestrator.actions.notifications import tell_drill_failed
    from orchestrator.ledger import Ledger
    from orchestrator.reports.drill.labels import label_set

    c = context(ctx)
    require_known(ctx, systems=[system])
    as_json = want_json(ctx, json)
    label_set(lang)
    with Ledger(c.paths.ledger) as ledger, interrupts():
        result = run_drill(c.paths, system, ledger=ledger, snapshot=snapshot, keep=keep,
                           lang=lang, progress=StepLines())
        told = tell_drill_failed(c.paths, result, ledger)
    if as_json:
        print_json({**result.summary(), "drill_id": result.drill_id,
                    "notifications": [s.as_dict() for s in told]})
    else:
        render_result(result)
    warn_unsent(told)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def rehearse(
    ctx: typer.Context,
    tier: Annotated[int | None, typer.Option(
        "--tier", help="The systems of this tier (and what they depend on).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every system that has backups.")] = False,
    parallel: Annotated[int, typer.Option(
        "--parallel", min=1, max=16, help="Drills at once within a priority group.")] = 2,
    json: JsonOption = False,
    lang: LangOption = "en",
) -> None:
    """A whole-site rehearsal: drill systems in priority groups ordered by their declared
    dependencies (what a system depends on is restored first), in parallel within a group;
    a failed system fails its dependants ("dependency sso failed") instead of running them.
    One combined report (JSON and HTML) with each system's RTO and the total time."""
    from orchestrator.actions.drill import rehearse as drill_rehearse
    from orchestrator.human import duration
    from orchestrator.ledger import Ledger
    from orchestrator.reports.drill.labels import label_set

    c = context(ctx)
    as_json = want_json(ctx, json)
    label_set(lang)
    codes = drill_rehearse.select(c.estate, tier, all_)
    groups = drill_rehearse.levels(c.estate, codes)
    if not as_json:
        for i, group in enumerate(groups, 1):
            err_console.print(f"group {i}: {', '.join(group)}")
    with Ledger(c.paths.ledger) as ledger, interrupts():
        result = drill_rehearse.rehearse(c.paths, groups, ledger=ledger, parallel=parallel,
                                         lang=lang, progress=StepLines(prefix=True))
    if as_json:
        print_json(result.summary())
    else:
        table = Table(title=f"rehearsal {result.rehearsal_id}")
        for column in ("group", "system", "verdict", "RTO", "RPO", "drill / reason"):
            table.add_column(column, overflow="fold")
        for s in result.systems:
            table.add_row(str(s.group), s.system, s.verdict, duration(s.rto_seconds)
                          if s.rto_seconds is not None else "—",
                          duration(s.rpo_seconds) if s.rpo_seconds is not None else "—",
                          escape(s.drill_id or s.reason))
        console.print(table)
        console.print(f"rehearsal {result.verdict.upper()} in {duration(result.seconds)}; "
                      f"report: {result.html}")
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def due(ctx: typer.Context, json: JsonOption = False,
        notify: Annotated[bool, typer.Option(
            "--notify", help="Tell the channels the estate routes drill_overdue to "
            "(notifications:) of the systems overdue.")] = False) -> None:
    """Which systems are overdue for a drill (no passed drill within their tier's
    drill_interval). Exit 1 if any, so a nightly job can alert."""
    from orchestrator.actions.drill import history as drill_history
    from orchestrator.actions.notifications import tell_overdue
    from orchestrator.human import duration
    from orchestrator.ledger import Ledger

    c = context(ctx)
    with Ledger(c.paths.ledger) as ledger:
        rows = drill_history.due(c.estate, ledger)
    warn_unsent(tell_overdue(c.paths, rows) if notify else ())
    if want_json(ctx, json):
        print_json([r.as_dict() for r in rows])
    else:
        table = Table(title="drills due")
        for column in ("system", "tier", "interval", "last passed drill", "status"):
            table.add_column(column)
        for r in rows:
            table.add_row(r.system, str(r.tier), duration(r.interval_seconds),
                          r.last_passed or "never",
                          "[bold red]OVERDUE[/]" if r.overdue else "[green]ok[/]")
        console.print(table)
    if any(r.overdue for r in rows):
        raise typer.Exit(1)


def history(
    ctx: typer.Context,
    system: Annotated[str | None, typer.Option("--system", help="Only this system.")] = None,
    json: JsonOption = False,
) -> None:
    """The drills recorded in the ledger, newest first."""
    from orchestrator.actions.drill import history as drill_history
    from orchestrator.human import duration
    from orchestrator.ledger import Ledger

    c = context(ctx)
    require_known(ctx, systems=[system] if system else ())
    with Ledger(c.paths.ledger) as ledger:
        rows = drill_history.history(ledger, system)
    if want_json(ctx, json):
        print_json([r.as_dict() for r in rows])
        return
    table = Table(title="drills")
    for column in ("drill", "system", "started", "verdict", "RPO", "RTO", "SHA-256"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r.drill_id, r.system, r.started, r.verdict,
                      duration(r.rpo_seconds) if r.rpo_seconds is not None else "—",
                      duration(r.rto_seconds) if r.rto_seconds is not None else "—",
                      (r.sha256 or "")[:16])
    console.print(table)


def report(
    ctx: typer.Context,
    drill_id: Annotated[str, typer.Argument(help="A drill or rehearsal id.")],
    lang: LangOption = "en",
) -> None:
    """Re-render a drill's (or rehearsal's) HTML report from its stored evidence (checked
    against its SHA-256) and print its path."""
    from orchestrator.actions.drill import rehearse as drill_rehearse
    from orchestrator.actions.drill.evidence import render_report
    from orchestrator.ledger import Ledger
    from orchestrator.reports.drill.labels import label_set

    c = context(ctx)
    label_set(lang)
    with Ledger(c.paths.ledger) as ledger:
        if drill_id.startswith("rehearsal-"):
            path = drill_rehearse.render_rehearsal(c.paths, drill_id, lang)
        else:
            path = render_report(c.paths, drill_id, ledger, lang)
    console.print(str(path))


def teardown(
    ctx: typer.Context,
    drill_id: Annotated[str, typer.Argument(help="The drill whose scratch VMs go.")],
) -> None:
    """Destroy the scratch VMs a drill kept (--keep): only VMs carrying that drill's mark
    and this estate's ownership."""
    from orchestrator.actions.drill import scratch as drill_scratch
    from orchestrator.ledger import Ledger

    c = context(ctx)
    with Ledger(c.paths.ledger) as ledger:
        gone = drill_scratch.teardown_kept(c.paths, drill_id, ledger)
    console.print(f"destroyed: {', '.join(gone)}" if gone else
                  f"no scratch VM of {drill_id} is left")


def nightly(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print tonight's plan (the window, which systems in which order and "
        "why, whose turn is another night) and drill nothing.")] = False,
    metrics: MetricsOption = None,
    junit: Annotated[Path | None, typer.Option(
        "--junit", help="Write a JUnit XML report here (a test case per system).")] = None,
    json: JsonOption = False,
    lang: LangOption = "en",
) -> None:
    """Tonight's drills, as the drill timer of `hopnhat schedule install` runs them: inside
    the estate's nightly_drills window, every system of an every_night tier (default tier 1)
    and the others in their turn (their tier's drill_interval, spread over the nights), the
    overdue first; at most nightly_drills.max_scratch_vms scratch VMs at once. A drill that
    would overrun the window is stopped and torn down; the systems left are reported "not
    run: window closed" and stay due (`drill due` keeps alarming). Each drill is an ordinary
    drill run (ledger, evidence). Exit 0 every drill passed (or none was due), 1 a drill
    failed, 3 some were not run or stopped, 130 stopped by Ctrl-C or SIGTERM."""
    import time

    from orchestrator.actions.drill import nightly as drill_nightly
    from orchestrator.actions.notifications import NightlyNotices
    from orchestrator.ledger import Ledger
    from orchestrator.reports.drill.labels import label_set

    c = context(ctx)
    as_json = want_json(ctx, json)
    label_set(lang)  # a language the reports lack is refused before anything, --dry-run too
    if dry_run:
        with Ledger(c.paths.ledger) as ledger:
            plan = drill_nightly.tonight(c.estate, ledger, time.time())
        if as_json:
            print_json({**plan.as_dict(), "dry_run": True})
        else:
            _render_night_plan(plan)
        return
    with Ledger(c.paths.ledger) as ledger, interrupts():
        hooks = NightlyNotices(c.paths, ledger)
        result = drill_nightly.nightly(c.paths, ledger=ledger, lang=lang, metrics=metrics,
                                       junit=junit, progress=StepLines(prefix=True),
                                       hooks=hooks)
    if as_json:
        print_json({**result.summary(), "notifications": [s.as_dict() for s in hooks.sent]})
    else:
        _render_night(result)
    warn_unsent(hooks.sent)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _render_night_plan(plan: NightPlan) -> None:
    from orchestrator.human import duration

    w = plan.window
    state = "open now" if plan.is_open else "closed now"
    console.print(f"nightly drills of {plan.estate}, night of {w.night}: window "
                  f"{w.local(w.start)} → {w.local(w.end)} ({state}); at most "
                  f"{plan.max_scratch_vms} scratch VMs at once")
    table = Table(title="tonight, in this order")
    for column in ("#", "system", "tier", "why", "scratch VMs", "expected"):
        table.add_column(column)
    for i, t in enumerate(plan.turns, 1):
        table.add_row(str(i), t.system, str(t.tier), t.why, str(t.scratch_vms),
                      duration(t.expected_seconds) if t.expected_seconds is not None else "—")
    console.print(table)
    for x in plan.later:
        console.print(f"  later: {x.system} (tier {x.tier}) on the night of {x.next_night}, "
                      f"every {x.every_nights} nights")
    console.print("nothing drilled (--dry-run)")


def _render_night(result: NightlyResult) -> None:
    from orchestrator.human import duration

    table = Table(title=f"nightly drills {result.night_id}")
    for column in ("system", "tier", "outcome", "RPO", "RTO", "drill / reason"):
        table.add_column(column, overflow="fold")
    for o in result.outcomes:
        style = {"passed": "green", "failed": "bold red"}.get(o.status, "yellow")
        table.add_row(o.system, str(o.tier), f"[{style}]{o.status}[/]",
                      duration(o.rpo_seconds) if o.rpo_seconds is not None else "—",
                      duration(o.rto_seconds) if o.rto_seconds is not None else "—",
                      escape(" ".join(x for x in (o.drill_id, o.reason) if x)))
    console.print(table)
    overdue = [r.system for r in result.overdue if r.overdue]
    console.print(f"nightly drills {result.verdict.upper()} in {duration(result.seconds)}"
                  + (f"; overdue now: {', '.join(overdue)}" if overdue else ""))


app.command("run")(run)
app.command("rehearse")(rehearse)
app.command("due")(due)
app.command("history")(history)
app.command("report")(report)
app.command("teardown")(teardown)
app.command("nightly")(nightly)
