"""The estate's choice of restic: the distribution's, or a pinned binary with its SHA-256."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from orchestrator.actions.configure import check_restic_binary
from orchestrator.errors import PlanError
from orchestrator.estate.inventory import restic_vars
from orchestrator.settings import Paths
from tests.helpers import EstateCopy

SHA = "ab" * 32


def pin(estate_copy: EstateCopy, restic: dict[str, Any]) -> None:
    estate_copy.edit("estate.yml", lambda data: data.update(restic=restic))


def test_by_default_hosts_and_hopnhat_run_the_distributions_restic(
        estate_copy: EstateCopy, tmp_path: Path) -> None:
    paths = Paths(tmp_path / "state", estate_copy.load())
    assert paths.restic_binary == "restic"
    assert restic_vars(paths) == {"hopnhat_restic_binary": "/usr/bin/restic",
                                  # the estate's ssh keep-alive bound, also restic's
                                  "restic_client_server_alive_interval": 15,
                                  "restic_client_server_alive_count_max": 4}
    check_restic_binary(paths)  # nothing to check


def test_a_pinned_binary_is_shipped_to_its_own_path_and_run_here_too(
        estate_copy: EstateCopy, tmp_path: Path) -> None:
    pin(estate_copy, {"binary": "lab/bin/restic-0.18.1", "sha256": SHA})
    paths = Paths(tmp_path / "state", estate_copy.load())
    assert paths.restic_binary == str(tmp_path / "state" / "lab/bin/restic-0.18.1")
    assert restic_vars(paths) == {
        "hopnhat_restic_binary": f"/usr/local/lib/hopnhat/restic-{SHA[:16]}",
        "hopnhat_restic_source": str(tmp_path / "state" / "lab/bin/restic-0.18.1"),
        "hopnhat_restic_sha256": SHA, "restic_client_server_alive_interval": 15,
        "restic_client_server_alive_count_max": 4}


@pytest.mark.parametrize(("restic", "key", "fragment"), [
    ({"binary": "/opt/restic"}, "restic", "binary and sha256 go together"),
    ({"sha256": SHA}, "restic", "binary and sha256 go together"),
    ({"binary": "/opt/restic", "sha256": "ABCD"}, "restic.sha256", "should match pattern"),
    ({"binary": "", "sha256": SHA}, "restic.binary", "at least 1 character"),
    ({"binary": "/opt/restic", "sha256": SHA, "version": "0.18"}, "restic.version",
     "unknown key"),
])
def test_an_incomplete_or_malformed_choice_is_named(estate_copy: EstateCopy,
                                                    restic: dict[str, Any], key: str,
                                                    fragment: str) -> None:
    pin(estate_copy, restic)
    estate_copy.assert_only_problems(("estate.yml", key, fragment))


def test_a_binary_whose_checksum_differs_is_refused_by_name(estate_copy: EstateCopy,
                                                            tmp_path: Path) -> None:
    binary = tmp_path / "restic"
    binary.write_bytes(b"#!/bin/sh\necho not restic\n")
    pin(estate_copy, {"binary": str(binary), "sha256": SHA})
    paths = Paths(tmp_path / "state", estate_copy.load())
    with pytest.raises(PlanError) as caught:
        check_restic_binary(paths)
    assert caught.value.exit_code == 2
    real = hashlib.sha256(binary.read_bytes()).hexdigest()
    assert str(caught.value) == (f"estate.yml: restic.binary: {binary}: refused, its SHA-256 "
                                 f"{real} is not restic.sha256 {SHA}")

    pin(estate_copy, {"binary": str(binary), "sha256": real})
    check_restic_binary(Paths(tmp_path / "state", estate_copy.load()))


def test_a_missing_binary_is_named(estate_copy: EstateCopy, tmp_path: Path) -> None:
    pin(estate_copy, {"binary": str(tmp_path / "nowhere"), "sha256": SHA})
    with pytest.raises(PlanError, match=r"restic\.binary: .*nowhere: No such file"):
        check_restic_binary(Paths(tmp_path / "state", estate_copy.load()))
