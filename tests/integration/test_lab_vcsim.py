"""The lab's vCenter (orchestrator/lab/vcsim.py + vcsim/main.go) against pyVmomi.

Builds the real simulator once for the module in a temporary lab folder (about 20 s), starts
it on a free loopback port, and stops it at the end; nothing is left running.
"""

from __future__ import annotations

import json
import shutil
import ssl
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import vim, vmodl

from orchestrator.errors import LabError
from orchestrator.lab import gobuild, vcsim
from orchestrator.lab.processes import ProcessRecord, ProcessTable, is_alive
from tests.helpers import free_port

pytestmark = pytest.mark.lab

USER = "administrator@vsphere.lab"
PASSWORD = "Lab-pass-0!"
GIB = 1 << 30


def lab_model(port: int, credentials: Path) -> dict[str, Any]:
    """Two datacenters; "DS-SHARED" exists in both, as datastore names do in vCenter."""
    return {
        "listen": f"127.0.0.1:{port}",
        "credentials_file": str(credentials),
        "delays": {"delay_ms": 0, "jitter": 0.0, "methods": {}},
        "datacenters": [
            {
                "name": "DC-DaNang",
                "clusters": [
                    {"name": "CL-DN-01", "hosts": 4, "host_cpu_cores": 32,
                     "host_cpu_mhz": 2600, "host_memory_mb": 262144},
                    {"name": "CL-DN-02", "hosts": 2, "host_cpu_cores": 16,
                     "host_cpu_mhz": 2200, "host_memory_mb": 131072},
                ],
                "datastores": [
                    {"name": "DS-DN-SSD-01", "capacity_gb": 1000, "free_gb": 900},
                    {"name": "DS-SHARED", "capacity_gb": 500.0, "free_gb": 450.5},
                ],
                "portgroups": ["PG-DN-APP", "PG-DN-DB"],
                "templates": [
                    {"name": "tpl-debian12", "cpu": 2, "memory_mb": 2048, "disk_gb": 20,
                     "datastore": "DS-DN-SSD-01", "portgroup": "PG-DN-APP",
                     "cluster": "CL-DN-01"},
                ],
                "vms": [
                    {"name": "foreign-01", "cpu": 1, "memory_mb": 1024, "disk_gb": 10,
                     "datastore": "DS-DN-SSD-01", "portgroup": "PG-DN-DB",
                     "cluster": "CL-DN-02", "power_on": True},
                ],
            },
            {
                "name": "DC-HaNoi",
                "clusters": [
                    {"name": "CL-HN-01", "hosts": 3, "host_cpu_cores": 24,
                     "host_cpu_mhz": 2400, "host_memory_mb": 196608},
                ],
                "datastores": [{"name": "DS-SHARED", "capacity_gb": 2000, "free_gb": 1500}],
                "portgroups": ["PG-HN-BACKUP"],
                "templates": [
                    {"name": "tpl-hn-debian12", "cpu": 1, "memory_mb": 1024, "disk_gb": 8,
                     "datastore": "DS-SHARED", "portgroup": "PG-HN-BACKUP",
                     "cluster": "CL-HN-01"},
                ],
                "vms": [
                    {"name": "foreign-hn-01", "cpu": 1, "memory_mb": 512, "disk_gb": 4,
                     "datastore": "DS-SHARED", "portgroup": "PG-HN-BACKUP",
                     "cluster": "CL-HN-01", "power_on": False},
                ],
            },
        ],
    }


@dataclass
class Sim:
    lab_dir: Path
    table: ProcessTable
    record: ProcessRecord
    model: dict[str, Any]
    port: int

    @property
    def url(self) -> str:
        return self.record.address

    @property
    def cafile(self) -> str:
        return self.record.details["cafile"]

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.cafile)
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
        return ctx

    def connect(self, user: str = USER, pwd: str = PASSWORD) -> Any:
        return SmartConnect(host="127.0.0.1", port=self.port, user=user, pwd=pwd,
                            sslContext=self.context())


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    lab_dir = tmp_path_factory.mktemp("vcsim-lab")
    table = ProcessTable(lab_dir)
    credentials = lab_dir / "vcsim" / "credentials.json"
    vcsim.write_credentials(credentials, USER, PASSWORD)
    port = free_port()
    model = lab_model(port, credentials)
    gobuild.build(lab_dir, gobuild.VCSIM)
    try:
        record = vcsim.start(lab_dir, model, table)
        yield Sim(lab_dir, table, record, model, port)
    finally:
        vcsim.stop(table)
        left = [r.name for r in table.all() if is_alive(r)]
        assert not left, f"left running: {left}"
        rec = table.get("vcsim")
        assert rec is None
        assert not (lab_dir / "vcsim" / "vcsim.ready").exists()


