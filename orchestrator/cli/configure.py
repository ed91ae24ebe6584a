"""``hopnhat configure``: configure the estate's hosts with Ansible (playbooks/site.yml).

Thin: plan (which hosts), run through ansible-runner with live per-host progress, then a
summary from the runner's stats, the roles' notices and the failed tasks (rich, or
``--json``). Exit codes: 0 every host configured, 1 the run failed (or no host was
configured), 2 bad input (unknown system, no vault), 3 partial (some hosts failed or were
unreachable).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from orchestrator.cli.common import JsonOption, console, context, err_console, print_json, want_json
from orchestrator.cli.locking import LockTimeoutOption, take_estate_lock
from orchestrator.cli.selectors import require_known

if TYPE_CHECKING:
    from orchestrator.actions.configure import ConfigureResult
    from orchestrator.adapters.ansible import HostEvent

# The configure action and the Ansible adapter are imported inside the commands: every
# other command starts faster.


def _no_counts() -> dict[str, int]:
    from orchestrator.adapters.ansible import CHANGED, FAILED, OK, SKIPPED, UNREACHABLE

    return {OK: 0, CHANGED: 0, FAILED: 0, UNREACHABLE: 0, SKIPPED: 0}


@dataclass
class _HostLine:
    task: str = ""
    counts: dict[str, int] = field(default_factory=_no_counts)


class LiveProgress:
    """A live table: one row per host with its last task and counts so far."""

    def __init__(self, hosts: tuple[str, ...]) -> None:
        from rich.live import Live

        self.hosts = {host: _HostLine() for host in hosts}
        self.task = ""
        self._lock = threading.Lock()
        self.live = Live(self._table(), console=err_console, refresh_per_second=4,
                         transient=True)

    def _table(self) -> Table:
        from orchestrator.adapters.ansible import CHANGED, FAILED, OK, UNREACHABLE

        table = Table(title=f"configure · {escape(self.task)}", show_edge=False, box=None)
        for column in ("host", "last task", OK, CHANGED, FAILED, UNREACHABLE):
            table.add_column(column)
        for host, line in sorted(self.hosts.items()):
            c = line.counts
            table.add_row(host, escape(line.task[:60]), str(c[OK]), str(c[CHANGED]),
                          str(c[FAILED]), str(c[UNREACHABLE]))
        return table

    def on_task(self, name: str) -> None:
        with self._lock:
            self.task = name
            self.live.update(self._table())

    def on_event(self, event: HostEvent) -> None:
        from orchestrator.adapters.ansible import FAILED, UNREACHABLE

        with self._lock:
            line = self.hosts.setdefault(event.host, _HostLine())
            line.task = event.task
            line.counts[event.outcome] += 1
            self.live.update(self._table())
        if event.outcome in (FAILED, UNREACHABLE) and not event.ignored:
            self.live.console.print(f"[bold red]{event.outcome}:[/] {event.host}: "
                                    f"{escape(event.task)}: {escape(event.message)}",
                                    soft_wrap=True)


@contextmanager
def _progress(hosts: tuple[str, ...], quiet: bool) -> Iterator[LiveProgress | None]:
    if quiet:
        yield None
        return
    progress = LiveProgress(hosts)
    with progress.live:
        yield progress


def render(result: ConfigureResult) -> None:
    """The summary for people: per-host stats, notices, failures, the verdict."""
    from orchestrator.adapters.ansible import CHANGED, FAILED, OK, SKIPPED, UNREACHABLE

    styles = {OK: "green", CHANGED: "yellow", FAILED: "bold red", UNREACHABLE: "bold red",
              SKIPPED: "dim"}
    table = Table(show_edge=False, box=None)
    for column in ("host", "status", "ok", "changed", "failed", "unreachable", "skipped"):
        table.add_column(column)
    for host, stats in sorted(result.run.hosts.items()):
        style = styles.get(stats.status, "")
        table.add_row(host, f"[{style}]{stats.status}[/]", str(stats.ok), str(stats.changed),
                      str(stats.failed), str(stats.unreachable), str(stats.skipped))
    console.print(table)
    for notice in result.run.notices:
        console.print(f"[bold yellow]notice:[/] {notice.host} ({notice.role}): "
                      f"{escape(notice.message)}", soft_wrap=True)
    for failure in result.run.failures:
        console.print(f"[bold red]{failure.outcome}:[/] {failure.host}: "
                      f"{escape(failure.task)}: {escape(failure.message)}", soft_wrap=True)
    verdict = result.verdict
    for host in verdict.untrusted_hosts:
        console.print(f"[bold red]not configured:[/] {host}: its SSH host key is not trusted "
                      f"yet (hopnhat never trusts an adopted host on first use): run `hopnhat "
                      f"hosts trust --host {host}`", soft_wrap=True)
    mode = " (check mode: nothing was changed)" if result.plan.check else ""
    console.print(f"configure [bold]{verdict.status}[/]{mode}: {len(result.run.hosts)} host(s), "
                  f"{result.run.changed} change(s), {len(verdict.failed_hosts)} failed, "
                  f"{len(verdict.unreachable_hosts)} unreachable in "
                  f"{result.run.duration:.1f} s — run {result.run_id}, artifacts "
                  f"{escape(str(result.run.artifacts))}", soft_wrap=True)


def _say_waiting(hosts: tuple[str, ...], timeout: float) -> None:
    names = ", ".join(hosts[:8]) + (f" and {len(hosts) - 8} more" if len(hosts) > 8 else "")
    err_console.print(f"waiting up to {timeout:.0f} s for {len(hosts)} host(s) to accept SSH "
                      f"(just provisioned, or down): {escape(names)}", soft_wrap=True)


def configure(
    ctx: typer.Context,
    system: Annotated[list[str] | None, typer.Option(
        "--system", help="Only the hosts of this system and its repository hosts (by code; "
        "repeatable).")] = None,
    check: Annotated[bool, typer.Option(
        "--check", help="Dry run: report what would change, change nothing.")] = False,
    diff: Annotated[bool, typer.Option(
        "--diff", help="Show the changes made (or, with --check, that would be made) to "
        "files; never those holding secrets.")] = False,
    json: JsonOption = False,
    lock_timeout: LockTimeoutOption = 0.0,
) -> None:
    """Configure the estate's hosts for backups to the secondary data centre: run
    playbooks/site.yml through ansible-runner against the inventory derived from the estate
    (roles base, restic_repository, restic_client, backup_schedule), with live per-host
    progress, then a summary from the runner's stats. A second run changes nothing.

    Hosts that do not accept SSH yet (a VM apply has just made gets its IP before its sshd
    listens) are waited for, up to the estate's configuration.connect_wait (2 min by
    default); those still silent are reported unreachable. Holds the estate lock (not with
    --check, which changes nothing)."""
    from orchestrator.actions import configure as configure_action
    from orchestrator.ledger import Ledger

    c = context(ctx)
    require_known(ctx, systems=system)
    as_json = want_json(ctx, json)
    the_plan = configure_action.plan(c.estate, system or (), check=check, diff=diff)
    if not check:
        take_estate_lock(ctx, "configure", lock_timeout)
    if not as_json:
        err_console.print(f"Configuring {len(the_plan.hosts)} host(s) with "
                          f"{the_plan.forks} fork(s){' in check mode' if check else ''} …")
    with Ledger(c.paths.ledger) as ledger, _progress(the_plan.hosts, as_json) as progress:
        result = configure_action.configure(
            c.paths, the_plan, ledger=ledger,
            on_event=progress.on_event if progress else None,
            on_task=progress.on_task if progress else None,
            on_wait=None if as_json else _say_waiting)
    if as_json:
        print_json(result.as_dict())
    else:
        render(result)
    if result.exit_code:
        raise typer.Exit(result.exit_code)
