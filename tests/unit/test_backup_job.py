"""The host-side backup job: what it runs in which order, what it reports, and what it never
does (overlap, report a partial backup as a success, let a password out)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from orchestrator import backup_job
from orchestrator.adapters.restic import (
    BackupResult,
    ConnectionLost,
    ForgetResult,
    NoSpace,
    Repository,
    ResticCommandError,
    Retry,
)
from orchestrator.adapters.restic_results import ForgetGroup, Snapshot
from orchestrator.backup_job import (
    AlreadyRunning,
    ConfigError,
    JobConfig,
    backup,
    load_config,
    main,
    parse_config,
    textfile,
    write_status,
)
from orchestrator.process import Completed

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple 7f3a"


def config_data(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "version": 1, "system": "qlvb", "tier": 1, "host": "qlvb-db-01",
        "paths": ["/srv/qlvb"], "exclude": ["*.tmp"],
        "pre_commands": ["sqlite3 /srv/qlvb/app.db '.backup /srv/qlvb/dump/app.db'"],
        "retention": {"hourly": 48, "daily": 14, "weekly": 8, "monthly": 12, "yearly": 0},
        "repository": {"name": "repo-qnam-01", "url": "sftp:restic-qlvb@repo-qnam-01:/repo"},
        "copy": None,
        "password_file": str(tmp_path / "restic-qlvb.password"),
        "cache_dir": str(tmp_path / "cache"),
        "restic": "restic",
        "status_file": str(tmp_path / "state" / "backup-qlvb.json"),
        "textfile": str(tmp_path / "state" / "textfile" / "hopnhat_backup_qlvb.prom"),
        "lock_file": str(tmp_path / "state" / "backup-qlvb.lock"),
        "lock_wait_seconds": 5, "timeout_seconds": 60, "pre_command_timeout_seconds": 30,
    }
    data.update(changes)
    return data


def make_config(tmp_path: Path, **changes: Any) -> JobConfig:
    return parse_config(config_data(tmp_path, **changes))


def result(snapshot: str | None = "1a2b3c4d", *, partial: bool = False,
           errors: tuple[str, ...] = ()) -> BackupResult:
    return BackupResult(snapshot_id=snapshot, files_new=3, files_changed=2, files_unmodified=5,
                        dirs_new=1, dirs_changed=0, dirs_unmodified=2, data_added=1234,
                        total_files_processed=10, total_bytes_processed=98765,
                        total_duration=1.5, partial=partial, errors=errors)


def _snapshot(ident: str) -> Snapshot:
    return Snapshot(id=ident, short_id=ident[:8], time=datetime(2026, 11, 1, tzinfo=UTC),
                    hostname="qlvb-db-01", username="root", paths=("/srv/qlvb",))


class FakeRestic:
    """Stands in for the adapter's Restic: records calls, answers or raises as told."""

    def __init__(self, log: list[tuple[str, Any]], repo: Repository, *,
                 backup_answer: BackupResult | Exception | None = None,
                 forget_error: Exception | None = None,
                 copy_error: Exception | None = None) -> None:
        self.log, self.repo = log, repo
        self.backup_answer = backup_answer if backup_answer is not None else result()
        self.forget_error, self.copy_error = forget_error, copy_error

    def backup(self, paths: Sequence[str | Path], tags: Sequence[str] = (),
               exclude: Sequence[str] = (), host: str | None = None, *,
               on_progress: Any = None, partial_ok: bool = True) -> BackupResult:
        self.log.append(("backup", {"repo": self.repo.url, "paths": list(paths),
                                    "tags": list(tags), "exclude": list(exclude), "host": host,
                                    "partial_ok": partial_ok}))
        if isinstance(self.backup_answer, Exception):
            raise self.backup_answer
        return self.backup_answer

    def forget(self, retention: Any, prune: bool = True, *, host: str | None = None,
               **_: Any) -> ForgetResult:
        self.log.append(("forget", {"retention": dict(retention), "prune": prune,
                                    "host": host}))
        if self.forget_error is not None:
            raise self.forget_error
        return ForgetResult((ForgetGroup("qlvb-db-01", ("/srv/qlvb",), (),
                                         keep=(_snapshot("a" * 64),),
                                         remove=(_snapshot("b" * 64), _snapshot("c" * 64))),),
                            pruned=prune)

    def copy(self, from_repo: Repository, snapshot_ids: Sequence[str] = ()) -> tuple[str, ...]:
        self.log.append(("copy", {"to": self.repo.url, "from": from_repo.url,
                                  "snapshots": list(snapshot_ids)}))
        if self.copy_error is not None:
            raise self.copy_error
        return ()