@pytest.fixture
def si(sim: Sim) -> Iterator[Any]:
    service = sim.connect()
    try:
        yield service
    finally:
        Disconnect(service)


# ------------------------------------------------------------------ helpers


def collect(si: Any, root: Any, kind: type, props: list[str]) -> dict[Any, dict[str, Any]]:
    """Properties of every ``kind`` object under ``root``, through a ContainerView and
    RetrievePropertiesEx (the way hopnhat reads the inventory)."""
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(root, [kind], True)
    try:
        pc = vmodl.query.PropertyCollector
        spec = pc.FilterSpec(
            objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[
                pc.TraversalSpec(name="view", path="view", skip=False,
                                 type=vim.view.ContainerView)])],
            propSet=[pc.PropertySpec(type=kind, pathSet=props)])
        out: dict[Any, dict[str, Any]] = {}
        result = content.propertyCollector.RetrievePropertiesEx([spec], pc.RetrieveOptions())
        while result is not None:
            for obj in result.objects:
                out[obj.obj] = {p.name: p.val for p in obj.propSet}
            if not result.token:
                break
            result = content.propertyCollector.ContinueRetrievePropertiesEx(result.token)
        return out
    finally:
        view.DestroyView()


def by_name(found: dict[Any, dict[str, Any]]) -> dict[str, tuple[Any, dict[str, Any]]]:
    return {props["name"]: (obj, props) for obj, props in found.items()}


def datacenter(si: Any, name: str) -> Any:
    dcs = by_name(collect(si, si.RetrieveContent().rootFolder, vim.Datacenter, ["name"]))
    return dcs[name][0]


def vm_named(si: Any, dc: Any, name: str) -> Any:
    return by_name(collect(si, dc.vmFolder, vim.VirtualMachine, ["name"]))[name][0]


def cluster_named(si: Any, dc: Any, name: str) -> Any:
    return by_name(collect(si, dc.hostFolder, vim.ClusterComputeResource, ["name"]))[name][0]


def wait(task: Any) -> Any:
    WaitForTask(task)
    return task.info.result


def linux_customization(hostname: str, ip: str) -> Any:
    c = vim.vm.customization
    return c.Specification(
        identity=c.LinuxPrep(hostName=c.FixedName(name=hostname), domain="lab.internal"),
        globalIPSettings=c.GlobalIPSettings(),
        nicSettingMap=[c.AdapterMapping(adapter=c.IPSettings(
            ip=c.FixedIp(ipAddress=ip), subnetMask="255.255.0.0", gateway=["127.110.0.1"]))])


def clone(si: Any, dc_name: str, template: str, name: str, cluster: str) -> Any:
    dc = datacenter(si, dc_name)
    pool = cluster_named(si, dc, cluster).resourcePool
    spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=pool), powerOn=False)
    return wait(vm_named(si, dc, template).Clone(folder=dc.vmFolder, name=name, spec=spec))


def destroy(vm: Any) -> None:
    if vm.runtime.powerState == "poweredOn":
        wait(vm.PowerOffVM_Task())
    wait(vm.Destroy_Task())


def nic(vm: Any) -> Any:
    [card] = [d for d in vm.config.hardware.device
              if isinstance(d, vim.vm.device.VirtualEthernetCard)]
    return card


def disk(vm: Any) -> Any:
    [d] = [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]
    return d


# ------------------------------------------------------------------ build and start


