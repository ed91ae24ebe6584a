"""One run: what it runs in which order, and what it reports — a partial backup never as a
success, a failure of any stage with its class and stage."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrator.adapters.restic import ConnectionLost, NoSpace, Repository
from orchestrator.hostjob.backup_job import write_status
from orchestrator.hostjob.run import backup
from orchestrator.process import Completed
from tests.unit.hostjob.fakes import REST_REPOSITORY, fakes, make_config, result


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
