"""A drill's recovery steps as data and against a faked scratch VM: the dump's manifest read
from the restored copy, the command lines that fetch and load a dump (every word quoted),
a failing or slow command named, and the SQL probes judged against the manifest."""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from orchestrator.actions.drill.manifest import Manifest, ManifestError, parse_manifest
from orchestrator.actions.drill.recovery import (
    Command,
    RecoveryError,
    command_line,
    fetch_commands,
    jobs_for,
    load_commands,
    online_cpus,
    restore_database,
    run_step,
)
from orchestrator.actions.drill.sql_probes import Found, counted, judge, query_argv, run_sql_probe
from orchestrator.adapters.restic import Repository
from orchestrator.adapters.ssh import Remote
from orchestrator.estate.databases import Database
from orchestrator.estate.recovery import Probe, RecoveryStep
from tests.helpers import FakeRemote

SNAPSHOT = "5e" * 32
DUMPED = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
NEWEST = datetime(2026, 12, 7, 2, 55, 1, 123456, tzinfo=UTC)
PG = Database(name="dvc", engine="postgresql", database="dvc",
              tables=["applications", "application_status"],
              newest={"table": "application_status", "column": "changed_at"})
MARIA = Database(name="lgsp", engine="mariadb", database="lgsp", tables=["documents"])
REPO = Repository(url="rest:https://repo-qnam-01:8104/dvc/", password_file=Path(
    "/etc/hopnhat/restic-dvc.password"), cache_dir=Path("/var/cache/hopnhat/restic-drill-dvc"))
RPO = timedelta(hours=1)


def manifest_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": 1, "name": "dvc", "engine": "postgresql", "database": "dvc",
        "snapshot": SNAPSHOT, "file": "/dvc.pgdump", "bytes": 4096, "all": False,
        "dumped_at": DUMPED.isoformat(timespec="seconds"), "duration_seconds": 1.5,
        "tables": {"applications": 200, "application_status": 640},
        "newest": {"table": "application_status", "column": "changed_at",
                   "time": NEWEST.isoformat()}}
    doc.update(changes)
    return doc


def a_manifest(**changes: Any) -> Manifest:
    doc = manifest_doc(**changes)
    return parse_manifest(doc["name"] if changes.get("name") != "other" else "dvc",
                          json.dumps(doc))


def remote(fake: FakeRemote) -> Remote:
    return cast(Remote, fake)


# ---------------------------------------------------------------- the manifest


def test_a_manifest_reads_back_as_the_job_wrote_it() -> None:
    m = a_manifest()
    assert (m.snapshot, m.file, m.bytes, m.dumped_at) == (SNAPSHOT, "/dvc.pgdump", 4096, DUMPED)
    assert m.tables == {"applications": 200, "application_status": 640}
    assert m.newest is not None and m.newest.time == NEWEST


@pytest.mark.parametrize(("changes", "fragment"), [
    pytest.param({"format": 2}, "format '2', not 1", id="format"),
    pytest.param({"name": "other"}, "names dump 'other'", id="name"),
    pytest.param({"snapshot": "latest"}, "full snapshot id", id="snapshot"),
    pytest.param({"file": "/../etc/shadow"}, "plain file name", id="file-escape"),
    pytest.param({"file": "/dvc.pgdump; rm -rf /"}, "plain file name", id="file-shell"),
    pytest.param({"tables": {'x"; DROP TABLE y; --': 1}}, "table name", id="table-sql"),
    pytest.param({"tables": {"a": -1}}, "table name", id="negative-count"),
    pytest.param({"dumped_at": "2026-12-07 03:00"}, "no UTC offset", id="naive-time"),
    pytest.param({"bytes": True}, "bytes is not a count", id="bool-bytes"),
])
def test_a_manifest_that_is_not_one_is_refused_naming_why(changes: dict[str, Any],
                                                          fragment: str) -> None:
    with pytest.raises(ManifestError, match=fragment) as caught:
        a_manifest(**changes)
    assert "/var/lib/hopnhat/dumps/dvc.json" in str(caught.value)


# ---------------------------------------------------------------- the command lines


def test_command_lines_quote_every_word_and_bound_the_time() -> None:
    line = command_line(Command(("psql", "-c", "SELECT 'x'; $(reboot)"), "q",
                                {"RESTIC_PASSWORD_FILE": "/etc/a b"}, stdin="/tmp/x y"), 59.2)
    assert shlex.split(line.split(" < ")[0]) == [
        "env", "RESTIC_PASSWORD_FILE=/etc/a b", "timeout", "-k", "10s", "60s", "psql", "-c",
        "SELECT 'x'; $(reboot)"]
    assert line.endswith(" < '/tmp/x y'")


