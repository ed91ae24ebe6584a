"""Preflight of a provisioning plan: capacity per cluster and datastore, each VM's fit on
a host, and IP addresses already in use — pure functions of the plan's actions and the
facts, each problem a sentence naming the cluster, datastore or VM and the shortfall.

Capacity is counted as vCenter allocates it: every VM placed in a cluster counts with its
configured vCPUs and memory whether powered on or not (it may be powered on); vCPUs are
set against hardware threads one for one (no overcommit) and memory against the cluster's
effective memory; disks count thick (their full size) against the datastore's free space.
``headroom_pct`` of each capacity is kept free.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from orchestrator.actions.provision.model import CapacityCheck, VMAction
from orchestrator.adapters.vsphere_facts import Inventory, VMFacts


def ip_conflicts(owner: str, actions: Sequence[VMAction],
                  facts: Mapping[str, Inventory]) -> list[str]:
    holders: dict[str, list[VMFacts]] = defaultdict(list)
    for inv in facts.values():
        for found in inv.vms:
            if found.ip:
                holders[found.ip].append(found)
    out = []
    for action in actions:
        if not action.brings_up_ip:
            continue
        for other in holders.get(str(action.vm.ip), []):
            if other.name == action.name:
                continue  # the VM itself, or a same-named foreign VM (refused already)
            whose = "this estate's" if other.owner == owner else \
                "not hopnhat's" if other.owner is None else f"estate {other.owner}'s"
            out.append(f"{action.name}: IP {action.vm.ip} is in use by VM {other.name} "
                       f"({other.datacenter}, {whose})")
    return out


def host_fit(actions: Sequence[VMAction], facts: Mapping[str, Inventory]) -> list[str]:
    """A VM must fit one host of its cluster, and a new one needs a host that mounts its
    datastore."""
    out = []
    for action in actions:
        if not action.sizes:
            continue
        vm, inv = action.vm, facts[action.vcenter]
        hosts = [h for h in inv.hosts.values()
                 if h.datacenter == vm.datacenter and h.cluster == action.cluster and h.usable]
        if not hosts:
            out.append(f"{vm.name}: cluster {vm.datacenter}/{action.cluster} has no connected "
                       "host")
            continue
        if vm.cpu is not None and vm.cpu > max(h.cpu_threads for h in hosts):
            out.append(f"{vm.name}: {vm.cpu} vCPU exceed every host of {action.cluster} "
                       f"(largest: {max(h.cpu_threads for h in hosts)} threads)")
        if vm.memory_mb is not None and vm.memory_mb > max(h.memory_mb for h in hosts):
            out.append(f"{vm.name}: {vm.memory_mb} MB exceed every host of {action.cluster} "
                       f"(largest: {max(h.memory_mb for h in hosts)} MB)")
        if action.creates and not any(vm.datastore in h.datastores for h in hosts):
            out.append(f"{vm.name}: no connected host of {action.cluster} mounts datastore "
                       f"{vm.datastore}")
    return out


def capacity_checks(headroom_pct: float, actions: Sequence[VMAction],
                    facts: Mapping[str, Inventory]) -> list[CapacityCheck]:
    """One check per resource of each cluster and datastore the changing ``actions`` use
    (a shortfall only when the plan adds to an overfull resource)."""
    keep = 1 - headroom_pct / 100
    cpu: dict[tuple[str, str, str], int] = defaultdict(int)
    memory: dict[tuple[str, str, str], int] = defaultdict(int)
    disk: dict[tuple[str, str, str], int] = defaultdict(int)
    for action in actions:
        if not action.changing:
            continue
        where = (action.vcenter, action.vm.datacenter, action.cluster)
        cpu[where] += action.add_cpu
        memory[where] += action.add_memory_mb
        disk[(action.vcenter, action.vm.datacenter, action.datastore)] += action.add_disk_gb
    checks = []
    for (url, dc, name) in sorted(set(cpu) | set(memory)):
        inv = facts[url]
        cluster = inv.clusters.get((dc, name))
        if cluster is None:
            continue
        members = [v for v in inv.vms if v.datacenter == dc and v.cluster == name]
        checks.append(CapacityCheck("cluster", dc, name, "vCPU", cluster.cpu_threads,
                                    cluster.cpu_threads * keep, sum(v.cpu for v in members),
                                    cpu[(url, dc, name)]))
        checks.append(CapacityCheck("cluster", dc, name, "memory MB", cluster.memory_mb,
                                    cluster.memory_mb * keep,
                                    sum(v.memory_mb for v in members), memory[(url, dc, name)]))
    gib = 1024 ** 3
    for (url, dc, name), planned in sorted(disk.items()):
        store = facts[url].datastores.get((dc, name))
        if store is None:
            continue
        capacity = store.capacity_bytes / gib
        checks.append(CapacityCheck("datastore", dc, name, "disk GB", capacity,
                                    capacity * keep,
                                    (store.capacity_bytes - store.free_bytes) / gib, planned))
    return checks
