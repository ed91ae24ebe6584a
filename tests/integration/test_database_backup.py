"""Database dumps in the backup, against the lab: dvc's PostgreSQL 15 and lgsp's MariaDB
10.11, running in their data VMs' guests (seeded by the lab), are dumped by the hosts' own
job (``hopnhat backup run``) while a writer keeps inserting rows; each dump is restored from
the repository inside its guest into a fresh database, whose counts and newest record equal
the manifest the job wrote at dump time. A dump that fails (a database that does not exist)
fails the backup and makes no snapshot.

Then drills that bring those services back (after one more backup, with nothing writing):
``hopnhat drill run --system dvc`` restores the files onto a scratch VM, runs dvc's recovery
steps there (start an empty PostgreSQL cluster, restore the dump the restored manifest names
into it) and passes its SQL probe (every count and the newest record equal to the
manifest's); so does lgsp's drill with MariaDB. A recovery step that fails fails the drill at
that step, naming it, reports what it never ran, and tears down: no scratch VM, and none of
the processes the scratch VM ran (its postmaster among them) left.

The module provisions and configures the two data VMs once and destroys them at its end, so
the modules after it find the site as they would without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from orchestrator.actions.configure import ConfigurePlan, configure
from orchestrator.actions.drill.remote import list_snapshots
from orchestrator.actions.drill.result import NoDrillProgress, StepRecord
from orchestrator.actions.drill.run import run_drill
from orchestrator.actions.provision import apply as provision_apply
from orchestrator.actions.provision import plan as provision_plan
from orchestrator.actions.provision import vcenters as provision_vcenters
from orchestrator.adapters import vsphere
from orchestrator.adapters.restic_argv import make_dump_argv, make_environment
from orchestrator.adapters.restic_results import is_dump
from orchestrator.estate import load_estate
from orchestrator.hostjob.config import load_config
from orchestrator.lab import engines, guests
from orchestrator.lab.guest_init import GUEST_ENV
from orchestrator.lab.guests import guest_view
from orchestrator.lab.processes import ProcessTable
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths
from tests.helpers import (
    GuestWriter,
    destroy_systems,
    estate_copy,
    guest_seeded,
    guest_sql,
    hopnhat,
    replace_in,
    wait_for,
)
from tests.integration.test_drill import no_scratch_left

pytestmark = pytest.mark.lab

SYSTEMS = ("dvc", "lgsp")
#: system → (its data VM, engine, database, the dump's file in its snapshot)
DUMPS = {"dvc": ("dvc-db-01", "postgresql", "dvc", "/dvc.pgdump"),
         "lgsp": ("lgsp-esb-01", "mariadb", "lgsp", "/lgsp.sql")}


@pytest.fixture(scope="module")
def configured(lab: Any) -> Iterator[Paths]:
    """dvc's and lgsp's data VMs provisioned (their engines seeded) and configured."""
    paths: Paths = lab.paths
    estate = paths.estate
    vms = [vm for code in SYSTEMS for vm in estate.vms_of(code) if vm.data]
    with Ledger(paths.ledger) as ledger:
        try:
            endpoints = provision_vcenters.endpoints(paths, {vm.site for vm in vms})
            with vsphere.open_vcenters(endpoints) as vcs:
                facts = provision_vcenters.read_facts(vcs, {vm.name for vm in vms})
                the_plan = provision_plan.plan(estate, vms, facts)
                applied = provision_apply.apply(the_plan, facts, vcs, ledger=ledger,
                                                concurrency=4, clones_per_host=4,
                                                clones_per_datastore=4, guest_ip_timeout=120)
            assert applied.status == "ok", applied.as_dict()
            for code, (guest, engine, database, _) in DUMPS.items():
                wait_for(f"data on {guest}", guest_seeded(paths.lab, guest), 120, interval=0.1)
                wait_for(f"{engine} of {code} seeded",
                         partial(engines.seeded, paths.lab, guest, engine, database),
                         180, interval=0.2)
            hosts = (*(vm.name for vm in vms), "repo-qnam-01")
            done = configure(paths, ConfigurePlan(estate.id, SYSTEMS, ",".join(hosts), hosts,
                                                  False, False, 10), ledger=ledger)
            assert done.exit_code == 0, done.run.failures
            yield paths
        finally:
            destroy_systems(paths, ledger, SYSTEMS, vms)


def _in_guest(paths: Paths, vm: str) -> list[str]:
    return engines.enter_argv(paths.lab, vm)


def _guest_file(paths: Paths, vm: str, path: str) -> Path:
    return guest_view(ProcessTable(paths.lab), vm, path)


def _dump_bytes(paths: Paths, code: str, snapshot: str, file: str) -> bytes:
    """The dump file of ``snapshot``, read from the repository inside the guest with the
    job's own restic, repository and password."""
    vm = DUMPS[code][0]
    config = load_config(_guest_file(paths, vm, f"/etc/hopnhat/backup-{code}.json"))
    repo = config.restic_repository(config.repository)
    argv = (config.restic, *make_dump_argv(repo, snapshot, file)[1:])
    env = make_environment(repo, path=GUEST_ENV["PATH"], home="/root", tmpdir="/tmp")
    done = subprocess.run([*_in_guest(paths, vm), "env", "-i",
                           *(f"{k}={v}" for k, v in env.items()), *argv],
                          capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-800:]
    return done.stdout


