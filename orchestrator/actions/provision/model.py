"""The data of a provisioning plan: one :class:`VMAction` per VM, the :class:`Plan`,
its capacity checks and the vCenters it could not read. :mod:`.plan` makes them,
:mod:`.apply` and :mod:`.destroy` carry them out, :mod:`.preflight` judges them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.estate.model import VM

CREATE, RECONFIGURE, POWER_ON, RESUME = "create", "reconfigure", "power-on", "resume"
ADOPT, DRIFT = "adopt", "drift"
NO_OP, FOREIGN, REFUSED = "no-op", "foreign", "refused"
CHANGING = (CREATE, RECONFIGURE, POWER_ON, RESUME, ADOPT)

# the steps of a VM's apply, in this order
STEP_CLONE, STEP_MARK, STEP_RECONFIGURE = "clone", "mark", "reconfigure"
STEP_CUSTOMIZE, STEP_POWER_ON, STEP_WAIT_IP = "customize", "power on", "wait for IP"
STEP_FINISH = "mark provisioned"
STEP_ADOPT = "mark adopted"


@dataclass(frozen=True)
class Change:
    """One property that differs: ``what`` (cpu, memory, disk 2, network, mark tier)."""

    what: str
    before: str
    after: str

    def __str__(self) -> str:
        return f"{self.what} {self.before} → {self.after}"

    def as_dict(self) -> dict[str, str]:
        return {"what": self.what, "from": self.before, "to": self.after}


@dataclass(frozen=True)
class VMAction:
    """What the plan does with one VM of the estate, and why."""

    vm: VM
    kind: str
    vcenter: str
    changes: tuple[Change, ...] = ()
    steps: tuple[str, ...] = ()
    reason: str = ""
    cluster: str = ""  # where its CPU and memory count (the actual one for an existing VM)
    datastore: str = ""  # where its disks count
    add_cpu: int = 0
    add_memory_mb: int = 0
    add_disk_gb: int = 0
    target: Any = field(default=None, compare=False, repr=False)  # the found VM (its ref)
    vcenter_name: str = ""  # the found VM's name in vCenter, when it is not the estate's

    @property
    def name(self) -> str:
        return self.vm.name

    @property
    def changing(self) -> bool:
        return self.kind in CHANGING

    @property
    def creates(self) -> bool:
        return self.kind == CREATE

    @property
    def brings_up_ip(self) -> bool:
        """Its guest address comes up in this run (create, finish, power on)."""
        return self.kind in (CREATE, RESUME, POWER_ON)

    @property
    def sizes(self) -> bool:
        """It sets the VM's CPU, memory or disks (create, finish, reconfigure)."""
        return self.kind in (CREATE, RESUME, RECONFIGURE)

    def describe(self) -> str:
        """The detail column: the changes, or the reason."""
        if self.kind == CREATE:
            vm = self.vm
            cpu, memory_mb, disks_gb = built(vm)
            return (f"from {vm.template} in {vm.cluster}/{vm.datastore}: {cpu} vCPU, "
                    f"{memory_mb} MB, disks {_disks(disks_gb)}, {vm.port_group}, {vm.ip}")
        parts = [str(c) for c in self.changes]
        if self.reason:
            parts.append(self.reason)
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {"vm": self.vm.name, "system": self.vm.system, "site": self.vm.site,
                "action": self.kind, "vcenter_vm": self.vcenter_name or self.vm.name,
                "adopted": self.vm.adopted, "changes": [c.as_dict() for c in self.changes],
                "steps": list(self.steps), "reason": self.reason, "detail": self.describe(),
                "cluster": self.cluster, "datastore": self.datastore, "ip": str(self.vm.ip),
                "add": {"cpu": self.add_cpu, "memory_mb": self.add_memory_mb,
                        "disk_gb": self.add_disk_gb}}


@dataclass(frozen=True)
class Unreachable:
    """A vCenter a plan could not read (down, refused login, untrusted certificate, lost
    mid-read): its VMs are not in the plan."""

    url: str
    sites: tuple[str, ...]
    error: str  # names the vCenter: "https://…/sdk (site quangnam): cannot reach vCenter (…)"
    vms: tuple[str, ...]

    def describe(self) -> str:
        shown = ", ".join(self.vms[:5]) + (", …" if len(self.vms) > 5 else "")
        return (f"{self.error} — {len(self.vms)} VM(s) of site {', '.join(self.sites)} "
                f"not planned" + (f" ({shown})" if self.vms else ""))

    def as_dict(self) -> dict[str, Any]:
        return {"vcenter": self.url, "sites": list(self.sites), "error": self.error,
                "vms": list(self.vms)}


