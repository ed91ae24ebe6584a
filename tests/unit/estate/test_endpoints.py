"""Where a system's rest repository is, as a client and as the control host reach it; the
vault keys a rest host implies; its htpasswd lines."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import bcrypt
import pytest

from orchestrator.estate import Estate, load_estate
from orchestrator.estate.endpoints import (
    client_location,
    client_url,
    htpasswd_line,
    maintenance_location,
    maintenance_url,
    rest_secret_keys,
    rest_systems,
)
from orchestrator.estate.model import RepositoryHost
from tests.helpers import EXAMPLE_ESTATE, EstateCopy

HOST = RepositoryHost.model_validate({
    "name": "repo-qnam-01", "site": "quangnam", "address": "127.20.2.10",
    "storage_path": "/srv/restic", "capacity_gb": 100, "protocol": "rest",
    "maintenance_port": 8000, "tls_ca": "pki/ca.pem"})
AWKWARD = "p/a@ss:w%rd 50%?#"

EXAMPLE_PORTS = {"dvc": 8104, "email": 8107, "ioc": 8108, "lgsp": 8106, "opendata": 8109,
                 "qlvb": 8101, "qlvbdn": 8102, "qlvbqn": 8103, "sso": 8105, "video": 8110}


@pytest.fixture(scope="module")
def example() -> Estate:
    return load_estate(EXAMPLE_ESTATE)


def test_urls_name_the_systems_repository_without_credentials() -> None:
    assert client_url(HOST, "dvc", 8104) == "rest:https://127.20.2.10:8104/dvc/"
    assert maintenance_url(HOST, "dvc") == "rest:https://127.20.2.10:8000/dvc/dvc/"


@pytest.mark.parametrize("password", ["plain", AWKWARD, "ü/é@:"])
def test_a_client_location_carries_its_password_so_it_parses_back(password: str) -> None:
    location = client_location(HOST, "dvc", 8104, password)
    assert location.startswith("rest:")
    url = urlsplit(location.removeprefix("rest:"))
    assert (url.scheme, url.hostname, url.port, url.path) == ("https", "127.20.2.10", 8104,
                                                              "/dvc/")
    assert url.username == "dvc"
    assert url.password is not None and unquote(url.password) == password
    assert not url.query and not url.fragment


@pytest.mark.parametrize("password", ["plain", AWKWARD])
def test_a_maintenance_location_carries_the_control_hosts_user_and_password(
        password: str) -> None:
    url = urlsplit(maintenance_location(HOST, "dvc", password).removeprefix("rest:"))
    assert (url.hostname, url.port, url.path) == ("127.20.2.10", 8000, "/dvc/dvc/")
    assert url.username == "hopnhat-maintenance"
    assert url.password is not None and unquote(url.password) == password


def test_the_location_is_the_url_with_credentials_added() -> None:
    location = maintenance_location(HOST, "dvc", "s3cret")
    assert location.replace("hopnhat-maintenance:s3cret@", "") == maintenance_url(HOST, "dvc")
    assert client_location(HOST, "dvc", 8104, "s3cret").replace("dvc:s3cret@", "") == \
        client_url(HOST, "dvc", 8104)


def test_rest_systems_maps_each_system_on_the_host_to_its_port_in_code_order(
        example: Estate) -> None:
    systems = rest_systems(example, "repo-qnam-01")
    assert systems == EXAMPLE_PORTS
    assert list(systems) == sorted(EXAMPLE_PORTS)
    assert rest_systems(example, "repo-elsewhere") == {}


def test_rest_secret_keys_are_the_maintenance_password_and_each_systems(
        example: Estate) -> None:
    assert rest_secret_keys(example) == sorted(
        ["rest_maintenance_repo_qnam_01", "rest_maintenance_vault_danang_01",
         "rest_metrics_repo_qnam_01",
         *(f"rest_password_{c}" for c in EXAMPLE_PORTS)])


def test_rest_secret_keys_follow_a_named_password_and_leave_sftp_hosts_out(
        estate_copy: EstateCopy) -> None:
    estate_copy.edit("systems/dvc.yml", lambda data: data["backup"].update(
        rest_password={"vault": "dvc_rest_key"}))
    estate_copy.edit("estate.yml", lambda data: data["repository_hosts"].append(
        {"name": "repo-qnam-02", "site": "quangnam", "address": "127.20.2.11",
         "storage_path": "/srv/restic", "capacity_gb": 500}))

    def to_sftp(data: dict[str, Any]) -> None:
        data["backup"]["repository_host"] = "repo-qnam-02"
        del data["backup"]["port"], data["backup"]["quota_gb"]

    estate_copy.edit("systems/email.yml", to_sftp)
    keys = rest_secret_keys(estate_copy.load())
    assert "dvc_rest_key" in keys and "rest_password_dvc" not in keys
    assert "rest_password_email" not in keys
    assert not any("repo_qnam_02" in key for key in keys)


def test_an_htpasswd_line_is_the_same_for_the_same_password_and_verifies() -> None:
    line = htpasswd_line("dvc", AWKWARD)
    assert line == htpasswd_line("dvc", AWKWARD)
    user, hashed = line.split(":", 1)
    assert user == "dvc"
    assert hashed.startswith("$2b$10$") and len(hashed) == 60
    assert bcrypt.checkpw(AWKWARD.encode(), hashed.encode())
    assert not bcrypt.checkpw(b"another", hashed.encode())


def test_an_htpasswd_line_differs_for_another_password_or_user() -> None:
    line = htpasswd_line("dvc", "first")
    assert htpasswd_line("dvc", "second") != line
    # another user with the same password gets another salt, not just another name
    assert htpasswd_line("sso", "first").split(":", 1)[1] != line.split(":", 1)[1]
