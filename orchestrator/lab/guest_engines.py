"""The database engines of a lab guest, started by :mod:`orchestrator.lab.guest_init` inside
the guest's own mount namespace before it becomes sshd.

Every guest gets its own, initially empty, ``/etc/postgresql``, ``/var/lib/postgresql`` and
``/var/lib/mysql`` (folders under ``<guest root>/engines/`` bind-mounted there): the lab
machine's own clusters (a Debian install makes ``15/main`` and a MariaDB data directory)
never show through, so a guest starts as a VM freshly installed with the packages — drills'
recovery steps create clusters there as they would on a new VM. Its site template's
settings, for whatever cluster or server is started in it later (a drill's recovery step),
are the lab's: ``createcluster.d/90-hopnhat-lab.conf`` (no TCP listener, no TLS, small
buffers) and ``mariadb.conf.d/90-hopnhat-lab.cnf`` (``skip-networking``, the socket, small
buffers): the guests share the loopback network, so no engine of theirs may listen on TCP.

A guest whose spec lists engines then runs them, as its VM's services would:

- ``postgresql`` — cluster ``15/<cluster>`` (``pg_createcluster`` at the first boot; data in
  ``/var/lib/postgresql/15/<cluster>``), port 5432 on the unix socket in
  ``/var/run/postgresql`` only (``listen_addresses = ''``: the guests share the loopback
  network), ``ssl = off`` (a guest has no certificate of its own), peer authentication;
- ``mariadb`` — MariaDB with data in ``/var/lib/mysql`` (``mariadb-install-db`` at the first
  boot), socket ``/run/mysqld/mysqld.sock``, ``skip-networking``, root by ``unix_socket``.

Both run detached (their parent is the machine's init, as a daemon's is), so stopping the
guest stops them like every other process of its namespace (``guests._stop``). Each engine
is waited for until it answers, then each of its databases is seeded once with
:mod:`orchestrator.lab.databases`' data set (``COPY`` / ``LOAD DATA``), which a marker
``<guest root>/engines/<engine>-<database>.seeded`` records.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.errors import CommandError, LabError
from orchestrator.lab import databases
from orchestrator.process import run, spawn

PG_VERSION = "15"
PG_PORT = 5432
PG_SOCKET_DIR = "/var/run/postgresql"
MARIADB_SOCKET = "/run/mysqld/mysqld.sock"
MARIADB_CONFIG = "/etc/mysql/mariadb.conf.d/90-hopnhat-lab.cnf"
#: how long an engine may take to answer after its start (a loaded machine, crash recovery)
READY_TIMEOUT = 90.0
#: the engines' folders each guest has of its own (target, owner); bind-mounted from
#: ``<guest root>/engines/<slug>`` when the owner exists in the guest
OWN_DIRS = (("/etc/postgresql", "postgres"), ("/var/lib/postgresql", "postgres"),
            ("/var/lib/mysql", "mysql"))
#: a small footprint: several guests run engines on one lab machine
#: what every cluster ``pg_createcluster`` makes in a guest gets (``createcluster.d``, as
#: the site template's own settings): no TCP listener, no TLS (a guest has no certificate
#: of its own: createcluster.conf's ``ssl = on`` would take the machine's snakeoil key), a
#: small footprint
PG_CREATECLUSTER = "/etc/postgresql-common/createcluster.d/90-hopnhat-lab.conf"
PG_SETTINGS = """\
# hopnhat lab guest: rewritten at every boot. The guests share the loopback network: no TCP.
listen_addresses = ''
ssl = off
shared_buffers = 16MB
max_connections = 40
max_wal_size = 256MB
timezone = 'UTC'
log_timezone = 'UTC'
"""
MARIADB_SETTINGS = f"""\
# hopnhat lab guest: rewritten at every boot. The guests share the loopback network: no TCP.
[mysqld]
skip-networking
socket = {MARIADB_SOCKET}
datadir = /var/lib/mysql
pid-file = /run/mysqld/mysqld.pid
log-error = /var/log/mysql/error.log
innodb_buffer_pool_size = 32M
innodb_log_file_size = 16M
performance_schema = OFF
default-time-zone = '+00:00'