def test_a_postgresql_dump_is_fetched_read_only_then_created_and_restored_in_parallel(
        ) -> None:
    fetched = [c.argv for c in fetch_commands(REPO, "/usr/bin/restic", PG, a_manifest())]
    staging = "/var/lib/hopnhat/drill-dumps/dvc"
    assert fetched[0] == ("rm", "-rf", "--", staging)
    assert fetched[2][:2] == ("/usr/bin/restic", "--no-lock")
    assert ("restore", SNAPSHOT, "--target", staging, "--include", "/dvc.pgdump") == \
        fetched[2][-6:]
    assert "--verify" not in fetched[2]
    assert fetched[3] == ("chown", "-R", "--", "postgres", staging)
    loads = [c.argv for c in load_commands(PG, a_manifest(), jobs_for(8))]
    assert loads == [
        ("runuser", "-u", "postgres", "--", "createdb", "dvc"),
        ("runuser", "-u", "postgres", "--", "pg_restore", "--exit-on-error", "-j", "8", "-d",
         "dvc", f"{staging}/dvc.pgdump")]
    assert "-j" not in load_commands(PG, a_manifest(), jobs_for(1))[1].argv


def test_a_mariadb_dump_is_piped_into_its_client_as_root() -> None:
    manifest = a_manifest(name="lgsp", engine="mariadb", database="lgsp", file="/lgsp.sql")
    create, load = load_commands(MARIA, manifest)
    assert create.argv == ("mariadb", "--batch", "-e", "CREATE DATABASE IF NOT EXISTS `lgsp`")
    assert (load.argv, load.stdin) == (("mariadb", "lgsp"),
                                       "/var/lib/hopnhat/drill-dumps/lgsp/lgsp.sql")
    assert all(c.argv[0] != "chown" for c in fetch_commands(REPO, "restic", MARIA, manifest))


def test_a_sqlite_dump_is_copied_into_place() -> None:
    lite = Database(name="app", engine="sqlite", database="/srv/app/app.db", tables=["t"])
    manifest = a_manifest(name="app", engine="sqlite", database="/srv/app/app.db",
                          file="/app.sqlite3")
    assert [c.argv for c in load_commands(lite, manifest)] == [
        ("install", "-D", "-m", "0640", "-o", "root", "--",
         "/var/lib/hopnhat/drill-dumps/app/app.sqlite3", "/srv/app/app.db")]


# ---------------------------------------------------------------- on a (faked) scratch VM


def test_restore_database_follows_the_restored_manifest_and_cleans_up() -> None:
    fake = FakeRemote()
    fake.answer(r"^head .*dumps/dvc\.json", stdout=json.dumps(manifest_doc()))
    loaded = restore_database(remote(fake), REPO, "restic", PG, timeout=600, jobs=2)
    assert loaded.manifest.snapshot == SNAPSHOT
    assert loaded.fetch_seconds >= 0 and loaded.load_seconds >= 0
    programs = [shlex.split(c.split(" < ")[0]) for c in fake.commands]
    ran = [argv[argv.index("timeout") + 4] if "timeout" in argv else argv[0]
           for argv in programs]
    assert ran == ["head", "rm", "install", "restic", "chown", "runuser", "runuser", "rm"]
    assert any(SNAPSHOT in c and "restore" in c for c in fake.commands)


def test_pg_restore_workers_follow_the_cpus_the_vm_has_online() -> None:
    fake = FakeRemote()
    fake.answer(r"^nproc$", stdout="2\n")
    assert online_cpus(remote(fake), 8) == 2  # the estate's 8 vCPUs, the VM's 2
    silent = FakeRemote()
    silent.answer(r"^nproc$", rc=127, stderr="nproc: not found")
    assert online_cpus(remote(silent), 8) == 8
    odd = FakeRemote()
    odd.answer(r"^nproc$", stdout="many\n")
    assert online_cpus(remote(odd), None) is None


def test_a_missing_manifest_fails_the_step_naming_it() -> None:
    fake = FakeRemote()
    fake.answer(r"^head ", rc=1, stderr="head: cannot open")
    with pytest.raises(ManifestError, match=r"no manifest of dump 'dvc'.*dumps/dvc\.json"):
        restore_database(remote(fake), REPO, "restic", PG, timeout=600)
    assert len(fake.commands) == 1  # nothing fetched, nothing loaded


def test_a_failing_load_names_its_command_and_the_folder_still_goes() -> None:
    fake = FakeRemote()
    fake.answer(r"^head ", stdout=json.dumps(manifest_doc()))
    fake.answer(r"pg_restore", rc=1, stderr="pg_restore: error: could not execute query\n"
                "pg_restore: error: role \"dvc_app\" does not exist\n")
    with pytest.raises(RecoveryError, match=r'pg_restore into dvc exited 1: .*role "dvc_app"'):
        restore_database(remote(fake), REPO, "restic", PG, timeout=600)
    assert fake.commands[-1] == "rm -rf -- /var/lib/hopnhat/drill-dumps/dvc"


