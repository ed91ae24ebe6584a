"""``plan``: what provisioning would change, as data.

:func:`plan` is a pure function of the estate's VMs and the facts read from vCenter
(:mod:`orchestrator.adapters.vsphere_facts`): one :class:`VMAction` per VM — create,
reconfigure (what changes, from → to), power on, resume (finish a VM a failed run left
half-made), no-op with its reason, foreign (a VM of that name exists that this estate does
not own) or refused (a change hopnhat will not make, such as shrinking a disk) — plus a
capacity preflight per cluster and datastore and the IP addresses already in use.
:func:`check` turns refusals into a :class:`PlanError`, before any task. Executing a plan
is :mod:`orchestrator.actions.provision.apply`; destroying is
:mod:`orchestrator.actions.provision.destroy`.
"""


from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from orchestrator.actions.backup.gate import GateDecision, GateRequest, gate
from orchestrator.actions.provision.model import (
    ADOPT,
    CREATE,
    DRIFT,
    FOREIGN,
    NO_OP,
    POWER_ON,
    RECONFIGURE,
    REFUSED,
    RESUME,
    STEP_ADOPT,
    STEP_CLONE,
    STEP_CUSTOMIZE,
    STEP_FINISH,
    STEP_MARK,
    STEP_POWER_ON,
    STEP_RECONFIGURE,
    STEP_WAIT_IP,
    Change,
    GatedPlan,
    Plan,
    Unreachable,
    VMAction,
    _disks,
    built,
)
from orchestrator.actions.provision.preflight import (
    capacity_checks,
    host_fit,
    ip_conflicts,
)
from orchestrator.actions.provision.vcenters import sites_of_vcenter, vcenter_of
from orchestrator.adapters.vsphere_facts import (
    ADOPTED,
    OWNER,
    PROVISIONED,
    SYSTEM,
    TIER,
    Inventory,
    VMFacts,
)
from orchestrator.adapters.vsphere_specs import KB_PER_GB
from orchestrator.errors import EXIT_BAD_INPUT, HopnhatError, PlanError, VSphereError
from orchestrator.estate.model import VM, Estate
from orchestrator.settings import Paths

if TYPE_CHECKING:
    from orchestrator.actions.backup.run import LineCallback


def backup_gate(plan: GatedPlan, paths: Paths, request: GateRequest | None = None, *,
                command: str, on_line: LineCallback | None = None) -> GateDecision:
    """Back up the data before any change: apply and destroy call this after the plan is
    checked and before any task (see :mod:`orchestrator.actions.backup.gate`).

    In: the plan, whose ``gated_vms()`` are the data-bearing VMs it reconfigures or
    destroys; ``request``: ``--backup-first`` or ``--no-backup-gate`` with its reason;
    ``on_line``: the output lines of a backup made first. Out: the GateDecision (recorded
    in the ledger unless nothing needed guarding). Raises PlanError (exit 1) when a changed
    VM's system has a backup and that VM's latest snapshot is older than the tier's RPO (or
    missing, or the repository cannot be read).
    """
    return gate(paths, plan.gated_vms(), request, command=command, on_line=on_line)


def plan_reachable(estate: Estate, vms: Sequence[VM], facts: Mapping[str, Inventory],
                   failed: Mapping[str, HopnhatError]) -> Plan:
    """:func:`plan` of the VMs whose vCenter was read; each vCenter in ``failed`` (URL →
    the error naming it) is listed in :attr:`Plan.unreachable` with the VMs left out.
    :func:`check` then refuses the plan (exit 1) after it has been shown."""
    missing = tuple(
        Unreachable(url, sites_of_vcenter(estate, url), str(error),
                    tuple(vm.name for vm in vms if vcenter_of(estate, vm) == url))
        for url, error in sorted(failed.items()))
    read = [vm for vm in vms if vcenter_of(estate, vm) not in failed]
    return replace(plan(estate, read, facts), unreachable=missing)


# ---------------------------------------------------------------- planning