def _load(paths: Paths, code: str, dump: bytes, fresh: str) -> None:
    """Load ``dump`` into a new database ``fresh`` in the guest's engine."""
    vm, engine, database, _ = DUMPS[code]
    if engine == "postgresql":
        guest_sql(paths.lab, vm, engine, f'CREATE DATABASE "{fresh}";', "postgres")
        argv = ["runuser", "-u", "postgres", "--", "pg_restore", "--no-owner",
                "--exit-on-error", "--dbname", fresh]
    else:
        # the dump (--databases) creates and uses its own database: point both at `fresh`
        dump = re.sub(rb"^(CREATE DATABASE .*?)`" + database.encode() + rb"`",
                      rb"\1`" + fresh.encode() + rb"`", dump, count=1, flags=re.M)
        dump = re.sub(rb"^USE `" + database.encode() + rb"`;", b"USE `" + fresh.encode()
                      + b"`;", dump, count=1, flags=re.M)
        argv = ["mariadb", "--batch"]
    done = subprocess.run([*_in_guest(paths, vm), *argv], input=dump, capture_output=True,
                          env=dict(GUEST_ENV), timeout=300, check=False, cwd="/")
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-800:]


def _counts(paths: Paths, code: str, manifest: dict[str, Any], database: str
            ) -> tuple[dict[str, int], str]:
    """Each manifest table's rows and the newest time (ISO, UTC) in ``database``."""
    vm, engine, _, _ = DUMPS[code]
    newest = manifest["newest"]
    if engine == "postgresql":
        time = (f"to_char(max({newest['column']}) AT TIME ZONE 'UTC', "
                "'YYYY-MM-DD\"T\"HH24:MI:SS.US')")
    else:
        time = f"DATE_FORMAT(max({newest['column']}), '%Y-%m-%dT%H:%i:%s.%f')"
    sql = "".join(f"SELECT count(*) FROM {table};\n" for table in manifest["tables"])
    sql += f"SELECT {time} FROM {newest['table']};\n"
    lines = guest_sql(paths.lab, vm, engine, sql, database).split()
    return dict(zip(manifest["tables"], map(int, lines[:-1]), strict=True)), lines[-1]


def _manifest_time(manifest: dict[str, Any]) -> str:
    """The manifest's newest time as :func:`_counts` writes it (UTC, microseconds)."""
    from datetime import UTC, datetime

    moment = datetime.fromisoformat(manifest["newest"]["time"]).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")


def test_dumps_under_write_load_restore_to_the_manifests_counts(configured: Paths,
                                                                lab: Any) -> None:
    paths = configured
    before = {code: {s.id for s in list_snapshots(paths, code)} for code in SYSTEMS}
    with GuestWriter(paths.lab, DUMPS["dvc"][0], "postgresql") as pg_writer, \
            GuestWriter(paths.lab, DUMPS["lgsp"][0], "mariadb") as maria_writer:
        pg_writer.wait_sent(20)
        maria_writer.wait_sent(20)
        sent = (pg_writer.sent, maria_writer.sent)
        ran = hopnhat(lab.env, "backup", "run", "--system", "dvc", "--system", "lgsp",
                      "--json", timeout=600)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert pg_writer.sent > sent[0] and maria_writer.sent > sent[1]  # load throughout
    found: dict[str, Any] = {}
    expected: dict[str, Any] = {}
    for code, (vm, engine, database, file) in DUMPS.items():
        status = json.loads(_guest_file(paths, vm, f"/var/lib/hopnhat/backup-{code}.json")
                            .read_text())
        manifest = json.loads(_guest_file(paths, vm, f"/var/lib/hopnhat/dumps/{code}.json")
                              .read_text())
        assert status["result"] == "ok" and status["dumps"] == [manifest]
        [host] = [h for h in json.loads(ran.stdout)["hosts"] if h["system"] == code]
        assert host["dumps"] == [manifest]  # what backup run shows of the host's run
        assert (manifest["engine"], manifest["database"], manifest["file"]) == (
            engine, database, file)
        new = [s for s in list_snapshots(paths, code) if s.id not in before[code]]
        dumps, files = [s for s in new if is_dump(s)], [s for s in new if not is_dump(s)]
        assert [s.id for s in dumps] == [manifest["snapshot"]] and dumps[0].paths == (file,)
        assert f"dump={code}" in dumps[0].tags and len(files) == 1
        assert "/var/lib/hopnhat/dumps" in files[0].paths  # the manifest is in the files
        print(f"{code}: dump of {manifest['bytes']} bytes in "
              f"{manifest['duration_seconds']:.2f} s (the whole run "
              f"{status['duration_seconds']:.2f} s)")
        dump = _dump_bytes(paths, code, manifest["snapshot"], file)
        assert len(dump) == manifest["bytes"]
        _load(paths, code, dump, f"{database}_restored")
        restored, newest = _counts(paths, code, manifest, f"{database}_restored")
        live, _ = _counts(paths, code, manifest, database)
        found[code] = {"restored": restored, "newest": newest, "live": live}
        expected[code] = {"restored": manifest["tables"], "newest": _manifest_time(manifest),
                          "live": live}
        assert live[manifest["newest"]["table"]] > restored[manifest["newest"]["table"]], (
            "the writer wrote nothing after the dump's snapshot: the test proves nothing")
    # every system judged before the verdict, so a failure shows both engines
    assert found == expected


