"""``hopnhat verify``: check every backup repository and judge it against its tier;
``hopnhat verify history``: past verifications from the ledger.

Thin: parse, call the verify flow (:mod:`orchestrator.actions.verify.flow`: plan, run, the
JUnit and metrics files, the notifications) with live per-repository lines on stderr, then
the table (or ``--json``). Exit codes: 0 every repository is ok, 1 a check failed (or a
repository could not be read), 2 could not run (bad estate, no vault, bad option).
"""

from __future__ import annotations

import time
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
from orchestrator.human import duration, size

if TYPE_CHECKING:
    from orchestrator.actions.verify.run import RepositoryReport, VerifyPlan, VerifyResult

# The verify actions and reports are imported inside the commands: every other command
# starts faster.

app = typer.Typer(no_args_is_help=False, add_completion=False)


def _verdicts() -> dict[str, str]:
    """A repository's verdict, marked up."""
    from orchestrator.verdicts import ERROR, FAILED, OK

    return {OK: "[bold green]ok[/]", FAILED: "[bold red]FAILED[/]", ERROR: "[bold red]ERROR[/]"}


def _subset(value: str) -> str:
    from orchestrator.actions.verify.checks import parse_subset_option

    try:
        return parse_subset_option(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _age_cell(report: RepositoryReport) -> str:
    from orchestrator.verdicts import FAILED, FRESHNESS

    ages = [h.age_seconds for h in report.hosts if h.expected and h.age_seconds is not None]
    rpo = duration(report.target.rpo, "compact")
    if not ages:
        return f"– / {rpo}"
    age = max(ages)
    style = "red" if report.check(FRESHNESS).status == FAILED else ""
    text = f"{duration(age, 'compact')} / {rpo}"
    return f"[{style}]{text}[/]" if style else text


def _restic_cell(report: RepositoryReport) -> str:
    """The restic that checked the repository, then the restic(s) that made each host's
    latest snapshot (``< 0.16``: restic records its version from 0.16 on)."""
    made = sorted({h.restic_version or "< 0.16" for h in report.hosts if h.latest_id})
    cell = f"check {report.restic_version or '-'}"
    return cell + (f"\nbackup {', '.join(made)}" if made else "")


def _checks_cell(report: RepositoryReport) -> str:
    """The checks that did not pass, by name (``all N ok`` when every one judged did; a
    check skipped counts neither way); ``none could run`` when every one judged errored."""
    from orchestrator.verdicts import ERROR, SKIPPED

    judged = [c for c in report.checks if c.status != SKIPPED]
    bad = [c for c in judged if not c.passed]
    if not bad:
        return f"[green]all {len(judged)} ok[/]"
    if all(c.status == ERROR for c in judged):
        return "[bold red]none could run[/]"
    return "[bold red]" + ", ".join(c.name.replace("_", " ") for c in bad) + "[/]"


def render(result: VerifyResult) -> None:
    """The table for people, in 80 columns: the ``checks`` cell names the checks that did
    not pass (each check's own status is in ``--json``, the JUnit file and the metrics);
    then why each check that did not pass did not."""
    from orchestrator.verdicts import OK

    verdicts = _verdicts()
    table = Table(show_edge=False, box=None, pad_edge=False, collapse_padding=True)
    for column in ("system", "tier", "repository", "read data", "age / RPO", "restic",
                   "checks", "verdict"):
        table.add_column(column, overflow="fold")
    for report in result.reports:
        t = report.target
        table.add_row(t.system, str(t.tier), t.repository, t.subset or "[dim]–[/]",
                      _age_cell(report), _restic_cell(report), _checks_cell(report),
                      verdicts[report.verdict])
    console.print(table)
    quotas = [r for r in result.reports if r.used_bytes is not None and r.target.quota_bytes]
    if quotas:
        def share(r: RepositoryReport) -> float:
            return (r.used_bytes or 0) / (r.target.quota_bytes or 1)
        console.print("quota used: " + ", ".join(
            f"{'[bold red]' if share(r) >= 0.9 else ''}{r.target.system} {share(r):.0%} of "
            f"{size(r.target.quota_bytes)}{'[/]' if share(r) >= 0.9 else ''}"
            for r in sorted(quotas, key=share, reverse=True)), soft_wrap=True)
    for report in result.reports:
        said: dict[tuple[str, str], list[str]] = {}  # one line per distinct problem
        for check in report.checks:
            if not check.passed:
                said.setdefault((check.status, check.message), []).append(check.name)
        for (status, message), names in said.items():
            console.print(f"[bold red]{status}:[/] {report.target.key} {', '.join(names)}: "
                          f"{escape(message)}", soft_wrap=True)
    bad = sum(r.verdict != OK for r in result.reports)
    word = "[bold green]ok[/]" if result.exit_code == 0 else "[bold red]failed[/]"
    console.print(f"verify {word}: {len(result.reports) - bad} of {len(result.reports)} "
                  f"repositories ok in {result.duration_seconds:.1f} s — run {result.run_id}",
                  soft_wrap=True)


def _progress(report: RepositoryReport) -> None:
    from orchestrator.verdicts import OK

    mark = "[green]✓[/]" if report.verdict == OK else "[bold red]✗[/]"
    err_console.print(f"{mark} {report.target.key}: {report.verdict} "
                      f"({report.duration_seconds:.1f} s)")


@app.callback(invoke_without_command=True)
def verify(
    ctx: typer.Context,
    system: Annotated[list[str] | None, typer.Option(
        "--system", help="Only this system's repository (by code; repeatable).")] = None,
    read_data_subset: Annotated[str, typer.Option(
        "--read-data-subset", callback=_subset, help="How much data check reads: auto "
        "(subset k/t of the tier's rotation, so all of it every t nights), none, all, n/t "
        "or x%.")] = "auto",
    junit: Annotated[Path | None, typer.Option(
        "--junit", help="Write a JUnit XML report here (a test case per repository and "
        "check).")] = None,
    metrics: MetricsOption = None,
    notify_url: Annotated[str | None, typer.Option(
        "--notify-url", help="Ping this URL on success, URL/start and URL/fail "
        "(healthchecks-style). Default: the estate's verification.notify_url.")] = None,
    concurrency: Annotated[int | None, typer.Option(
        "--concurrency", min=1, max=64, help="Repositories checked at once (default: the "
        "estate's verification.concurrency).")] = None,
    json: JsonOption = False,
) -> None:
    """Check every backup repository from the control host: restic check with a rotating
    read-data subset, freshness of each host's latest snapshot against the tier's RPO,
    size anomalies against the median of earlier snapshots, the second copy, locks, a
    retirement's final snapshots, and signs of attack: snapshots dated in the future, of a
    host not the system's, or gone without hopnhat removing them. Changes nothing in any
    repository. People are told of what went wrong through the estate's notifications
    (verify_failed, backup_stale, attack_suspected); a channel that fails is a warning.
    Exit 0 all good, 1 a check failed, 2 could not run."""
    if ctx.invoked_subcommand is not None:
        return  # "verify history": none of the imports below is needed
    from orchestrator.actions.verify.flow import VerifyRequest, verify_flow

    as_json = want_json(ctx, json)
    request = VerifyRequest(
        systems=system or (), read_data_subset=read_data_subset, concurrency=concurrency,
        junit=junit, metrics=metrics, notify_url=notify_url)
    done = verify_flow(context(ctx), request, on_planned=None if as_json else _announce,
                       on_report=None if as_json else _progress)
    if as_json:
        print_json({**done.result.as_dict(),
                    "notifications": [n.as_dict() for n in done.notifications]})
    else:
        render(done.result)
    warn_unsent(done.notifications)
    if done.result.exit_code:
        raise typer.Exit(done.result.exit_code)


def _announce(the_plan: VerifyPlan) -> None:
    err_console.print(f"Verifying {len(the_plan.targets)} repositories, "
                      f"{the_plan.concurrency} at once, read-data {the_plan.option} …")


@app.command("history")
def history(
    ctx: typer.Context,
    system: Annotated[str | None, typer.Option(
        "--system", help="Only runs that verified this system, with its verdict and "
        "problems.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many runs.")] = 20,
    json: JsonOption = False,
) -> None:
    """Past verifications from the ledger, newest first."""
    from orchestrator.actions.verify.history import history as verify_history
    from orchestrator.ledger import Ledger
    from orchestrator.verdicts import OK

    c = context(ctx)
    require_known(ctx, systems=[system] if system else ())
    with Ledger(c.paths.ledger) as ledger:
        rows = verify_history(ledger, system, limit)
    if want_json(ctx, json):
        print_json(rows)
        return
    table = Table(show_edge=False, box=None, pad_edge=False)
    for column in ("started", "run", "operator", "status",
                   *(("verdict", "problems") if system else ("ok", "not ok"))):
        table.add_column(column)
    verdicts = _verdicts()
    for row in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["started"]))
        if system:
            extra = (verdicts.get(row["verdict"] or "", "?"),
                     escape("; ".join(row["problems"])) or "–")
        else:
            bad = sorted(s for s, v in row["repositories"].items() if v != OK)
            extra = (str(len(row["repositories"]) - len(bad)), ", ".join(bad) or "–")
        table.add_row(when, row["run_id"], escape(row["operator"]), row["status"], *extra)
    console.print(table)
    if not rows:
        console.print("no verification in the ledger yet"
                      + (f" for system {system}" if system else ""))