def plan(estate: Estate, vms: Sequence[VM], facts: Mapping[str, Inventory]) -> Plan:
    """Compare the wanted ``vms`` with ``facts`` (vCenter URL → :class:`Inventory`).

    Out: a :class:`Plan` (refusals recorded in it; :func:`check` raises them).
    Raises VSphereError naming each datacenter, cluster, datastore, port group or template
    the estate names and vCenter lacks (for the VMs that need them).
    """
    # the VMs the estate's existing declarations point at are never mistaken for a VM
    # hopnhat builds that happens to share a name (both provinces have a qlvb-db-01)
    claimed = {id(found) for vm in estate.vms if vm.existing is not None
               and vcenter_of(estate, vm) in facts
               for found in locate(vm, facts[vcenter_of(estate, vm)])[0]}
    _require_placement(estate, vms, facts, claimed)
    owner = estate.id
    refusals: list[str] = []
    warnings: list[str] = []
    actions = [_adopt_action(owner, vm, vcenter_of(estate, vm),
                             facts[vcenter_of(estate, vm)], warnings)
               if vm.existing is not None else
               _action(owner, vm, vcenter_of(estate, vm), facts[vcenter_of(estate, vm)],
                       warnings, claimed) for vm in vms]
    refusals += [f"{a.name}: {a.reason}" for a in actions if a.kind in (FOREIGN, REFUSED)]
    refusals += _claimed_twice(actions)
    refusals += ip_conflicts(owner, actions, facts)
    refusals += host_fit(actions, facts)
    capacity = capacity_checks(estate.settings.provisioning.capacity_headroom_pct, actions,
                               facts)
    refusals += [c.describe() for c in capacity if not c.ok]
    return Plan(estate=owner, actions=tuple(actions), capacity=tuple(capacity),
                refusals=tuple(refusals), warnings=tuple(warnings))


def check(plan: Plan) -> None:
    """Raise PlanError listing every refusal (foreign VMs, disk shrinks, IP conflicts,
    capacity shortfalls) — before any task — and VSphereError naming each vCenter that
    could not be read (:attr:`Plan.unreachable`). Returns when there is none."""
    unread = "\n".join(f"  - {u.describe()}" for u in plan.unreachable)
    if plan.refusals:
        lines = "\n".join(f"  - {r}" for r in plan.refusals)
        also = f"\nand {len(plan.unreachable)} vCenter(s) could not be read:\n{unread}" \
            if unread else ""
        # an existing VM the estate declares wrongly (absent, ambiguous, another estate's)
        # is bad input; anything else refused (capacity, a shrink, a conflict) a failure
        bad = [a for a in plan.actions if a.kind in (FOREIGN, REFUSED)]
        declared = bool(bad) and len(bad) == len(plan.refusals) and all(
            a.vm.adopted for a in bad)
        raise PlanError(f"the plan is refused ({len(plan.refusals)} problem(s)); nothing "
                        f"was changed:\n{lines}{also}",
                        exit_code=EXIT_BAD_INPUT if declared else None)
    if plan.unreachable:
        raise VSphereError(f"{len(plan.unreachable)} vCenter(s) could not be read; the plan "
                           f"holds only the other sites' VMs:\n{unread}")


def _require_placement(estate: Estate, vms: Sequence[VM], facts: Mapping[str, Inventory],
                       claimed: Collection[int] = ()) -> None:
    missing: dict[str, list[str]] = defaultdict(list)  # problem → VMs
    for vm in vms:
        url = vcenter_of(estate, vm)
        inv = facts[url]
        if vm.existing is not None:
            if vm.datacenter not in inv.datacenters:
                missing[f"{url}: no datacenter {vm.datacenter!r} (datacenters: "
                        f"{_names(inv.datacenters)})"].append(vm.name)
            continue  # located (or refused) by the plan; it needs nothing else
        matches = [m for m in inv.vms_named(vm.name)
                   if ADOPTED not in m.attributes and id(m) not in claimed]
        if len(matches) == 1 and matches[0].owner == estate.id:
            needed = ["network"]  # an existing VM of ours may only need its port group
        elif matches:
            continue  # foreign or ambiguous: refused by the plan, needs nothing
        else:
            needed = ["cluster", "datastore", "network", "template"]
        dc = vm.datacenter
        if dc not in inv.datacenters:
            missing[f"{url}: no datacenter {dc!r} (datacenters: "
                    f"{_names(inv.datacenters)})"].append(vm.name)
            continue
        wanted: dict[str, tuple[Mapping[tuple[str, str], Any], str]] = {
            "cluster": (inv.clusters, vm.cluster),
            "datastore": (inv.datastores, vm.datastore),
            "network": (inv.networks, vm.port_group),
            "template": (inv.templates, vm.template)}
        for what in needed:
            table, name = wanted[what]
            if (dc, name) not in table:
                there = sorted(n for d, n in table if d == dc)
                label = "port group" if what == "network" else what
                missing[f"{dc}: no {label} {name!r} ({label}s there: "
                        f"{', '.join(there) or 'none'})"].append(vm.name)
    if missing:
        lines = "\n".join(f"  - {problem}, wanted by {', '.join(names)}"
                          for problem, names in missing.items())
        raise VSphereError(f"vCenter lacks what the estate names:\n{lines}")