[client]
socket = {MARIADB_SOCKET}
"""


@dataclass(frozen=True)
class EngineSpec:
    """One engine a guest runs and the database it seeds: ``cluster`` names PostgreSQL's
    cluster (``15/<cluster>``); ``seed`` and ``rows`` the data set."""

    engine: str
    database: str
    cluster: str
    seed: str
    rows: int

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EngineSpec:
        spec = cls(engine=str(data["engine"]), database=str(data["database"]),
                   cluster=str(data.get("cluster", data["database"])),
                   seed=str(data["seed"]), rows=int(data["rows"]))
        if spec.engine not in databases.ENGINES:
            raise LabError(f"engine {spec.engine!r}: the lab runs {', '.join(databases.ENGINES)}")
        return spec

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _say(message: str) -> None:
    print(f"guest_init: {message}", file=sys.stderr, flush=True)


def _mount_bind(source: Path, target: str, env: Mapping[str, str]) -> None:
    run(["mount", "-n", "--bind", str(source), target], env=env, inherit_env=False,
        check=True, timeout=30)


def prepare(root: Path, env: Mapping[str, str]) -> None:
    """Make the guest's engines its own: its own (at first empty) engine folders, and the
    lab's settings for any cluster or server started in it (see the module's docstring). An
    engine whose user the guest lacks (not installed) is left alone."""
    for target, owner in OWN_DIRS:
        try:
            user = pwd.getpwnam(owner)
        except KeyError:
            continue
        source = root / "engines" / target.strip("/").replace("/", "_")
        if not source.is_dir():
            source.mkdir(parents=True)
            os.chown(source, user.pw_uid, user.pw_gid)
            os.chmod(source, 0o755)  # noqa: S103 - as the packages make them
        Path(target).mkdir(parents=True, exist_ok=True)
        _mount_bind(source, target, env)
    for path, text, owner in ((PG_CREATECLUSTER, PG_SETTINGS, "postgres"),
                              (MARIADB_CONFIG, MARIADB_SETTINGS, "mysql")):
        if _has_user(owner) and Path(path).parent.parent.is_dir():
            Path(path).parent.mkdir(exist_ok=True)
            Path(path).write_text(text)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _as(user: str, *argv: str) -> list[str]:
    return ["runuser", "-u", user, "--", *argv]


def _wait(what: str, ready: Any, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready():
        if time.monotonic() > deadline:
            tail = " | ".join(log.read_text(errors="replace").splitlines()[-6:]) \
                if log.exists() else "(no log)"
            raise LabError(f"{what} did not answer in {READY_TIMEOUT:.0f} s: {tail}")
        time.sleep(0.05)  # poll interval of the bounded wait above


# --- PostgreSQL -----------------------------------------------------------------------------


def _pg_ready(env: Mapping[str, str]) -> bool:
    return run(["pg_isready", "-q", "-h", PG_SOCKET_DIR, "-p", str(PG_PORT)], env=env,
               inherit_env=False, timeout=10).ok


def start_postgresql(spec: EngineSpec, env: Mapping[str, str]) -> None:
    """Create cluster ``15/<cluster>`` at the first boot, start it, wait until it answers."""
    conf = Path("/etc/postgresql") / PG_VERSION / spec.cluster
    data = Path("/var/lib/postgresql") / PG_VERSION / spec.cluster
    if not (conf / "postgresql.conf").exists():
        # the settings come from createcluster.d (prepare), as for any cluster made here
        run(["pg_createcluster", "--port", str(PG_PORT), "--encoding", "UTF8", "--locale",
             "C.UTF-8", PG_VERSION, spec.cluster, "--", "--auth-local=peer", "--no-sync"],
            env=env, inherit_env=False, check=True, timeout=120)
    # nothing of this guest runs at its boot: a pid file is a crash's leftover
    (data / "postmaster.pid").unlink(missing_ok=True)
    run(["pg_ctlcluster", PG_VERSION, spec.cluster, "start"], env=env, inherit_env=False,
        check=True, timeout=READY_TIMEOUT)
    log = Path("/var/log/postgresql") / f"postgresql-{PG_VERSION}-{spec.cluster}.log"
    _wait(f"PostgreSQL {PG_VERSION}/{spec.cluster}", lambda: _pg_ready(env), log)


def psql(sql: str, env: Mapping[str, str], database: str = "postgres",
         timeout: float = 600) -> str:
    """Run the psql script ``sql`` (stdin) as postgres in ``database``; its output (unaligned,
    tuples only). Raises CommandError when psql fails (ON_ERROR_STOP)."""
    done = run(_as("postgres", "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                   "-h", PG_SOCKET_DIR, "-p", str(PG_PORT), "-d", database),
               env=env, inherit_env=False, input=sql, timeout=timeout)
    if not done.ok:
        raise CommandError(f"psql ({database}): {done.stderr.strip()[-500:]}")
    return done.stdout


@dataclass(frozen=True)
class Prepared:
    """A database's data set, as its engine's client takes it: PostgreSQL's whole psql
    script, MariaDB's tables (their columns) with their TSV text (rows per table in
    ``counts``)."""

    now: datetime
    counts: dict[str, int]
    script: str
    files: list[tuple[databases.Table, str]]


def prepare_data(spec: EngineSpec, now: datetime) -> Prepared:
    """Generate ``spec``'s data set anchored at ``now`` (CPU only: runs beside the engine's
    start)."""
    tables = databases.initial(spec.engine, spec.seed, spec.rows, now)
    if spec.engine == "postgresql":
        return Prepared(now, databases.counts(tables), databases.copy_script(tables), [])
    return Prepared(now, databases.counts(tables), "",
                    [(databases.Table(t.name, t.columns), databases.tsv(t, "mariadb"))
                     for t in tables])


def seed_postgresql(spec: EngineSpec, data: Prepared, env: Mapping[str, str]) -> None:
    """(Re)create database ``spec.database`` holding the data set (``COPY``)."""
    name = databases.identifier(spec.database, "postgresql")
    psql(f"DROP DATABASE IF EXISTS {name};\nCREATE DATABASE {name};\n", env)
    psql(data.script, env, database=spec.database)


# --- MariaDB --------------------------------------------------------------------------------


def _accepts_unix(path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(path)
            return True
    except OSError:
        return False


def _mysql_dirs() -> None:
    user = pwd.getpwnam("mysql")
    for folder in (Path("/run/mysqld"), Path("/var/log/mysql")):
        folder.mkdir(parents=True, exist_ok=True)
        os.chown(folder, user.pw_uid, user.pw_gid)


def start_mariadb(env: Mapping[str, str]) -> None:
    """Install the system tables at the first boot, start mariadbd detached (with the lab's
    settings: prepare) and wait until its socket answers."""
    _mysql_dirs()
    if not Path("/var/lib/mysql/mysql").is_dir():
        run(["mariadb-install-db", "--user=mysql", "--datadir=/var/lib/mysql",
             "--skip-test-db", "--auth-root-authentication-method=socket"],
            env=env, inherit_env=False, check=True, timeout=180)
    log = Path("/var/log/mysql/error.log")
    # setsid -f: mariadbd is orphaned at once, a daemon of the guest as on a VM
    starter = spawn(["setsid", "-f", "mariadbd", "--user=mysql"], env=env,
                    inherit_env=False, cwd="/")
    if starter.wait(timeout=30) != 0:
        raise LabError(f"mariadbd did not start (setsid exit {starter.returncode})")
    _wait("MariaDB", lambda: _accepts_unix(MARIADB_SOCKET), log)


def mariadb(sql: str, env: Mapping[str, str], database: str | None = None,
            timeout: float = 600) -> str:
    """Run ``sql`` (stdin) with the mariadb client as root; its output (tab separated, no
    column names). Raises CommandError when it fails."""
    argv = ["mariadb", "--batch", "--skip-column-names", "--local-infile=1",
            f"--socket={MARIADB_SOCKET}", *([database] if database else [])]
    done = run(argv, env=env, inherit_env=False, input=sql, timeout=timeout)
    if not done.ok:
        raise CommandError(f"mariadb ({database or '-'}): {done.stderr.strip()[-500:]}")
    return done.stdout


def seed_mariadb(spec: EngineSpec, data: Prepared, env: Mapping[str, str]) -> None:
    """(Re)create database ``spec.database`` holding the data set through ``LOAD DATA`` of
    files in the guest's private /tmp."""
    name = databases.identifier(spec.database, "mariadb")
    mariadb(f"DROP DATABASE IF EXISTS {name};\n"
            f"CREATE DATABASE {name} CHARACTER SET utf8mb4;\n", env)
    folder = Path("/tmp") / "hopnhat-seed"  # noqa: S108 - the guest's own private /tmp
    folder.mkdir(mode=0o700, exist_ok=True)
    script = [databases.MARIADB_SCHEMA, "SET SESSION unique_checks = 0;\n"]
    try:
        for table, text in data.files:
            path = folder / f"{table.name}.tsv"
            path.write_text(text, encoding="utf-8")
            script.append(databases.load_data_sql(table, str(path)))
        mariadb("".join(script), env, database=spec.database)
    finally:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()