def test_build_is_cached_and_start_is_idempotent(sim: Sim) -> None:
    binary = vcsim.binary_path(sim.lab_dir)
    before = binary.stat().st_mtime_ns
    started = time.monotonic()
    assert gobuild.build(sim.lab_dir, gobuild.VCSIM) == binary
    assert time.monotonic() - started < 2.0
    assert binary.stat().st_mtime_ns == before
    stamp = binary.with_name(binary.name + ".sha256").read_text().strip()
    assert len(stamp) == 64

    again = vcsim.start(sim.lab_dir, sim.model, sim.table)
    assert again.pid == sim.record.pid
    assert sim.record.kind == "vcsim" and sim.record.name == "vcsim"
    assert sim.record.address == f"https://127.0.0.1:{sim.port}/sdk"
    assert (sim.lab_dir / "vcsim" / "vcsim.ready").read_text().strip() == sim.record.address
    written = json.loads(vcsim.model_path(sim.lab_dir).read_text())
    assert written["datacenters"] == sim.model["datacenters"]
    assert "password" not in vcsim.model_path(sim.lab_dir).read_text().lower()


def test_credentials_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "credentials.json"
    vcsim.write_credentials(path, "u", "p w")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"username": "u", "password": "p w"}
    with pytest.raises(LabError):
        vcsim.write_credentials(path, "u", "")


def test_second_simulator_on_a_busy_port_fails_cleanly(sim: Sim, tmp_path: Path) -> None:
    other = tmp_path / "lab"
    shutil.copytree(sim.lab_dir / "bin", other / "bin")  # same sources: no rebuild
    table = ProcessTable(other)
    credentials = other / "vcsim" / "credentials.json"
    vcsim.write_credentials(credentials, USER, PASSWORD)
    with pytest.raises(LabError, match="listen"):
        vcsim.start(other, lab_model(sim.port, credentials), table, timeout=20)
    assert table.get("vcsim") is None


# ------------------------------------------------------------------ TLS and login


def test_tls_is_verified_against_the_lab_certificate(sim: Sim) -> None:
    cert = Path(sim.cafile)
    assert stat.S_IMODE(cert.stat().st_mode) == 0o644
    assert stat.S_IMODE(cert.with_name("key.pem").stat().st_mode) == 0o600
    with pytest.raises(ssl.SSLCertVerificationError):  # not trusted without the lab's CA
        SmartConnect(host="127.0.0.1", port=sim.port, user=USER, pwd=PASSWORD,
                     sslContext=ssl.create_default_context())
    service = sim.connect()
    try:
        assert service.content.about.apiType == "VirtualCenter"
        assert service.content.sessionManager.currentSession.userName == USER
    finally:
        Disconnect(service)


@pytest.mark.parametrize(("user", "pwd"), [(USER, "wrong"), ("root", PASSWORD), (USER, "")])
def test_wrong_credentials_are_refused(sim: Sim, user: str, pwd: str) -> None:
    with pytest.raises(vim.fault.InvalidLogin):
        sim.connect(user, pwd)


# ------------------------------------------------------------------ inventory