def _names(table: Mapping[str, Any]) -> str:
    return ", ".join(sorted(table)) or "none"


def _action(owner: str, vm: VM, url: str, inv: Inventory, warnings: list[str],
            claimed: Collection[int] = ()) -> VMAction:
    matches = [m for m in inv.vms_named(vm.name)
               if id(m) not in claimed and ADOPTED not in m.attributes]
    templates = [t for (_, name), t in inv.templates.items() if name == vm.name]
    base: dict[str, Any] = {"vm": vm, "vcenter": url}
    if templates:
        return VMAction(**base, kind=FOREIGN, reason=f"a template named {vm.name} exists in "
                        f"{templates[0].datacenter}: not a VM of this estate, left alone")
    if len(matches) > 1:
        where = ", ".join(f"{m.datacenter}/{m.cluster}" for m in matches)
        return VMAction(**base, kind=REFUSED, reason=f"{len(matches)} VMs are named "
                        f"{vm.name} ({where}): hopnhat cannot tell which one is meant")
    if not matches:
        return _create(vm, inv, base)
    found = matches[0]
    if found.owner != owner:
        whose = "without hopnhat's mark" if found.owner is None else \
            f"owned by estate {found.owner!r}"
        hint = " (to take it over, declare it under existing: — see `hopnhat discover`)" \
            if found.owner is None else ""
        return VMAction(**base, kind=FOREIGN, reason=f"a VM named {vm.name} exists in "
                        f"{found.datacenter}/{found.cluster} {whose}: not ours, left "
                        f"alone{hint}")
    base["target"] = found.ref
    if found.datacenter != vm.datacenter:
        return VMAction(**base, kind=REFUSED, reason=f"it lives in datacenter "
                        f"{found.datacenter}, the estate wants {vm.datacenter}: hopnhat "
                        "does not move VMs")
    return _existing(vm, found, base, warnings)


def locate(vm: VM, inv: Inventory) -> tuple[list[VMFacts], str]:
    """The VMs of ``inv`` an existing VM's declaration matches, in its datacenter: by
    instance UUID when the estate gives one, else by name (in its folder when given).
    Out: (matches, why none matched: "" when some did)."""
    existing = vm.existing
    assert existing is not None
    here = f"{vm.datacenter} ({existing.describe(vm.datacenter)})"
    if existing.uuid:
        found = [m for m in inv.vms_with_uuid(existing.uuid) if m.datacenter == vm.datacenter]
        if found:
            return found, ""
        elsewhere = [m for m in inv.vms_with_uuid(existing.uuid)]
        if elsewhere:
            return [], (f"the VM with instance UUID {existing.uuid} is now in datacenter "
                        f"{elsewhere[0].datacenter}, the estate says {vm.datacenter}")
        by_name = [m for m in inv.vms_named(existing.vm) if m.datacenter == vm.datacenter]
        then = f" ({len(by_name)} VM(s) named {existing.vm} there have other UUIDs: " \
            "re-created or restored?)" if by_name else ""
        return [], f"no VM with instance UUID {existing.uuid} in {here}: it is gone{then}"
    found = [m for m in inv.vms_named(existing.vm) if m.datacenter == vm.datacenter
             and (existing.folder is None or m.folder == existing.folder)]
    if found:
        return found, ""
    return [], f"no VM named {existing.vm} in {here}"