# --- boot -----------------------------------------------------------------------------------


def _marker(root: Path, spec: EngineSpec) -> Path:
    return root / "engines" / f"{spec.engine}-{spec.database}.seeded"


def _seed(root: Path, spec: EngineSpec, data: Prepared, env: Mapping[str, str]) -> None:
    started = time.monotonic()
    seed = seed_postgresql if spec.engine == "postgresql" else seed_mariadb
    seed(spec, data, env)
    seconds = time.monotonic() - started
    _marker(root, spec).write_text(json.dumps({
        "seed": spec.seed, "rows": spec.rows, "now": data.now.isoformat(),
        "tables": data.counts, "seconds": round(seconds, 3)}) + "\n")
    total = sum(data.counts.values())
    _say(f"loaded {spec.engine} database {spec.database}: {total} rows in {seconds:.1f} s "
         f"({total / max(seconds, 1e-6):.0f} rows/s)")


def boot(root: Path, engines: list[dict[str, Any]], env: Mapping[str, str]) -> None:
    """Start each engine ``engines`` lists (once per engine) and seed its databases once,
    their data generated while the engines start. Raises LabError/CommandError when an
    engine does not come up or a load fails."""
    specs = [EngineSpec.from_dict(entry) for entry in engines]
    now = datetime.now(UTC)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = {spec: pool.submit(prepare_data, spec, now) for spec in specs
                   if not _marker(root, spec).exists()}
        started: set[str] = set()
        for spec in specs:
            begun = time.monotonic()
            if spec.engine not in started:
                if spec.engine == "postgresql":
                    start_postgresql(spec, env)
                else:
                    start_mariadb(env)
                started.add(spec.engine)
                _say(f"{spec.engine} answers after {time.monotonic() - begun:.1f} s")
            if spec in pending:
                _seed(root, spec, pending[spec].result(), env)
