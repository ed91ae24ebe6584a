"""Database dumps in the backup, against the lab: dvc's PostgreSQL 15 and lgsp's MariaDB
10.11, running in their data VMs' guests (seeded by the lab), are dumped by the hosts' own
job (``hopnhat backup run``) while a writer keeps inserting rows; each dump is restored from
the repository inside its guest into a fresh database, whose counts and newest record equal
the manifest the job wrote at dump time. A dump that fails (a database that does not exist)
fails the backup and makes no snapshot.

The module provisions and configures the two data VMs once and destroys them at its end, so
the modules after it find the site as they would without it.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from orchestrator.actions.configure import ConfigurePlan, configure
from orchestrator.actions.drill.remote import list_snapshots
from orchestrator.actions.provision import apply as provision_apply
from orchestrator.actions.provision import destroy as provision_destroy
from orchestrator.actions.provision import plan as provision_plan
from orchestrator.actions.provision import vcenters as provision_vcenters
from orchestrator.adapters import vsphere
from orchestrator.adapters.restic_argv import make_dump_argv, make_environment
from orchestrator.adapters.restic_results import is_dump
from orchestrator.hostjob.config import load_config
from orchestrator.lab import engines
from orchestrator.lab.guest_init import GUEST_ENV
from orchestrator.lab.guests import guest_view
from orchestrator.lab.processes import ProcessTable
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths
from tests.helpers import GuestWriter, guest_gone, guest_seeded, guest_sql, hopnhat, wait_for

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
            endpoints = provision_vcenters.endpoints(paths, {vm.site for vm in vms})
            with vsphere.open_vcenters(endpoints) as vcs:
                facts = provision_vcenters.read_facts(vcs, {vm.name for vm in vms})
                for code in SYSTEMS:
                    provision_destroy.destroy(provision_destroy.plan_destroy(estate, code, facts),
                                              vcs, ledger=ledger, concurrency=4)
            for vm in vms:
                wait_for(f"guest {vm.name} to go", guest_gone(paths.lab, vm.name), 60,
                         interval=0.1)


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