def _adopt_action(owner: str, vm: VM, url: str, inv: Inventory,
                  warnings: list[str]) -> VMAction:
    """An existing VM the estate takes over: adopt (write the marks), drift (what differs
    from the estate: shown; changed only where the estate manages its hardware), or why
    not."""
    existing = vm.existing
    assert existing is not None
    base: dict[str, Any] = {"vm": vm, "vcenter": url}
    matches, missing = locate(vm, inv)
    if missing:
        return VMAction(**base, kind=REFUSED, reason=f"existing VM: {missing}")
    if len(matches) > 1:
        where = ", ".join(sorted(f"{m.datacenter}/{m.folder + '/' if m.folder else ''}"
                                 f"{m.name} (uuid {m.uuid})" for m in matches))
        how = "two VMs claim one instance UUID" if existing.uuid else \
            f"{len(matches)} VMs match"
        return VMAction(**base, kind=REFUSED, reason=f"existing VM {existing.vm}: {how}: "
                        f"{where}; hopnhat does not guess: write its folder: or uuid: in "
                        "the estate")
    found = matches[0]
    base.update(target=found.ref, vcenter_name=found.name,
                cluster=found.cluster or "", datastore=(found.datastores or ("",))[0])
    if found.owner is not None and found.owner != owner:
        return VMAction(**base, kind=FOREIGN, reason=f"existing VM "
                        f"{existing.describe(vm.datacenter)} is owned by estate "
                        f"{found.owner!r}: hopnhat does not take a VM from another estate")
    changes: list[Change] = []
    if found.name != existing.vm:
        changes.append(Change("vCenter name", existing.vm, found.name))
        warnings.append(f"{vm.name}: the VM {existing.vm} was renamed {found.name} in "
                        f"vCenter (found by its instance UUID {found.uuid}): write vm: "
                        f"{found.name} in the estate")
    if not found.powered_on:
        warnings.append(f"{vm.name} ({found.name}) is {found.power_state}: hopnhat does not "
                        "power on a VM it adopted")
    drift, refusal = diff_declared(found, vm)
    marks = [Change(f"mark {label}", found.attributes.get(key) or "none", want)
             for label, key, want in (("owner", OWNER, owner), ("system", SYSTEM, vm.system),
                                      ("tier", TIER, str(vm.tier)))
             if found.attributes.get(key) != want]
    if ADOPTED not in found.attributes:
        shown = f"; differs from the estate: {', '.join(map(str, drift))} (not changed by " \
            "adopting)" if drift else ""
        return VMAction(**base, kind=ADOPT, steps=(STEP_ADOPT,), changes=tuple(changes + marks),
                        reason=f"adopt {existing.describe(vm.datacenter)}, uuid "
                               f"{found.uuid}: ownership marks only, no hardware change"
                               f"{shown}")
    steps: list[str] = [STEP_MARK] if marks else []
    managed = vm.manage_hardware and drift and not refusal
    if managed:
        steps.append(STEP_RECONFIGURE)
        base.update(add_cpu=(vm.cpu or found.cpu) - found.cpu,
                    add_memory_mb=(vm.memory_mb or found.memory_mb) - found.memory_mb)
    if steps:
        return VMAction(**base, kind=RECONFIGURE, steps=tuple(steps),
                        changes=tuple(changes + marks + (drift if managed else [])),
                        reason="" if managed or not drift else
                        f"differs from the estate: {', '.join(map(str, drift))} (shown only)")
    if drift:
        why = refusal if refusal and vm.manage_hardware else \
            "shown only: the estate does not manage this VM's hardware"
        return VMAction(**base, kind=DRIFT, changes=tuple(changes + drift), reason=why)
    return VMAction(**base, kind=NO_OP, changes=tuple(changes),
                    reason=f"adopted ({existing.describe(vm.datacenter)}), matches the estate")


