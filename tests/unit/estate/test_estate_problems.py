"""Each test plants ONE error in a copy of the example estate and checks that loading it
reports exactly that problem: its file, its key path and what is wrong."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from orchestrator.errors import EstateError
from tests.helpers import EstateCopy


def _set(path: str, value: object) -> Callable[[Any], None]:
    """A change that sets the key at ``path`` (``vms.0.site``) to ``value``."""

    def key(node: Any, part: str) -> Any:
        # list indexes and the integer keys of tiers are written as digits
        return int(part) if part.isdigit() and (isinstance(node, list) or int(part) in node) \
            else part

    def change(data: Any) -> None:
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[key(node, part)]
        node[key(node, last)] = value

    return change


# --- schema: what one file says on its own ---

@pytest.mark.parametrize(("file", "path", "key"), [
    pytest.param("estate.yml", "provisioning.paralel", "provisioning.paralel", id="estate"),
    pytest.param("sites/danang.yml", "networks.srv.vlan", "networks.srv.vlan", id="site"),
    pytest.param("systems/qlvb.yml", "vms.1.colour", "vms[1].colour", id="system"),
])
def test_unknown_key_is_named_with_file_and_key_path(
        estate_copy: EstateCopy, file: str, path: str, key: str) -> None:
    estate_copy.edit(file, _set(path, 4))
    estate_copy.assert_only_problems((file, key, "unknown key"))


@pytest.mark.parametrize(("file", "path", "value", "key", "fragment"), [
    pytest.param("systems/dvc.yml", "vms.0.cpu", "four", "vms[0].cpu",
                 "Input should be a valid integer (found 'four')",
                 id="text-for-a-number"),
    pytest.param("sites/danang.yml", "clusters", "CL-DN-01", "clusters", "valid list",
                 id="text-for-a-list"),
    pytest.param("estate.yml", "provisioning.concurrency", 100, "provisioning.concurrency",
                 "less than or equal to 64 (found 100)", id="number-out-of-range"),
    pytest.param("sites/quangnam.yml", "role", "tertiary", "role",
                 "'primary' or 'secondary' (found 'tertiary')", id="not-one-of-the-choices"),
    pytest.param("systems/sso.yml", "vms.0.ips", ["127.10.1.300"], "vms[0].ips[0]",
                 "valid IPv4 address", id="not-an-address"),
])
def test_wrong_type_is_named_with_key_path_and_the_value_found(
        estate_copy: EstateCopy, file: str, path: str, value: object, key: str,
        fragment: str) -> None:
    estate_copy.edit(file, _set(path, value))
    estate_copy.assert_only_problems((file, key, fragment))


def test_a_required_key_left_out_is_reported_missing(estate_copy: EstateCopy) -> None:
    estate_copy.edit("systems/video.yml", lambda data: data.pop("tier"))
    estate_copy.assert_only_problems(("systems/video.yml", "tier", "required key is missing"))


@pytest.mark.parametrize("value", [
    pytest.param("soon", id="not-a-duration"),
    pytest.param("1.5h", id="fractional-unit"),
    pytest.param(-60, id="negative"),
    pytest.param(float("inf"), id="infinite"),
    pytest.param(10**20, id="longer-than-a-timedelta"),
])
def test_a_value_that_is_not_a_duration_is_reported_not_crashed(
        estate_copy: EstateCopy, value: object) -> None:
    estate_copy.edit("estate.yml", _set("tiers.1.rpo", value))
    estate_copy.assert_only_problems(("estate.yml", "tiers[1].rpo", "duration"))


# --- names: a VM name, system code or site name used twice ---

def test_two_systems_with_the_same_code_are_reported_at_the_second_file(
        estate_copy: EstateCopy) -> None:
    estate_copy.write("systems/sso2.yml", estate_copy.data("systems/sso.yml"))
    estate_copy.assert_only_problems(
        ("systems/sso2.yml", "code", "system code 'sso' is also used by systems/sso.yml"))


def test_two_sites_with_the_same_name_are_reported_at_the_second_file(
        estate_copy: EstateCopy) -> None:
    estate_copy.write("sites/danang2.yml", estate_copy.data("sites/danang.yml"))
    estate_copy.assert_only_problems(
        ("sites/danang2.yml", "name", "site 'danang' is also declared in sites/danang.yml"))


def test_a_repeated_role_is_reported_once(estate_copy: EstateCopy) -> None:
    # dvc-web-01 and dvc-web-02 would be named twice: one problem, not one per VM
    estate_copy.edit("systems/dvc.yml", _set("vms.1.role", "web"))
    estate_copy.assert_only_problems(("systems/dvc.yml", "vms", "role 'web' is declared 2 times"))


def test_a_vm_named_like_a_repository_host_is_reported(estate_copy: EstateCopy) -> None:
    def add_host(data: Any) -> None:
        data["repository_hosts"].append({**data["repository_hosts"][0],
                                         "name": "sso-idp-01", "address": "127.20.2.11"})
    estate_copy.edit("estate.yml", add_host)
    estate_copy.assert_only_problems(
        ("systems/sso.yml", "vms[0].role",
         "VM name 'sso-idp-01' is also a repository host in estate.yml"))


# --- addresses ---

def test_a_pinned_address_outside_its_subnet_is_reported(estate_copy: EstateCopy) -> None:
    estate_copy.edit("systems/sso.yml", _set("vms.0.ips", ["127.10.9.5"]))
    estate_copy.assert_only_problems(
        ("systems/sso.yml", "vms[0].ips[0]",
         "127.10.9.5 is outside the subnet 127.10.1.0/24 of network 'srv'"))


def test_a_gateway_outside_its_subnet_is_reported(estate_copy: EstateCopy) -> None:
    estate_copy.edit("sites/danang.yml", _set("networks.srv.gateway", "127.10.9.1"))
    estate_copy.assert_only_problems(
        ("sites/danang.yml", "networks.srv.gateway",
         "gateway 127.10.9.1 is outside the subnet 127.10.1.0/24"))


def test_pinned_addresses_count_must_match_the_vm_count(estate_copy: EstateCopy) -> None:
    estate_copy.edit("systems/qlvb.yml", _set("vms.0.ips", ["127.10.1.100"]))
    estate_copy.assert_only_problems(
        ("systems/qlvb.yml", "vms[0].ips", "1 address(es) for count 2"))


def test_an_address_pinned_in_two_systems_is_reported_once(estate_copy: EstateCopy) -> None:
    estate_copy.edit("systems/sso.yml", _set("vms.0.ips", ["127.10.1.200"]))
    estate_copy.edit("systems/video.yml", _set("vms.0.ips", ["127.10.1.200"]))
    estate_copy.assert_only_problems(
        ("systems/video.yml", "vms[0].ips[0]",
         "address 127.10.1.200 is used twice: by sso-idp-01 and video-mcu-01"))


def test_an_address_pinned_on_a_repository_host_is_reported(estate_copy: EstateCopy) -> None:
    # ioc's VM moves to the secondary site's backup network, on the repository host's address
    estate_copy.edit("systems/ioc.yml", _set("vms.0", {
        **estate_copy.data("systems/ioc.yml")["vms"][0],
        "site": "quangnam", "network": "backup", "ips": ["127.20.2.10"]}))
    estate_copy.assert_only_problems(
        ("systems/ioc.yml", "vms[0].ips[0]",
         "address 127.20.2.10 is used twice: by repository host repo-qnam-01 and ioc-app-01"))


def test_an_address_pinned_on_a_gateway_is_reported(estate_copy: EstateCopy) -> None:
    estate_copy.edit("systems/sso.yml", _set("vms.0.ips", ["127.10.1.1"]))
    estate_copy.assert_only_problems(
        ("systems/sso.yml", "vms[0].ips[0]",
         "address 127.10.1.1 is used twice: by the gateway of danang/PG-DN-SRV and sso-idp-01"))


def test_a_pool_too_small_for_its_vms_is_reported_at_the_pool(estate_copy: EstateCopy) -> None:
    # four database VMs (dvc, qlvb, sso, and qlvbqn's move's target) on the db network,
    # two addresses
    estate_copy.edit("sites/danang.yml", _set("networks.db.pool", "127.10.2.10-127.10.2.11"))
    estate_copy.assert_only_problems(
        ("sites/danang.yml", "networks.db.pool",
         "pool 127.10.2.10-127.10.2.11 is too small: 4 VM(s) need an address from it, "
         "2 get none"))


def test_a_pool_holding_its_gateway_is_reported(estate_copy: EstateCopy) -> None:
    estate_copy.edit("sites/danang.yml", _set("networks.srv.pool", "127.10.1.1-127.10.1.250"))
    estate_copy.assert_only_problems(
        ("sites/danang.yml", "networks.srv.pool", "the pool holds the gateway 127.10.1.1"))


# --- references to what is declared elsewhere ---

@pytest.mark.parametrize(("file", "path", "value", "key", "fragment"), [
    pytest.param("systems/sso.yml", "vms.0.site", "hue", "vms[0].site",
                 "unknown site 'hue' (known: danang, quangnam)", id="site"),
    pytest.param("systems/sso.yml", "vms.0.template", "tpl-win2022", "vms[0].template",
                 "unknown template 'tpl-win2022' in site 'danang' (known: tpl-debian12)",
                 id="template"),
    pytest.param("systems/sso.yml", "vms.0.network", "dmz", "vms[0].network",
                 "unknown network 'dmz' in site 'danang' (known: db, srv)", id="network"),
    pytest.param("systems/sso.yml", "vms.0.datastore", "DS-QN-SSD-01", "vms[0].datastore",
                 "unknown datastore 'DS-QN-SSD-01' in site 'danang' "
                 "(known: DS-DN-HDD-01, DS-DN-SSD-01)", id="datastore"),
    pytest.param("systems/sso.yml", "vms.0.cluster", "CL-QN-01", "vms[0].cluster",
                 "unknown cluster 'CL-QN-01' in site 'danang' (known: CL-DN-01, CL-DN-02)",
                 id="cluster"),
    pytest.param("systems/sso.yml", "backup.repository_host", "repo-hue-01",
                 "backup.repository_host",
                 "unknown repository host 'repo-hue-01' (known: repo-qnam-01)",
                 id="backup-repository-host"),
    pytest.param("systems/email.yml", "backup.repository_host", "repo-hue-01",
                 "backup.repository_host",
                 "unknown repository host 'repo-hue-01' (known: repo-qnam-01)",
                 id="repository-host"),
    pytest.param("systems/email.yml", "depends_on", ["sso", "crm"], "depends_on[1]",
                 "unknown system 'crm'", id="depends-on-system"),
    pytest.param("estate.yml", "repository_hosts.0.site", "hue", "repository_hosts[0].site",
                 "unknown site 'hue' (known: danang, quangnam)", id="repository-host-site"),
    pytest.param("sites/quangnam.yml", "drill_network", "lab", "drill_network",
                 "unknown network 'lab' (this site has: backup, drill, srv)",
                 id="drill-network"),
])
def test_a_reference_to_an_undeclared_name_is_reported_at_the_referring_key(
        estate_copy: EstateCopy, file: str, path: str, value: object, key: str,
        fragment: str) -> None:
    estate_copy.edit(file, _set(path, value))
    estate_copy.assert_only_problems((file, key, fragment))


def _sso_on_an_sftp_host(estate_copy: EstateCopy) -> None:
    """sso backs up to an added SFTP repository host (where a client-pushed copy is still
    allowed: the example's rest host refuses one)."""
    def add(data: Any) -> None:
        data["repository_hosts"].append({"name": "repo-sftp-01", "site": "quangnam",
                                         "address": "127.20.2.30", "storage_path": "/srv/restic",
                                         "capacity_gb": 100})
    estate_copy.edit("estate.yml", add)

    def move(data: Any) -> None:
        data["backup"]["repository_host"] = "repo-sftp-01"
        del data["backup"]["port"], data["backup"]["quota_gb"]
    estate_copy.edit("systems/sso.yml", move)


def test_a_copy_to_an_undeclared_repository_host_is_reported(estate_copy: EstateCopy) -> None:
    _sso_on_an_sftp_host(estate_copy)
    estate_copy.edit("systems/sso.yml", _set("backup.copy", {"repository_host": "repo-hue-01"}))
    estate_copy.assert_only_problems(
        ("systems/sso.yml", "backup.copy.repository_host",
         "unknown repository host 'repo-hue-01' (known: repo-qnam-01, repo-sftp-01)"))


def test_a_second_copy_to_the_first_repository_host_is_reported(estate_copy: EstateCopy) -> None:
    _sso_on_an_sftp_host(estate_copy)
    estate_copy.edit("systems/sso.yml", _set("backup.copy", {"repository_host": "repo-sftp-01"}))
    estate_copy.assert_only_problems(
        ("systems/sso.yml", "backup.copy.repository_host",
         "must go to another repository host"))


def test_a_client_pushed_copy_from_a_rest_repository_host_is_refused(
        estate_copy: EstateCopy) -> None:
    _sso_on_an_sftp_host(estate_copy)
    estate_copy.edit("systems/email.yml", _set("backup.copy", {"repository_host": "repo-sftp-01"}))
    estate_copy.assert_only_problems(
        ("systems/email.yml", "backup.copy", "pulled by the control host"))


# --- dependencies ---

@pytest.mark.parametrize(("file", "depends_on", "cycle"), [
    pytest.param("systems/sso.yml", ["video"], "sso → video → sso", id="two-systems"),
    # ioc → lgsp → sso already; sso → ioc closes the loop
    pytest.param("systems/sso.yml", ["ioc"], "sso → ioc → lgsp → sso", id="three-systems"),
])
def test_a_dependency_cycle_is_reported_once_naming_its_systems_in_order(
        estate_copy: EstateCopy, file: str, depends_on: list[str], cycle: str) -> None:
    estate_copy.edit(file, _set("depends_on", depends_on))
    estate_copy.assert_only_problems((file, "depends_on", f"dependency cycle: {cycle}"))


def test_a_system_depending_on_itself_is_reported(estate_copy: EstateCopy) -> None:
    estate_copy.edit("systems/video.yml", _set("depends_on", ["sso", "video"]))
    estate_copy.assert_only_problems(
        ("systems/video.yml", "depends_on[1]", "a system cannot depend on itself"))


# --- tiers ---

def test_a_tier_declared_without_rpo_is_reported_as_a_missing_key(estate_copy: EstateCopy) -> None:
    estate_copy.edit("estate.yml", lambda data: data["tiers"][1].pop("rpo"))
    estate_copy.assert_only_problems(("estate.yml", "tiers[1].rpo", "required key is missing"))


def test_a_system_on_an_undeclared_tier_is_reported(estate_copy: EstateCopy) -> None:
    estate_copy.edit("systems/video.yml", _set("tier", 4))
    estate_copy.assert_only_problems(
        ("systems/video.yml", "tier", "tier 4 has no targets in estate.yml tiers "
         "(known: 1, 2, 3)"))


def test_a_tier_that_is_not_a_number_is_reported_at_its_key(estate_copy: EstateCopy) -> None:
    estate_copy.edit("estate.yml", lambda data: data["tiers"].update(gold=data["tiers"].pop(3)))
    # estate.yml is invalid, so systems on tier 3 are not also reported
    estate_copy.assert_only_problems(
        ("estate.yml", "tiers.gold", "Input should be a valid integer (found 'gold')"))


# --- secrets ---

@pytest.mark.parametrize(("file", "old", "new", "key", "fragment"), [
    pytest.param("systems/dvc.yml", "password: {vault: restic_password_dvc}",
                 "password: hunter2", "backup.password", "plain text", id="restic-password"),
    pytest.param("sites/danang.yml", "password: {vault: vcenter_danang_password}",
                 "password: hunter2", "vcenter.password", "plain text", id="vcenter-password"),
    pytest.param("systems/dvc.yml", "password: {vault: restic_password_dvc}",
                 "password: {vault: restic_password_dvc, value: hunter2}",
                 "backup.password.value", "unknown key", id="beside-the-reference"),
    pytest.param("systems/dvc.yml", "password: {vault: restic_password_dvc}",
                 "password: {vault: 'hunter2!'}", "backup.password.vault",
                 "should match pattern", id="as-the-reference"),
])
def test_a_secret_written_in_plain_text_is_reported_without_its_value(
        estate_copy: EstateCopy, file: str, old: str, new: str, key: str, fragment: str) -> None:
    estate_copy.replace(file, old, new)
    problems = estate_copy.assert_only_problems((file, key, fragment))
    assert "hunter2" not in repr(problems)
    with pytest.raises(EstateError) as caught:
        estate_copy.load()
    assert "hunter2" not in str(caught.value)


# --- one run lists every problem ---

def test_five_errors_in_five_files_are_all_reported_in_one_run(estate_copy: EstateCopy) -> None:
    estate_copy.edit("estate.yml", _set("provisioning.paralel", 4))
    estate_copy.edit("sites/danang.yml", _set("networks.srv.gateway", "127.10.9.1"))
    estate_copy.edit("systems/dvc.yml", _set("vms.0.site", "hue"))
    estate_copy.edit("systems/email.yml", _set("depends_on", ["sso", "crm"]))
    estate_copy.replace("systems/sso.yml", "password: {vault: restic_password_sso}",
                        "password: hunter2")
    estate_copy.assert_only_problems(
        ("estate.yml", "provisioning.paralel", "unknown key"),
        ("sites/danang.yml", "networks.srv.gateway", "outside the subnet"),
        ("systems/dvc.yml", "vms[0].site", "unknown site 'hue'"),
        ("systems/email.yml", "depends_on[1]", "unknown system 'crm'"),
        ("systems/sso.yml", "backup.password", "plain text"),
    )


@pytest.mark.parametrize(("file", "key"), [
    pytest.param("systems/sso.yml", "colour", id="system"),
    pytest.param("sites/danang.yml", "colour", id="site"),
])
def test_what_an_invalid_file_declares_is_not_reported_unknown_elsewhere(
        estate_copy: EstateCopy, file: str, key: str) -> None:
    # sso is a dependency of five systems and danang the site of every VM: their own
    # problem is reported, not one "unknown system/site" per reference to them
    estate_copy.edit(file, _set(key, "red"))
    estate_copy.assert_only_problems((file, key, "unknown key"))
