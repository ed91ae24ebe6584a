"""``hopnhat archive index | find | get``: the records of retired systems, found in
milliseconds from a catalogue on the control host and brought back checked.

Thin: parse, call the archive actions, render. Exit codes: 0 done (a query that matches
nothing too), 1 a file not brought back (it did not match its record), 2 bad input (query,
path, snapshot, a catalogue missing or changed).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from orchestrator.cli.common import (
    JsonOption,
    console,
    context,
    err_console,
    print_json,
    shown,
    want_json,
)
from orchestrator.cli.locking import LockTimeoutOption, take_estate_lock
from orchestrator.cli.selectors import require_known
from orchestrator.errors import EXIT_BAD_INPUT, HopnhatError
from orchestrator.human import size
from orchestrator.ledger import Ledger

if TYPE_CHECKING:
    from orchestrator.adapters.restic import Restic
    from orchestrator.cli.common import Context

app = typer.Typer(no_args_is_help=True, help=(
    "The archive of retired systems: index builds a system's catalogue (every file of its "
    "kept snapshots, under <state>/archive/), find searches it without touching the "
    "repository, get brings files back checked against their recorded SHA-256. Every "
    "retrieval is recorded in the ledger."))

SystemOption = Annotated[str, typer.Option("--system", help="The system (by code).")]


def _known(c: Context, system: str) -> None:
    from orchestrator.actions.selection import require_known as check

    estate = c.estate
    check(estate, systems=[system])
    if estate.systems[system].backup is None:
        raise HopnhatError(f"system {system} has no backup: nothing is archived",
                           exit_code=EXIT_BAD_INPUT)


@contextmanager
def _restic(c: Context, system: str) -> Iterator[Restic]:
    from orchestrator.actions.repositories import open_repository
    from orchestrator.adapters.restic import Restic

    paths = c.paths
    with open_repository(paths, system) as repo:
        yield Restic(repo, binary=paths.restic_binary, timeout=24 * 3600.0,
                     lock_wait=paths.estate.settings.verification.lock_wait.total_seconds())


@app.command("index")
def index(ctx: typer.Context, system: SystemOption, json: JsonOption = False,
          lock_timeout: LockTimeoutOption = 0.0) -> None:
    """Build (or rebuild) the system's catalogue from its repository: for a retired system
    the snapshots its retirement kept, for another every snapshot; each file's SHA-256 from
    the retirement's manifest where there is one. Its own SHA-256 goes to the ledger."""
    from orchestrator.actions.archive.index import index as build_index
    from orchestrator.actions.migrate.evidence import MANIFEST
    from orchestrator.actions.retire.state import retirements

    c = context(ctx)
    require_known(ctx, systems=[system])
    as_json = want_json(ctx, json)
    _known(c, system)
    take_estate_lock(ctx, "archive index", lock_timeout)
    with Ledger(c.paths.ledger) as ledger:
        retired = retirements(ledger, c.estate.id).get(system)
        manifest = None
        if retired is not None:
            from orchestrator.actions.drill.evidence import evidence_dir

            manifest = evidence_dir(c.paths, retired.run_id) / MANIFEST
        with _restic(c, system) as restic:
            built = build_index(
                c.paths, ledger, system, restic,
                hosts=retired.hosts if retired is not None else None, manifest=manifest,
                on_snapshot=None if as_json else lambda s, n: err_console.print(
                    f"  {s.id[:8]} {s.host} {s.time}: {n:,} files", highlight=False))
    if as_json:
        print_json(built.as_dict())
    else:
        console.print(f"catalogue of {system}: {built.versions:,} file versions from "
                      f"{built.snapshots} snapshot(s) ({built.entries:,} entries read) in "
                      f"{built.seconds:.1f} s; {built.file} ({built.bytes:,} bytes), "
                      f"SHA-256 {built.sha256}")