def diff_declared(found: VMFacts, vm: VM) -> tuple[list[Change], str]:
    """What of an existing VM differs from the hardware the estate declares (only what
    it declares). Out: (changes, refusal text when a change would shrink or remove a
    disk)."""
    changes: list[Change] = []
    if vm.cpu is not None and found.cpu != vm.cpu:
        changes.append(Change("cpu", str(found.cpu), str(vm.cpu)))
    if vm.memory_mb is not None and found.memory_mb != vm.memory_mb:
        changes.append(Change("memory", f"{found.memory_mb} MB", f"{vm.memory_mb} MB"))
    refusal = ""
    if vm.disks_gb is not None and found.disks_kb is not None:
        disk_changes, refusal = diff_disks(found.disks_kb, vm.disks_gb)
        if refusal:
            have = [round(kb / KB_PER_GB) for kb in found.disks_kb]
            changes.append(Change("disks", _disks(have), _disks(vm.disks_gb)))
        changes += disk_changes
    groups = found.port_groups
    if groups is not None and (groups[0] if groups else None) != vm.port_group:
        changes.append(Change("network", (groups[0] if groups else None) or "none",
                              vm.port_group))
    return changes, refusal


def _claimed_twice(actions: Sequence[VMAction]) -> list[str]:
    """Two actions of the plan on one vCenter VM (an existing declaration matching a VM
    the estate also builds or adopts under another name)."""
    seen: dict[int, str] = {}
    out = []
    for action in actions:
        if action.target is None or action.kind in (FOREIGN, REFUSED):
            continue
        other = seen.setdefault(id(action.target), action.name)
        if other != action.name:
            out.append(f"{action.name}: it is the same vCenter VM as {other}")
    return out


def _create(vm: VM, inv: Inventory, base: dict[str, Any]) -> VMAction:
    cpu, memory_mb, disks_gb = built(vm)
    template = inv.templates.get((vm.datacenter, vm.template))
    template_disks = template.disks_kb if template is not None and \
        template.disks_kb is not None else ()
    _, refusal = diff_disks(template_disks, disks_gb)
    if refusal:
        return VMAction(**base, kind=REFUSED, reason=f"template {vm.template}: {refusal}")
    steps = (STEP_CLONE, STEP_MARK, STEP_RECONFIGURE, STEP_CUSTOMIZE, STEP_POWER_ON,
             STEP_WAIT_IP, STEP_FINISH)
    return VMAction(**base, kind=CREATE, steps=steps, cluster=vm.cluster,
                    datastore=vm.datastore, add_cpu=cpu, add_memory_mb=memory_mb,
                    add_disk_gb=sum(disks_gb))


def diff_disks(current_kb: Sequence[int], wanted_gb: Sequence[int]) -> tuple[list[Change], str]:
    """Disks in bus order vs the wanted sizes. Out: (changes: grow or add, refusal text —
    empty unless a disk would shrink or go away; hopnhat never destroys data)."""
    changes: list[Change] = []
    for index, wanted in enumerate(wanted_gb):
        if index >= len(current_kb):
            changes.append(Change(f"disk {index + 1}", "none", f"{wanted} GB"))
            continue
        have = current_kb[index]
        if have > wanted * KB_PER_GB:
            return [], (f"disk {index + 1} is {have / KB_PER_GB:g} GB and the estate says "
                        f"{wanted} GB: hopnhat never shrinks a disk")
        if have < wanted * KB_PER_GB:
            changes.append(Change(f"disk {index + 1}", f"{have / KB_PER_GB:g} GB",
                                  f"{wanted} GB"))
    if len(current_kb) > len(wanted_gb):
        return [], (f"it has {len(current_kb)} disks and the estate lists "
                    f"{len(wanted_gb)}: hopnhat never removes a disk")
    return changes, ""