def test_inventory_matches_the_model(sim: Sim, si: Any) -> None:
    root = si.RetrieveContent().rootFolder
    dcs = by_name(collect(si, root, vim.Datacenter, ["name"]))
    assert set(dcs) == {dc["name"] for dc in sim.model["datacenters"]}
    # nothing of vcsim's default model is left anywhere
    assert len(collect(si, root, vim.HostSystem, ["name"])) == 4 + 2 + 3
    assert len(collect(si, root, vim.Datastore, ["name"])) == 3
    assert len(collect(si, root, vim.ResourcePool, ["name"])) == 3  # one root pool per cluster
    assert len(collect(si, root, vim.ComputeResource, ["name"])) == 3

    for spec in sim.model["datacenters"]:
        dc = dcs[spec["name"]][0]

        clusters = by_name(collect(si, dc, vim.ClusterComputeResource,
                                   ["name", "summary", "host", "network", "datastore"]))
        assert set(clusters) == {c["name"] for c in spec["clusters"]}
        for c in spec["clusters"]:
            props = clusters[c["name"]][1]
            summary = props["summary"]
            assert summary.numHosts == c["hosts"] == len(props["host"])
            assert summary.totalMemory == c["hosts"] * c["host_memory_mb"] * 1024 * 1024
            assert summary.effectiveMemory == c["hosts"] * c["host_memory_mb"]
            assert summary.numCpuCores == c["hosts"] * c["host_cpu_cores"]
            assert summary.totalCpu == c["hosts"] * c["host_cpu_cores"] * c["host_cpu_mhz"]
            assert sorted(n.name for n in props["network"]) == sorted(spec["portgroups"])
            assert sorted(d.name for d in props["datastore"]) == sorted(
                d["name"] for d in spec["datastores"])
            hosts = collect(si, clusters[c["name"]][0], vim.HostSystem,
                            ["summary.hardware", "config.network.portgroup", "network"])
            for host in hosts.values():
                hw = host["summary.hardware"]
                assert (hw.numCpuCores, hw.cpuMhz, hw.memorySize) == (
                    c["host_cpu_cores"], c["host_cpu_mhz"], c["host_memory_mb"] << 20)
                assert sorted(pg.spec.name for pg in host["config.network.portgroup"]) == sorted(
                    [*spec["portgroups"], "Management Network"])
                assert sorted(n.name for n in host["network"]) == sorted(spec["portgroups"])

        stores = by_name(collect(si, dc, vim.Datastore, ["name", "summary", "host"]))
        assert {n: (p["summary"].capacity, p["summary"].freeSpace) for n, (_, p) in
                stores.items()} == {d["name"]: (int(d["capacity_gb"] * GIB),
                                                int(d["free_gb"] * GIB))
                                    for d in spec["datastores"]}
        hosts_in_dc = sum(c["hosts"] for c in spec["clusters"])
        assert all(len(p["host"]) == hosts_in_dc for _, p in stores.values())

        networks = collect(si, dc.networkFolder, vim.Network, ["name"])
        assert sorted(p["name"] for p in networks.values()) == sorted(spec["portgroups"])
        assert all(type(n) is vim.Network for n in networks)  # standard port groups

        vms = by_name(collect(si, dc.vmFolder, vim.VirtualMachine, [
            "name", "config.template", "config.hardware.numCPU",
            "config.hardware.memoryMB", "config.hardware.device", "runtime.powerState",
            "resourcePool", "runtime.host"]))
        expected = spec["templates"] + spec["vms"]
        assert set(vms) == {v["name"] for v in expected}
        for v in expected:
            props = vms[v["name"]][1]
            is_template = v in spec["templates"]
            assert props["config.template"] is is_template
            assert props["config.hardware.numCPU"] == v["cpu"]
            assert props["config.hardware.memoryMB"] == v["memory_mb"]
            [vdisk] = [d for d in props["config.hardware.device"]
                       if isinstance(d, vim.vm.device.VirtualDisk)]
            assert vdisk.capacityInKB == v["disk_gb"] * 1024 * 1024
            disk_file = vdisk.backing
            assert isinstance(disk_file, vim.vm.device.VirtualDisk.FlatVer2BackingInfo)
            assert disk_file.fileName.startswith(f"[{v['datastore']}] ")
            assert disk_file.datastore is not None
            assert disk_file.datastore.name == v["datastore"]
            [card] = [d for d in props["config.hardware.device"]
                      if isinstance(d, vim.vm.device.VirtualEthernetCard)]
            port_group = card.backing
            assert isinstance(port_group, vim.vm.device.VirtualEthernetCard.NetworkBackingInfo)
            assert port_group.deviceName == v["portgroup"]
            assert props["runtime.host"] in clusters[v["cluster"]][1]["host"]
            if is_template:
                assert props["runtime.powerState"] == "poweredOff"
                assert props.get("resourcePool") is None
            else:
                assert props["runtime.powerState"] == (
                    "poweredOn" if v["power_on"] else "poweredOff")
                pool = clusters[v["cluster"]][0].resourcePool
                assert props["resourcePool"] == pool


# ------------------------------------------------------------------ the provisioning path


def test_clone_needs_a_pool(si: Any) -> None:
    dc = datacenter(si, "DC-DaNang")
    task = vm_named(si, dc, "tpl-debian12").Clone(
        folder=dc.vmFolder, name="no-pool", spec=vim.vm.CloneSpec(location=vim.vm.RelocateSpec()))
    with pytest.raises(vmodl.fault.InvalidArgument) as caught:
        WaitForTask(task)
    assert caught.value.invalidProperty == "spec.location.pool"
    assert "no-pool" not in by_name(collect(si, dc.vmFolder, vim.VirtualMachine, ["name"]))


