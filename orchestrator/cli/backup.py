"""``hopnhat backup run | status``: back up now, and see the state of every backup.

Thin: select, call the action (:mod:`orchestrator.actions.backup.run`,
:mod:`orchestrator.actions.backup.status`), render (rich tables and live progress on the
terminal, or ``--json``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

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
    warn_unsent,
)
from orchestrator.cli.selectors import require_known
from orchestrator.human import duration, size

if TYPE_CHECKING:
    from orchestrator.actions.backup.run import BackupClient, BackupRun, HostBackup
    from orchestrator.actions.backup.status import StatusReport

# The backup actions are imported inside the commands: every other command starts faster.

app = typer.Typer(no_args_is_help=True, help="Back up the systems' hosts now, and see the "
                  "state of every backup (hosts' status files and the repositories).")

SystemsOption = Annotated[list[str] | None, typer.Option(
    "--system", help="Only this system (by code; repeatable).")]
ParallelOption = Annotated[int, typer.Option(
    "--parallel", min=1, max=256, help="Hosts (or repositories) worked on at once.")]

_STYLE = {"ok": "green", "fresh": "green", "partial": "yellow", "stale": "bold red",
          "failed": "bold red", "refused": "bold red", "unreachable": "bold red",
          "unknown": "yellow", "running": "cyan", "waiting": "dim"}




def _styled(word: str) -> str:
    style = _STYLE.get(word, "")
    return f"[{style}]{escape(word)}[/]" if style else escape(word)


# --- backup run -------------------------------------------------------------------------------


class LiveBackup:
    """A live table on stderr: one row per host with its state and the job's last line; a
    line per host as it ends; with ``echo``, every output line too."""

    def __init__(self, clients: list[BackupClient], echo: bool) -> None:
        from rich.live import Live

        self.rows = {c.host: [c.system, "waiting", ""] for c in clients}
        self.echo = echo
        self._lock = threading.Lock()
        self.live = Live(self._table(), console=err_console, refresh_per_second=4,
                         transient=True)

    def _table(self) -> Table:
        table = Table(title="backup run", show_edge=False, box=None)
        for column in ("host", "system", "state", "last line"):
            table.add_column(column, overflow="ellipsis", no_wrap=True)
        for host, (system, state, line) in self.rows.items():
            table.add_row(host, system, _styled(state), escape(line[:90]))
        return table

    def on_line(self, host: str, line: str) -> None:
        with self._lock:
            row = self.rows[host]
            row[1], row[2] = "running", line.strip()
            self.live.update(self._table())
        if self.echo:
            self.live.console.print(f"{escape(host)}: {escape(line)}", soft_wrap=True)

    def on_done(self, result: HostBackup) -> None:
        with self._lock:
            row = self.rows[result.host]
            row[1], row[2] = result.result, result.error_message or result.snapshot_id or ""
            self.live.update(self._table())
        self.live.console.print(_done_line(result), soft_wrap=True)


def _done_line(result: HostBackup) -> str:
    mark = "[green]✓[/]" if result.ok else "[red]✗[/]"
    text = f"{mark} {escape(result.host)} {_styled(result.result)}"
    if result.snapshot_id:
        text += (f": snapshot {escape(result.snapshot_id)}, {result.files or 0} files, "
                 f"{size(result.bytes)} in {duration(result.duration_seconds, 'seconds')}")
    if result.error_class:
        text += f" — {escape(result.error_class)}: {escape(result.error_message or '')}"
    return text


@contextmanager
def _live(clients: list[BackupClient], quiet: bool, echo: bool) -> Iterator[LiveBackup | None]:
    if quiet:
        yield None
        return
    progress = LiveBackup(clients, echo)
    with progress.live:
        yield progress


def render_run(run: BackupRun) -> None:
    """The run's summary for people: one row per host, then the verdict."""
    table = Table(show_edge=False, box=None)
    for column in ("host", "system", "result", "snapshot", "files", "size", "duration",
                   "error"):
        table.add_column(column, overflow="fold")
    for host in run.hosts:
        error = f"{host.error_class}: {host.error_message}" if host.error_class else ""
        table.add_row(host.host, host.system, _styled(host.result), host.snapshot_id or "-",
                      "-" if host.files is None else str(host.files), size(host.bytes),
                      duration(host.duration_seconds, "seconds"), escape(error))
    console.print(table)
    for host in run.hosts:
        for dump in host.dumps:
            console.print(_dump_line(host.host, dump), soft_wrap=True)
    counts = run.counts()
    console.print(f"backup [bold]{run.status}[/]: {len(run.hosts)} host(s), {counts['ok']} ok, "
                  f"{counts['partial']} partial, {counts['failed']} failed, "
                  f"{counts['refused']} refused in {run.seconds:.1f} s — run {run.run_id}",
                  soft_wrap=True)


def _dump_line(host: str, dump: dict[str, Any]) -> str:
    """One database dump of a host's run, from its manifest (the host's words, escaped)."""
    seconds = dump.get("duration_seconds")
    number = dump.get("bytes")
    return (f"  dump {escape(str(dump.get('name')))} ({escape(str(dump.get('engine')))} "
            f"{escape(str(dump.get('database')))}) on {escape(host)}: snapshot "
            f"{escape(str(dump.get('snapshot'))[:8])}, "
            f"{size(number if isinstance(number, int) else None)} in "
            f"{duration(seconds if isinstance(seconds, int | float) else None, 'seconds')}")