@dataclass(frozen=True)
class Plan:
    """Everything :func:`plan` decided, as data (the CLI renders it, apply executes it)."""

    estate: str
    actions: tuple[VMAction, ...]
    capacity: tuple[CapacityCheck, ...] = ()
    refusals: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    unreachable: tuple[Unreachable, ...] = ()  # vCenters not read: their VMs are left out

    @property
    def pending(self) -> list[VMAction]:
        return [a for a in self.actions if a.changing]

    @property
    def has_changes(self) -> bool:
        return bool(self.pending)

    def totals(self) -> dict[str, int]:
        counts = {kind: 0 for kind in (*CHANGING, DRIFT, NO_OP, FOREIGN, REFUSED)}
        for action in self.actions:
            counts[action.kind] += 1
        pending = self.pending
        counts["add_cpu"] = sum(a.add_cpu for a in pending)
        counts["add_memory_mb"] = sum(a.add_memory_mb for a in pending)
        counts["add_disk_gb"] = sum(a.add_disk_gb for a in pending)
        return counts

    def data_bearing(self) -> list[VMAction]:
        """Changes to existing VMs that hold data: what the backup gate guards. A VM an
        earlier run left half-made (resume) was never handed over, so it holds no data."""
        return [a for a in self.pending if a.vm.data and a.kind == RECONFIGURE]

    def gated_vms(self) -> list[tuple[str, str]]:
        """(system, VM name) of :meth:`data_bearing`."""
        return [(a.vm.system, a.name) for a in self.data_bearing()]

    def as_dict(self) -> dict[str, Any]:
        return {"estate": self.estate, "changes": self.has_changes, "totals": self.totals(),
                "actions": [a.as_dict() for a in self.actions],
                "capacity": [c.as_dict() for c in self.capacity],
                "refusals": list(self.refusals), "warnings": list(self.warnings),
                "unreachable": [u.as_dict() for u in self.unreachable]}


class GatedPlan(Protocol):
    """A plan the backup gate can judge: a provisioning plan or a destroy plan."""

    @property
    def estate(self) -> str: ...

    def data_bearing(self) -> Sequence[Any]: ...

    def gated_vms(self) -> list[tuple[str, str]]: ...


def _disks(disks_gb: Iterable[int | float]) -> str:
    return "+".join(f"{d:g}" for d in disks_gb) + " GB"


def built(vm: VM) -> tuple[int, int, list[int]]:
    """CPU, memory and disks of a VM hopnhat builds (always declared: the estate refuses
    a role without them unless its VMs are existing ones)."""
    assert vm.cpu is not None and vm.memory_mb is not None and vm.disks_gb is not None, \
        f"{vm.name}: a VM hopnhat builds has its hardware"
    return vm.cpu, vm.memory_mb, vm.disks_gb



def _n(value: float) -> str:
    return f"{value:,.0f}"


@dataclass(frozen=True)
class CapacityCheck:
    """One resource of a cluster (vCPU, memory MB) or datastore (GB): what is in use, what
    the plan adds, and what may be used once the headroom is kept free."""

    kind: str  # "cluster" or "datastore"
    datacenter: str
    name: str
    resource: str  # "vCPU", "memory MB", "disk GB"
    capacity: float
    usable: float
    in_use: float
    planned: float

    @property
    def short_by(self) -> float:
        return max(0.0, self.in_use + self.planned - self.usable) if self.planned > 0 else 0.0

    @property
    def ok(self) -> bool:
        return self.short_by == 0

    def describe(self) -> str:
        return (f"{self.kind} {self.datacenter}/{self.name}: {self.resource} short by "
                f"{_n(self.short_by)}: {_n(self.in_use)} in use + {_n(self.planned)} planned "
                f"> {_n(self.usable)} usable ({_n(self.capacity)} less the headroom)")

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "datacenter": self.datacenter, "name": self.name,
                "resource": self.resource, "capacity": self.capacity, "usable": self.usable,
                "in_use": self.in_use, "planned": self.planned, "short_by": self.short_by}


