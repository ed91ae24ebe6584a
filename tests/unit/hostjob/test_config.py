"""The job's config: read as the role renders it, and a bad one refused naming the file and
the key, before anything runs (exit 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.hostjob.backup_job import main
from orchestrator.hostjob.config import ConfigError, load_config, parse_config
from tests.unit.hostjob.fakes import REST_REPOSITORY, config_data, make_config


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
