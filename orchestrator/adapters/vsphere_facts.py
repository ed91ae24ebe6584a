"""What a vCenter holds, as plain data, read in a constant number of requests.

:func:`read_inventory` reads every datacenter, folder, cluster, host, resource pool,
datastore, network, distributed switch, VM and template, and the custom attribute
definitions, in ONE RetrievePropertiesEx over a ContainerView (plus its pages), then the
device lists (disks, NICs) of the VMs the caller asks for in ONE more RetrievePropertiesEx
(plus pages): 2 calls + pages + CreateContainerView/DestroyView, however many VMs.
Device lists are the heavy part of a VM (a dozen devices each), so they are read only for
the VMs a plan has to compare, and only when their configuration changed since the last
read (:mod:`vsphere_cache`: the lists kept in the state folder by configuration version).

Names are datacenter-qualified (``(datacenter, name)``): datastore names such as
``LocalDS_0`` repeat in every datacenter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pyVmomi import vim

from orchestrator.adapters.vsphere import VCenter, moref_key
from orchestrator.adapters.vsphere_cache import DeviceCache, cached_devices, config_version
from orchestrator.adapters.vsphere_xml import Device, device_of

OWNER = "hopnhat.owner"
SYSTEM = "hopnhat.system"
TIER = "hopnhat.tier"
PROVISIONED = "hopnhat.provisioned"
ADOPTED = "hopnhat.adopted"  # a VM hopnhat took over rather than built (the run that did)
# a migrated system's source: the date its parallel run ends (YYYY-MM-DD, UTC)
PARALLEL_RUN_UNTIL = "hopnhat.parallel-run-until"
MARKS = (OWNER, SYSTEM, TIER, PROVISIONED, ADOPTED)
# where a province's team may record a VM's SSH host key fingerprint (``SHA256:…``)
HOST_KEY_FINGERPRINT = "guestinfo.hopnhat.ssh-host-key-sha256"

Where = tuple[str, str]  # (datacenter, name)
# objects a page of each read asks for (maxObjects): one page a call up to 10,000 objects,
# so a vCenter of 5,000 VMs is read in 3-6 requests (issue 16: at most 8 a vCenter); a
# vCenter may still answer in smaller pages of its own choosing
PAGE_SIZE = 10_000

VM_PATHS = ("name", "parent", "config.template", "config.hardware.numCPU",
            "config.hardware.memoryMB", "config.tools.pendingCustomization",
            "runtime.powerState", "runtime.host", "resourcePool", "datastore",
            "guest.ipAddress", "guest.hostName", "customValue", "config.changeVersion",
            "config.modified", "config.instanceUuid", "config.guestFullName",
            "guest.toolsRunningStatus")
PROPERTIES: dict[type, tuple[str, ...]] = {
    vim.Datacenter: ("name", "parent", "vmFolder"),
    vim.Folder: ("name", "parent"),
    vim.ComputeResource: ("name", "parent", "resourcePool", "summary.numCpuThreads",
                          "summary.effectiveMemory"),
    vim.HostSystem: ("name", "parent", "summary.hardware.numCpuThreads",
                     "summary.hardware.memorySize", "datastore", "runtime.connectionState",
                     "runtime.inMaintenanceMode"),
    vim.ResourcePool: ("parent", "owner"),
    vim.Datastore: ("name", "parent", "summary.capacity", "summary.freeSpace",
                    "summary.accessible"),
    vim.Network: ("name", "parent"),
    vim.dvs.DistributedVirtualPortgroup: ("key", "config.distributedVirtualSwitch"),
    vim.DistributedVirtualSwitch: ("uuid",),
    vim.VirtualMachine: VM_PATHS,
}


@dataclass(frozen=True)
class VMFacts:
    """One VM (or template) as vCenter reports it. ``disks_kb`` (bus order) and
    ``port_groups`` (one per NIC, None for a backing hopnhat cannot name) are None when
    the device list was not read."""

    name: str
    datacenter: str | None = None
    cluster: str | None = None
    host: str | None = None
    datastores: tuple[str, ...] = ()
    template: bool = False
    cpu: int = 0
    memory_mb: int = 0
    power_state: str = "poweredOff"
    ip: str | None = None
    hostname: str | None = None
    pending_customization: bool = False
    attributes: Mapping[str, str] = field(default_factory=dict)
    disks_kb: tuple[int, ...] | None = None
    port_groups: tuple[str | None, ...] | None = None
    clone_mark: str | None = None  # extraConfig hopnhat.owner, set by hopnhat's clone spec
    uuid: str | None = None  # vCenter's instance UUID (lower case): survives a rename
    folder: str = ""  # folder path under its datacenter's VM folder ("" at the top)
    guest_os: str | None = None
    tools: str | None = None  # VMware Tools: guestToolsRunning, guestToolsNotRunning…
    host_key_fingerprint: str | None = None  # extraConfig HOST_KEY_FINGERPRINT, when read
    # changes with every change of the configuration (its text differs between the lean
    # reader and pyVmomi's, so it is not part of a VM's facts when they are compared)
    config_version: str | None = field(default=None, compare=False)
    ref: Any = field(default=None, compare=False, repr=False)

    @property
    def powered_on(self) -> bool:
        return self.power_state == "poweredOn"

    @property
    def owner(self) -> str | None:
        """The estate that owns this VM: its ``hopnhat.owner`` custom attribute, else the
        mark hopnhat's clone spec leaves in extraConfig (a clone whose run was cut off
        before the attributes were set), else None."""
        return self.attributes.get(OWNER) or self.clone_mark or None


@dataclass(frozen=True)
class ClusterFacts:
    name: str
    datacenter: str
    cpu_threads: int
    memory_mb: int  # effective memory (what vCenter lets VMs use), MB
    hosts: tuple[str, ...] = ()
    ref: Any = field(default=None, compare=False, repr=False)
    pool: Any = field(default=None, compare=False, repr=False)  # root resource pool


@dataclass(frozen=True)
class HostFacts:
    name: str
    datacenter: str
    cluster: str | None
    cpu_threads: int
    memory_mb: int
    datastores: tuple[str, ...] = ()
    usable: bool = True  # connected and not in maintenance mode
    ref: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class DatastoreFacts:
    name: str
    datacenter: str
    capacity_bytes: int
    free_bytes: int
    accessible: bool = True
    ref: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class NetworkFacts:
    name: str
    datacenter: str
    switch_uuid: str | None = None  # distributed port groups only
    portgroup_key: str | None = None
    ref: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class DatacenterFacts:
    name: str
    vm_folder: Any = field(default=None, compare=False, repr=False)


@dataclass
class Inventory:
    """Everything :func:`read_inventory` found in one vCenter."""

    url: str
    datacenters: dict[str, DatacenterFacts] = field(default_factory=dict)
    clusters: dict[Where, ClusterFacts] = field(default_factory=dict)
    hosts: dict[Where, HostFacts] = field(default_factory=dict)
    datastores: dict[Where, DatastoreFacts] = field(default_factory=dict)
    networks: dict[Where, NetworkFacts] = field(default_factory=dict)
    templates: dict[Where, VMFacts] = field(default_factory=dict)
    vms: list[VMFacts] = field(default_factory=list)
    fields: dict[str, int] = field(default_factory=dict)  # custom attribute name → key
    _by_name: tuple[list[VMFacts], int, dict[str, list[VMFacts]]] | None = field(
        default=None, repr=False, compare=False)
    _by_uuid: tuple[list[VMFacts], int, dict[str, list[VMFacts]]] | None = field(
        default=None, repr=False, compare=False)

    def vms_with_uuid(self, uuid: str) -> list[VMFacts]:
        """The VMs whose instance UUID is ``uuid`` (one, unless vCenter was tampered with)."""
        indexed = self._by_uuid
        if indexed is None or indexed[0] is not self.vms or indexed[1] != len(self.vms):
            index: dict[str, list[VMFacts]] = {}
            for vm in self.vms:
                if vm.uuid:
                    index.setdefault(vm.uuid, []).append(vm)
            indexed = self._by_uuid = (self.vms, len(self.vms), index)
        return list(indexed[2].get(uuid.lower(), ()))

    def vms_named(self, name: str) -> list[VMFacts]:
        """The VMs (not templates) called ``name``: usually one or none. Indexed on first
        use, and again whenever ``vms`` is replaced or grows."""
        indexed = self._by_name
        if indexed is None or indexed[0] is not self.vms or indexed[1] != len(self.vms):
            index: dict[str, list[VMFacts]] = {}
            for vm in self.vms:
                index.setdefault(vm.name, []).append(vm)
            indexed = self._by_name = (self.vms, len(self.vms), index)
        return list(indexed[2].get(name, ()))


class _Tree:
    """Parents of every object read, to find an object's datacenter without a request."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.datacenter_names: dict[str, str] = {}
        self._memo: dict[str, str | None] = {}
        self.folder_names: dict[str, str] = {}
        self.vm_folders: set[str] = set()  # each datacenter's root VM folder
        self._paths: dict[str, str] = {}

    def add(self, obj: Any, row: Mapping[str, Any]) -> None:
        """Record ``obj`` (of ``row``): its parent, and its name if it is a datacenter or a
        folder (with its datacenter's VM folder)."""
        key = moref_key(obj)
        if row.get("parent") is not None:
            self.parent[key] = moref_key(row["parent"])
        if isinstance(obj, vim.Datacenter):
            self.datacenter_names[key] = str(row.get("name"))
            if row.get("vmFolder") is not None:
                self.vm_folders.add(moref_key(row["vmFolder"]))
        elif isinstance(obj, vim.Folder):
            self.folder_names[key] = str(row.get("name") or "")

    def folder_path(self, key: str | None) -> str:
        """The path of folder ``key`` under its datacenter's VM folder (``Legacy/QLVB``;
        "" for the VM folder itself or a folder outside one)."""
        if key is None or key in self.vm_folders or key not in self.folder_names:
            return ""
        known = self._paths.get(key)
        if known is None:
            above = self.folder_path(self.parent.get(key))
            name = self.folder_names[key]
            known = self._paths[key] = f"{above}/{name}" if above else name
        return known

    def datacenter(self, key: str | None) -> str | None:
        seen: list[str] = []
        result: str | None = None
        while key is not None:
            if key in self._memo:
                result = self._memo[key]
                break
            if key in self.datacenter_names:
                result = self.datacenter_names[key]
                break
            seen.append(key)
            key = self.parent.get(key)
        for k in seen:
            self._memo[k] = result
        return result


