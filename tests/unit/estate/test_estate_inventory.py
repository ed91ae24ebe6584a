"""The Ansible inventory derived from the estate: groups, connection settings that check
host keys strictly against hopnhat's own known_hosts, the ``--host`` answer, no secret."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestrator.estate import Estate
from orchestrator.estate.inventory import build_inventory, host_vars, ssh_common_args
from orchestrator.settings import Paths
from tests.helpers import EstateCopy

# adopted VMs are backup clients too: hopnhat backs up the legacy QLVB it never builds
DATA_VMS = ["dvc-db-01", "email-mail-01", "ioc-app-01", "lgsp-esb-01", "opendata-portal-01",
            "qlvb-db-01", "qlvbdn-db-01", "qlvbqn-db-01", "sso-db-01", "video-mcu-01"]


@pytest.fixture
def paths(estate_copy: EstateCopy, tmp_path: Path) -> Paths:
    return Paths(tmp_path / "state", estate_copy.load())


@pytest.fixture
def inventory(paths: Paths) -> dict[str, Any]:
    return build_inventory(paths)


def _vault_keys(estate: Estate) -> set[str]:
    """Every ``{vault: key}`` the estate refers to."""
    keys = {site.vcenter.password.vault for site in estate.sites.values()}
    keys |= {s.backup.password.vault for s in estate.systems.values() if s.backup}
    return keys


@pytest.mark.parametrize(("group", "hosts"), [
    ("site_danang", ["dvc-web-01", "dvc-web-02", "dvc-db-01", "email-mail-01", "ioc-app-01",
                     "lgsp-esb-01", "opendata-portal-01", "qlvb-app-01", "qlvb-app-02",
                     "qlvb-db-01", "qlvbdn-db-01", "sso-idp-01", "sso-db-01", "video-mcu-01",
                     "vault-danang-01"]),
    ("site_quangnam", ["qlvbqn-db-01", "repo-qnam-01"]),
    ("system_qlvbdn", ["qlvbdn-db-01"]),
    ("system_qlvb", ["qlvb-app-01", "qlvb-app-02", "qlvb-db-01"]),
    ("system_sso", ["sso-idp-01", "sso-db-01"]),
    ("tier_1", ["dvc-web-01", "dvc-web-02", "dvc-db-01", "qlvb-app-01", "qlvb-app-02",
                "qlvb-db-01", "qlvbqn-db-01", "video-mcu-01"]),
    ("tier_2", ["email-mail-01", "lgsp-esb-01", "qlvbdn-db-01", "sso-idp-01", "sso-db-01"]),
    ("tier_3", ["ioc-app-01", "opendata-portal-01"]),
    ("role_dvc_web", ["dvc-web-01", "dvc-web-02"]),
    ("role_qlvbqn_db", ["qlvbqn-db-01"]),
    ("repository_hosts", ["repo-qnam-01", "vault-danang-01"]),
    ("backup_clients", DATA_VMS),
])
def test_hosts_are_grouped_by_site_system_tier_role_and_function(
        inventory: dict[str, Any], group: str, hosts: list[str]) -> None:
    assert inventory[group]["hosts"] == hosts
    assert group in inventory["all"]["children"]


def test_every_host_has_its_address_and_strict_host_key_checking_under_the_state_dir(
        inventory: dict[str, Any], paths: Paths) -> None:
    hostvars = inventory["_meta"]["hostvars"]
    expected = {vm.name: str(vm.ip) for vm in paths.estate.vms} | {
        "repo-qnam-01": "127.20.2.10", "vault-danang-01": "127.10.3.10"}
    assert {host: v["ansible_host"] for host, v in hostvars.items()} == expected
    for host, variables in hostvars.items():
        args = variables["ansible_ssh_common_args"]
        assert "-o StrictHostKeyChecking=yes" in args, host
        assert shlex.split(args)[:2] == [
            "-o", f'UserKnownHostsFile="{paths.state / "known_hosts"}"'], host
        assert variables["ansible_ssh_private_key_file"] == str(paths.state / "ssh/id_ed25519")
        assert variables["ansible_user"] == "root"


def test_system_variables_carry_tier_targets_and_backup_repositories(
        inventory: dict[str, Any]) -> None:
    variables = inventory["system_qlvb"]["vars"]
    assert (variables["hopnhat_tier"], variables["hopnhat_rpo_seconds"],
            variables["hopnhat_rto_seconds"]) == (1, 3600, 4 * 3600)
    assert variables["hopnhat_backup"]["repository"] == {
        "protocol": "rest", "host": "repo-qnam-01", "address": "127.20.2.10", "port": 8101,
        "user": "qlvb", "path": "/qlvb/", "url": "rest:https://127.20.2.10:8101/qlvb/",
        "password_vault_key": "rest_password_qlvb"}
    assert variables["hopnhat_rest_ca"].endswith("/pki/ca.pem")
    assert variables["hopnhat_backup"]["copy"] is None


def test_the_rest_repository_host_has_one_server_per_system_it_keeps(
        inventory: dict[str, Any]) -> None:
    host = inventory["_meta"]["hostvars"]["repo-qnam-01"]
    assert host["hopnhat_repository_protocol"] == "rest"
    assert host["hopnhat_repository_accounts"] == []  # no SFTP account on a rest host
    servers = host["hopnhat_rest_systems"]
    assert sorted(servers) == ["dvc", "email", "ioc", "lgsp", "opendata", "qlvb", "qlvbdn",
                               "qlvbqn", "sso", "video"]
    assert servers["qlvb"] == {"port": 8101, "password_vault_key": "rest_password_qlvb",
                               "metrics_vault_key": "rest_metrics_repo_qnam_01",
                               "quota_bytes": 100 * 1024 ** 3}
    assert len({s["port"] for s in servers.values()}) == len(servers)
    assert host["hopnhat_rest_maintenance"] == {
        "port": 8000, "user": "hopnhat-maintenance",
        "password_vault_key": "rest_maintenance_repo_qnam_01"}


def test_the_host_answer_is_that_hosts_variables_and_empty_for_an_unknown_host(
        inventory: dict[str, Any], paths: Paths) -> None:
    assert host_vars(paths, "qlvb-db-01") == inventory["_meta"]["hostvars"]["qlvb-db-01"]
    assert host_vars(paths, "qlvb-db-01")["ansible_host"] == "127.10.2.11"
    assert host_vars(paths, "no-such-host") == {}


def test_the_inventory_holds_no_secret_only_the_names_of_vault_keys(
        inventory: dict[str, Any], paths: Paths) -> None:
    from orchestrator.adapters.vault import read_vault
    from orchestrator.lab.secrets import ensure_lab_secrets

    ensure_lab_secrets(paths)
    document = json.dumps(inventory)
    for secret in read_vault(paths.vault_file, paths.vault_password_file).values():
        assert secret not in document
    # a vault key name appears only where it says which key the restic_client role reads
    for key in _vault_keys(paths.estate):
        if key.startswith("restic_password_"):
            code = key.removeprefix("restic_password_")
            backup = inventory[f"system_{code}"]["vars"]["hopnhat_backup"]
            assert backup["password_vault_key"] == key
            assert document.count(f'"{key}"') == 1
        else:
            assert key not in document


def test_the_known_hosts_path_reaches_ssh_as_one_file_name() -> None:
    """A state folder with a space, or a path written to smuggle an ssh option in, stays
    one UserKnownHostsFile as Ansible (shlex) and then ssh split it."""
    hostile = Path("/srv/st ate/x -o ProxyCommand=touch /tmp/pwn/k%h")
    argv = shlex.split(ssh_common_args(hostile))
    assert argv == ["-o", 'UserKnownHostsFile="/srv/st ate/x -o ProxyCommand=touch '
                    '/tmp/pwn/k%%h"', "-o", "StrictHostKeyChecking=yes"]
    done = subprocess.run(["ssh", "-F", "/dev/null", "-G", *argv, "example"],
                          capture_output=True, text=True, timeout=30, check=True)
    options = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    assert options["userknownhostsfile"] == str(hostile)
    assert "proxycommand" not in options


def test_an_ssh_path_with_a_double_quote_or_a_newline_is_refused() -> None:
    from pydantic import ValidationError

    from orchestrator.estate.model import SSHSettings

    for bad in ('known"hosts', "known\nhosts"):
        with pytest.raises(ValidationError, match="known_hosts_file"):
            SSHSettings(known_hosts_file=bad)
    assert SSHSettings(known_hosts_file="state dir/known_hosts").known_hosts_file
