"""The database engines of the lab's guests, real PostgreSQL 15 and MariaDB 10.11: a guest
that runs one boots with it up and seeded, listens on no TCP port (the guests share the
loopback network), keeps its data across a restart, and when stopped leaves nothing of its
own running — not its engine, nor what was started in it over SSH."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.lab import databases, engines
from orchestrator.lab.guests import guest_root, start_guest, stop_guest
from orchestrator.lab.processes import ProcessTable, start_ticks
from orchestrator.process import run
from tests.conftest import lab_octets
from tests.helpers import guest_sql, wait_for

pytestmark = pytest.mark.lab

ROWS = 300
#: a query's FROM clause counting the sessions (other than its own) sleeping 600 s
HELD = {
    "postgresql": "pg_stat_activity WHERE query LIKE '%pg_sleep(600)%' "
                  "AND pid <> pg_backend_pid()",
    "mariadb": "information_schema.processlist WHERE info LIKE '%SLEEP(600)%' "
               "AND id <> CONNECTION_ID()",
}
#: the engine's log inside the guest's /var, and its last line after a clean shutdown
SHUTDOWN_LOG = {
    "postgresql": ("log/postgresql/postgresql-15-dvc.log", "database system is shut down"),
    "mariadb": ("log/mysql/error.log", "mariadbd: Shutdown complete"),
}
#: guest name → (engine, database, its main table, its history table, the history's time)
GUESTS = {
    "pg": ("postgresql", "dvc", "applications", "application_status", "changed_at"),
    "my": ("mariadb", "lgsp", "documents", "exchange_log", "exchanged_at"),
}


@dataclass
class EngineLab:
    dir: Path
    table: ProcessTable
    key: Path
    ips: dict[str, str]
    boot_seconds: dict[str, float]

    def start(self, name: str) -> float:
        """Start guest ``name`` (again); the seconds until its sshd answered."""
        engine, database = GUESTS[name][:2]
        begun = time.monotonic()
        start_guest(self.dir, self.table, name, f"db-{name}", self.ips[name],
                    [self.key.with_suffix(".pub").read_text().strip()],
                    self.dir / "known_hosts",
                    engines=[{"engine": engine, "database": database, "cluster": database,
                              "seed": f"itest/{name}", "rows": ROWS}])
        return time.monotonic() - begun

    def ssh(self, name: str, command: str) -> str:
        """Run ``command`` (a shell command line) in guest ``name`` over SSH."""
        done = run(["ssh", "-i", str(self.key), "-o", "BatchMode=yes", "-o",
                    f"UserKnownHostsFile={self.dir / 'known_hosts'}", "-o",
                    "StrictHostKeyChecking=yes", f"root@{self.ips[name]}", command],
                   timeout=120)
        assert done.ok, done.stderr
        return done.stdout


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineLab]:
    if os.geteuid() != 0:
        pytest.fail("the lab's guests need root (namespaces, sshd); run `make test` as root")
    root = tmp_path_factory.mktemp("engines")
    key = root / "id_ed25519"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    first, _second = lab_octets(os.environ.get("HOPNHAT_TEST_OCTETS", "110,120"),
                                os.environ.get("PYTEST_XDIST_WORKER", "gw0"))
    the_lab = EngineLab(root / "lab", ProcessTable(root / "lab"), key,
                        {"pg": f"127.{first}.251.11", "my": f"127.{first}.251.12"}, {})
    try:
        for name in GUESTS:
            the_lab.boot_seconds[name] = the_lab.start(name)
        yield the_lab
    finally:
        for name in GUESTS:
            stop_guest(the_lab.table, name)


def _namespace_members(namespace: str) -> list[int]:
    """Live (not zombie) processes in mount namespace ``namespace``."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            same = entry.isdigit() and os.readlink(f"/proc/{entry}/ns/mnt") == namespace
        except OSError:
            continue
        if same and start_ticks(int(entry)) is not None:
            found.append(int(entry))
    return found


def _tcp_listeners(pids: list[int]) -> list[int]:
    """Those of ``pids`` holding a listening TCP socket (IPv4 or IPv6)."""
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":
                listening.add(f"socket:[{fields[9]}]")
    holders = []
    for pid in pids:
        try:
            links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        except OSError:
            continue
        if links & listening:
            holders.append(pid)
    return holders


