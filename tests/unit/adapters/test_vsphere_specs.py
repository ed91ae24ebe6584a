"""The pyVmomi specs hopnhat sends, built by pure functions, and the facts it reads back
(morefs without a server: pyVmomi builds them from an id alone)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from pyVmomi import vim

from orchestrator.actions.provision.apply import CloneSlots
from orchestrator.adapters.vsphere_facts import OWNER, add_devices, build_inventory
from orchestrator.adapters.vsphere_specs import (
    KB_PER_GB,
    clone_spec,
    customization_spec,
    netmask,
    nic_backing,
    reconfig_spec,
)
from orchestrator.adapters.vsphere_xml import Device, UnsupportedValue, parse_page
from orchestrator.errors import VSphereError
from tests.helpers import wait_for


def template_devices(disks_gb: tuple[int, ...] = (20,), port_group: str = "PG-A") -> list[Any]:
    scsi = vim.vm.device.ParaVirtualSCSIController(key=1000, busNumber=0)
    devices: list[Any] = [scsi]
    for unit, size in enumerate(disks_gb):
        devices.append(vim.vm.device.VirtualDisk(
            key=2000 + unit, controllerKey=1000, unitNumber=unit, capacityInKB=size * KB_PER_GB,
            backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(fileName="[ds] a.vmdk")))
    devices.append(vim.vm.device.VirtualVmxnet3(
        key=4000, backing=nic_backing(port_group, None)))
    return devices


def test_netmask_from_prefix() -> None:
    assert [netmask(p) for p in (8, 16, 24, 30)] == [
        "255.0.0.0", "255.255.0.0", "255.255.255.0", "255.255.255.252"]


def test_reconfigure_grows_adds_and_moves_the_nic() -> None:
    spec = reconfig_spec(template_devices(), cpu=4, memory_mb=8192, disks_gb=[40, 200],
                         nic=nic_backing("PG-B", None))
    assert spec is not None
    assert (spec.numCPUs, spec.memoryMB) == (4, 8192)
    ops = [(c.operation, type(c.device).__name__, getattr(c.device, "capacityInKB", None))
           for c in spec.deviceChange]
    assert ops == [("edit", "vim.vm.device.VirtualDisk", 40 * KB_PER_GB),
                   ("add", "vim.vm.device.VirtualDisk", 200 * KB_PER_GB),
                   ("edit", "vim.vm.device.VirtualVmxnet3", None)]
    added = spec.deviceChange[1]
    assert (added.fileOperation, added.device.controllerKey, added.device.unitNumber) == (
        "create", 1000, 1)
    assert spec.deviceChange[2].device.backing.deviceName == "PG-B"


def test_reconfigure_of_a_matching_vm_is_nothing() -> None:
    assert reconfig_spec(template_devices((40,)), cpu=None, memory_mb=None, disks_gb=[40],
                         nic=nic_backing("PG-A", None)) is None


def test_reconfigure_never_shrinks_a_disk() -> None:
    with pytest.raises(VSphereError, match="never shrinks"):
        reconfig_spec(template_devices((80,)), cpu=None, memory_mb=None, disks_gb=[40],
                      nic=None)


def test_new_disks_skip_the_controllers_own_unit() -> None:
    spec = reconfig_spec(template_devices((1, 1, 1, 1, 1, 1, 1)), cpu=None, memory_mb=None,
                         disks_gb=[1] * 8, nic=None)
    assert spec is not None
    assert spec.deviceChange[0].device.unitNumber == 8


def test_customization_is_linuxprep_with_a_fixed_ip() -> None:
    spec = customization_spec("qlvb-app-01", "127.10.1.16", 24, "127.10.1.1", ["127.10.0.53"])
    assert spec.identity.hostName.name == "qlvb-app-01"
    adapter = spec.nicSettingMap[0].adapter
    assert (adapter.ip.ipAddress, adapter.subnetMask, list(adapter.gateway),
            list(adapter.dnsServerList)) == ("127.10.1.16", "255.255.255.0", ["127.10.1.1"],
                                             ["127.10.0.53"])


def test_a_clone_is_powered_off_placed_and_marked() -> None:
    pool, store, host = vim.ResourcePool("rp-1"), vim.Datastore("ds-1"), vim.HostSystem("h-1")
    spec = clone_spec(pool, store, host, mark=(OWNER, "danang"))
    assert spec.powerOn is False and spec.template is False
    assert (spec.location.pool, spec.location.datastore, spec.location.host) == (
        pool, store, host)
    assert [(o.key, o.value) for o in spec.config.extraConfig] == [(OWNER, "danang")]


def test_distributed_port_groups_get_a_dvport_backing() -> None:
    backing = nic_backing("PG-D", None, switch_uuid="50 01", portgroup_key="dvportgroup-9")
    assert backing.port.portgroupKey == "dvportgroup-9"


def test_facts_are_datacenter_qualified_and_owned_vms_recognised() -> None:
    root = vim.Folder("group-d1")
    rows: list[dict[str, Any]] = []
    for n, dc_name in enumerate(("DC-A", "DC-B")):
        dc = vim.Datacenter(f"dc-{n}")
        hosts, vms = vim.Folder(f"host-f{n}"), vim.Folder(f"vm-f{n}")
        cluster = vim.ClusterComputeResource(f"cl-{n}")
        pool, host = vim.ResourcePool(f"rp-{n}"), vim.HostSystem(f"h-{n}")
        store = vim.Datastore(f"ds-{n}")
        rows += [
            {"obj": dc, "name": dc_name, "parent": root, "vmFolder": vms},
            {"obj": hosts, "parent": dc}, {"obj": vms, "parent": dc},
            {"obj": cluster, "name": "CL", "parent": hosts, "resourcePool": pool,
             "summary.numCpuThreads": 64, "summary.effectiveMemory": 1000},
            {"obj": pool, "parent": cluster, "owner": cluster},
            {"obj": host, "name": f"esx-{n}", "parent": cluster,
             "summary.hardware.numCpuThreads": 64, "summary.hardware.memorySize": 1000 << 20,
             "datastore": [store], "runtime.connectionState": "connected",
             "runtime.inMaintenanceMode": False},
            {"obj": store, "name": "LocalDS_0", "parent": dc, "summary.capacity": 10,
             "summary.freeSpace": 5},
            {"obj": vim.VirtualMachine(f"vm-{n}"), "name": f"web-{n}", "parent": vms,
             "config.hardware.numCPU": 2, "config.hardware.memoryMB": 512,
             "runtime.powerState": "poweredOn", "runtime.host": host, "resourcePool": pool,
             "datastore": [store], "guest.ipAddress": f"10.0.0.{n}",
             "customValue": [vim.CustomFieldsManager.StringValue(key=7, value="danang")]},
        ]
    rows.append({"obj": vim.CustomFieldsManager("CustomFieldsManager"),
                 "field": [vim.CustomFieldsManager.FieldDef(key=7, name=OWNER)]})
    inv = build_inventory("https://vc/sdk", rows)
    assert sorted(inv.datastores) == [("DC-A", "LocalDS_0"), ("DC-B", "LocalDS_0")]
    web = inv.vms_named("web-1")[0]
    assert (web.datacenter, web.cluster, web.host, web.datastores, web.owner) == (
        "DC-B", "CL", "esx-1", ("LocalDS_0",), "danang")
    assert inv.clusters[("DC-A", "CL")].hosts == ("esx-0",)
    assert inv.fields == {OWNER: 7}
    add_devices(inv, {"VirtualMachine:vm-1": template_devices((40, 200), "PG-X")})
    assert inv.vms_named("web-1")[0].disks_kb == (40 * KB_PER_GB, 200 * KB_PER_GB)
    assert inv.vms_named("web-1")[0].port_groups == ("PG-X",)
    assert inv.vms_named("web-0")[0].disks_kb is None


class WatchedRoom(threading.Condition):
    """A condition that counts the threads waiting on it (CloneSlots' room): a test then
    knows when every clone that found no free slot is waiting for one."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting += 1  # wait is called holding the condition's lock
        try:
            return super().wait(timeout)
        finally:
            self.waiting -= 1


@pytest.mark.parametrize(("per_host", "per_datastore", "at_once"), [
    (2, 3, {"ds": 3, "h1": 2, "h2": 1}),  # the datastore's bound is reached first
    (1, 3, {"ds": 2, "h1": 1, "h2": 1}),  # each host's bound is reached first
])
def test_clone_slots_bound_clones_per_host_and_per_datastore(
        per_host: int, per_datastore: int, at_once: dict[str, int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    rooms: list[WatchedRoom] = []

    def watched_room() -> WatchedRoom:
        rooms.append(WatchedRoom())
        return rooms[-1]

    with monkeypatch.context() as patch:  # only while CloneSlots makes its room
        patch.setattr(threading, "Condition", watched_room)
        slots = CloneSlots(per_host=per_host, per_datastore=per_datastore)
    [room] = rooms
    release = threading.Event()
    busy: Counter[str] = Counter()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def clone() -> None:
        try:
            with slots.take(["h1", "h2"], "ds") as host:
                with lock:
                    busy.update((host, "ds"))
                assert release.wait(60), "the test never let the clones go"
                with lock:
                    busy.subtract((host, "ds"))
        except BaseException as exc:  # reported by the test, not lost in its thread
            errors.append(exc)

    def settled() -> bool:
        """Every clone holds a slot or waits for one (none is on its way)."""
        with room, lock:
            return busy["ds"] + room.waiting == len(threads)

    # daemons: a clone stuck for a slot never given back fails the test, not the run
    threads = [threading.Thread(target=clone, daemon=True) for _ in range(12)]
    for thread in threads:
        thread.start()
    try:
        wait_for("every clone to hold a slot or wait for one", settled)
        with lock:
            assert +busy == at_once
    finally:
        release.set()
    wait_for("every clone to finish", lambda: not any(t.is_alive() for t in threads))
    assert errors == []
    assert +busy == {}  # every slot given back


ANSWER = b"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:xsd="http://www.w3.org/2001/XMLSchema"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<soapenv:Body><RetrievePropertiesExResponse xmlns="urn:vim25"><returnval>
<token>page-2</token>
<objects><obj type="VirtualMachine">vm-42</obj>
 <propSet><name>name</name><val xsi:type="xsd:string">qlvb-db-01</val></propSet>
 <propSet><name>config.hardware.numCPU</name><val xsi:type="xsd:int">8</val></propSet>
 <propSet><name>config.template</name><val xsi:type="xsd:boolean">false</val></propSet>
 <propSet><name>runtime.powerState</name>
  <val xsi:type="VirtualMachinePowerState">poweredOn</val></propSet>
 <propSet><name>runtime.host</name>
  <val type="HostSystem" xsi:type="ManagedObjectReference">host-9</val></propSet>
 <propSet><name>datastore</name><val xsi:type="ArrayOfManagedObjectReference">
  <ManagedObjectReference type="Datastore" xsi:type="ManagedObjectReference">datastore-1\
</ManagedObjectReference></val></propSet>
 <propSet><name>customValue</name><val xsi:type="ArrayOfCustomFieldValue">
  <CustomFieldValue xsi:type="CustomFieldStringValue"><key>101</key><value>danang</value>
  </CustomFieldValue></val></propSet>
 <propSet><name>config.hardware.device</name><val xsi:type="ArrayOfVirtualDevice">
  <VirtualDevice xsi:type="ParaVirtualSCSIController"><key>1000</key><busNumber>0</busNumber>
  </VirtualDevice>
  <VirtualDevice xsi:type="VirtualDisk"><key>2001</key><controllerKey>1000</controllerKey>
   <unitNumber>1</unitNumber><capacityInKB>209715200</capacityInKB></VirtualDevice>
  <VirtualDevice xsi:type="VirtualVmxnet3"><key>4000</key>
   <backing xsi:type="VirtualEthernetCardDistributedVirtualPortBackingInfo">
    <port><switchUuid>50 01</switchUuid><portgroupKey>dvportgroup-7</portgroupKey></port>
   </backing></VirtualDevice>
 </val></propSet>
</objects>
</returnval></RetrievePropertiesExResponse></soapenv:Body></soapenv:Envelope>"""


def test_the_lean_reader_builds_values_references_and_devices() -> None:
    page = parse_page(ANSWER, lambda kind, moid: (kind, moid))
    assert page.token == "page-2"
    (row,) = page.rows
    assert row["obj"] == ("VirtualMachine", "vm-42")
    assert (row["name"], row["config.hardware.numCPU"], row["config.template"],
            row["runtime.powerState"], row["runtime.host"], row["datastore"]) == (
        "qlvb-db-01", 8, False, "poweredOn", ("HostSystem", "host-9"),
        [("Datastore", "datastore-1")])
    assert [(v.key, v.value) for v in row["customValue"]] == [(101, "danang")]
    assert row["config.hardware.device"] == [
        Device("scsi", 1000), Device("disk", 2001, 1000, 1, capacity_kb=209715200),
        Device("nic", 4000, portgroup_key="dvportgroup-7")]


def test_the_lean_reader_leaves_unknown_types_to_pyvmomi() -> None:
    odd = ANSWER.replace(b'xsi:type="xsd:int">8', b'xsi:type="VirtualMachineConfigSummary">8')
    with pytest.raises(UnsupportedValue, match="VirtualMachineConfigSummary"):
        parse_page(odd, lambda kind, moid: (kind, moid))