@app.command("find")
def find(ctx: typer.Context, query: Annotated[str, typer.Argument(
             help="Words ('quyet dinh 118'), a glob ('qd-118-*.pdf', '*/2023/*.odt') or a "
             "path prefix ('/srv/qlvb/2023/').")],
         system: Annotated[list[str] | None, typer.Option(
             "--system", help="Search this system's catalogue (repeatable).")] = None,
         every: Annotated[bool, typer.Option("--all", help="Search every catalogue.")] = False,
         year: Annotated[int | None, typer.Option(
             "--year", help="Only files last changed in this year (estate's time zone).")
         ] = None,
         limit: Annotated[int, typer.Option("--limit", min=1, max=10_000,
                                            help="At most this many results.")] = 50,
         json: JsonOption = False) -> None:
    """Search the catalogues: each matching file version with its size, date, and the
    snapshot that holds it — read from the catalogue only, never from the repository. A
    query that matches nothing prints nothing found and exits 0."""
    from orchestrator.actions.archive import catalogue, search

    c = context(ctx)
    as_json = want_json(ctx, json)
    started = time.perf_counter()
    parsed = search.parse(query, year)
    if bool(system) == every:
        raise HopnhatError("give --system S (repeatable) or --all", exit_code=EXIT_BAD_INPUT)
    require_known(ctx, systems=system)
    with Ledger(c.paths.ledger) as ledger:
        codes = list(dict.fromkeys(system or ())) or sorted(
            catalogue.catalogued(ledger, c.estate.id))
        for code in codes:
            _known(c, code)
        found: list[search.Match] = []
        more = False
        for code in codes:
            db = catalogue.open_checked(ledger, c.paths.state, c.estate.id, code)
            try:
                hits, extra = search.search(db, code, parsed, limit=limit - len(found),
                                            zone=c.estate.settings.timezone)
            finally:
                db.close()
            found += hits
            more = more or extra
            if len(found) >= limit:
                more = more or code != codes[-1]
                break
    ms = (time.perf_counter() - started) * 1000
    zone = c.estate.settings.timezone
    if as_json:
        print_json({"query": parsed.as_dict(), "systems": codes, "milliseconds": round(ms, 1),
                    "more": more, "results": [m.as_dict(zone) for m in found]})
        return
    if not found:
        console.print(f"nothing found for {shown(repr(query))} in "
                      f"{', '.join(codes) or 'no catalogue'} ({ms:.0f} ms)")
        return
    table = Table(title=f"{len(found)}{'+' if more else ''} file(s) for {shown(repr(query))}")
    several = len({m.system for m in found}) > 1
    if several:
        table.add_column("system", no_wrap=True)
    table.add_column("path", overflow="fold", ratio=1)
    for column in ("size", "last changed", "snapshot"):
        table.add_column(column, no_wrap=True)
    for m in found:  # (--json adds the host, the SHA-256 and the snapshot's whole ID)
        table.add_row(*([m.system] if several else []), shown(m.path), size(m.size),
                      m.changed(zone).strftime("%Y-%m-%d"),
                      m.snapshot[:8] + ("*" if m.final else ""))
    console.print(table)
    console.print(f"{ms:.0f} ms; * the final snapshot"
                  f"{'; more: narrow the query or raise --limit' if more else ''}")


