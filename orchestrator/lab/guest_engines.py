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
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

from orchestrator.errors import CommandError, LabError
from orchestrator.lab import databases
from orchestrator.process import run, spawn

#: a database or cluster name (as the estate allows a database's)
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]{0,63}$")
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
        # they name folders, files and an argv element: plain names only
        for value in (spec.database, spec.cluster):
            if not _PLAIN.match(value):
                raise LabError(f"engine {spec.engine}: {value[:80]!r} is not a plain name")
        return spec


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


def _wait(what: str, ready: Callable[[], bool], log: Path) -> None:
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


#: chunks of a data set generated ahead of the load (a few MB of text each)
AHEAD = 8
#: how long a client may take to open the next FIFO of a load before it counts as stuck
FIFO_TIMEOUT = 300.0
T = TypeVar("T")


class Ahead(Generic[T]):
    """The items of ``items``, made in a thread up to ``depth`` ahead of their use: a data
    set is generated while its engine starts, then while it loads."""

    _END = object()

    def __init__(self, items: Iterator[T], depth: int = AHEAD) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._make, args=(items,), daemon=True,
                                        name="data-set")
        self._thread.start()

    def _make(self, items: Iterator[T]) -> None:
        try:
            for item in items:
                self._queue.put(item)
        except Exception as exc:  # handed to the reader, which raises it
            self._queue.put(exc)
            return
        self._queue.put(self._END)

    def __iter__(self) -> Iterator[T]:
        while (item := self._queue.get()) is not self._END:
            if isinstance(item, Exception):
                raise item
            yield cast(T, item)


@dataclass
class DataSet:
    """A database's data set on its way to the engine: the client's input in pieces (psql
    script text; MariaDB: a table with its TSV text), the rows counted as they are made."""

    now: datetime
    counts: dict[str, int]
    parts: Ahead[str] | None = None
    tables: Ahead[tuple[databases.Table, str]] | None = None


def _counted(chunks: Iterator[list[databases.Table]],
             counts: dict[str, int]) -> Iterator[list[databases.Table]]:
    for tables in chunks:
        for table in tables:
            counts[table.name] = counts.get(table.name, 0) + len(table.rows)
        yield tables


def _tsv_tables(chunks: Iterator[list[databases.Table]]
                ) -> Iterator[tuple[databases.Table, str]]:
    for tables in chunks:
        for table in tables:
            yield databases.Table(table.name, table.columns), databases.tsv(table, "mariadb")


def data_set(spec: EngineSpec, now: datetime) -> DataSet:
    """Start generating ``spec``'s data set anchored at ``now``, in a thread."""
    counts: dict[str, int] = {}
    chunks = _counted(databases.initial_chunks(spec.engine, spec.seed, spec.rows, now), counts)
    if spec.engine == "postgresql":
        return DataSet(now, counts, parts=Ahead(databases.copy_script_parts(chunks)))
    return DataSet(now, counts, tables=Ahead(_tsv_tables(chunks)))