def test_a_failing_dump_fails_the_backup_and_makes_no_snapshot(configured: Paths,
                                                               lab: Any) -> None:
    paths = configured
    vm = DUMPS["lgsp"][0]
    config_file = _guest_file(paths, vm, "/etc/hopnhat/backup-lgsp.json")
    kept = config_file.read_text()
    config = json.loads(kept)
    config["databases"][0]["database"] = "no_such_database"
    before = [s.id for s in list_snapshots(paths, "lgsp")]
    try:
        config_file.write_text(json.dumps(config))
        ran = hopnhat(lab.env, "backup", "run", "--system", "lgsp", "--json", timeout=300)
    finally:
        config_file.write_text(kept)
    assert ran.returncode == 1, ran.stdout + ran.stderr
    [host] = json.loads(ran.stdout)["hosts"]
    assert (host["result"], host["stage"]) == ("failed", "dump"), host
    assert "database lgsp (mariadb no_such_database)" in host["error"]["message"]
    assert [s.id for s in list_snapshots(paths, "lgsp")] == before


# ---------------------------------------------------------------- drills that bring them back


DVC_VM = "dvc-db-01"


@pytest.fixture(scope="module")
def backed_up(configured: Paths, lab: Any) -> Paths:
    """One more backup of dvc and lgsp with nothing writing (the drills' snapshots, and a
    clean last status for lgsp after the failing dump)."""
    backup = hopnhat(lab.env, "backup", "run", "--system", "dvc", "--system", "lgsp",
                     timeout=600)
    assert backup.returncode == 0, backup.stdout + backup.stderr
    return configured


def production_counts(paths: Paths) -> dict[str, int]:
    """dvc's tables as its production database holds them (nothing writes to it here)."""
    out = guest_sql(paths.lab, DVC_VM, "postgresql",
                    "SELECT 'applications', count(*) FROM applications UNION ALL "
                    "SELECT 'application_status', count(*) FROM application_status UNION ALL "
                    "SELECT 'attachments', count(*) FROM attachments;")
    return {name: int(n) for name, n in (line.split("|") for line in out.split())}


def test_a_dvc_drill_restores_postgresql_and_passes_its_sql_probe(
        lab: Any, backed_up: Paths) -> None:
    done = hopnhat(lab.env, "drill", "run", "--system", "dvc", "--json", timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout)
    no_scratch_left(lab)
    doc = json.loads(Path(summary["evidence"]).read_text())
    assert doc["verdict"] == "passed", doc["reasons"]
    # the steps, each timed: the drill's own, then dvc's recovery, then the probes
    assert [(s["name"], s["kind"]) for s in summary["steps"]] == [
        ("plan", "drill"), ("provision", "drill"), ("configure", "drill"),
        ("restore", "drill"), ("check", "drill"), ("start PostgreSQL", "recovery"),
        ("restore the applications database", "recovery"), ("probes", "drill"),
        ("teardown", "drill")]
    steps = {s["name"]: s for s in doc["steps"]}
    assert abs(doc["achieved"]["rto_seconds"] - steps["probes"]["end"]) < 0.1
    assert steps["probes"]["start"] >= steps["restore the applications database"]["end"]
    # the dump the restored manifest named was loaded, and the probe found in the restored
    # database what the manifest recorded — which is what production holds
    (loaded,) = doc["databases"]
    assert (loaded["name"], loaded["engine"], loaded["database"]) == ("dvc", "postgresql",
                                                                       "dvc")
    sql = next(p for p in doc["probes"] if p["kind"] == "sql")
    assert sql["ok"], sql["problems"]
    counts = {t["table"]: (t["expected"], t["restored"]) for t in sql["tables"]}
    assert counts == {t: (n, n) for t, n in production_counts(backed_up).items()}
    assert min(n for n, _ in counts.values()) > 0
    assert sql["newest"]["expected"] == sql["newest"]["restored"] is not None
    assert sql["newest"]["age_at_dump_seconds"] <= sql["newest"]["within_seconds"] == 3600
    html = Path(summary["html"]).read_text()
    assert "recovery: start PostgreSQL" in html and 'id="sql-probes"' in html