def diff_hardware(found: VMFacts, vm: VM) -> tuple[list[Change], str]:
    """CPU, memory, disks and port group of an existing VM vs the estate.
    Out: (changes, refusal text or "")."""
    cpu, memory_mb, disks_gb = built(vm)
    changes: list[Change] = []
    if found.cpu != cpu:
        changes.append(Change("cpu", str(found.cpu), str(cpu)))
    if found.memory_mb != memory_mb:
        changes.append(Change("memory", f"{found.memory_mb} MB", f"{memory_mb} MB"))
    disk_changes, refusal = diff_disks(found.disks_kb or (), disks_gb)
    if refusal:
        return [], refusal
    changes += disk_changes
    groups = found.port_groups or ()
    current = groups[0] if groups else None
    if current != vm.port_group:
        changes.append(Change("network", current or "none", vm.port_group))
    return changes, ""


def _existing(vm: VM, found: VMFacts, base: dict[str, Any], warnings: list[str]) -> VMAction:
    hardware, refusal = diff_hardware(found, vm)
    if refusal:
        return VMAction(**base, kind=REFUSED, reason=refusal)
    cpu, memory_mb, disks_gb = built(vm)
    marks = [Change(f"mark {label}", found.attributes.get(key) or "none", want)
             for label, key, want in (("system", SYSTEM, vm.system),
                                      ("tier", TIER, str(vm.tier)))
             if found.attributes.get(key) != want]
    grow_kb = sum(max(0, disks_gb[i] * KB_PER_GB - (found.disks_kb or ())[i])
                  if i < len(found.disks_kb or ()) else disks_gb[i] * KB_PER_GB
                  for i in range(len(disks_gb)))
    datastore = vm.datastore if vm.datastore in found.datastores or not found.datastores \
        else found.datastores[0]
    deltas: dict[str, Any] = {"cluster": found.cluster or vm.cluster, "datastore": datastore,
              "add_cpu": cpu - found.cpu, "add_memory_mb": memory_mb - found.memory_mb,
              "add_disk_gb": grow_kb // KB_PER_GB}
    warnings += _left_as_found(vm, found)

    steps: list[str] = [STEP_RECONFIGURE] if hardware else []
    if PROVISIONED not in found.attributes:
        # a run stopped half-way: finish what is left, in the order apply uses
        steps = [STEP_MARK, *steps]
        if not found.powered_on and not found.pending_customization:
            steps.append(STEP_CUSTOMIZE)
        if not found.powered_on:
            steps.append(STEP_POWER_ON)
        steps += [STEP_WAIT_IP, STEP_FINISH]
        return VMAction(**base, kind=RESUME, changes=tuple(hardware + marks), steps=tuple(steps),
                        reason="left half-made by an earlier run: finishing it", **deltas)
    if marks:
        steps.append(STEP_MARK)
    if not found.powered_on:
        steps += [STEP_POWER_ON, STEP_WAIT_IP]
    if hardware or marks:
        return VMAction(**base, kind=RECONFIGURE, changes=tuple(hardware + marks),
                        steps=tuple(steps), **deltas)
    if not found.powered_on:
        return VMAction(**base, kind=POWER_ON, steps=tuple(steps),
                        changes=(Change("power", found.power_state, "poweredOn"),), **deltas)
    return VMAction(**base, kind=NO_OP, cluster=deltas["cluster"], datastore=datastore,
                    reason=f"matches the estate ({cpu} vCPU, {memory_mb} MB, disks "
                           f"{_disks(disks_gb)}, {vm.port_group}, powered on)")


def _left_as_found(vm: VM, found: VMFacts) -> list[str]:
    """Warnings for what differs from the estate and hopnhat leaves as it is: the cluster,
    the datastore, the address of a running VM."""
    warnings: list[str] = []
    if found.cluster is not None and found.cluster != vm.cluster:
        warnings.append(f"{vm.name} runs in cluster {found.cluster}, the estate says "
                        f"{vm.cluster} (hopnhat does not move VMs)")
    if found.datastores and vm.datastore not in found.datastores:
        warnings.append(f"{vm.name} is on datastore {', '.join(found.datastores)}, the estate "
                        f"says {vm.datastore} (hopnhat does not move VMs)")
    if found.powered_on and found.ip and found.ip != str(vm.ip):
        warnings.append(f"{vm.name} reports IP {found.ip}, the estate says {vm.ip} "
                        "(hopnhat does not re-address a running VM)")
    return warnings
