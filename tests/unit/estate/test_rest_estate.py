"""A rest repository host in the estate: the host's own settings (protocol, maintenance
port, CA) and each system's on it (its own port, its quota, its password's vault key),
checked across files. Each test plants one error in a copy of the example estate, whose
repository host serves REST, and names the problem it must report."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator.estate.model import Backup, SecretRef
from tests.helpers import EstateCopy

REST_HOST = "repo-qnam-01"
SFTP_HOST = {"name": "repo-qnam-02", "site": "quangnam", "address": "127.20.2.11",
             "storage_path": "/srv/restic", "capacity_gb": 500, "protocol": "sftp"}


def rest_host(estate_copy: EstateCopy, **changes: Any) -> None:
    """Change the example's rest repository host (``None`` removes a key)."""

    def change(data: dict[str, Any]) -> None:
        host = data["repository_hosts"][0]
        assert host["name"] == REST_HOST and host["protocol"] == "rest"
        for key, value in changes.items():
            if value is None:
                host.pop(key, None)
            else:
                host[key] = value

    estate_copy.edit("estate.yml", change)


def backup(estate_copy: EstateCopy, code: str, **changes: Any) -> None:
    """Change system ``code``'s backup section (``None`` removes a key)."""

    def change(data: dict[str, Any]) -> None:
        for key, value in changes.items():
            if value is None:
                data["backup"].pop(key, None)
            else:
                data["backup"][key] = value

    estate_copy.edit(f"systems/{code}.yml", change)


def add_sftp_host(estate_copy: EstateCopy) -> None:
    estate_copy.edit("estate.yml", lambda data: data["repository_hosts"].append(SFTP_HOST))


# --- the repository host --------------------------------------------------------------------

def test_the_example_estate_serves_rest_and_loads(estate_copy: EstateCopy) -> None:
    estate = estate_copy.load()
    host = estate.repository_host(REST_HOST)
    assert (host.protocol, host.maintenance_port, host.tls_ca) == ("rest", 8000, "pki/ca.pem")
    assert host.maintenance_user == "hopnhat-maintenance"
    assert host.maintenance_secret == "rest_maintenance_repo_qnam_01"


@pytest.mark.parametrize("missing", ["maintenance_port", "tls_ca"])
def test_a_rest_host_without_maintenance_port_or_ca_is_refused(estate_copy: EstateCopy,
                                                                missing: str) -> None:
    rest_host(estate_copy, **{missing: None})
    estate_copy.assert_only_problems(
        ("estate.yml", "repository_hosts[0]", "a rest repository host needs maintenance_port"))


def test_a_maintenance_port_equal_to_the_ssh_port_is_refused(estate_copy: EstateCopy) -> None:
    rest_host(estate_copy, port=2222, maintenance_port=2222)
    estate_copy.assert_only_problems(
        ("estate.yml", "repository_hosts[0]", "maintenance_port 2222 is the ssh port"))


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"maintenance_port": 8000, "tls_ca": None}, "maintenance_port and tls_ca are for"),
    ({"maintenance_port": None, "tls_ca": "pki/ca.pem"}, "maintenance_port and tls_ca are for"),
])
def test_an_sftp_host_with_rest_settings_is_refused(estate_copy: EstateCopy,
                                                     changes: dict[str, Any],
                                                     fragment: str) -> None:
    estate_copy.edit("estate.yml", lambda data: data["repository_hosts"].append(
        {**SFTP_HOST, **{k: v for k, v in changes.items() if v is not None}}))
    index = len(estate_copy.data("estate.yml")["repository_hosts"]) - 1
    estate_copy.assert_only_problems(("estate.yml", f"repository_hosts[{index}]", fragment))


def test_a_host_that_leaves_protocol_out_serves_sftp(estate_copy: EstateCopy) -> None:
    host = {k: v for k, v in SFTP_HOST.items() if k != "protocol"}
    estate_copy.edit("estate.yml", lambda data: data["repository_hosts"].append(host))
    assert estate_copy.load().repository_host("repo-qnam-02").protocol == "sftp"


# --- a system on a rest host ----------------------------------------------------------------

def test_a_system_on_a_rest_host_without_its_port_is_named(estate_copy: EstateCopy) -> None:
    backup(estate_copy, "dvc", port=None)
    estate_copy.assert_only_problems(
        ("systems/dvc.yml", "backup.port", f"repository host {REST_HOST!r} serves REST"))