def test_an_lgsp_drill_restores_mariadb_and_passes_its_sql_probe(
        lab: Any, backed_up: Paths) -> None:
    """lgsp's MariaDB: its data folder made, the server started detached, waited for, the
    dump (mariadb-dump --databases) loaded; the SQL probe finds the manifest's counts."""
    with Ledger(backed_up.ledger) as ledger:
        result = run_drill(backed_up, "lgsp", ledger=ledger)
    no_scratch_left(lab)
    assert result.verdict == "passed", result.reasons
    assert [s.name for s in result.steps if s.kind == "recovery"] == [
        "initialise the MariaDB data folder", "make the socket folder", "start MariaDB",
        "wait for MariaDB", "restore the documents database"]
    sql = next(p for p in result.probes if p.as_dict()["kind"] == "sql").as_dict()
    expected = guest_sql(backed_up.lab, "lgsp-esb-01", "mariadb",
                         "SELECT COUNT(*) FROM exchange_log;")
    assert {t["table"]: t["restored"] for t in sql["tables"]}["exchange_log"] == \
        int(expected) > 0
    assert sql["ok"] and sql["newest"]["restored"] == sql["newest"]["expected"]


def namespace_of(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/mnt")


def processes_in(namespace: str) -> dict[int, str]:
    """PID → start time (jiffies) of each live process of mount namespace ``namespace``."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if namespace_of(int(entry)) != namespace:
                continue
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z":
            found[int(entry)] = fields[19]
    return found


def still_alive(pid: int, started: str) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[19] == started and fields[0] != "Z"


class Watcher(NoDrillProgress):
    """Notes what ran inside the scratch VM when its engine had started."""

    def __init__(self, lab_dir: Path) -> None:
        self.lab_dir = lab_dir
        self.running: dict[int, str] = {}
        self.commands: list[str] = []

    def step_finished(self, drill_id: str, step: StepRecord) -> None:
        if step.name != "start PostgreSQL":
            return
        name = f"drill-{drill_id[-6:]}-{DVC_VM}"
        rec = ProcessTable(self.lab_dir).running(guests.record_name(name))
        assert rec is not None
        self.running = processes_in(rec.details["mntns"])
        for pid in self.running:
            with contextlib.suppress(OSError):
                self.commands.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(
                    b"\0", b" ").decode(errors="replace"))


def test_a_failing_recovery_step_fails_the_drill_there_and_leaves_nothing_behind(
        lab: Any, backed_up: Paths, tmp_path: Path) -> None:
    """dvc with a step after the engine's start that fails (the portal's program is not on
    the scratch VM): the drill fails at that step, runs neither the database's restore nor
    the probes, and its teardown leaves no scratch VM and no process the scratch VM ran."""
    env = estate_copy(lab, tmp_path, lambda root: replace_in(
        root / "systems" / "dvc.yml", "    - name: restore the applications database\n",
        "    - name: start the portal\n      command: \"/opt/dvc/bin/portal start\"\n"
        "    - name: restore the applications database\n"))
    paths = Paths(Path(env["HOPNHAT_STATE"]), load_estate(Path(env["HOPNHAT_ESTATE"])))
    watcher = Watcher(paths.lab)
    with Ledger(paths.ledger) as ledger:
        result = run_drill(paths, "dvc", ledger=ledger, progress=watcher)
    assert (result.verdict, result.failed_step) == ("failed", "start the portal")
    assert "start the portal: " in result.reasons[0] and "/opt/dvc/bin/portal" in \
        result.reasons[0], result.reasons
    assert [(n.name, n.kind) for n in result.not_run] == [
        ("restore the applications database", "recovery"), ("probes", "drill")]
    assert result.probes_not_run == ["applications as at dump time", "database integrity"]
    assert not result.probes and not result.databases and result.rto_seconds is None
    assert result.steps[-1].name == "teardown" and result.steps[-1].ok
    # the engine ran in the scratch VM when the step failed; nothing of it is left
    assert any("postgres" in c for c in watcher.commands), watcher.commands
    no_scratch_left(lab)
    left = [pid for pid, started in watcher.running.items() if still_alive(pid, started)]
    assert left == [], left