def _count(lab: EngineLab, name: str, table: str) -> int:
    engine = GUESTS[name][0]
    return int(guest_sql(lab.dir, name, engine, f"SELECT count(*) FROM {table}").strip())


@pytest.mark.parametrize("name", sorted(GUESTS))
def test_a_guest_boots_with_its_engine_seeded_and_no_tcp_listener(lab: EngineLab,
                                                                  name: str) -> None:
    engine, database, _main, history, column = GUESTS[name]
    marker = engines.seeded(lab.dir, name, engine, database)
    assert marker is not None, "no seeding recorded"
    now = datetime.fromisoformat(marker["now"])
    expected = databases.counts(databases.initial(engine, f"itest/{name}", ROWS, now))
    assert {t: _count(lab, name, t) for t in expected} == expected
    newest = guest_sql(lab.dir, name, engine, f"SELECT max({column}) FROM {history}").strip()
    assert datetime.fromisoformat(newest.replace("+00", "+00:00") if engine == "postgresql"
                                  else newest + "+00:00") == now - databases.FRESHEST
    record = lab.table.running(f"guest-{name}")
    assert record is not None
    members = _namespace_members(record.details["mntns"])
    assert len(members) > 1, "the engine runs in the guest's namespace"
    assert _tcp_listeners([p for p in members if p != record.pid]) == []


@pytest.mark.parametrize("name", sorted(GUESTS))
def test_a_restarted_guest_keeps_its_data_and_a_stopped_one_leaves_nothing(
        lab: EngineLab, name: str) -> None:
    engine, database, main, history, _column = GUESTS[name]
    marker = engines.seeded(lab.dir, name, engine, database)
    assert marker is not None
    before = _count(lab, name, main), _count(lab, name, history)
    day = datetime.fromisoformat(marker["now"]) + timedelta(days=1)
    added = engines.apply_day(lab.dir, name, engine, seed=f"itest/{name}", rows=ROWS, day=1,
                              now=day, change_rate=0.1)
    # a process started over SSH, detached from the session (as a drill's recovery step
    # or an operator might leave one), and a client session holding a connection open
    hold = ("runuser -u postgres -- psql -c 'SELECT pg_sleep(600)'" if engine == "postgresql"
            else "mariadb -e 'SELECT SLEEP(600)'")
    for command in ("sleep 600", hold):
        lab.ssh(name, f"setsid -f {command} </dev/null >/dev/null 2>&1")
    wait_for("the client session holding a connection", lambda: _count(lab, name, HELD[engine]))
    assert _count(lab, name, main) == before[0] + added[main]
    record = lab.table.running(f"guest-{name}")
    assert record is not None
    namespace = record.details["mntns"]
    # held open, the namespace's id cannot pass to another guest while we look for its members
    handle = os.open(f"/proc/{record.pid}/ns/mnt", os.O_RDONLY)
    try:
        begun = time.monotonic()
        assert stop_guest(lab.table, name)
        stop_seconds = time.monotonic() - begun
        assert _namespace_members(namespace) == []
    finally:
        os.close(handle)
    # shut down, not killed at the 10 s timeout: its log ends on a clean shutdown
    log, last = SHUTDOWN_LOG[engine]
    text = (guest_root(lab.dir, name) / "overlay" / "var" / "upper" / log).read_text()
    assert text.strip().splitlines()[-1].endswith(last), text[-500:]
    assert "abnormal" not in text and "was terminated by signal" not in text
    restart = lab.start(name)
    assert _count(lab, name, main) == before[0] + added[main]
    assert _count(lab, name, history) == before[1] + added[history]
    assert engines.seeded(lab.dir, name, engine, database) == marker, "seeded again"
    print(f"{name}: first boot {lab.boot_seconds[name]:.1f} s, stop {stop_seconds:.1f} s, "
          f"restart {restart:.1f} s")


def test_the_engine_folders_are_the_guests_own(lab: EngineLab) -> None:
    """The lab machine's own clusters (a Debian install makes 15/main) never show in a
    guest: its /etc/postgresql holds its own cluster only."""
    assert lab.ssh("pg", "ls /etc/postgresql/15").split() == ["dvc"]
    assert (guest_root(lab.dir, "pg") / "engines" / "var_lib_postgresql" / "15" / "dvc").is_dir()
    assert lab.ssh("my", "ls /etc/postgresql").split() == []