def test_clone_customize_power_on_gives_guest_identity(si: Any) -> None:
    dc = datacenter(si, "DC-DaNang")
    template = vm_named(si, dc, "tpl-debian12")
    template_disk = disk(template).backing.fileName
    template_mac = nic(template).macAddress

    pool = cluster_named(si, dc, "CL-DN-01").resourcePool
    # hopnhat's order (adapters/vsphere_specs.py: clone_spec): clone powered off, customize,
    # power on — it suits a real vCenter and the simulator alike
    spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=pool), powerOn=False)
    vm = wait(template.Clone(folder=dc.vmFolder, name="app-01", spec=spec))
    try:
        assert vm.name == "app-01"
        assert vm.runtime.powerState == "poweredOff"
        assert not vm.guest.ipAddress and not vm.guest.hostName
        assert vm.config.template is False
        assert vm.resourcePool == cluster_named(si, dc, "CL-DN-01").resourcePool
        assert disk(vm).backing.fileName == "[DS-DN-SSD-01] app-01/app-01.vmdk"
        assert nic(vm).backing.deviceName == "PG-DN-APP"
        assert nic(vm).macAddress != template_mac

        wait(vm.CustomizeVM_Task(spec=linux_customization("app-01", "127.110.1.21")))
        wait(vm.PowerOnVM_Task())
        assert vm.runtime.powerState == "poweredOn"
        assert vm.guest.ipAddress == "127.110.1.21"
        assert vm.guest.hostName == "app-01"
        with pytest.raises(vim.fault.InvalidPowerState):
            wait(vm.PowerOnVM_Task())
        # tools report not running until an ExtraConfig "SET." key says otherwise
        assert vm.guest.toolsRunningStatus == "guestToolsNotRunning"
        wait(vm.ReconfigVM_Task(spec=vim.vm.ConfigSpec(extraConfig=[vim.option.OptionValue(
            key="SET.guest.toolsRunningStatus", value="guestToolsRunning")])))
        assert vm.guest.toolsRunningStatus == "guestToolsRunning"
    finally:
        destroy(vm)
    assert "app-01" not in by_name(collect(si, dc.vmFolder, vim.VirtualMachine, ["name"]))
    # the template kept its own disk and MAC (patched CloneVM_Task)
    assert disk(template).backing.fileName == template_disk
    assert nic(template).macAddress == template_mac


def test_a_second_vm_of_a_name_is_refused(si: Any) -> None:
    dc = datacenter(si, "DC-DaNang")
    with pytest.raises(vim.fault.DuplicateName):
        clone(si, "DC-DaNang", "tpl-debian12", "foreign-01", "CL-DN-01")
    names = [p["name"] for p in collect(si, dc.vmFolder, vim.VirtualMachine, ["name"]).values()]
    assert names.count("foreign-01") == 1


def test_custom_fields(si: Any) -> None:
    manager = si.RetrieveContent().customFieldsManager
    field = manager.AddCustomFieldDef(name="hopnhat.system", moType=vim.VirtualMachine)
    vm = clone(si, "DC-HaNoi", "tpl-hn-debian12", "cf-01", "CL-HN-01")
    try:
        manager.SetField(entity=vm, key=field.key, value="erp")
        manager.SetField(entity=vm, key=field.key, value="erp-2")  # replaces, as vCenter does
        values = collect(si, datacenter(si, "DC-HaNoi").vmFolder, vim.VirtualMachine,
                         ["name", "customValue"])
        [props] = [p for p in values.values() if p["name"] == "cf-01"]
        assert [(v.key, v.value) for v in props["customValue"]] == [(field.key, "erp-2")]
        assert any(f.name == "hopnhat.system" for f in manager.field)
    finally:
        destroy(vm)