def _ref_key(ref: Any) -> str | None:
    return None if ref is None else moref_key(ref)


def _attributes(values: Any, names: Mapping[int, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values or []:
        name = names.get(int(value.key))
        if name is not None and getattr(value, "value", None) is not None:
            out[name] = str(value.value)
    return out


def read_inventory(vc: VCenter, wants_devices: Callable[[VMFacts], bool] = lambda _: True,
                   page_size: int = PAGE_SIZE, lean: bool = True,
                   cache: DeviceCache | None = None) -> Inventory:
    """Read the vCenter behind ``vc``. The device lists (disks, NICs) of templates and of
    the VMs for which ``wants_devices`` says True come from ``cache`` when their
    configuration has not changed since they were read, else from a second call; the clone
    mark (extraConfig) of those among them that carry no ``hopnhat.owner`` attribute and
    sit in their datacenter's VM folder (where hopnhat clones) in a third, only when there
    are such VMs (rare: a clone cut off before it was marked).
    ``lean`` (default): answers parsed by :mod:`vsphere_xml`, 5-10x faster than pyVmomi's
    deserializer on large reads; False reads through pyVmomi (same facts). ``cache``
    (:class:`DeviceCache` of this vCenter) is updated and saved; None reads every list.

    Out: :class:`Inventory`. Raises VSphereError when vCenter fails or is unreachable.
    """
    manager = vc.content.customFieldsManager
    rows = vc.view_properties("reading the inventory", dict(PROPERTIES),
                              extra=[(manager, vim.CustomFieldsManager, ["field"])],
                              page_size=page_size, lean=lean)
    inventory = build_inventory(vc.url, rows)
    chosen = [vm for vm in inventory.vms if wants_devices(vm)]
    targets = {moref_key(vm.ref): vm for vm in [*chosen, *inventory.templates.values()]}
    cache = cache if cache is not None else DeviceCache(None, vc.url)
    devices, missing = cached_devices(
        cache, {key: vm.config_version for key, vm in targets.items()})
    if missing:
        device_rows = vc.object_properties("reading VM devices",
                                           [targets[key].ref for key in missing],
                                           vim.VirtualMachine, ["config.hardware.device"],
                                           page_size=page_size, lean=lean)
        for row in device_rows:
            key = moref_key(row["obj"])
            records = [device_of(d) for d in row.get("config.hardware.device") or []]
            devices[key] = records
            cache.put(key, targets[key].config_version, records)
    if targets:
        add_devices(inventory, devices)
    existing = {moref_key(vm.ref) for vm in [*inventory.vms, *inventory.templates.values()]}
    if missing or not existing.issuperset(cache.entries):
        cache.save(existing)
    # hopnhat clones into a datacenter's VM folder itself: a VM in a sub-folder without
    # the mark is someone else's (a province's own), never a clone of hopnhat's cut off
    unmarked = [vm for vm in chosen if OWNER not in vm.attributes and not vm.folder]
    if unmarked:
        extra_rows = vc.object_properties("reading clone marks", [vm.ref for vm in unmarked],
                                          vim.VirtualMachine, ["config.extraConfig"],
                                          page_size=page_size, lean=lean)
        add_clone_marks(inventory, {moref_key(r["obj"]): r.get("config.extraConfig") or []
                                    for r in extra_rows})
    return inventory


def add_clone_marks(inv: Inventory, extra_config: Mapping[str, list[Any]]) -> None:
    """Fill ``clone_mark`` from each read VM's extraConfig (VM key → option values)."""
    def marked(vm: VMFacts) -> VMFacts:
        options = extra_config.get(moref_key(vm.ref)) if vm.ref is not None else None
        for option in options or []:
            if option.key == OWNER and option.value:
                return replace(vm, clone_mark=str(option.value))
        return vm
    inv.vms = [marked(vm) for vm in inv.vms]


Row = dict[str, Any]  # one object of a read: "obj" (its reference) and its properties


def build_inventory(url: str, rows: list[Row]) -> Inventory:
    """Turn the rows of the one big read into an :class:`Inventory` (no request)."""
    tree, by_type, field_names = _sort_rows(rows)
    inv = Inventory(url=url, fields={name: key for key, name in field_names.items()})
    for row in by_type.get("Datacenter", []):
        inv.datacenters[str(row["name"])] = DatacenterFacts(str(row["name"]), row.get("vmFolder"))
    cluster_names = _add_clusters(inv, tree, by_type.get("ComputeResource", []))
    pool_owner = {moref_key(r["obj"]): _ref_key(r.get("owner"))
                  for r in by_type.get("ResourcePool", [])}
    datastore_names = {moref_key(r["obj"]): str(r.get("name"))
                       for r in by_type.get("Datastore", [])}
    _add_datastores(inv, tree, by_type.get("Datastore", []))
    hosts = _add_hosts(inv, tree, by_type.get("HostSystem", []), cluster_names,
                       datastore_names)
    _add_networks(inv, tree, by_type.get("Network", []),
                  by_type.get("DistributedVirtualSwitch", []))
    placement = _Placement(tree, cluster_names, pool_owner, hosts, datastore_names)
    for row in by_type.get("VirtualMachine", []):
        vm = _vm_facts(row, placement, field_names)
        if vm.template and vm.datacenter is not None:
            inv.templates[(vm.datacenter, vm.name)] = vm
        elif not vm.template:
            inv.vms.append(vm)
    return inv


def _sort_rows(rows: list[Row]) -> tuple[_Tree, dict[str, list[Row]], dict[int, str]]:
    """The rows by kind of object (``ComputeResource`` for clusters too, ``Network`` for
    port groups too), the tree of their parents, and the custom attributes' names by key."""
    tree = _Tree()
    by_type: dict[str, list[Row]] = {}
    field_names: dict[int, str] = {}
    for row in rows:
        obj = row["obj"]
        if isinstance(obj, vim.CustomFieldsManager):
            for definition in row.get("field") or []:
                field_names[int(definition.key)] = str(definition.name)
            continue
        by_type.setdefault(_kind(obj), []).append(row)
        tree.add(obj, row)
    return tree, by_type, field_names


def _kind(obj: Any) -> str:
    """The kind ``obj`` is sorted under: its own type but for the subtypes of three."""
    if isinstance(obj, vim.ComputeResource):
        return "ComputeResource"
    if isinstance(obj, vim.Network):
        return "Network"
    if isinstance(obj, vim.DistributedVirtualSwitch):
        return "DistributedVirtualSwitch"
    return str(obj._wsdlName)


def _add_clusters(inv: Inventory, tree: _Tree, rows: list[Row]) -> dict[str, str]:
    """Add the clusters of ``rows`` (compute resources) that sit in a datacenter. Out:
    cluster key → name (clusters only, a datacenter or not)."""
    cluster_names: dict[str, str] = {}
    for row in rows:
        if not isinstance(row["obj"], vim.ClusterComputeResource):
            continue
        dc = tree.datacenter(moref_key(row["obj"]))
        if dc is None:
            continue
        cluster_names[moref_key(row["obj"])] = str(row["name"])
        inv.clusters[(dc, str(row["name"]))] = ClusterFacts(
            name=str(row["name"]), datacenter=dc,
            cpu_threads=int(row.get("summary.numCpuThreads") or 0),
            memory_mb=int(row.get("summary.effectiveMemory") or 0),
            ref=row["obj"], pool=row.get("resourcePool"))
    return cluster_names


def _datastores_of(row: Row, datastore_names: Mapping[str, str]) -> tuple[str, ...]:
    """The names of the datastores a host or VM ``row`` uses ("" for one not read)."""
    return tuple(datastore_names.get(moref_key(d), "") for d in row.get("datastore") or [])


def _add_datastores(inv: Inventory, tree: _Tree, rows: list[Row]) -> None:
    for row in rows:
        dc = tree.datacenter(moref_key(row["obj"]))
        if dc is not None:
            inv.datastores[(dc, str(row["name"]))] = DatastoreFacts(
                name=str(row["name"]), datacenter=dc,
                capacity_bytes=int(row.get("summary.capacity") or 0),
                free_bytes=int(row.get("summary.freeSpace") or 0),
                accessible=bool(row.get("summary.accessible", True)), ref=row["obj"])


@dataclass(frozen=True)
class _Hosts:
    """Every host read (a datacenter or not), by key: its name and its cluster."""

    names: dict[str, str]
    clusters: dict[str, str | None]


def _add_hosts(inv: Inventory, tree: _Tree, rows: list[Row], cluster_names: Mapping[str, str],
               datastore_names: Mapping[str, str]) -> _Hosts:
    """Add the hosts of ``rows`` that sit in a datacenter, and to each cluster its hosts'
    names (sorted)."""
    hosts = _Hosts({}, {})
    cluster_hosts: dict[Where, list[str]] = {}
    for row in rows:
        key = moref_key(row["obj"])
        dc = tree.datacenter(key)
        name = str(row.get("name"))
        hosts.names[key] = name
        cluster = cluster_names.get(tree.parent.get(key, ""))
        hosts.clusters[key] = cluster
        if dc is None:
            continue
        usable = str(row.get("runtime.connectionState")) == "connected" \
            and not row.get("runtime.inMaintenanceMode")
        inv.hosts[(dc, name)] = HostFacts(
            name=name, datacenter=dc, cluster=cluster,
            cpu_threads=int(row.get("summary.hardware.numCpuThreads") or 0),
            memory_mb=int(row.get("summary.hardware.memorySize") or 0) // (1024 * 1024),
            datastores=_datastores_of(row, datastore_names),
            usable=usable, ref=row["obj"])
        if cluster is not None:
            cluster_hosts.setdefault((dc, cluster), []).append(name)
    for where, names in cluster_hosts.items():
        if where in inv.clusters:
            inv.clusters[where] = replace(inv.clusters[where], hosts=tuple(sorted(names)))
    return hosts


def _add_networks(inv: Inventory, tree: _Tree, rows: list[Row], switch_rows: list[Row]
                  ) -> None:
    """Add the networks and port groups of ``rows`` that sit in a datacenter, a port group
    with its distributed switch's UUID (from ``switch_rows``)."""
    switch_uuid = {moref_key(r["obj"]): r.get("uuid") for r in switch_rows}
    for row in rows:
        dc = tree.datacenter(moref_key(row["obj"]))
        if dc is None:
            continue
        switch = row.get("config.distributedVirtualSwitch")
        inv.networks[(dc, str(row["name"]))] = NetworkFacts(
            name=str(row["name"]), datacenter=dc,
            switch_uuid=switch_uuid.get(moref_key(switch)) if switch is not None else None,
            portgroup_key=row.get("key"), ref=row["obj"])


@dataclass(frozen=True)
class _Placement:
    """What a VM's row refers to, by key: where in the tree, which cluster (through its
    resource pool's owner, else its host's), which host, which datastores."""

    tree: _Tree
    cluster_names: Mapping[str, str]
    pool_owner: Mapping[str, str | None]
    hosts: _Hosts
    datastore_names: Mapping[str, str]

    def cluster(self, pool_key: str | None, host_key: str | None) -> str | None:
        cluster = self.cluster_names.get(self.pool_owner.get(pool_key) or "") \
            if pool_key else None
        if cluster is None and host_key is not None:
            cluster = self.hosts.clusters.get(host_key)
        return cluster


def _vm_facts(row: Row, where: _Placement, field_names: Mapping[int, str]) -> VMFacts:
    """One VM or template of the read, without its devices."""
    host_key = _ref_key(row.get("runtime.host"))
    return VMFacts(
        name=str(row.get("name")), datacenter=where.tree.datacenter(moref_key(row["obj"])),
        cluster=where.cluster(_ref_key(row.get("resourcePool")), host_key),
        host=where.hosts.names.get(host_key or ""),
        datastores=_datastores_of(row, where.datastore_names),
        template=bool(row.get("config.template")),
        cpu=int(row.get("config.hardware.numCPU") or 0),
        memory_mb=int(row.get("config.hardware.memoryMB") or 0),
        power_state=str(row.get("runtime.powerState") or "poweredOff"),
        ip=row.get("guest.ipAddress") or None, hostname=row.get("guest.hostName") or None,
        pending_customization=bool(row.get("config.tools.pendingCustomization")),
        attributes=_attributes(row.get("customValue"), field_names),
        config_version=config_version(row.get("config.changeVersion"),
                                      row.get("config.modified")),
        uuid=str(row["config.instanceUuid"]).lower() if row.get("config.instanceUuid")
        else None, folder=where.tree.folder_path(_ref_key(row.get("parent"))),
        guest_os=row.get("config.guestFullName") or None,
        tools=str(row["guest.toolsRunningStatus"]) if row.get("guest.toolsRunningStatus")
        else None,
        ref=row["obj"])


def add_devices(inv: Inventory, devices: Mapping[str, list[Device] | list[Any]]) -> None:
    """Fill ``disks_kb`` and ``port_groups`` of the VMs and templates whose device lists
    were read (``devices``: VM key → its virtual devices, as :class:`Device` records or
    pyVmomi's objects)."""
    dvpg_names = {(n.datacenter, str(n.portgroup_key)): n.name for n in inv.networks.values()
                  if n.portgroup_key}

    def filled(vm: VMFacts) -> VMFacts:
        found = devices.get(moref_key(vm.ref)) if vm.ref is not None else None
        if found is None:
            return vm
        records = [device_of(d) for d in found]
        disks = sorted((d for d in records if d.kind == "disk"),
                       key=lambda d: (d.controller_key or 0, d.unit_number or 0, d.key))
        groups: list[str | None] = []
        for nic in sorted((d for d in records if d.kind == "nic"), key=lambda d: d.key):
            if nic.portgroup_key:
                groups.append(dvpg_names.get((vm.datacenter or "", nic.portgroup_key)))
            else:
                groups.append(nic.port_group)
        return replace(vm, disks_kb=tuple(int(d.capacity_kb or 0) for d in disks),
                       port_groups=tuple(groups))

    inv.vms = [filled(vm) for vm in inv.vms]
    inv.templates = {k: filled(t) for k, t in inv.templates.items()}
