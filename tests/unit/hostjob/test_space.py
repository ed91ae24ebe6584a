"""A full repository, judged from the storage's free space: asked with sftp's df, a guessed
"no space" decided by it, and restic stopped at its first retry of a write that cannot
succeed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.adapters.restic import NoSpace, ResticCommandError, Retry
from orchestrator.hostjob import space as job_space
from orchestrator.hostjob.config import JobConfig, RepositoryConfig
from orchestrator.hostjob.space import Space, SpaceReader
from orchestrator.hostjob.status import Status
from tests.unit.hostjob.fakes import make_config

FULL = Space(total=40 * 1024 * 1024, free=3 * 1024 * 1024)
ROOMY = Space(total=40 * 1024 * 1024, free=38 * 1024 * 1024)
WRITE_FAILED = 'Write: sftp: "Failure" (SSH_FX_FAILURE)'


def test_the_free_space_of_an_sftp_repository_is_asked_with_sftps_df() -> None:
    assert job_space.make_sftp_df_argv("sftp:restic-qlvb@repo-qnam-01:/repo") == (
        ("sftp", "-q", "-b", "-", "restic-qlvb@repo-qnam-01"), 'df "/repo"\n')
    assert job_space.make_sftp_df_argv("sftp://restic-qlvb@repo:2222//repo") == (
        ("sftp", "-q", "-b", "-", "-P", "2222", "restic-qlvb@repo"), 'df "/repo"\n')
    assert job_space.make_sftp_df_argv("rest:https://example/repo") is None
    text = ("sftp> df \"/repo\"\n        Size         Used        Avail       (root)    %Capacity\n"
            "       40960        37888         3072         3072          92%\n")
    assert job_space.parse_sftp_df(text) == Space(40960 * 1024, 3072 * 1024)
    assert job_space.parse_sftp_df("sftp> df /repo\nsftp: server has no statvfs\n") is None


def _no_space(config: JobConfig) -> NoSpace:
    return NoSpace(f"restic backup: repository qlvb: no space left ({WRITE_FAILED})",
                   repository="qlvb", command="backup", detail=WRITE_FAILED)


@pytest.mark.parametrize(("space", "kind", "words"), [
    (FULL, NoSpace, "has 3.0 MiB free of 40.0 MiB"),
    (ROOMY, ResticCommandError, "not a full disk"),
    (None, NoSpace, "no space left ("),
])
def test_a_guessed_no_space_is_decided_by_the_free_space(
        tmp_path: Path, space: Space | None, kind: type[Exception], words: str) -> None:
    config = make_config(tmp_path)
    status = Status("qlvb", 1, "qlvb-db-01", "qlvb", started=datetime.now(UTC))
    judged = job_space.judge_space(_no_space(config), config.repository, status,
                                    lambda repository: space)
    assert type(judged) is kind and words in str(judged)
    assert (status.repository_space is None) is (space is None)


def test_a_failed_write_on_a_full_storage_stops_restic_and_a_roomy_one_does_not(
        tmp_path: Path) -> None:
    config = make_config(tmp_path)
    reads: list[str] = []

    def read(space: Space) -> SpaceReader:
        def reader(repository: RepositoryConfig) -> Space:
            reads.append(repository.name)
            return space
        return reader
    retry = Retry("Save", "<data/f5e7222fc9>", WRITE_FAILED)
    full = job_space.full_storage(config.repository, read(FULL))
    reason = full(retry)
    assert reason is not None and "repo-qnam-01 has 3.0 MiB free" in reason
    assert full(retry) is not None and reads == ["repo-qnam-01"]  # read once, not per retry
    assert full(Retry("Load", "<data/x>", WRITE_FAILED)) is None  # not a write
    assert full(Retry("Save", "<data/x>", "timeout")) is None
    assert job_space.full_storage(config.repository, read(ROOMY))(retry) is None
