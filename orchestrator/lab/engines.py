"""The lab's side of its guests' database engines: which guest runs which, and SQL inside a
running guest.

Which engines a guest runs follows from the estate: a data-bearing VM of a system runs the
engine of each PostgreSQL or MariaDB database its ``backup.databases`` names (the database
seeded with :mod:`orchestrator.lab.databases`' data set of that engine; PostgreSQL's cluster
is ``15/<system code>``). :mod:`orchestrator.lab.guest_engines` starts them in the guest.

:func:`guest_sql` runs SQL in a running guest (``nsenter`` into its sshd's mount and UTS
namespaces: psql as postgres over the unix socket, mariadb as root), as the engine's own
tools would on the VM; :func:`apply_day` applies one day of activity to a guest's database.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator.errors import CommandError, LabError
from orchestrator.estate.model import Estate
from orchestrator.lab import databases, guests
from orchestrator.lab.guest_engines import MARIADB_SOCKET, PG_PORT, PG_SOCKET_DIR
from orchestrator.lab.guest_init import GUEST_ENV
from orchestrator.lab.processes import ProcessTable
from orchestrator.process import run

#: main records seeded per database unless lab.yml's ``data.db_rows`` says otherwise
DEFAULT_ROWS = 20000


def guest_engines(estate: Estate, rows: int) -> dict[str, list[dict[str, Any]]]:
    """VM name → the engines its guest runs (``EngineSpec`` dicts), for each data-bearing VM
    of a system with a backup whose ``backup.databases`` names PostgreSQL or MariaDB
    databases. Seeds are ``<estate id>/<VM name>/<engine>/<database>``."""
    found: dict[str, list[dict[str, Any]]] = {}
    for vm in estate.vms:
        backup = estate.systems[vm.system].backup
        if not vm.data or backup is None:
            continue
        seen: set[tuple[str, str]] = set()
        for entry in backup.databases:
            if entry.engine not in databases.ENGINES or (entry.engine, entry.database) in seen:
                continue
            seen.add((entry.engine, entry.database))
            found.setdefault(vm.name, []).append({
                "engine": entry.engine, "database": entry.database, "cluster": vm.system,
                "seed": f"{estate.id}/{vm.name}/{entry.engine}/{entry.database}",
                "rows": rows})
    return found


def _spec_engines(lab_dir: Path, guest: str) -> list[dict[str, Any]]:
    try:
        doc = json.loads((guests.guest_root(lab_dir, guest) / "guest.json").read_text())
    except (OSError, ValueError):
        return []
    engines = doc.get("engines", []) if isinstance(doc, dict) else []
    return engines if isinstance(engines, list) else []


def default_database(lab_dir: Path, guest: str, engine: str) -> str | None:
    """The first database of ``engine`` that guest ``guest`` was started with, if any."""
    for entry in _spec_engines(lab_dir, guest):
        if isinstance(entry, dict) and entry.get("engine") == engine:
            return str(entry["database"])
    return None


def sql_argv(engine: str, database: str | None) -> list[str]:
    """The client's command line inside a guest: psql as postgres (peer authentication over
    the unix socket) or mariadb as root (unix_socket); unaligned output, no headers,
    stopping at the first error."""
    if engine == "postgresql":
        return ["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-A", "-t", "-v",
                "ON_ERROR_STOP=1", "-h", PG_SOCKET_DIR, "-p", str(PG_PORT),
                "-d", database or "postgres"]
    if engine == "mariadb":
        return ["mariadb", "--batch", "--skip-column-names", f"--socket={MARIADB_SOCKET}",
                *([database] if database else [])]
    raise LabError(f"engine {engine!r}: the lab runs {', '.join(databases.ENGINES)}")


def enter_argv(lab_dir: Path, guest: str) -> list[str]:
    """``nsenter`` into running guest ``guest``'s mount and UTS namespaces (by its sshd's
    recorded PID). Raises LabError when it does not run."""
    record = ProcessTable(lab_dir).running(guests.record_name(guest))
    if record is None:
        raise LabError(f"guest {guest} is not running")
    return ["nsenter", "--target", str(record.pid), "--mount", "--uts", "--"]


def guest_sql(lab_dir: Path, guest: str, engine: str, sql: str,
              database: str | None = None, timeout: float = 600) -> str:
    """Run ``sql`` (the client's stdin: one or more statements) in running guest ``guest``'s
    ``engine``, in ``database`` (default: the one the guest was seeded with); its output,
    one row a line, columns tab- (mariadb) or ``|``- (psql) separated. Raises LabError when
    the guest does not run, CommandError when the SQL fails."""
    if database is None:
        database = default_database(lab_dir, guest, engine)
    done = run([*enter_argv(lab_dir, guest), *sql_argv(engine, database)], env=GUEST_ENV,
               inherit_env=False, input=sql, timeout=timeout, cwd="/")
    if not done.ok:
        raise CommandError(f"{engine} in guest {guest}: {done.stderr.strip()[-800:]}")
    return done.stdout


def apply_day(lab_dir: Path, guest: str, engine: str, *, seed: str, rows: int, day: int,
              now: datetime, change_rate: float, database: str | None = None) -> dict[str, int]:
    """Apply day ``day`` of :func:`orchestrator.lab.databases.day_change` to the guest's
    database in one transaction; the rows it added per table."""
    change = databases.day_change(engine, seed, rows, day, now, change_rate)
    guest_sql(lab_dir, guest, engine, databases.change_sql(engine, change), database)
    return databases.counts(change.inserts)


def seeded(lab_dir: Path, guest: str, engine: str, database: str) -> dict[str, Any] | None:
    """What the guest's seeding of ``database`` recorded (seed, rows, now, rows per table),
    or None when it was not seeded."""
    marker = guests.guest_root(lab_dir, guest) / "engines" / f"{engine}-{database}.seeded"
    try:
        doc = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