def fakes(**behaviour: Any) -> tuple[list[tuple[str, Any]], Any, Any]:
    log: list[tuple[str, Any]] = []

    def make(repo: Repository) -> FakeRestic:
        return FakeRestic(log, repo, **behaviour)

    def command(argv: Sequence[str], timeout: float) -> Completed:
        log.append(("command", list(argv)))
        return Completed(tuple(argv), 0, "", "")

    return log, make, command


# --- config ---------------------------------------------------------------------------------


def test_the_config_rendered_by_the_role_is_read_as_written(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert config.tags == ("system=qlvb", "tier=1", "host=qlvb-db-01")
    assert dict(config.retention) == {"hourly": 48, "daily": 14, "weekly": 8, "monthly": 12}
    assert config.restic_repository(config.repository).url == \
        "sftp:restic-qlvb@repo-qnam-01:/repo"
    assert config.restic_repository(config.repository).sftp_command is None


@pytest.mark.parametrize(("change", "fragment"), [
    ({"version": 2}, "config version 2"),
    ({"paths": []}, "'paths'"),
    ({"paths": ["srv/qlvb"]}, "'paths'"),
    ({"pre_commands": ["sqlite3 'unclosed"]}, "pre_commands[1]"),
    ({"retention": {"daily": -1}}, "'retention'"),
    ({"password_file": "relative.password"}, "'password_file'"),
    ({"colour": "red"}, "unknown ['colour']"),
    ({"repository": {"name": "x"}}, "'repository'"),
    ({"lock_wait_seconds": 0}, "'lock_wait_seconds'"),
])
def test_a_bad_config_is_refused_naming_the_key(tmp_path: Path, change: dict[str, Any],
                                                fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config_data(tmp_path, **change), "backup-qlvb.json")
    assert fragment in str(caught.value)
    assert str(caught.value).startswith("backup-qlvb.json")


def test_an_unreadable_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "backup.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError):
        load_config(path)
    assert main(["--config", str(path)]) == 2


REST_REPOSITORY = {"name": "repo-qnam-01", "url": "rest:https://127.20.2.10:8101/qlvb/",
                   "location_file": "/etc/hopnhat/restic-qlvb.repository",
                   "cacert": "/etc/hopnhat/restic-ca.pem"}


def test_a_rest_repository_is_read_with_its_location_file_and_ca(tmp_path: Path) -> None:
    config = make_config(tmp_path, repository=REST_REPOSITORY)
    assert config.repository.location_file == Path("/etc/hopnhat/restic-qlvb.repository")
    assert config.repository.cacert == Path("/etc/hopnhat/restic-ca.pem")
    repo = config.restic_repository(config.repository)
    assert (repo.url, repo.location_file, repo.cacert) == (
        "rest:https://127.20.2.10:8101/qlvb/", Path("/etc/hopnhat/restic-qlvb.repository"),
        Path("/etc/hopnhat/restic-ca.pem"))
    assert (repo.password_file, repo.cache_dir) == (config.password_file, config.cache_dir)
    assert repo.name == "qlvb@repo-qnam-01"


def test_an_sftp_repository_has_no_location_file_or_ca(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    repo = config.restic_repository(config.repository)
    assert (repo.location_file, repo.cacert) == (None, None)


@pytest.mark.parametrize(("change", "fragment"), [
    pytest.param({"cacert": None}, "location_file and cacert go together", id="no-cacert"),
    pytest.param({"location_file": None}, "location_file and cacert go together",
                 id="no-location-file"),
    pytest.param({"location_file": "etc/restic-qlvb.repository"},
                 "'location_file' must be an absolute path", id="relative-location-file"),
    pytest.param({"cacert": "restic-ca.pem"}, "'cacert' must be an absolute path",
                 id="relative-cacert"),
    pytest.param({"cacert": ""}, "non-empty strings", id="empty-cacert"),
    pytest.param({"password": "s3cret"}, "must be {name, url}", id="unknown-key"),
])
def test_a_bad_rest_repository_is_refused_naming_it(tmp_path: Path, change: dict[str, Any],
                                                    fragment: str) -> None:
    repository = {k: v for k, v in {**REST_REPOSITORY, **change}.items() if v is not None}
    with pytest.raises(ConfigError) as caught:
        parse_config(config_data(tmp_path, repository=repository), "backup-qlvb.json")
    assert fragment in str(caught.value)
    assert str(caught.value).startswith("backup-qlvb.json: 'repository'")


def test_a_rest_client_backs_up_through_its_location_file_and_never_forgets(
        tmp_path: Path) -> None:
    """The role renders no retention for a rest client: its server is append-only and the
    control host prunes."""
    log, make, command = fakes()
    opened: list[Repository] = []

    def recording(repo: Repository) -> Any:
        opened.append(repo)
        return make(repo)

    config = make_config(tmp_path, repository=REST_REPOSITORY, retention={})
    status = backup(config, make_restic=recording, run_command=command)
    assert [step for step, _ in log] == ["command", "backup"]
    assert [(r.location_file, r.cacert) for r in opened] == [
        (Path("/etc/hopnhat/restic-qlvb.repository"), Path("/etc/hopnhat/restic-ca.pem"))]
    assert (status.result, status.forget) == ("ok", None)


# --- the run --------------------------------------------------------------------------------


def test_a_run_dumps_then_backs_up_tagged_then_applies_retention(tmp_path: Path) -> None:
    log, make, command = fakes()
    status = backup(make_config(tmp_path), make_restic=make, run_command=command)
    assert [step for step, _ in log] == ["command", "backup", "forget"]
    assert log[0][1] == ["sqlite3", "/srv/qlvb/app.db", ".backup /srv/qlvb/dump/app.db"]
    assert log[1][1] == {"repo": "sftp:restic-qlvb@repo-qnam-01:/repo", "paths": ["/srv/qlvb"],
                         "tags": ["system=qlvb", "tier=1", "host=qlvb-db-01"],
                         "exclude": ["*.tmp"], "host": "qlvb-db-01", "partial_ok": True}
    # a keep-kind of 0 is left out (restic refuses --keep-yearly 0); only this host's snapshots
    assert log[2][1] == {"retention": {"hourly": 48, "daily": 14, "weekly": 8, "monthly": 12},
                         "prune": True, "host": "qlvb-db-01"}
    assert (status.result, status.exit_code, status.error) == ("ok", 0, None)
    assert status.snapshot_id == "1a2b3c4d"
    assert (status.bytes, status.files, status.data_added) == (98765, 10, 1234)
    assert status.forget == {"removed": 2, "kept": 1}
    assert status.last_success == status.last_snapshot is not None


def test_restic_exit_3_is_partial_not_success(tmp_path: Path) -> None:
    log, make, command = fakes(backup_answer=result(partial=True, errors=(
        "/srv/qlvb/documents/a.pdf: read: permission denied",)))
    status = backup(make_config(tmp_path), make_restic=make, run_command=command)
    assert (status.result, status.exit_code) == ("partial", 3)
    assert status.error is not None and status.error["class"] == "IncompleteBackup"
    assert status.warnings == ["/srv/qlvb/documents/a.pdf: read: permission denied"]
    assert status.snapshot_id == "1a2b3c4d"
    assert status.last_success is None  # partial is no success
    assert status.last_snapshot is not None
    assert [step for step, _ in log] == ["command", "backup", "forget"]


def test_a_failing_pre_command_stops_the_run_before_restic(tmp_path: Path) -> None:
    log: list[tuple[str, Any]] = []
    make = fakes()[1]

    def failing(argv: Sequence[str], timeout: float) -> Completed:
        log.append(("command", list(argv)))
        return Completed(tuple(argv), 1, "", 'Error: cannot open "/srv/qlvb/dump/app.db"\n')

    status = backup(make_config(tmp_path), make_restic=make, run_command=failing)
    assert (status.result, status.exit_code, status.stage) == ("failed", 1, "pre_command")
    assert status.error == {"class": "PreCommandFailed", "message":
                            'pre-backup command 1 (sqlite3) exited 1: Error: cannot open '
                            '"/srv/qlvb/dump/app.db"'}
    assert [step for step, _ in log] == ["command"]


def test_a_failed_backup_names_its_class_and_skips_retention(tmp_path: Path) -> None:
    error = NoSpace("restic backup: repository qlvb@repo-qnam-01: no space left",
                    repository="qlvb@repo-qnam-01", command="backup")
    log, make, command = fakes(backup_answer=error)
    status = backup(make_config(tmp_path), make_restic=make, run_command=command)
    assert (status.result, status.exit_code, status.stage) == ("failed", 1, "backup")
    assert status.error == {"class": "NoSpace", "message": str(error)}
    assert status.snapshot_id is None
    assert [step for step, _ in log] == ["command", "backup"]


def test_failed_retention_after_a_good_backup_is_partial(tmp_path: Path) -> None:
    error = ConnectionLost("restic forget: connection lost", command="forget")
    _log, make, command = fakes(forget_error=error)
    status = backup(make_config(tmp_path), make_restic=make, run_command=command)
    assert (status.result, status.exit_code, status.stage) == ("partial", 3, "forget")
    assert status.error is not None and status.error["class"] == "ConnectionLost"


def test_the_second_copy_gets_the_new_snapshot(tmp_path: Path) -> None:
    log, make, command = fakes()
    copy = {"name": "repo-dn-02", "url": "sftp:restic-qlvb@repo-dn-02:/repo"}
    status = backup(make_config(tmp_path, copy=copy), make_restic=make, run_command=command)
    assert log[-1] == ("copy", {"to": "sftp:restic-qlvb@repo-dn-02:/repo",
                                "from": "sftp:restic-qlvb@repo-qnam-01:/repo",
                                "snapshots": ["1a2b3c4d"]})
    assert status.result == "ok"
    assert status.copy is not None and status.copy["result"] == "ok"


def test_a_failed_second_copy_is_partial(tmp_path: Path) -> None:
    _log, make, command = fakes(copy_error=ConnectionLost("restic copy: lost", command="copy"))
    copy = {"name": "repo-dn-02", "url": "sftp:restic-qlvb@repo-dn-02:/repo"}
    status = backup(make_config(tmp_path, copy=copy), make_restic=make, run_command=command)
    assert (status.result, status.exit_code, status.stage) == ("partial", 3, "copy")
    assert status.copy is not None and status.copy["result"] == "failed"


def test_a_failure_keeps_the_time_of_the_last_success(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    _log, make, command = fakes()
    first = backup(config, make_restic=make, run_command=command)
    write_status(config, first)
    _, failing, _ = fakes(backup_answer=ConnectionLost("lost", command="backup"))
    second = backup(config, make_restic=failing, run_command=command)
    assert second.result == "failed"
    assert second.last_success == first.last_success is not None


def test_a_second_run_is_refused_while_the_first_holds_the_lock(tmp_path: Path,
                                                               capsys: Any) -> None:
    config = make_config(tmp_path)
    config.lock_file.parent.mkdir(parents=True)
    config_file = tmp_path / "backup-qlvb.json"
    config_file.write_text(json.dumps(config_data(tmp_path)))
    log, make, command = fakes()
    with open(config.lock_file, "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        holder.write("PID 4242 since 2026-11-21T10:00:00Z\n")
        holder.flush()
        with pytest.raises(AlreadyRunning) as caught:
            backup(config, make_restic=make, run_command=command)
        assert "PID 4242" in str(caught.value)
        assert main(["--config", str(config_file)]) == 1
    assert log == []  # nothing ran: not even the pre-command
    assert not config.status_file.exists()  # the running job's status stays its own
    refused = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert refused["result"] == "refused"
    assert refused["error"]["class"] == "AlreadyRunning"


# --- the status files -----------------------------------------------------------------------


def test_the_status_file_and_textfile_are_written_whole(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    _log, make, command = fakes()
    status = backup(config, make_restic=make, run_command=command)
    write_status(config, status)
    data = json.loads(config.status_file.read_text())
    for key in ("time", "snapshot_id", "bytes", "files", "duration_seconds", "result", "error"):
        assert key in data
    assert data["result"] == "ok"
    families = {f.name: f for f in text_string_to_metric_families(config.textfile.read_text())}
    results = {s.labels["result"]: s.value for s in families["hopnhat_backup_result"].samples}
    assert results == {"ok": 1.0, "partial": 0.0, "failed": 0.0}
    sample = families["hopnhat_backup_bytes_processed"].samples[0]
    assert sample.labels == {"system": "qlvb", "host": "qlvb-db-01", "tier": "1"}
    assert sample.value == 98765
    assert "hopnhat_backup_last_success_timestamp_seconds" in families
    assert [p.name for p in config.textfile.parent.iterdir()] == [config.textfile.name]


def test_textfile_label_values_are_escaped(tmp_path: Path) -> None:
    status = backup_job.Status("qlvb", 1, 'odd"host\\name', "repo", datetime.now(UTC))
    families = list(text_string_to_metric_families(textfile(status)))
    assert families[0].samples[0].labels["host"] == 'odd"host\\name'


# --- with a real restic (a local repository) ------------------------------------------------


@pytest.fixture
def local_repository(tmp_path: Path) -> dict[str, Any]:
    if shutil.which("restic") is None:
        pytest.skip("restic is not installed")
    password = tmp_path / "restic.password"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    repo = tmp_path / "repo"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
           "RESTIC_PASSWORD_FILE": str(password)}
    subprocess.run(["restic", "--repo", str(repo), "--no-cache", "init"], env=env, check=True,
                   capture_output=True)
    data = tmp_path / "data"
    (data / "documents").mkdir(parents=True)
    for number in range(5):
        (data / "documents" / f"doc-{number}.txt").write_text(f"document {number}\n" * 100)
    config = config_data(tmp_path, paths=[str(data)], pre_commands=[],
                         repository={"name": "local", "url": str(repo)},
                         password_file=str(password), restic=shutil.which("restic"))
    path = tmp_path / "backup-qlvb.json"
    path.write_text(json.dumps(config))
    return {"config": path, "data": data, "repo": repo, "env": env}


def _run_job(config: Path) -> subprocess.CompletedProcess[str]:
    # as the service runs it: the host's python, the job as a script
    return subprocess.run([sys.executable, str(REPO / "orchestrator" / "backup_job.py"),
                           "--config", str(config)], capture_output=True, text=True,
                          timeout=120, cwd="/")


def test_a_real_run_makes_a_tagged_snapshot_and_keeps_the_password_out(
        local_repository: dict[str, Any]) -> None:
    done = _run_job(local_repository["config"])
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["result"] == "ok" and status["files"] == 5
    listed = subprocess.run(["restic", "--repo", str(local_repository["repo"]), "--no-cache",
                             "snapshots", "--json"], env=local_repository["env"],
                            capture_output=True, text=True, check=True)
    snapshots = json.loads(listed.stdout)
    assert [s["short_id"] for s in snapshots] == [status["snapshot_id"]]
    assert snapshots[0]["tags"] == ["system=qlvb", "tier=1", "host=qlvb-db-01"]
    assert snapshots[0]["hostname"] == "qlvb-db-01"
    config = load_config(local_repository["config"])
    for text in (done.stdout, done.stderr, config.status_file.read_text(),
                 config.textfile.read_text(), local_repository["config"].read_text()):
        assert PASSWORD not in text


def test_a_real_run_with_a_missing_path_is_partial_with_exit_3(
        local_repository: dict[str, Any]) -> None:
    data = json.loads(local_repository["config"].read_text())
    data["paths"].append(str(local_repository["data"] / "no-such-folder"))
    local_repository["config"].write_text(json.dumps(data))
    done = _run_job(local_repository["config"])
    assert done.returncode == 3, done.stderr
    status = json.loads(done.stdout)
    assert status["result"] == "partial"
    assert status["snapshot_id"]


# --- what the backup_schedule role copies to hosts ------------------------------------------


def test_the_modules_the_role_copies_are_all_the_job_imports(tmp_path: Path) -> None:
    """The job runs on a host from <library dir>/backup_job.py with exactly the modules the
    backup_schedule role lists (vars/main.yml), under the host's python, isolated from the
    project: every import must resolve."""
    role_vars = yaml.safe_load((REPO / "playbooks/roles/backup_schedule/vars/main.yml")
                               .read_text())
    library = tmp_path / "lib"
    (library / "orchestrator").mkdir(parents=True)
    shutil.copy(REPO / "orchestrator" / "backup_job.py", library / "backup_job.py")
    for module in role_vars["__backup_schedule_modules"]:
        target = library / "orchestrator" / module
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "orchestrator" / module, target)
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    done = subprocess.run([python, "-E", "-s", str(library / "backup_job.py"), "--help"],
                          capture_output=True, text=True, cwd="/", env={"PATH": "/usr/bin:/bin"},
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--config" in done.stdout
    loaded = subprocess.run(
        [python, "-E", "-s", "-c", "import sys; sys.path.insert(0, sys.argv[1]); import backup_job;"
         "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('orchestrator'))))",
         str(library)], capture_output=True, text=True, cwd="/", timeout=60,
        env={"PATH": "/usr/bin:/bin"})
    assert loaded.returncode == 0, loaded.stderr
    copied = {("orchestrator." + m.removesuffix(".py").replace("/", ".")).removesuffix(".__init__")
              for m in role_vars["__backup_schedule_modules"]}
    assert set(loaded.stdout.split()) == copied  # all it needs, and nothing copied in vain


# --- a full repository: judged from the storage's free space ------------------------------

FULL = backup_job.Space(total=40 * 1024 * 1024, free=3 * 1024 * 1024)
ROOMY = backup_job.Space(total=40 * 1024 * 1024, free=38 * 1024 * 1024)
WRITE_FAILED = 'Write: sftp: "Failure" (SSH_FX_FAILURE)'


def test_the_free_space_of_an_sftp_repository_is_asked_with_sftps_df() -> None:
    assert backup_job.make_sftp_df_argv("sftp:restic-qlvb@repo-qnam-01:/repo") == (
        ("sftp", "-q", "-b", "-", "restic-qlvb@repo-qnam-01"), 'df "/repo"\n')
    assert backup_job.make_sftp_df_argv("sftp://restic-qlvb@repo:2222//repo") == (
        ("sftp", "-q", "-b", "-", "-P", "2222", "restic-qlvb@repo"), 'df "/repo"\n')
    assert backup_job.make_sftp_df_argv("rest:https://example/repo") is None
    text = ("sftp> df \"/repo\"\n        Size         Used        Avail       (root)    %Capacity\n"
            "       40960        37888         3072         3072          92%\n")
    assert backup_job.parse_sftp_df(text) == backup_job.Space(40960 * 1024, 3072 * 1024)
    assert backup_job.parse_sftp_df("sftp> df /repo\nsftp: server has no statvfs\n") is None


def _no_space(config: JobConfig) -> NoSpace:
    return NoSpace(f"restic backup: repository qlvb: no space left ({WRITE_FAILED})",
                   repository="qlvb", command="backup", detail=WRITE_FAILED)


@pytest.mark.parametrize(("space", "kind", "words"), [
    (FULL, NoSpace, "has 3.0 MiB free of 40.0 MiB"),
    (ROOMY, ResticCommandError, "not a full disk"),
    (None, NoSpace, "no space left ("),
])
def test_a_guessed_no_space_is_decided_by_the_free_space(
        tmp_path: Path, space: backup_job.Space | None, kind: type[Exception], words: str) -> None:
    config = make_config(tmp_path)
    status = backup_job.Status("qlvb", 1, "qlvb-db-01", "qlvb", started=datetime.now(UTC))
    judged = backup_job.judge_space(_no_space(config), config.repository, status,
                                    lambda repository: space)
    assert type(judged) is kind and words in str(judged)
    assert (status.repository_space is None) is (space is None)


def test_a_failed_write_on_a_full_storage_stops_restic_and_a_roomy_one_does_not(
        tmp_path: Path) -> None:
    config = make_config(tmp_path)
    reads: list[str] = []

    def read(space: backup_job.Space) -> backup_job.SpaceReader:
        def reader(repository: backup_job.RepositoryConfig) -> backup_job.Space:
            reads.append(repository.name)
            return space
        return reader
    retry = Retry("Save", "<data/f5e7222fc9>", WRITE_FAILED)
    full = backup_job.full_storage(config.repository, read(FULL))
    reason = full(retry)
    assert reason is not None and "repo-qnam-01 has 3.0 MiB free" in reason
    assert full(retry) is not None and reads == ["repo-qnam-01"]  # read once, not per retry
    assert full(Retry("Load", "<data/x>", WRITE_FAILED)) is None  # not a write
    assert full(Retry("Save", "<data/x>", "timeout")) is None
    assert backup_job.full_storage(config.repository, read(ROOMY))(retry) is None


# --- restic's version, asked once per binary ------------------------------------------------


def _counting_restic(tmp_path: Path, version: str) -> tuple[Path, Path]:
    """A stand-in ``restic`` that answers ``version`` and counts how often it was asked."""
    calls = tmp_path / "version-calls"
    binary = tmp_path / "bin" / "restic"
    binary.parent.mkdir(exist_ok=True)
    binary.write_text(f"#!/bin/sh\necho x >> {calls}\n"
                      f"echo 'restic {version} compiled with go1.19.8 on linux/amd64'\n")
    binary.chmod(0o755)
    return binary, calls


def test_restics_version_is_asked_once_and_kept_for_that_binary(tmp_path: Path) -> None:
    binary, calls = _counting_restic(tmp_path, "0.14.0")
    config = make_config(tmp_path, restic=str(binary))
    assert backup_job.restic_version(config) == (0, 14, 0)
    assert backup_job.restic_version(config) == (0, 14, 0)
    assert calls.read_text().count("x") == 1  # the second run read the cache
    cache = json.loads((config.status_file.parent / "restic-version.json").read_text())
    assert cache["version"] == [0, 14, 0] and cache["binary"][0] == str(binary)


def test_a_replaced_restic_is_asked_again(tmp_path: Path) -> None:
    binary, calls = _counting_restic(tmp_path, "0.14.0")
    config = make_config(tmp_path, restic=str(binary))
    assert backup_job.restic_version(config) == (0, 14, 0)
    upgraded, _ = _counting_restic(tmp_path, "0.17.3")  # new file: size and mtime differ
    os.utime(upgraded, ns=(1, 1))
    assert backup_job.restic_version(config) == (0, 17, 3)
    assert calls.read_text().count("x") == 2


def test_a_damaged_version_cache_is_asked_again_and_a_missing_restic_gives_none(
        tmp_path: Path) -> None:
    binary, calls = _counting_restic(tmp_path, "0.16.4")
    assert not calls.exists()
    config = make_config(tmp_path, restic=str(binary))
    config.status_file.parent.mkdir(parents=True)
    cache = config.status_file.parent / "restic-version.json"
    cache.write_text("{not json")
    assert backup_job.restic_version(config) == (0, 16, 4)
    without_version = {"binary": json.loads(cache.read_text())["binary"]}
    for damaged in ("[]", json.dumps(without_version)):
        cache.write_text(damaged)
        assert backup_job.restic_version(config) == (0, 16, 4)
    assert calls.read_text().count("x") == 3  # asked each time, never trusted
    assert backup_job.restic_version(make_config(tmp_path, restic="no-such-restic")) is None


def test_the_run_says_which_restic_version_ran(tmp_path: Path) -> None:
    # the job's real restic (no stand-in factory): its version goes into the status
    # document, which `backup run` and `backup status` show; here the backup fails (no
    # password file), and the version is still said
    binary, calls = _counting_restic(tmp_path, "0.18.1")
    config = make_config(tmp_path, restic=str(binary), pre_commands=[])
    status = backup(config)
    assert status.result == "failed" and status.stage == "backup"
    assert status.error is not None and "password file" in status.error["message"]
    assert status.as_dict()["restic_version"] == "0.18.1"
    assert calls.read_text().count("x") == 1  # asked once, for the whole run
    assert backup(make_config(tmp_path, restic="no-such-restic", pre_commands=[])
                  ).as_dict()["restic_version"] is None