@app.command("run")
def run(
    ctx: typer.Context,
    system: SystemsOption = None,
    host: Annotated[list[str] | None, typer.Option(
        "--host", help="Only this host (a backup client; repeatable).")] = None,
    parallel: ParallelOption = 8,
    json: JsonOption = False,
) -> None:
    """Back up now: on each backup client (the data-bearing VMs of systems with a backup),
    run over SSH the same backup job its systemd timer runs, hosts in parallel, with live
    progress; then report each host's result from its status file (snapshot, files, size,
    duration, result, error).

    Exit codes: 0 every host ok, 3 some hosts partial or failed, 1 no host ok, 2 bad input
    (unknown system or host).
    """
    from orchestrator.actions.backup import run as backup_action
    from orchestrator.ledger import Ledger

    c = context(ctx)
    require_known(ctx, systems=system, hosts=host)
    as_json = want_json(ctx, json)
    clients = backup_action.select_clients(c.estate, system or (), host or ())
    if not as_json:
        err_console.print(f"Backing up {len(clients)} host(s), {min(parallel, len(clients))} "
                          "at a time …")
    with Ledger(c.paths.ledger) as ledger, _live(clients, as_json, c.verbose > 0) as live:
        result = backup_action.run_backups(
            c.paths, clients, ledger=ledger, parallel=parallel,
            on_line=live.on_line if live else None, on_done=live.on_done if live else None,
            params={"trigger": "backup run", "systems": system or [], "hosts_asked":
                    host or []})
    if as_json:
        print_json(result.as_dict())
    else:
        render_run(result)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


# --- backup status ----------------------------------------------------------------------------


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def render_status(report: StatusReport) -> None:
    """One row per host (grouped by system), then what could not be read, the verdict."""
    table = Table(title=f"backups of estate {report.estate} at {_when(report.checked_at)} UTC",
                  show_edge=False, box=None)
    for column in ("system", "host", "snapshot", "last run", "restic"):
        table.add_column(column, overflow="fold")
    notes: list[str] = []
    for system in report.systems:
        label = (f"{system.system} {_styled(system.state)}\ntier {system.tier}, RPO "
                 f"{duration(system.rpo_seconds, 'estate')}")
        for index, host in enumerate(system.hosts):
            last = host.last_run
            snapshot = _styled(host.freshness)
            if host.snapshot_id:
                snapshot += (f" {host.snapshot_id}\n{_when(host.snapshot_time)}, "
                             f"{duration(host.age_seconds or 0.0, 'compact')} ago")
            run = "-" if last is None else (
                f"{_styled(last.result)} {escape(last.time or '')}\n{size(last.bytes)}, "
                f"{last.files if last.files is not None else '-'} files, "
                f"{duration(last.duration_seconds, 'seconds')}")
            version = last.restic_version if last is not None and last.restic_version \
                else "-"
            table.add_row(label if index == 0 else "", host.host, snapshot, run, version)
            note = host.error or (f"{last.error_class}: {last.error_message}"
                                  if last and last.error_class else host.note)
            if note:
                notes.append(f"{host.host}: {note}")
        if not system.hosts:
            table.add_row(label, "-", "-", "no data-bearing VM", "-")
        if system.repository_error:
            notes.append(f"repository {system.repository} of {system.system} could not be "
                         f"read: {system.repository_error}")
    console.print(table)
    for note in notes:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    if report.not_backed_up:
        console.print(f"[yellow]not backed up:[/] {', '.join(report.not_backed_up)} (no "
                      "backup in the estate)")
    counts = report.as_dict()["counts"]
    console.print(f"backup status [bold]{report.state}[/]: {len(report.systems)} system(s), "
                  + ", ".join(f"{n} {state}" for state, n in counts.items()), soft_wrap=True)


@app.command("status")
def status(
    ctx: typer.Context,
    system: SystemsOption = None,
    parallel: ParallelOption = 8,
    json: JsonOption = False,
    notify: Annotated[bool, typer.Option(
        "--notify", help="Tell the channels the estate routes backup_stale to "
        "(notifications:) of the hosts whose latest snapshot is older than the RPO.")] = False,
) -> None:
    """Show every system's backups: per system and host, the latest snapshot in the
    repository (time, and age against the tier's RPO: fresh or stale), and the last run
    from the host's status file (result, size, duration, error). A repository or host that
    cannot be read is shown as unreachable for its system; the others still show.

    Exit codes: 0 every system fresh; 1 any system stale (a host's latest snapshot older
    than the RPO, or none), failed (a host's last run failed or was partial) or unreachable
    (its repository or a host could not be read); 2 bad input (unknown system).
    """
    from orchestrator.actions.backup import status as status_action
    from orchestrator.actions.notifications import tell_stale_backups

    c = context(ctx)
    require_known(ctx, systems=system)
    report = status_action.read_status(c.paths, system or (), parallel=parallel)
    warn_unsent(tell_stale_backups(c.paths, report) if notify else ())
    if want_json(ctx, json):
        print_json(report.as_dict())
    else:
        render_status(report)
    if report.exit_code:
        raise typer.Exit(report.exit_code)
