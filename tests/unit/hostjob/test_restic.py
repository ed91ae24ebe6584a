"""restic's version: asked once per binary and kept beside the status file, asked again for
another binary or a damaged cache, and said in the status document."""

from __future__ import annotations

import json
import os
from pathlib import Path

from orchestrator.hostjob.restic import restic_version
from orchestrator.hostjob.run import backup
from tests.unit.hostjob.fakes import make_config


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
    assert restic_version(config) == (0, 14, 0)
    assert restic_version(config) == (0, 14, 0)
    assert calls.read_text().count("x") == 1  # the second run read the cache
    cache = json.loads((config.status_file.parent / "restic-version.json").read_text())
    assert cache["version"] == [0, 14, 0] and cache["binary"][0] == str(binary)


def test_a_replaced_restic_is_asked_again(tmp_path: Path) -> None:
    binary, calls = _counting_restic(tmp_path, "0.14.0")
    config = make_config(tmp_path, restic=str(binary))
    assert restic_version(config) == (0, 14, 0)
    upgraded, _ = _counting_restic(tmp_path, "0.17.3")  # new file: size and mtime differ
    os.utime(upgraded, ns=(1, 1))
    assert restic_version(config) == (0, 17, 3)
    assert calls.read_text().count("x") == 2


def test_a_damaged_version_cache_is_asked_again_and_a_missing_restic_gives_none(
        tmp_path: Path) -> None:
    binary, calls = _counting_restic(tmp_path, "0.16.4")
    assert not calls.exists()
    config = make_config(tmp_path, restic=str(binary))
    config.status_file.parent.mkdir(parents=True)
    cache = config.status_file.parent / "restic-version.json"
    cache.write_text("{not json")
    assert restic_version(config) == (0, 16, 4)
    without_version = {"binary": json.loads(cache.read_text())["binary"]}
    for damaged in ("[]", json.dumps(without_version)):
        cache.write_text(damaged)
        assert restic_version(config) == (0, 16, 4)
    assert calls.read_text().count("x") == 3  # asked each time, never trusted
    assert restic_version(make_config(tmp_path, restic="no-such-restic")) is None


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
