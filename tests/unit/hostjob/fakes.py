"""What the host job's tests share: a config as the role renders it, restic's answers, and a
stand-in restic and command runner that record what the job asked of them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.adapters.restic import BackupResult, ForgetResult, Repository
from orchestrator.adapters.restic_results import ForgetGroup, Snapshot
from orchestrator.hostjob.config import JobConfig, parse_config
from orchestrator.process import Completed

PASSWORD = "correct horse battery staple 7f3a"
REST_REPOSITORY = {"name": "repo-qnam-01", "url": "rest:https://127.20.2.10:8101/qlvb/",
                   "location_file": "/etc/hopnhat/restic-qlvb.repository",
                   "cacert": "/etc/hopnhat/restic-ca.pem"}


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
