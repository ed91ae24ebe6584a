"""lab.yml's legacy VMs: the schema of ``foreign_vms`` (LabVM), the guest key that keeps their
guests apart from hopnhat's own VMs of the same name, and how the hypervisor treats them (the
operator key only, no known_hosts line, the fingerprint)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator.errors import LabError
from orchestrator.lab import control, guests
from orchestrator.lab.config import (
    FINGERPRINT_KEY,
    ForeignVM,
    LabConfig,
    LabVM,
    lab_vcenters,
    legacy_vms,
    load_lab_config,
    vcsim_model,
)
from orchestrator.lab.hypervisor import Hypervisor, VMState, desired_guests, guest_key_of
from orchestrator.settings import Paths
from tests.helpers import EstateCopy

BASE = {"name": "old-01", "datacenter": "DC-DaNang", "cluster": "CL-DN-01",
        "datastore": "DS-DN-HDD-01", "portgroup": "PG-DN-SRV"}


def lab_vm(**fields: Any) -> LabVM:
    return LabVM.model_validate({**BASE, **fields})


# ---------------------------------------------------------------- the schema


def test_a_foreign_vm_without_the_new_fields_is_modelled_as_before() -> None:
    assert ForeignVM is LabVM
    vm = lab_vm(cpu=2, disk_gb=20)
    assert not vm.runs_guest and not vm.powered_on
    assert vm.model_spec() == {"name": "old-01", "cluster": "CL-DN-01",
                               "datastore": "DS-DN-HDD-01", "portgroup": "PG-DN-SRV",
                               "cpu": 2, "memory_mb": 1024, "disk_gb": 20, "power_on": False}
    assert lab_vm(power_on=True).model_spec()["power_on"] is True


def test_an_ip_makes_a_legacy_vm_with_a_guest_powered_on() -> None:
    vm = lab_vm(ip="127.10.1.5", folder="Legacy/QLVB", extra_disks_gb=[100, 0.5],
                hostname="old", attributes={"Owner": "So TT&TT Da Nang"},
                extra_config={"guestinfo.site": "dn"})
    assert vm.runs_guest and vm.powered_on
    assert vm.guest_key == "old-01.dc-danang"
    assert vm.model_spec() == {
        "name": "old-01", "cluster": "CL-DN-01", "datastore": "DS-DN-HDD-01",
        "portgroup": "PG-DN-SRV", "cpu": 1, "memory_mb": 1024, "disk_gb": 10,
        "power_on": True, "folder": "Legacy/QLVB", "extra_disks_gb": [100.0, 0.5],
        "ip": "127.10.1.5", "hostname": "old", "attributes": {"Owner": "So TT&TT Da Nang"},
        "extra_config": {"guestinfo.site": "dn"},
        "annotation": "hopnhat-lab-guest: old-01.dc-danang"}
    # guest info without a guest: a VM that only reports an address; powered off unless asked
    reported = lab_vm(ip="10.0.0.5", guest=False)
    assert not reported.runs_guest and not reported.powered_on
    assert "annotation" not in reported.model_spec()
    assert reported.model_spec()["ip"] == "10.0.0.5"
    assert not lab_vm(ip="127.10.1.5", power_on=False).powered_on


@pytest.mark.parametrize(("fields", "message"), [
    ({"folder": "Legacy//QLVB"}, "a path of folder names"),
    ({"folder": "/Legacy"}, "a path of folder names"),
    ({"folder": "../up"}, "a path of folder names"),
    ({"folder": "Legacy/"}, "a path of folder names"),
    ({"hostname": "qlvb_db"}, "hostname 'qlvb_db'"),
    ({"ip": "127.10.1.5", "data": "../etc"}, "data '../etc'"),
    ({"extra_disks_gb": [0]}, "greater than 0"),
    ({"extra_config": {"SET.guest.ipAddress": "1.2.3.4"}}, "SET.* and ip0"),
    ({"extra_config": {FINGERPRINT_KEY: "SHA256:x"}}, "publish_fingerprint's"),
    ({"data": "qlvb"}, "data needs a guest"),
    ({"ip": "127.10.1.5", "guest": False, "data": "qlvb"}, "data needs a guest"),
    ({"publish_fingerprint": True}, "publish_fingerprint needs a guest"),
    ({"guest": True}, "a guest needs an ip"),
    ({"ip": "10.1.1.5"}, "loopback addresses only"),
    ({"ip": "127.10.1.5", "name": "QLVB DB"}, "give the VM a hostname"),
    ({"name": "a/b"}, "should match pattern"),
    ({"unknown": 1}, "Extra inputs are not permitted"),
])
def test_lab_vm_fields_that_cannot_be_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("*", r"\*").replace(".", r"\.")):
        lab_vm(**fields)


def test_the_example_lab_holds_each_provinces_legacy_vms(estate_copy: EstateCopy,
                                                         tmp_path: Path) -> None:
    estate = estate_copy.load()
    config = load_lab_config(estate)
    legacy = legacy_vms(estate, config)
    assert {key: (vm.folder, str(vm.ip), vm.data, vm.publish_fingerprint)
            for key, vm in legacy.items()} == {
        "qlvb-db-01.dc-danang": ("Legacy/QLVB", "127.10.1.5", "qlvb", True),
        "portal-web-01.dc-danang": ("Legacy/Portal", "127.10.1.6", "portal", False),
        "qlvb-db-01.dc-quangnam": ("QLVB", "127.20.1.5", "qlvb", True),
        "motcua-app-01.dc-quangnam": ("MotCua", "127.20.1.6", "motcua", False)}
    assert all(guests.is_guest_name(key) for key in legacy)
    # hopnhat builds a qlvb-db-01 of its own in Đà Nẵng: its guest is keyed by its name
    assert "qlvb-db-01" in {vm.name for vm in estate.vms}
    assert "qlvb-db-01" not in legacy
    for vcenter in lab_vcenters(estate):
        model = vcsim_model(estate, config, tmp_path, vcenter)
        vms = [vm for dc in model["datacenters"] for vm in dc["vms"]]
        sites = [estate.sites[s] for s in vcenter.sites]
        assert {vm["annotation"].removeprefix("hopnhat-lab-guest: ") for vm in vms} == {
            key for key, vm in legacy.items()
            if vm.datacenter in {s.datacenter for s in sites}}
        assert all(vm["power_on"] for vm in vms)
    owned = legacy["motcua-app-01.dc-quangnam"].attributes
    assert owned == {"hopnhat.owner": "quangnam-vnpt", "hopnhat.system": "motcua"}
    # every address outside the site's pools (which hopnhat hands out)
    for vm in legacy.values():
        site = next(s for s in estate.sites.values() if s.datacenter == vm.datacenter)
        assert all(vm.ip not in net.pool for net in site.networks.values())


def _with(estate_copy: EstateCopy, *vms: dict[str, Any]) -> None:
    estate_copy.edit("lab.yml", lambda doc: doc.update(foreign_vms=list(vms)))


def test_two_legacy_vms_with_one_guest_key_are_refused_by_name(
        estate_copy: EstateCopy) -> None:
    _with(estate_copy, {**BASE, "folder": "A", "ip": "127.10.1.7"},
          {**BASE, "folder": "B", "ip": "127.10.1.8"},
          {**BASE, "name": "old-02", "folder": "B"})  # no guest: no key
    estate = estate_copy.load()
    with pytest.raises(LabError) as refused:
        legacy_vms(estate, load_lab_config(estate))
    assert str(refused.value) == (
        "lab.yml: DC-DaNang/B/old-01 and DC-DaNang/A/old-01 have the same guest key "
        "old-01.dc-danang: rename one")


@pytest.mark.parametrize(("vms", "message"), [
    ([{**BASE, "ip": "127.10.1.7"}, {**BASE, "name": "old-02", "ip": "127.10.1.7"}],
     "lab.yml: DC-DaNang/old-02: ip 127.10.1.7 is also the address of legacy VM "
     "DC-DaNang/old-01"),
    ([{**BASE, "ip": "127.20.2.10"}],
     "lab.yml: DC-DaNang/old-01: ip 127.20.2.10 is also the address of repository host "
     "repo-qnam-01"),
    ([{**BASE, "ip": "127.10.1.10"}],  # the first address of the pool: a VM hopnhat builds
     "lab.yml: DC-DaNang/old-01: ip 127.10.1.10 is also the address of VM "),
    ([{**BASE, "datacenter": "DC-HaNoi", "ip": "127.10.1.7"}],
     "lab.yml: DC-HaNoi/old-01: no site has datacenter DC-HaNoi "
     "(datacenters: DC-DaNang, DC-QuangNam)"),
    ([{**BASE, "name": "a" * 60, "hostname": "a", "ip": "127.10.1.7"}],
     f"lab.yml: DC-DaNang/{'a' * 60}: its guest key '{'a' * 60}.dc-danang' "
     "(<name>.<datacenter lowercased>) is not a usable guest name"),
])
def test_a_legacy_vm_that_would_clash_is_refused(estate_copy: EstateCopy,
                                                 vms: list[dict[str, Any]],
                                                 message: str) -> None:
    _with(estate_copy, *vms)
    estate = estate_copy.load()
    with pytest.raises(LabError, match="^" + message.replace(".", r"\.")
                       .replace("(", r"\(").replace(")", r"\)")):
        legacy_vms(estate, load_lab_config(estate))


def test_without_foreign_vms_there_are_no_legacy_vms(estate_copy: EstateCopy) -> None:
    assert legacy_vms(estate_copy.load(), LabConfig()) == {}


# ---------------------------------------------------------------- keys and fingerprints


def test_the_operator_key_lives_in_the_labs_folder(estate_copy: EstateCopy,
                                                   tmp_path: Path) -> None:
    paths = Paths(tmp_path / "state", estate_copy.load())
    assert control.operator_key(paths) == tmp_path / "state" / "lab" / "operator" / "id_ed25519"
    assert control.operator_key(paths.lab) == control.operator_key(paths)
    public = control.ensure_operator_key(paths)
    assert public.startswith("ssh-ed25519 ") and public.endswith(
        f"province-it@{paths.estate.id}")
    assert control.operator_key(paths).stat().st_mode & 0o777 == 0o600
    assert control.operator_key(paths).parent.stat().st_mode & 0o777 == 0o700
    assert control.ensure_operator_key(paths) == public  # made once


def test_a_fingerprint_is_what_ssh_keygen_prints(tmp_path: Path) -> None:
    root = tmp_path / "guests" / "old-01.dc-danang"
    key = guests.ensure_host_key(root, "old-01.dc-danang")
    printed = subprocess.run(["ssh-keygen", "-lf", str(root / f"{guests.HOST_KEY}.pub")],
                             capture_output=True, text=True, check=True).stdout.split()[1]
    assert guests.fingerprint(key) == printed
    assert guests.host_key_fingerprint(tmp_path, "old-01.dc-danang") == printed
    assert guests.host_key(tmp_path, "old-01.dc-danang") == key
    with pytest.raises(LabError, match="guest other-01 has no host key"):
        guests.host_key_fingerprint(tmp_path, "other-01")
    with pytest.raises(LabError, match="not an OpenSSH public key line"):
        guests.fingerprint("ssh-ed25519 ***")


# ---------------------------------------------------------------- the hypervisor


def test_a_legacy_vm_is_keyed_by_its_annotation_and_hopnhats_by_name() -> None:
    assert guest_key_of("qlvb-db-01", "hopnhat-lab-guest: qlvb-db-01.dc-danang") == (
        "qlvb-db-01.dc-danang", True)
    assert guest_key_of("qlvb-db-01", "built by hand\nhopnhat-lab-guest: x.dc-a\n") == (
        "x.dc-a", True)
    assert guest_key_of("qlvb-db-01", None) == ("qlvb-db-01", False)
    assert guest_key_of("qlvb-db-01", "hopnhat-lab-guest: ") == ("qlvb-db-01", False)
    vms = {("dn", "vm-1"): VMState("qlvb-db-01", True, "127.10.1.5", "qlvb-db-01", False,
                                   "hopnhat-lab-guest: qlvb-db-01.dc-danang"),
           ("dn", "vm-2"): VMState("qlvb-db-01", True, "127.10.2.10", None, False),
           ("qn", "vm-1"): VMState("qlvb-db-01", True, "127.20.1.5", "qlvb-db-01", False,
                                   "hopnhat-lab-guest: qlvb-db-01.dc-quangnam"),
           ("qn", "vm-2"): VMState("off-01", False, "127.20.1.9", None, False,
                                   "hopnhat-lab-guest: off-01.dc-quangnam")}
    want = desired_guests(vms)
    assert {key: (vm.ip, vm.legacy) for key, vm in want.items()} == {
        "qlvb-db-01.dc-danang": ("127.10.1.5", True), "qlvb-db-01": ("127.10.2.10", False),
        "qlvb-db-01.dc-quangnam": ("127.20.1.5", True)}


def _hypervisor(tmp_path: Path, operator_keys: list[str]) -> Hypervisor:
    return Hypervisor({
        "lab_dir": str(tmp_path), "known_hosts": str(tmp_path / "known_hosts"),
        "authorized_keys": ["ssh-ed25519 AAAAhopnhat"], "operator_keys": operator_keys,
        "legacy": {"qlvb-db-01.dc-danang": {"publish_fingerprint": True, "data": None}},
        "vcenters": [{"url": "https://127.0.0.1:1/sdk"}]})


def test_a_legacy_guest_gets_the_operator_key_only_and_no_known_hosts_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: dict[str, tuple[str, list[str], Path | None, bool]] = {}

    def start(_lab: Path, _table: Any, name: str, hostname: str, _ip: str, keys: list[str],
              known_hosts: Path | None, **options: Any) -> None:
        started[name] = (hostname, keys, known_hosts, options.get("legacy", False))

    monkeypatch.setattr(guests, "start_guest", start)
    hv = _hypervisor(tmp_path, ["ssh-ed25519 AAAAoperator"])
    hv.vms = {("u", "vm-1"): VMState("qlvb-db-01", True, "127.10.1.5", None, False,
                                     "hopnhat-lab-guest: qlvb-db-01.dc-danang"),
              ("u", "vm-2"): VMState("qlvb-db-01", True, "127.10.2.10", None, False)}
    hv.reconcile()
    assert started == {
        # no hostname reported: the VM's name, never the guest key; keys added to its disk
        # since (hopnhat's, by `hosts trust`) are kept across restarts
        "qlvb-db-01.dc-danang": ("qlvb-db-01", ["ssh-ed25519 AAAAoperator"], None, True),
        "qlvb-db-01": ("qlvb-db-01", ["ssh-ed25519 AAAAhopnhat"], tmp_path / "known_hosts",
                       False)}

    started.clear()  # a config without an operator key never opens a legacy guest to hopnhat
    hv = _hypervisor(tmp_path, [])
    hv.vms = {("u", "vm-1"): VMState("qlvb-db-01", True, "127.10.1.5", None, False,
                                     "hopnhat-lab-guest: qlvb-db-01.dc-danang")}
    hv.reconcile()
    assert started == {}


def test_the_fingerprint_is_published_once_per_vm_while_its_guest_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.lab import hypervisor as module

    published: list[tuple[str, str]] = []
    monkeypatch.setattr(module, "publish_fingerprint",
                        lambda _si, moid, value: published.append((moid, value)))
    monkeypatch.setattr(guests, "host_key_fingerprint", lambda _lab, key: f"SHA256:{key}")
    hv = _hypervisor(tmp_path, ["ssh-ed25519 AAAAoperator"])
    running = {"guest-qlvb-db-01.dc-danang", "guest-portal-web-01.dc-danang"}
    monkeypatch.setattr(hv.table, "running", lambda name: SimpleNamespace() if name in running
                        else None)
    hv.sessions["u"] = object()
    hv.vms = {("u", "vm-1"): VMState("qlvb-db-01", True, "127.10.1.5", None, False,
                                     "hopnhat-lab-guest: qlvb-db-01.dc-danang"),
              ("u", "vm-2"): VMState("portal-web-01", True, "127.10.1.6", None, False,
                                     "hopnhat-lab-guest: portal-web-01.dc-danang")}
    hv._publish_fingerprints()
    hv._publish_fingerprints()
    assert published == [("vm-1", "SHA256:qlvb-db-01.dc-danang")]  # portal: not asked
    hv.updated("u", None, full=True)  # vCenter came back empty: its VMs lost what was written
    assert hv.published == set()
