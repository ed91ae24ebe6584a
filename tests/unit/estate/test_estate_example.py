"""The example estate (inventory/) is valid, and its VMs are derived the same way every time:
names ``<code>-<role>-NN``, placement, and addresses from the pools in a fixed order (an
adopted VM keeps the address its ``existing`` entry declares)."""

from __future__ import annotations

from typing import Any

from orchestrator.estate import load_estate
from tests.helpers import EstateCopy, tree_digest

EXPECTED_VMS = [
    ("dvc-web-01", "127.10.1.10"), ("dvc-web-02", "127.10.1.11"), ("dvc-db-01", "127.10.2.10"),
    ("email-mail-01", "127.10.1.12"),
    ("ioc-app-01", "127.10.1.13"),
    ("lgsp-esb-01", "127.10.1.14"),
    ("opendata-portal-01", "127.10.1.15"),
    ("qlvb-app-01", "127.10.1.16"), ("qlvb-app-02", "127.10.1.17"), ("qlvb-db-01", "127.10.2.11"),
    # adopted VMs keep their declared addresses (outside the pools): nothing after them shifts
    ("qlvbdn-db-01", "127.10.1.5"),
    ("qlvbqn-db-01", "127.20.1.5"),
    ("sso-idp-01", "127.10.1.18"), ("sso-db-01", "127.10.2.12"),
    ("video-mcu-01", "127.10.1.19"),
]


def test_the_example_estate_is_valid_with_two_sites_and_ten_systems(
        estate_copy: EstateCopy) -> None:
    estate = estate_copy.load()
    assert estate.id == "danang"
    assert sorted(estate.sites) == ["danang", "quangnam"]
    assert sorted(estate.systems) == [
        "dvc", "email", "ioc", "lgsp", "opendata", "qlvb", "qlvbdn", "qlvbqn", "sso", "video"]
    assert [(h.name, h.role) for h in estate.settings.repository_hosts] == [
        ("repo-qnam-01", "repository"), ("vault-danang-01", "vault")]
    assert estate.settings.vault is not None
    assert estate.settings.vault.repository_host == "vault-danang-01"
    assert estate.vault_systems() == sorted(estate.systems)


def test_vm_names_and_addresses_are_derived_deterministically(estate_copy: EstateCopy) -> None:
    first = [(vm.name, str(vm.ip)) for vm in estate_copy.load().vms]
    again = [(vm.name, str(vm.ip)) for vm in estate_copy.load().vms]
    assert first == EXPECTED_VMS
    assert again == first


def test_a_vm_takes_its_roles_placement_or_else_its_sites_first_choice(
        estate_copy: EstateCopy) -> None:
    vms = {vm.name: vm for vm in estate_copy.load().vms}
    assert (vms["qlvb-db-01"].cluster, vms["qlvb-db-01"].datastore) == ("CL-DN-01", "DS-DN-SSD-01")
    assert (vms["email-mail-01"].cluster, vms["email-mail-01"].datastore) == (
        "CL-DN-01", "DS-DN-HDD-01")
    assert (vms["dvc-db-01"].port_group, str(vms["dvc-db-01"].gateway),
            vms["dvc-db-01"].prefix_length) == ("PG-DN-DB", "127.10.2.1", 24)
    assert (vms["dvc-db-01"].tier, vms["dvc-db-01"].data, vms["dvc-db-01"].disks_gb) == (
        1, True, [40, 300])


def test_the_legacy_qlvb_vms_are_adopted_as_declared_and_only_qlvbqn_declares_hardware(
        estate_copy: EstateCopy) -> None:
    vms = {vm.name: vm for vm in estate_copy.load().vms}
    danang, quangnam = vms["qlvbdn-db-01"], vms["qlvbqn-db-01"]
    assert danang.existing is not None and quangnam.existing is not None
    # both are qlvb-db-01 in their own vCenter: told apart by site and folder
    assert (danang.adopted, danang.site, danang.existing.vm, danang.existing.folder,
            str(danang.existing.address), str(danang.ip)) == (
        True, "danang", "qlvb-db-01", "Legacy/QLVB", "127.10.1.5", "127.10.1.5")
    assert (quangnam.adopted, quangnam.site, quangnam.existing.vm, quangnam.existing.folder,
            str(quangnam.existing.address), str(quangnam.ip)) == (
        True, "quangnam", "qlvb-db-01", "QLVB", "127.20.1.5", "127.20.1.5")
    assert (danang.where(), quangnam.where()) == (
        "DC-DaNang/Legacy/QLVB/qlvb-db-01", "DC-QuangNam/QLVB/qlvb-db-01")
    # Đà Nẵng's declares no hardware: nothing to compare, nothing to change
    assert (danang.cpu, danang.memory_mb, danang.disks_gb, danang.manage_hardware) == (
        None, None, None, False)
    # Quảng Nam's declares what it has, shown as drift but not managed
    assert (quangnam.cpu, quangnam.memory_mb, quangnam.disks_gb, quangnam.manage_hardware) == (
        4, 8192, [40, 200], False)
    # the VMs hopnhat builds are not adopted
    assert not vms["qlvb-db-01"].adopted and vms["qlvb-db-01"].existing is None


def test_a_pinned_address_is_never_handed_out_from_the_pool(estate_copy: EstateCopy) -> None:
    estate_copy.edit("systems/video.yml", lambda data: data["vms"][0].update(ips=["127.10.1.10"]))
    ips = {vm.name: str(vm.ip) for vm in estate_copy.load().vms}
    assert ips["video-mcu-01"] == "127.10.1.10"
    assert ips["dvc-web-01"] == "127.10.1.11"
    assert len(set(ips.values())) == len(ips)


def test_overlapping_pools_of_two_networks_never_hand_out_an_address_twice(
        estate_copy: EstateCopy) -> None:
    # the secondary site gets a network over the primary's srv subnet; ioc (between dvc/email
    # and lgsp in the allocation order) takes its address from there
    def overlap(data: Any) -> None:
        data["networks"]["mirror"] = {**data["networks"]["srv"], "port_group": "PG-QN-MIRROR",
                                      "subnet": "127.10.1.0/24", "gateway": "127.10.1.1",
                                      "pool": "127.10.1.10-127.10.1.250"}
    estate_copy.edit("sites/quangnam.yml", overlap)
    estate_copy.edit("systems/ioc.yml",
                     lambda data: data["vms"][0].update(site="quangnam", network="mirror"))
    ips = [str(vm.ip) for vm in estate_copy.load().vms]
    assert len(set(ips)) == len(ips)


def test_loading_the_estate_changes_nothing_in_its_folder(estate_copy: EstateCopy) -> None:
    before = tree_digest(estate_copy.root)
    load_estate(estate_copy.root)
    assert tree_digest(estate_copy.root) == before
