"""The specs hopnhat sends to vCenter, built by pure functions (unit-tested without one):
clone (placement, powered off, hopnhat's mark), reconfigure (CPU, memory, disks grown or
added, NIC on a port group), customization (LinuxPrep, fixed IP).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from pyVmomi import vim as _vim

from orchestrator.errors import VSphereError

# pyVmomi's stubs declare its data-object constructors untyped; the specs are Any anyway
vim: Any = _vim

KB_PER_GB = 1024 * 1024
_SCSI_RESERVED_UNIT = 7  # the controller's own unit number on its bus


def netmask(prefix_length: int) -> str:
    """24 → ``255.255.255.0``."""
    return str(ipaddress.IPv4Network(f"0.0.0.0/{prefix_length}").netmask)


def clone_spec(pool: Any, datastore: Any, host: Any | None,
               mark: tuple[str, str] | None = None) -> Any:
    """A CloneSpec into ``pool`` (the cluster's root resource pool — vcsim requires it)
    on ``datastore``, powered off (customization and power-on are separate steps, so a
    clone cut off half-way is a powered-off VM that the next apply finishes; the order
    suits a real vCenter and the simulator alike). ``mark``
    (key, value) goes into the clone's extraConfig, so a clone whose run is cut off before
    its custom attributes are set is still recognisable."""
    location = vim.vm.RelocateSpec(pool=pool, datastore=datastore)
    if host is not None:
        location.host = host
    spec = vim.vm.CloneSpec(location=location, powerOn=False, template=False)
    if mark is not None:
        spec.config = vim.vm.ConfigSpec(extraConfig=[vim.option.OptionValue(
            key=mark[0], value=mark[1])])
    return spec


def nic_backing(port_group: str, network: Any, switch_uuid: str | None = None,
                portgroup_key: str | None = None) -> Any:
    """A NIC backing on a standard port group, or a distributed one when ``switch_uuid``
    and ``portgroup_key`` are given."""
    card = vim.vm.device.VirtualEthernetCard
    if switch_uuid and portgroup_key:
        return card.DistributedVirtualPortBackingInfo(
            port=vim.dvs.PortConnection(switchUuid=switch_uuid, portgroupKey=portgroup_key))
    return card.NetworkBackingInfo(deviceName=port_group, network=network)


def disks_of(devices: Sequence[Any]) -> list[Any]:
    """The virtual disks among ``devices``, in bus order (controller, unit)."""
    disks = [d for d in devices if isinstance(d, vim.vm.device.VirtualDisk)]
    return sorted(disks, key=lambda d: (d.controllerKey or 0, d.unitNumber or 0, d.key))


def nics_of(devices: Sequence[Any]) -> list[Any]:
    """The network cards among ``devices``, by device key."""
    return sorted((d for d in devices if isinstance(d, vim.vm.device.VirtualEthernetCard)),
                  key=lambda d: d.key)


def _free_unit(devices: Sequence[Any], controller_key: int, taken: set[int]) -> int:
    used = {d.unitNumber for d in devices if d.controllerKey == controller_key} | taken
    for unit in range(16):
        if unit != _SCSI_RESERVED_UNIT and unit not in used:
            return unit
    raise VSphereError(f"SCSI controller {controller_key} has no free unit for another disk")


def reconfig_spec(devices: Sequence[Any], *, cpu: int | None, memory_mb: int | None,
                  disks_gb: Sequence[int], nic: Any | None) -> Any | None:
    """The ConfigSpec that brings a VM with ``devices`` to ``cpu``, ``memory_mb``, disks of
    ``disks_gb`` (grow in place, add the missing ones thick on the VM's datastore) and its
    first NIC on the ``nic`` backing (added when the VM has none). ``cpu``/``memory_mb``
    None or ``nic`` None: leave as is. Out: None when nothing differs.
    Raises VSphereError for a shrink (never destroys data) or no SCSI controller."""
    spec: Any = vim.vm.ConfigSpec()
    if cpu is not None:
        spec.numCPUs = cpu
    if memory_mb is not None:
        spec.memoryMB = memory_mb
    disks = disks_of(devices)
    changes = [*_grown_disks(disks, disks_gb),
               *_added_disks(devices, disks_gb[len(disks):]),
               *(_nic_changes(devices, nic) if nic is not None else [])]
    if changes:
        spec.deviceChange = changes
    if not changes and cpu is None and memory_mb is None:
        return None
    return spec


def _grown_disks(disks: Sequence[Any], disks_gb: Sequence[int]) -> list[Any]:
    """The edits that grow each of ``disks`` (bus order) smaller than its size in
    ``disks_gb``. Raises VSphereError for one larger (hopnhat never shrinks a disk)."""
    changes: list[Any] = []
    for index, (disk, wanted_gb) in enumerate(zip(disks, disks_gb, strict=False)):
        wanted_kb = wanted_gb * KB_PER_GB
        if disk.capacityInKB > wanted_kb:
            raise VSphereError(f"disk {index + 1} is {disk.capacityInKB // KB_PER_GB} GB, "
                               f"larger than {wanted_gb} GB: hopnhat never shrinks a disk")
        if disk.capacityInKB < wanted_kb:
            disk.capacityInKB = wanted_kb
            disk.capacityInBytes = wanted_kb * 1024
            changes.append(vim.vm.device.VirtualDeviceSpec(operation="edit", device=disk))
    return changes


def _added_disks(devices: Sequence[Any], missing_gb: Sequence[int]) -> list[Any]:
    """The additions of the disks of ``missing_gb`` (thick, on the VM's datastore) to the
    first SCSI controller's free units. Raises VSphereError when the VM has no SCSI
    controller."""
    if not missing_gb:
        return []
    controllers = [d for d in devices if isinstance(d, vim.vm.device.VirtualSCSIController)]
    if not controllers:
        raise VSphereError("the VM has no SCSI controller for another disk")
    controller = min(controllers, key=lambda c: c.key)
    taken: set[int] = set()
    changes: list[Any] = []
    for offset, wanted_gb in enumerate(missing_gb):
        unit = _free_unit(devices, controller.key, taken)
        taken.add(unit)
        changes.append(vim.vm.device.VirtualDeviceSpec(
            operation="add", fileOperation="create",
            device=vim.vm.device.VirtualDisk(
                key=-(100 + offset), controllerKey=controller.key, unitNumber=unit,
                capacityInKB=wanted_gb * KB_PER_GB,
                backing=vim.vm.device.VirtualDisk.FlatVer2BackingInfo(
                    diskMode="persistent", thinProvisioned=False, fileName=""))))
    return changes


def _nic_changes(devices: Sequence[Any], nic: Any) -> list[Any]:
    """The change that puts the VM's first NIC on the ``nic`` backing (a new NIC when it
    has none; nothing when it is there already)."""
    cards = nics_of(devices)
    if not cards:
        return [vim.vm.device.VirtualDeviceSpec(
            operation="add", device=vim.vm.device.VirtualVmxnet3(
                key=-200, backing=nic, addressType="generated",
                connectable=vim.vm.device.VirtualDevice.ConnectInfo(
                    startConnected=True, allowGuestControl=True)))]
    if _same_backing(cards[0].backing, nic):
        return []
    cards[0].backing = nic
    return [vim.vm.device.VirtualDeviceSpec(operation="edit", device=cards[0])]


def _same_backing(current: Any, wanted: Any) -> bool:
    card = vim.vm.device.VirtualEthernetCard
    if isinstance(wanted, card.DistributedVirtualPortBackingInfo):
        return (isinstance(current, card.DistributedVirtualPortBackingInfo)
                and current.port.portgroupKey == wanted.port.portgroupKey)
    return isinstance(current, card.NetworkBackingInfo) \
        and current.deviceName == wanted.deviceName


def customization_spec(hostname: str, ip: str, prefix_length: int, gateway: str,
                       dns: Sequence[str], domain: str = "localdomain") -> Any:
    """LinuxPrep (fixed host name) + one NIC with a fixed IP, subnet mask, gateway and DNS
    servers. ``domain`` is required by the vSphere API for LinuxPrep."""
    custom = vim.vm.customization
    adapter = custom.IPSettings(ip=custom.FixedIp(ipAddress=ip),
                                subnetMask=netmask(prefix_length), gateway=[gateway],
                                dnsServerList=list(dns))
    return custom.Specification(
        identity=custom.LinuxPrep(hostName=custom.FixedName(name=hostname), domain=domain,
                                  hwClockUTC=True),
        globalIPSettings=custom.GlobalIPSettings(dnsServerList=list(dns)),
        nicSettingMap=[custom.AdapterMapping(adapter=adapter)],
    )
