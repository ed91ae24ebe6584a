"""The legacy VMs `lab up` seeds each province's vCenter with (lab.yml's ``foreign_vms`` with a
guest): in their folders, with their attributes, powered on with guest IP and hostname, each a
real guest that opens to the province team's own key (the operator key) and not to hopnhat's,
whose host key hopnhat's known_hosts does not hold, and whose fingerprint the province
recorded in vCenter where lab.yml says so."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import paramiko
import pytest
from pyVmomi import vim

from orchestrator.adapters import vsphere
from orchestrator.lab import control, guests
from orchestrator.lab.config import FINGERPRINT_KEY, LabVM, legacy_vms, load_lab_config
from orchestrator.lab.processes import ProcessTable
from tests.helpers import LabHandle, wait_for, wait_task

pytestmark = pytest.mark.lab

# guest key → (site, folder, attributes lab.yml sets, /srv folder, fingerprint published)
EXPECTED = {
    "qlvb-db-01.dc-danang": ("danang", "Legacy/QLVB", {"Owner": "So TT&TT Da Nang"}, "qlvb",
                             True),
    "portal-web-01.dc-danang": ("danang", "Legacy/Portal", {}, "portal", False),
    "qlvb-db-01.dc-quangnam": ("quangnam", "QLVB", {}, "qlvb", True),
    "motcua-app-01.dc-quangnam": ("quangnam", "MotCua", {
        "hopnhat.owner": "quangnam-vnpt", "hopnhat.system": "motcua"}, "motcua", False),
}
#: adopted by no system of the example estate: nothing in the test session trusts it
UNTRUSTED = "portal-web-01.dc-danang"


@pytest.fixture(scope="module")
def legacy(lab: LabHandle) -> dict[str, LabVM]:
    estate = lab.estate
    return legacy_vms(estate, load_lab_config(estate))


@pytest.fixture(scope="module")
def sessions(lab: LabHandle) -> Iterator[dict[str, Any]]:
    with vsphere.session(lab.endpoint("danang")) as danang, \
            vsphere.session(lab.endpoint("quangnam")) as quangnam:
        yield {"danang": danang, "quangnam": quangnam}


def _folder_path(vm: Any) -> str:
    """The VM's folder path under its datacenter's VM folder."""
    parts = []
    parent = vm.parent
    while not isinstance(parent.parent, vim.Datacenter):
        parts.append(parent.name)
        parent = parent.parent
    return "/".join(reversed(parts))


def _vm(si: Any, name: str, folder: str) -> Any:
    view = si.RetrieveContent().viewManager.CreateContainerView(
        si.RetrieveContent().rootFolder, [vim.VirtualMachine], True)
    try:
        found = [vm for vm in view.view if vm.name == name and _folder_path(vm) == folder]
    finally:
        view.Destroy()
    assert len(found) == 1, f"{len(found)} VMs {folder}/{name}"
    return found[0]


def _running(lab: LabHandle, key: str) -> bool:
    return ProcessTable(lab.paths.lab).running(guests.record_name(key)) is not None


def _client(ip: str, host_key: str, key_file: Path) -> paramiko.SSHClient:
    """An SSH session as root with ``key_file``, the host key pinned to ``host_key``."""
    client = paramiko.SSHClient()
    kind, blob = host_key.split()[:2]
    client.get_host_keys().add(ip, kind, paramiko.Ed25519Key(data=base64.b64decode(blob)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(ip, 22, username="root", key_filename=str(key_file), timeout=10,
                   banner_timeout=10, auth_timeout=10, allow_agent=False, look_for_keys=False)
    return client


def _run(client: paramiko.SSHClient, command: str) -> str:
    _, stdout, _ = client.exec_command(command, timeout=30)
    out = stdout.read().decode()
    assert stdout.channel.recv_exit_status() == 0, (command, out)
    return out


def test_each_vcenter_holds_its_provinces_legacy_vms(lab: LabHandle, legacy: dict[str, LabVM],
                                                     sessions: dict[str, Any]) -> None:
    assert set(legacy) == set(EXPECTED)
    for key, (site, folder, attributes, _, _) in EXPECTED.items():
        spec = legacy[key]
        vm = _vm(sessions[site], spec.name, folder)
        assert vm.runtime.powerState == "poweredOn"
        assert (vm.guest.ipAddress, vm.guest.hostName) == (str(spec.ip), spec.hostname)
        assert vm.config.annotation == f"hopnhat-lab-guest: {key}"
        fields = {f.key: f.name for f in sessions[site].RetrieveContent().customFieldsManager.field}
        values = {fields[v.key]: v.value for v in vm.customValue}
        assert attributes.items() <= values.items()  # hopnhat may have marked it since
        disks = [d.capacityInKB // (1 << 20) for d in vm.config.hardware.device
                 if isinstance(d, vim.vm.device.VirtualDisk)]
        assert disks == [spec.disk_gb, *spec.extra_disks_gb]
        assert (vm.config.hardware.numCPU, vm.config.hardware.memoryMB) == (
            spec.cpu, spec.memory_mb)


def test_a_legacy_guest_opens_to_the_operator_key_only(lab: LabHandle,
                                                        legacy: dict[str, LabVM]) -> None:
    lab_dir = lab.paths.lab
    for key in EXPECTED:
        wait_for(f"legacy guest {key}", partial(_running, lab, key), timeout=60)
    known = lab.paths.known_hosts.read_text().splitlines()
    pinned = {line.split()[0]: " ".join(line.split()[1:3]) for line in known if line.strip()}
    operator = control.operator_key(lab.paths)
    assert operator.stat().st_mode & 0o777 == 0o600
    for key, (_, _, _, srv, _) in EXPECTED.items():
        ip = str(legacy[key].ip)
        host_key = guests.host_key(lab_dir, key)
        spec = (guests.guest_root(lab_dir, key) / "guest.json").read_text()
        assert control.operator_key(lab.paths).with_suffix(".pub").read_text().split()[1] in spec
        assert lab.paths.private_key.with_suffix(".pub").read_text().split()[1] not in spec
        client = _client(ip, host_key, operator)
        try:
            hostname, listing = _run(client, f"hostname; ls /srv/{srv}").split("\n", 1)
            assert hostname == legacy[key].hostname
            assert {"app.db", "documents", "dump"} <= set(listing.split())
        finally:
            client.close()
        if ip in pinned:  # `hosts trust` took it over since: it must have pinned the right key
            assert key != UNTRUSTED and pinned[ip] == host_key
            continue
        # lab up wrote no line for it, and hopnhat's own key does not open it
        assert not any(ip in line.split()[0].split(",") for line in known)
        with pytest.raises(paramiko.AuthenticationException):
            _client(ip, host_key, lab.paths.private_key).close()
    assert str(legacy[UNTRUSTED].ip) not in pinned


def test_the_published_fingerprint_is_the_guests_host_key(
        lab: LabHandle, legacy: dict[str, LabVM], sessions: dict[str, Any]) -> None:
    for key, (site, folder, _, _, published) in EXPECTED.items():
        vm = _vm(sessions[site], legacy[key].name, folder)

        def recorded(vm: Any = vm) -> str | None:
            values = {o.key: o.value for o in vm.config.extraConfig or []}
            return values.get(FINGERPRINT_KEY)

        if not published:
            assert recorded() is None
            continue
        value = wait_for(f"the fingerprint of {key}", recorded, timeout=60)
        assert value == guests.host_key_fingerprint(lab.paths.lab, key)
        # the key the guest presents is that one
        transport = paramiko.Transport((str(legacy[key].ip), 22))
        try:
            transport.start_client(timeout=10)
            offered = transport.get_remote_server_key()
        finally:
            transport.close()
        assert guests.fingerprint(f"{offered.get_name()} {offered.get_base64()}") == value


def test_hopnhat_clones_a_legacy_name_into_the_root_folder_not_into_its_folder(
        lab: LabHandle, legacy: dict[str, LabVM], sessions: dict[str, Any]) -> None:
    """vCenter keeps names unique per folder: a VM of a legacy VM's name can be made in the
    datacenter's VM folder (as hopnhat's own qlvb-db-01 is), not beside it."""
    spec = legacy[UNTRUSTED]
    si = sessions["danang"]
    site = lab.estate.sites["danang"]
    dc = next(d for d in si.RetrieveContent().rootFolder.childEntity
              if d.name == site.datacenter)
    template = next(e for e in dc.vmFolder.childEntity if e.name == site.templates[0])
    pool = next(c for c in dc.hostFolder.childEntity if c.name == spec.cluster).resourcePool
    clone_spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=pool), powerOn=False)
    own = _vm(si, spec.name, "Legacy/Portal")
    clone = wait_task(template.CloneVM_Task(folder=dc.vmFolder, name=spec.name, spec=clone_spec))
    try:
        assert clone.parent == dc.vmFolder and own.parent.name == "Portal"
        assert clone.config.instanceUuid != own.config.instanceUuid
        task = template.CloneVM_Task(folder=own.parent, name=spec.name, spec=clone_spec)
        wait_for("the refused clone", lambda: task.info.state in ("success", "error"), 30)
        assert isinstance(task.info.error, vim.fault.DuplicateName)
    finally:
        wait_task(clone.Destroy_Task())
