"""Database dumps of the host job: command lines (pure), the relay into a real restic (a local
repository) with stand-in dump programs, what a failing or empty dump leaves (nothing), the
stdin-from-command path, the manifest, and the estate's refusals."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import pytest

from orchestrator.adapters.restic import BackupResult, Repository, Restic
from orchestrator.adapters.restic_argv import Features, make_backup_stdin_argv
from orchestrator.adapters.restic_results import DUMP_TAG, Snapshot, dump_name, is_dump
from orchestrator.hostjob import dump_commands as sql
from orchestrator.hostjob.config import (
    COMMAND_PATH,
    ConfigError,
    DatabaseConfig,
    JobConfig,
    parse_config,
)
from orchestrator.hostjob.dump_io import Tools, copy_stream
from orchestrator.hostjob.dumps import DumpFailed, dump_databases, dump_one
from orchestrator.hostjob.run import backup
from tests.helpers import EstateCopy
from tests.unit.hostjob.fakes import PASSWORD, config_data, result

PG = DatabaseConfig(name="dvc", engine="postgresql", database="dvc",
                    tables=("applications", "application_status"),
                    newest=("application_status", "changed_at"), run_as="postgres")
MARIA = DatabaseConfig(name="lgsp", engine="mariadb", database="lgsp",
                       tables=("documents", "exchange_log"),
                       newest=("exchange_log", "exchanged_at"))


# --- command lines ----------------------------------------------------------------------------


def test_stdin_backup_argv_feeds_or_runs_a_command() -> None:
    repo = Repository(url="/r", password_file=Path("/p"))
    fed = make_backup_stdin_argv(repo, "dvc.pgdump", ["system=dvc", "hopnhat-dump"], "h")
    assert fed == ("restic", "--repo", "/r", "--no-cache", "backup", "--json", "--host", "h",
                   "--tag", "system=dvc", "--tag", "hopnhat-dump",
                   "--stdin-filename", "dvc.pgdump", "--stdin")
    ran = make_backup_stdin_argv(repo, "dvc.pgdump", (), None,
                                 command=("pg_dump", "--dbname", "dvc"))
    assert ran[-6:] == ("dvc.pgdump", "--stdin-from-command", "--", "pg_dump", "--dbname", "dvc")
    for bad in ("", "a/b", "..", "x\0y"):
        with pytest.raises(ValueError, match="plain file name"):
            make_backup_stdin_argv(repo, bad)
    assert Features((0, 17, 0)).stdin_from_command and not Features((0, 16, 4)).stdin_from_command


def test_engine_command_lines_keep_each_value_one_argument() -> None:
    assert sql.pg_dump_argv(PG, "00000003-00000004-1") == (
        "pg_dump", "--format=custom", "--no-password", "--snapshot=00000003-00000004-1",
        "--dbname", "dvc")
    whole = DatabaseConfig(name="all", engine="postgresql", database="postgres",
                           whole_cluster=True)
    assert sql.pg_dump_argv(whole, None) == ("pg_dumpall", "--no-password", "--database",
                                             "postgres")
    assert sql.dump_file(whole) == "all.sql" and sql.dump_file(PG) == "dvc.pgdump"
    assert sql.mariadb_dump_argv(MARIA)[-2:] == ("--databases", "lgsp")
    assert {"--single-transaction", "--routines", "--events", "--triggers"} <= set(
        sql.mariadb_dump_argv(MARIA))
    assert sql.as_user("postgres", ("psql",), "root") == ("runuser", "-u", "postgres", "--",
                                                          "psql")
    assert sql.as_user("root", ("mariadb",), "root") == ("mariadb",)


def test_identifiers_are_quoted_with_their_quote_doubled() -> None:
    assert sql.quote_identifier('we"ird', "postgresql") == '"we""ird"'
    assert sql.quote_identifier("app.documents", "postgresql") == '"app"."documents"'
    assert sql.quote_identifier("x`; DROP", "mariadb") == "`x``; DROP`"
    assert sql.counts_query(PG) == (
        'SELECT (SELECT count(*) FROM "applications"), (SELECT count(*) FROM '
        '"application_status"), (SELECT extract(epoch FROM max("changed_at")) FROM '
        '"application_status");')
    assert "UNIX_TIMESTAMP(max(`exchanged_at`)) FROM `exchange_log`" in sql.counts_query(MARIA)
    assert "SET SESSION lock_wait_timeout = 30;\nFLUSH TABLES WITH READ LOCK;" in (
        sql.mariadb_lock(MARIA))
    assert sql.postgresql_begin().startswith("BEGIN ISOLATION LEVEL REPEATABLE READ")
    assert sql.postgresql_counts(PG) == sql.counts_query(PG) + "\n\\echo hopnhat-answer-end\n"


def test_counts_and_times_are_read_from_each_engines_answer() -> None:
    counts, newest = sql.parse_counts(PG, "20000|61234|1796612275.5\n")
    assert counts == {"applications": 20000, "application_status": 61234}
    assert newest is not None and newest.isoformat() == "2026-12-07T02:57:55.500000+00:00"
    assert sql.parse_counts(MARIA, "3\t0\tNULL") == ({"documents": 3, "exchange_log": 0}, None)
    exact = sql.parse_time("1796612275.928578")  # as a float it would round a microsecond
    assert exact is not None and exact.isoformat() == "2026-12-07T02:57:55.928578+00:00"
    assert sql.counts_argv(PG)[-2:] == ("-c", sql.counts_query(PG))
    assert sql.counts_argv(MARIA)[-1].startswith("SET time_zone = '+00:00'; SELECT")
    assert sql.parse_time("2026-12-07 01:02:03") is not None
    assert str(sql.parse_time("2026-12-07T02:00:00Z")) == "2026-12-07 02:00:00+00:00"
    with pytest.raises(ValueError, match="expected 3 values"):
        sql.parse_counts(PG, "1|2")


def test_the_dump_predicate_tells_dumps_from_files_snapshots() -> None:
    from datetime import UTC, datetime
    files = Snapshot(id="a" * 64, short_id="a" * 8, time=datetime(2026, 1, 1, tzinfo=UTC),
                     hostname="h", username="root", paths=("/srv/dvc",), tags=("system=dvc",))
    dump = Snapshot(id="b" * 64, short_id="b" * 8, time=datetime(2026, 1, 1, tzinfo=UTC),
                    hostname="h", username="root", paths=("/dvc.pgdump",),
                    tags=("system=dvc", DUMP_TAG, "dump=dvc"))
    assert not is_dump(files) and is_dump(dump)
    assert dump_name(dump) == "dvc" and dump_name(files) is None


# --- the job's config ---------------------------------------------------------------------------


def test_the_config_takes_databases_and_refuses_hostile_ones(tmp_path: Path) -> None:
    good = {"name": "dvc", "engine": "postgresql", "database": "dvc", "tables": ["a"],
            "newest": {"table": "a", "column": "t"}, "run_as": "postgres", "all": False}
    config = parse_config(config_data(tmp_path, databases=[good]))
    assert config.databases[0].newest == ("a", "t") and config.databases[0].run_as == "postgres"
    for bad, why in (
            ({**good, "database": "--help"}, "'database'"),
            ({**good, "tables": ['a"; DROP TABLE x; --']}, "'tables'"),
            ({**good, "engine": "oracle"}, "'engine'"),
            ({**good, "all": True}, "'all'"),
            ({**good, "engine": "sqlite", "database": "app.db"}, "absolute"),
            ({**good, "run_as": "root; id"}, "'run_as'")):
        with pytest.raises(ConfigError, match=why):
            parse_config(config_data(tmp_path, databases=[bad]))
    with pytest.raises(ConfigError, match="used twice"):
        parse_config(config_data(tmp_path, databases=[good, good]))


# --- the relay, with a real restic and stand-in dump programs -----------------------------------


@pytest.fixture
def repository(tmp_path: Path) -> Repository:
    assert shutil.which("restic") is not None, "restic is not installed (make deps installs it)"
    password = tmp_path / "restic.password"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    repo = Repository(url=str(tmp_path / "repo"), password_file=password)
    Restic(repo).init()
    return repo


def _program(folder: Path, name: str, body: str) -> None:
    """A stand-in dump program (python) named ``name`` in ``folder``."""
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(f"#!{sys.executable}\nimport sys, os\n{body}\n")
    path.chmod(0o755)


def _tools(tmp_path: Path) -> Tools:
    return Tools(timeout=60, env={"PATH": f"{tmp_path / 'bin'}:{COMMAND_PATH}",
                                  "HOME": str(tmp_path), "LC_ALL": "C.UTF-8"})


def _job(tmp_path: Path, repo: Repository, *databases: DatabaseConfig) -> JobConfig:
    config = parse_config(config_data(
        tmp_path, paths=[str(tmp_path / "data")], pre_commands=[],
        repository={"name": "local", "url": repo.url}, password_file=str(repo.password_file),
        restic=shutil.which("restic"), dumps_dir=str(tmp_path / "dumps"), retention={}))
    return JobConfig(**{**config.__dict__, "databases": databases})


WHOLE = DatabaseConfig(name="cluster", engine="postgresql", database="postgres",
                       whole_cluster=True, run_as="root")


def test_a_relayed_dump_becomes_its_own_tagged_snapshot(tmp_path: Path,
                                                        repository: Repository) -> None:
    _program(tmp_path / "bin", "pg_dumpall",
             "out = sys.stdout.buffer\n"
             "for i in range(300):\n    out.write(b'-- row %d ' % i + b'x' * 4000 + b'\\n')")
    restic = Restic(repository)
    [dumped] = dump_databases(_job(tmp_path, repository, WHOLE), restic, from_command=False,
                              tools=_tools(tmp_path))
    snapshots = restic.snapshots()
    assert [s.id for s in snapshots] == [dumped.snapshot] and len(dumped.snapshot) == 64
    assert snapshots[0].paths == ("/cluster.sql",) and is_dump(snapshots[0])
    assert {"system=qlvb", "tier=1", "host=qlvb-db-01", DUMP_TAG, "dump=cluster"} == set(
        snapshots[0].tags)
    assert dumped.bytes == 300 * 4009 + sum(len(str(i)) for i in range(300))
    out = tmp_path / "restored"
    restic.restore(dumped.snapshot, out)
    assert (out / "cluster.sql").stat().st_size == dumped.bytes


@pytest.mark.parametrize(("body", "why"), [
    ("sys.stdout.buffer.write(b'x' * 300000); sys.stdout.flush()\n"
     "sys.stderr.write('pg_dumpall: error: connection lost\\n'); sys.exit(1)",
     "exited 1: pg_dumpall: error: connection lost"),
    ("sys.exit(0)", "the dump wrote nothing"),
])
def test_a_failing_or_empty_dump_stops_restic_before_any_snapshot(
        tmp_path: Path, repository: Repository, body: str, why: str) -> None:
    _program(tmp_path / "bin", "pg_dumpall", body)
    restic = Restic(repository)
    with pytest.raises(DumpFailed, match="database cluster") as failed:
        dump_one(_job(tmp_path, repository, WHOLE), WHOLE, restic, from_command=False,
                 tools=_tools(tmp_path))
    assert why in str(failed.value) and "stopped before it wrote a snapshot" in str(failed.value)
    assert restic.snapshots() == []
    assert Restic(repository).locks() == []  # restic was stopped cleanly (SIGINT), lock removed


def test_a_run_whose_dump_fails_makes_no_files_snapshot(tmp_path: Path,
                                                        repository: Repository) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "doc.txt").write_text("document\n")
    missing = DatabaseConfig(name="app", engine="sqlite", database=str(tmp_path / "none.db"))
    status = backup(_job(tmp_path, repository, missing))
    assert (status.result, status.stage) == ("failed", "dump")
    assert status.error is not None and "database app (sqlite" in status.error["message"]
    assert ".backup exited 1" in status.error["message"]
    assert Restic(repository).snapshots() == [] and status.snapshot_id is None
    assert not (tmp_path / "dumps" / "app.json").exists()


def test_a_run_dumps_sqlite_then_backs_up_the_files_with_the_manifest(
        tmp_path: Path, repository: Repository) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "doc.txt").write_text("document\n")
    database = tmp_path / "app.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE documents (id INTEGER, received_at TEXT)")
        connection.executemany("INSERT INTO documents VALUES (?, ?)",
                               [(i, f"2026-12-0{1 + i % 5}T0{i % 10}:00:00Z")
                                for i in range(500)])
    app = DatabaseConfig(name="app", engine="sqlite", database=str(database),
                         tables=("documents",), newest=("documents", "received_at"))
    (tmp_path / "dumps").mkdir()
    (tmp_path / "dumps" / "gone.json").write_text("{}")  # a database no longer configured
    status = backup(_job(tmp_path, repository, app))
    assert status.result == "ok", status.error
    restic = Restic(repository)
    snapshots = restic.snapshots()
    dumps = [s for s in snapshots if is_dump(s)]
    files = [s for s in snapshots if not is_dump(s)]
    assert len(dumps) == 1 and len(files) == 1 and files[0].id.startswith(status.snapshot_id or "-")
    assert set(files[0].paths) == {str(data), str(tmp_path / "dumps")}
    manifest = json.loads((tmp_path / "dumps" / "app.json").read_text())
    assert manifest == {**manifest, "format": 1, "name": "app", "engine": "sqlite",
                        "database": str(database), "snapshot": dumps[0].id,
                        "file": "/app.sqlite3", "tables": {"documents": 500},
                        "newest": {"table": "documents", "column": "received_at",
                                   "time": "2026-12-05T09:00:00+00:00"}}
    assert manifest["bytes"] == database.stat().st_size and status.dumps == [manifest]
    assert not (tmp_path / "dumps" / "gone.json").exists()
    out = tmp_path / "restored"
    restic.restore(files[0].id, out)
    assert json.loads((out / str(tmp_path / "dumps" / "app.json").lstrip("/")).read_text()
                      ) == manifest
    restic.restore(dumps[0].id, out)
    with sqlite3.connect(out / "app.sqlite3") as connection:
        assert connection.execute("SELECT count(*) FROM documents").fetchone() == (500,)


# --- stdin-from-command (restic 0.17+) ----------------------------------------------------------


class CommandRestic:
    """Stands in for restic 0.17+: runs the command as restic would and records it."""

    def __init__(self, tmp_path: Path) -> None:
        self.commands: list[tuple[str, ...]] = []
        self.tmp_path = tmp_path

    def backup_stdin(self, filename: str, tags: Sequence[str] = (), host: str | None = None,
                     *, command: Sequence[str] | None = None,
                     feed: Callable[[IO[bytes]], bool] | None = None) -> BackupResult:
        assert command is not None and feed is None
        self.commands.append(tuple(command))
        done = subprocess.run(command, capture_output=True, check=True)
        return BackupResult(**{**result("9f8e7d6c").__dict__,
                               "total_bytes_processed": len(done.stdout),
                               "snapshot_full_id": "9f8e7d6c" + "0" * 56})

    def snapshots(self, **_: Any) -> list[Snapshot]:
        raise AssertionError("the full ID came with the result")


def test_restic_runs_the_dump_itself_when_it_can(tmp_path: Path) -> None:
    database = tmp_path / "app.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE t (a)")
    app = DatabaseConfig(name="app", engine="sqlite", database=str(database), tables=("t",))
    restic = CommandRestic(tmp_path)
    repo = Repository(url=str(tmp_path / "r"), password_file=tmp_path / "p")
    config = JobConfig(**{**_job_config(tmp_path, repo).__dict__, "databases": (app,)})
    [dumped] = dump_databases(config, restic, from_command=True, tools=_tools(tmp_path))
    assert restic.commands[0][:2] == ("cat", "--")
    assert dumped.snapshot == "9f8e7d6c" + "0" * 56 and dumped.tables == {"t": 0}
    assert not Path(restic.commands[0][2]).exists()  # the private copy is gone


def _job_config(tmp_path: Path, repo: Repository) -> JobConfig:
    return parse_config(config_data(tmp_path, repository={"name": "l", "url": repo.url},
                                    dumps_dir=str(tmp_path / "dumps")))


def test_copy_stream_splices_after_the_watch_is_satisfied() -> None:
    read, write = os.pipe()
    out_read, out_write = os.pipe()
    os.write(write, b"header\n-- Current Database: `x`\n" + b"y" * 1000)
    os.close(write)
    seen: list[bytes] = []

    def watch(chunk: bytes) -> bool:
        seen.append(chunk)
        return sql.MARIADB_BEGUN in chunk
    assert copy_stream(read, out_write, watch) == 1032
    os.close(out_write)
    assert os.read(out_read, 4096).startswith(b"header") and seen


# --- the estate --------------------------------------------------------------------------------


def test_the_estate_refuses_bad_databases_naming_file_and_key(estate_copy: EstateCopy) -> None:
    def change(data: Any) -> None:
        data["backup"]["databases"] = [
            {"name": "dvc", "engine": "postgresql", "database": "dvc",
             "tables": ['applications"; DROP TABLE x; --']},
            {"name": "dvc", "engine": "mariadb", "database": "-e", "all": True},
            {"name": "files", "engine": "sqlite", "database": "srv/app.db"},
            {"name": "Bad Name", "engine": "postgresql", "database": "dvc"},
        ]
    estate_copy.edit("systems/dvc.yml", change)
    found = estate_copy.problems()
    keys = {key for file, key, _ in found if file == "systems/dvc.yml"}
    assert {"backup.databases[0].tables[0]", "backup.databases[1]", "backup.databases[2]",
            "backup.databases[3].name"} <= keys, found
    text = str(found)
    assert "plain database name" in text and "absolute path" in text


def test_all_true_is_for_postgresql_alone_and_names_are_unique(estate_copy: EstateCopy) -> None:
    def change(data: Any) -> None:
        data["backup"]["databases"] = [
            {"name": "dvc", "engine": "postgresql", "database": "dvc", "all": True,
             "tables": ["a"]},
            {"name": "x", "engine": "mariadb", "database": "x", "all": True}]
    estate_copy.edit("systems/dvc.yml", change)
    text = str(estate_copy.problems())
    assert "no tables or newest then" in text and "engine postgresql only" in text

    def twice(data: Any) -> None:
        one = {"name": "dvc", "engine": "postgresql", "database": "dvc"}
        data["backup"]["databases"] = [one, one]
    estate_copy.edit("systems/dvc.yml", twice)
    assert "two databases are named 'dvc'" in str(estate_copy.problems())