def _client(argv: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    return spawn(argv, env=env, inherit_env=False, log=log, cwd="/", stdin=subprocess.PIPE)


def _finish(proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    """Close the client's input and wait for it; CommandError naming its last words when it
    failed."""
    assert proc.stdin is not None
    with suppress(BrokenPipeError):
        proc.stdin.close()
    if proc.wait(timeout=3600) != 0:
        tail = log.read_text(errors="replace").strip()[-500:] if log.exists() else ""
        raise CommandError(f"{what} exited {proc.returncode}: {tail}")


def seed_postgresql(spec: EngineSpec, data: DataSet, env: Mapping[str, str],
                    folder: Path) -> None:
    """(Re)create database ``spec.database`` holding the data set, streamed to psql
    (``COPY … FROM STDIN``, one transaction)."""
    name = databases.identifier(spec.database, "postgresql")
    psql(f"DROP DATABASE IF EXISTS {name};\nCREATE DATABASE {name};\n", env)
    log = folder / "psql.log"
    proc = _client(_as("postgres", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h",
                       PG_SOCKET_DIR, "-p", str(PG_PORT), "-d", spec.database), env, log)
    assert proc.stdin is not None and data.parts is not None
    try:
        for part in data.parts:
            proc.stdin.write(part.encode())
    except BrokenPipeError:
        pass  # psql stopped at an error: _finish says which
    _finish(proc, "psql", log)


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


def _fifo_writer(fifo: Path, proc: subprocess.Popen[bytes]) -> int:
    """Open ``fifo`` for writing once the client opened it for reading; LabError when the
    client ended or did not open it in :data:`FIFO_TIMEOUT`."""
    deadline = time.monotonic() + FIFO_TIMEOUT
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:  # ENXIO: no reader yet
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"the mariadb client did not read {fifo.name}") from exc
            time.sleep(0.01)  # poll interval while the client reaches this LOAD DATA
            continue
        os.set_blocking(fd, True)
        return fd


def seed_mariadb(spec: EngineSpec, data: DataSet, env: Mapping[str, str],
                 folder: Path) -> None:
    """(Re)create database ``spec.database`` holding the data set: each chunk of each table
    by ``LOAD DATA LOCAL INFILE`` from a FIFO in the guest's private /tmp, written as the
    client reads it (nothing of the data set on disk)."""
    name = databases.identifier(spec.database, "mariadb")
    mariadb(f"DROP DATABASE IF EXISTS {name};\n"
            f"CREATE DATABASE {name} CHARACTER SET utf8mb4;\n", env)
    log = folder / "mariadb.log"
    proc = _client(["mariadb", "--batch", "--local-infile=1", f"--socket={MARIADB_SOCKET}",
                    spec.database], env, log)
    assert proc.stdin is not None and data.tables is not None
    try:
        proc.stdin.write((databases.MARIADB_SCHEMA + "SET SESSION unique_checks = 0;\n")
                         .encode())
        for number, (table, text) in enumerate(data.tables):
            fifo = folder / f"{number}.fifo"
            os.mkfifo(fifo, 0o600)
            proc.stdin.write(databases.load_data_sql(table, str(fifo)).encode())
            proc.stdin.flush()
            fd = _fifo_writer(fifo, proc)
            with open(fd, "wb") as handle:
                handle.write(text.encode())
            fifo.unlink()
    except BrokenPipeError:
        pass  # the client stopped at an error: _finish says which
    _finish(proc, "mariadb", log)


# --- boot -----------------------------------------------------------------------------------


def _marker(root: Path, spec: EngineSpec) -> Path:
    return root / "engines" / f"{spec.engine}-{spec.database}.seeded"


def _seed(root: Path, spec: EngineSpec, data: DataSet, env: Mapping[str, str]) -> None:
    started = time.monotonic()
    seed = seed_postgresql if spec.engine == "postgresql" else seed_mariadb
    folder = Path("/tmp") / "hopnhat-seed"  # noqa: S108 - the guest's own private /tmp
    folder.mkdir(mode=0o700, exist_ok=True)
    try:
        seed(spec, data, env, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    seconds = time.monotonic() - started
    _marker(root, spec).write_text(json.dumps({
        "seed": spec.seed, "rows": spec.rows, "now": data.now.isoformat(),
        "tables": data.counts, "seconds": round(seconds, 3)}) + "\n")
    total = sum(data.counts.values())
    _say(f"loaded {spec.engine} database {spec.database}: {total} rows in {seconds:.1f} s "
         f"({total / max(seconds, 1e-6):.0f} rows/s)")


def boot(root: Path, engines: list[dict[str, Any]], env: Mapping[str, str]) -> None:
    """Start each engine ``engines`` lists (once per engine) and seed its databases once,
    their data generated while the engines start and as they load. Raises
    LabError/CommandError when an engine does not come up or a load fails."""
    specs = [EngineSpec.from_dict(entry) for entry in engines]
    now = datetime.now(UTC)
    pending = {spec: data_set(spec, now) for spec in specs
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
            _seed(root, spec, pending.pop(spec), env)