def test_an_engine_other_than_the_estates_is_refused_before_anything_runs() -> None:
    fake = FakeRemote()
    fake.answer(r"^head ", stdout=json.dumps(manifest_doc(engine="mariadb")))
    with pytest.raises(RecoveryError, match="mariadb dump; the estate says postgresql"):
        restore_database(remote(fake), REPO, "restic", PG, timeout=600)
    assert len(fake.commands) == 1


def test_a_command_step_that_outlasts_its_timeout_is_said_so() -> None:
    fake = FakeRemote()
    fake.answer(r"pg_createcluster", rc=124)
    step = RecoveryStep(name="start PostgreSQL", command="pg_createcluster --start 15 dvc",
                        timeout="5m")
    with pytest.raises(RecoveryError, match="pg_createcluster did not finish within"):
        run_step(remote(fake), step)
    assert " 300s pg_createcluster --start 15 dvc" in fake.commands[0]


# ---------------------------------------------------------------- SQL probes


PROBE = Probe(name="counts", sql="dvc", newest_within="rpo")


def test_equal_counts_and_newest_pass() -> None:
    result = judge("vm", PROBE, PG, a_manifest(),
                   Found({"applications": 200, "application_status": 640}, NEWEST), RPO)
    assert result.ok, result.problems
    assert result.newest_age_seconds == pytest.approx(298.876544)
    assert result.as_dict()["tables"][0] == {"table": "applications", "expected": 200,
                                             "restored": 200, "ok": True}


def test_a_count_or_the_newest_time_that_differs_fails_naming_it() -> None:
    result = judge("vm", PROBE, PG, a_manifest(),
                   Found({"applications": 199, "application_status": 640},
                         NEWEST - timedelta(microseconds=1)), RPO)
    assert not result.ok
    assert result.problems[0] == "table applications: 199 rows restored, 200 at dump time"
    assert "newest application_status.changed_at: 2026-12-07T02:55:01.123455+00:00 restored" \
        in result.problems[1]


def test_a_table_the_estate_expects_that_the_manifest_lacks_is_named() -> None:
    manifest = a_manifest(tables={"applications": 200})
    result = judge("vm", PROBE, PG, manifest, Found({"applications": 200}, NEWEST), RPO)
    assert result.problems == ("table application_status: the dump's manifest has no row "
                               "count of it (the estate expects one)",)


def test_a_newest_record_older_than_the_rpo_at_dump_time_fails() -> None:
    old = DUMPED - timedelta(hours=2)
    result = judge("vm", PROBE, PG, a_manifest(newest={
        "table": "application_status", "column": "changed_at", "time": old.isoformat()}),
        Found({"applications": 200, "application_status": 640}, old), RPO)
    assert result.problems == ("the newest record was 2 h 00 min old at dump time, more "
                               "than newest_within 1 h 00 min",)
    within = Probe(name="counts", sql="dvc", newest_within="3h")
    assert judge("vm", within, PG, a_manifest(newest={
        "table": "application_status", "column": "changed_at", "time": old.isoformat()}),
        Found({"applications": 200, "application_status": 640}, old), RPO).ok


def test_a_manifest_without_the_newest_time_the_estate_expects_is_named() -> None:
    result = judge("vm", PROBE, PG, a_manifest(newest=None),
                   Found({"applications": 200, "application_status": 640}, None), RPO)
    assert result.problems == ("the dump's manifest records no newest record's time (the "
                               "estate expects one)",)


def test_the_probe_asks_what_the_dump_asked_as_the_databases_user() -> None:
    argv = query_argv(counted(PG, a_manifest()))
    assert argv[:5] == ("runuser", "-u", "postgres", "--", "psql")
    assert argv[-1] == ('SELECT (SELECT count(*) FROM "applications"), (SELECT count(*) FROM '
                        '"application_status"), (SELECT extract(epoch FROM max("changed_at")) '
                        'FROM "application_status");')


def test_a_sql_probe_on_a_scratch_vm_without_the_manifest_fails_naming_it() -> None:
    fake = FakeRemote()
    fake.answer(r"^head ", rc=1)
    result = run_sql_probe(remote(fake), PROBE, PG, RPO)
    assert not result.ok and "no manifest of dump 'dvc'" in result.describe()


def test_a_sql_probe_reads_the_restored_database_and_judges_it() -> None:
    fake = FakeRemote()
    fake.answer(r"^head ", stdout=json.dumps(manifest_doc()))
    fake.answer(r"psql", stdout=f"200|640|{NEWEST.timestamp():.6f}\n")
    result = run_sql_probe(remote(fake), PROBE, PG, RPO)
    assert result.ok, result.problems
    fake.answer(r"psql", rc=2, stderr="psql: error: connection to server failed")
    fake.rules.reverse()  # the failing psql first
    assert "client exited 2: psql: error" in run_sql_probe(remote(fake), PROBE, PG,
                                                            RPO).describe()