def test_two_systems_with_one_port_on_one_host_name_the_second_and_the_first(
        estate_copy: EstateCopy) -> None:
    backup(estate_copy, "email", port=8104)  # dvc's
    problems = estate_copy.assert_only_problems(
        ("systems/email.yml", "backup.port", "is system 'dvc'"))
    assert f"port 8104 of {REST_HOST!r}" in problems[0][2]


def test_one_port_on_two_hosts_is_no_conflict(estate_copy: EstateCopy) -> None:
    """Ports are per host: the same number on another rest host is another server."""
    second = {**SFTP_HOST, "protocol": "rest", "maintenance_port": 8000, "tls_ca": "pki/ca.pem"}
    estate_copy.edit("estate.yml", lambda data: data["repository_hosts"].append(second))
    backup(estate_copy, "email", repository_host="repo-qnam-02", port=8104)
    assert estate_copy.load().systems["email"].backup.port == 8104  # type: ignore[union-attr]


@pytest.mark.parametrize(("port", "what"), [(8000, "its maintenance port"),
                                            (22, "its ssh port")])
def test_a_system_port_taken_by_the_host_itself_is_named(estate_copy: EstateCopy, port: int,
                                                         what: str) -> None:
    backup(estate_copy, "dvc", port=port)
    estate_copy.assert_only_problems(
        ("systems/dvc.yml", "backup.port", f"port {port} of {REST_HOST!r} is {what}"))


def test_a_second_copy_pushed_by_a_rest_client_is_refused(estate_copy: EstateCopy) -> None:
    add_sftp_host(estate_copy)
    backup(estate_copy, "dvc", copy={"repository_host": "repo-qnam-02"})
    estate_copy.assert_only_problems(
        ("systems/dvc.yml", "backup.copy", "never pushed by a client"))


def test_rest_settings_of_a_system_on_an_sftp_host_are_refused(estate_copy: EstateCopy) -> None:
    add_sftp_host(estate_copy)
    backup(estate_copy, "dvc", repository_host="repo-qnam-02",
           rest_password={"vault": "rest_password_dvc"})
    estate_copy.assert_only_problems(
        ("systems/dvc.yml", "backup.port", "serves SFTP: backup.port is for a rest"),
        ("systems/dvc.yml", "backup.quota_gb", "serves SFTP: backup.quota_gb is for a rest"),
        ("systems/dvc.yml", "backup.rest_password", "backup.rest_password is for a rest"))


def test_a_system_on_an_sftp_host_without_rest_settings_loads(estate_copy: EstateCopy) -> None:
    add_sftp_host(estate_copy)
    backup(estate_copy, "dvc", repository_host="repo-qnam-02", port=None, quota_gb=None)
    assert estate_copy.load().systems["dvc"].backup.repository_host == "repo-qnam-02"  # type: ignore[union-attr]


@pytest.mark.parametrize(("quota", "fragment"), [
    pytest.param(float("inf"), "finite number", id="infinite"),
    pytest.param(float("nan"), "finite number", id="nan"),
    pytest.param(0, "greater than 0", id="zero"),
    pytest.param(-5, "greater than 0", id="negative"),
])
def test_a_quota_that_is_not_a_positive_size_is_refused(estate_copy: EstateCopy, quota: float,
                                                        fragment: str) -> None:
    backup(estate_copy, "dvc", quota_gb=quota)
    estate_copy.assert_only_problems(("systems/dvc.yml", "backup.quota_gb", fragment))


@pytest.mark.parametrize("port", [0, 65536])
def test_a_port_outside_tcps_range_is_refused(estate_copy: EstateCopy, port: int) -> None:
    backup(estate_copy, "dvc", port=port)
    estate_copy.assert_only_problems(("systems/dvc.yml", "backup.port", "than or equal to"))


# --- the vault key of a system's rest password ----------------------------------------------

def _backup(**changes: Any) -> Backup:
    return Backup.model_validate({"repository_host": REST_HOST,
                                  "password": {"vault": "restic_password_dvc"},
                                  "paths": ["/srv/dvc"], "schedule": "daily", **changes})


def test_a_systems_rest_password_is_rest_password_code_unless_named() -> None:
    assert _backup().rest_secret("dvc") == "rest_password_dvc"
    named = _backup(rest_password={"vault": "dvc_rest"})
    assert named.rest_password == SecretRef(vault="dvc_rest")
    assert named.rest_secret("dvc") == "dvc_rest"


def test_a_rest_password_in_plain_text_is_refused(estate_copy: EstateCopy) -> None:
    backup(estate_copy, "dvc", rest_password="hunter2")
    estate_copy.assert_only_problems(("systems/dvc.yml", "backup.rest_password", "plain text"))