@app.command("get")
def get(ctx: typer.Context, system: SystemOption,
        paths: Annotated[list[str], typer.Argument(help="Files as find shows them.")],
        to: Annotated[Path, typer.Option("--to", help="The folder they are brought back "
                                         "under (<to>/<path>).")],
        snapshot: Annotated[str | None, typer.Option(
            "--snapshot", help="This snapshot's version (an ID of 8+ hex digits) instead of "
            "the newest.")] = None,
        host: Annotated[str | None, typer.Option(
            "--host", help="The VM whose file it is, when several kept one.")] = None,
        json: JsonOption = False) -> None:
    """Bring files back from the kept snapshots: each restored from the snapshot that holds
    it, checked against its recorded size and SHA-256, and only then left under --to; a file
    that does not match is removed and named (exit 1). Every retrieval is recorded in the
    ledger: who, which files, which snapshot, when."""
    from orchestrator.actions.archive import catalogue
    from orchestrator.actions.archive import get as archive_get

    c = context(ctx)
    require_known(ctx, systems=[system], hosts=[host] if host is not None else ())
    as_json = want_json(ctx, json)
    _known(c, system)
    with Ledger(c.paths.ledger) as ledger:
        db = catalogue.open_checked(ledger, c.paths.state, c.estate.id, system)
        try:
            wanted = archive_get.resolve(db, system, paths, to.absolute(), snapshot=snapshot,
                                         host=host)
        finally:
            db.close()
        with _restic(c, system) as restic:
            result = archive_get.get(
                ledger, c.estate.id, system, wanted, restic.dump, to=to.absolute(),
                on_file=None if as_json else lambda r: err_console.print(
                    f"{'✓' if r.result == 'ok' else '✗'} {shown(r.wanted.path)}: "
                    f"{shown(r.detail)}", highlight=False, soft_wrap=True))
    if as_json:
        print_json(result.as_dict())
    else:
        for f in result.files:
            if f.result == "ok":
                console.print(f"{shown(str(f.wanted.destination))} ({f.bytes:,} bytes, "
                              f"snapshot {f.wanted.snapshot[:8]}, SHA-256 {f.sha256})",
                              soft_wrap=True)
        console.print(f"retrieval {result.run_id}: {sum(f.result == 'ok' for f in result.files)}"
                      f" of {len(result.files)} file(s) brought back")
    if result.exit_code:
        raise typer.Exit(result.exit_code)


@app.command("serve")
def serve(ctx: typer.Context,
          listen: Annotated[str, typer.Option(
              "--listen", help="Address and port to listen on (localhost by default; "
              "another address makes the page reachable from the network).")
          ] = "127.0.0.1:8765") -> None:
    """A read-only page to search the catalogues and download files (restored on demand
    and checked against their SHA-256), in Vietnamese with an English switch. Every request
    needs the token kept in <state>/archive/serve.token (0600, made on first use); open
    http://ADDRESS/?token=TOKEN once and the browser keeps it. Every download is recorded
    in the ledger with the address that asked. Stop with Ctrl-C."""
    import secrets as token_source

    from orchestrator.actions.archive import catalogue
    from orchestrator.actions.archive.serve import Archive
    from orchestrator.actions.archive.serve import serve as make_server
    from orchestrator.adapters.vault import write_private

    c = context(ctx)
    host, _, port_text = listen.rpartition(":")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise HopnhatError(f"--listen {listen!r}: give ADDRESS:PORT, such as "
                           "127.0.0.1:8765", exit_code=EXIT_BAD_INPUT)
    with Ledger(c.paths.ledger) as ledger:
        systems = tuple(sorted(s for s in catalogue.catalogued(ledger, c.estate.id)
                               if s in c.estate.systems))
    if not systems:
        raise HopnhatError("no catalogue to serve: build one with `hopnhat archive index "
                           "--system S` (retire builds it too)", exit_code=EXIT_BAD_INPUT)
    token_file = c.paths.state / "archive" / "serve.token"
    token_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not token_file.is_file():
        write_private(token_file, token_source.token_urlsafe(32).encode())
    token = token_file.read_text().strip()

    @contextmanager
    def dump_for(system: str) -> Iterator[Any]:
        with _restic(c, system) as restic:
            yield restic.dump

    archive = Archive(c.paths.state, c.estate.id, c.paths.ledger,
                      c.estate.settings.timezone, systems, dump_for)
    try:
        server = make_server(archive, token, host.strip("[]"), int(port_text))
    except OSError as exc:
        raise HopnhatError(f"--listen {listen}: {exc.strerror}",
                           exit_code=EXIT_BAD_INPUT) from None
    where = f"http://{host}:{server.server_address[1]}/"
    err_console.print(f"serving the catalogues of {', '.join(systems)} at {where}; open "
                      f"{where}?token=… with the token in {token_file}. Ctrl-C stops.",
                      highlight=False, soft_wrap=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