def test_lazy_attribute_reads_do_not_crash_the_server(sim: Sim, si: Any) -> None:
    vcsim.reset_method_counts(sim.url, sim.cafile)
    dc = datacenter(si, "DC-DaNang")
    template = vm_named(si, dc, "tpl-debian12")
    assert template.name == "tpl-debian12"
    assert template.snapshot is None  # unset: the unpatched Fetch panicked here
    assert template.resourcePool is None
    assert template.parentVApp is None
    vm = clone(si, "DC-DaNang", "tpl-debian12", "lazy-01", "CL-DN-01")
    task = vm.PowerOnVM_Task()
    try:
        assert task.info.state in ("running", "success")
        WaitForTask(task)
        assert task.info.state == "success"
        assert task.info.error is None
    finally:
        destroy(vm)
    assert vcsim.method_counts(sim.url, sim.cafile).get("Fetch", 0) >= 5
    assert is_alive(sim.record)
    assert template.name == "tpl-debian12"  # and the server still answers


# ------------------------------------------------------------------ lab endpoints and delays


def test_method_counts_see_clone_tasks(sim: Sim, si: Any) -> None:
    vcsim.reset_method_counts(sim.url, sim.cafile)
    assert vcsim.method_counts(sim.url, sim.cafile) == {}

    dc = datacenter(si, "DC-DaNang")
    collect(si, dc.vmFolder, vim.VirtualMachine, ["name", "config.template"])
    counts = vcsim.method_counts(sim.url, sim.cafile)
    assert counts.get("RetrievePropertiesEx", 0) >= 1
    assert "CloneVM_Task" not in counts  # reading makes no task

    vm = clone(si, "DC-DaNang", "tpl-debian12", "counted-01", "CL-DN-01")
    destroy(vm)
    counts = vcsim.method_counts(sim.url, sim.cafile)
    assert counts["CloneVM_Task"] == 1
    assert counts["Destroy_Task"] == 1

    vcsim.reset_method_counts(sim.url, sim.cafile)
    assert "CloneVM_Task" not in vcsim.method_counts(sim.url, sim.cafile)


def test_sighup_changes_the_clone_delay_without_restart(sim: Sim, si: Any) -> None:
    def timed_clone(name: str) -> float:
        started = time.monotonic()
        vm = clone(si, "DC-DaNang", "tpl-debian12", name, "CL-DN-01")
        elapsed = time.monotonic() - started
        destroy(vm)
        return elapsed

    fast = timed_clone("delay-00")
    try:
        vcsim.set_delays(sim.lab_dir, sim.table, {"methods": {"CloneVM_Task": 300}})
        model = json.loads(vcsim.model_path(sim.lab_dir).read_text())
        assert model["delays"]["methods"] == {"CloneVM_Task": 300}
        slow = timed_clone("delay-01")
        assert slow >= 0.3
        assert slow > fast
    finally:
        vcsim.set_delays(sim.lab_dir, sim.table, {})
    assert timed_clone("delay-02") < 0.3
    assert sim.table.running("vcsim") == sim.record  # same process throughout
    assert "SIGHUP" in vcsim.log_path(sim.lab_dir).read_text()


def test_set_delays_refuses_bad_values(sim: Sim) -> None:
    with pytest.raises(LabError):
        vcsim.set_delays(sim.lab_dir, sim.table, {"methods": {"CloneVM_Task": -1}})
    with pytest.raises(LabError):
        vcsim.set_delays(sim.lab_dir, sim.table, {"delay": 5})


def test_a_clone_with_power_on_and_customization_comes_up_customized(si: Any) -> None:
    """As on vCenter (govmomi's simulator since 0.25; 0.24 ignored both)."""
    dc = datacenter(si, "DC-DaNang")
    pool = cluster_named(si, dc, "CL-DN-01").resourcePool
    spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=pool), powerOn=True,
                            customization=linux_customization("web-01", "127.110.1.99"))
    vm = wait(vm_named(si, dc, "tpl-debian12").Clone(folder=dc.vmFolder, name="web-01",
                                                      spec=spec))
    try:
        assert vm.runtime.powerState == "poweredOn"
        assert vm.guest.ipAddress == "127.110.1.99"
        assert vm.guest.hostName == "web-01"
        with pytest.raises(vim.fault.InvalidPowerState):
            wait(vm.CustomizeVM_Task(spec=linux_customization("web-01", "127.110.1.98")))
    finally:
        destroy(vm)
