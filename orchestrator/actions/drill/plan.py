"""``drill`` plan: what a restore drill of one system will do, as data.

A drill restores a system's data-bearing VMs at the **secondary** site, on its isolated
drill network, onto scratch VMs cloned from the site's template. Each scratch VM is named
``drill-<tag>-<vm>`` (``<tag>``: the drill id's 6 hex digits; at most 63 characters of
``[a-z0-9-]``), carries hopnhat's ownership marks with the system mark ``drill:<drill id>``
(so ``destroy`` of a system never takes it, and a crashed drill's leftovers are found by
that mark), and gets an address of the drill network's pool that no VM in vCenter reports
and no other live drill of this control host holds (:class:`AddressBook`).

Everything here is pure except :class:`AddressBook` (a small file under the state folder,
locked while addresses are handed out).
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import re
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.actions.selection import unknown_message
from orchestrator.adapters.restic import Snapshot
from orchestrator.adapters.restic_results import dump_name, is_dump
from orchestrator.adapters.vsphere_facts import SYSTEM, Inventory
from orchestrator.errors import EXIT_BAD_INPUT, PlanError
from orchestrator.estate.databases import Database
from orchestrator.estate.model import VM, Estate, Site
from orchestrator.estate.recovery import Probe, RecoveryStep
from orchestrator.estate_lock import pid_alive

MARK_PREFIX = "drill:"
NAME_MAX = 63
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_TAG = re.compile(r"-([0-9a-f]{6})$")


def drill_tag(drill_id: str) -> str:
    """The 6 hex digits that end a drill id (``drill-20261101T101500Z-3fa2c1`` → ``3fa2c1``).
    Raises PlanError for an id that does not end so."""
    found = _TAG.search(drill_id)
    if found is None:
        raise PlanError(f"{drill_id!r} is not a drill id")
    return found.group(1)


def drill_mark(drill_id: str) -> str:
    """The ``hopnhat.system`` mark of a drill's scratch VMs."""
    return f"{MARK_PREFIX}{drill_id}"


def scratch_name(drill_id: str, vm_name: str) -> str:
    """``drill-<tag>-<vm>``, lower case. Raises PlanError when it would not be a valid
    host name of at most 63 characters."""
    name = f"drill-{drill_tag(drill_id)}-{vm_name}".lower()
    if len(name) > NAME_MAX or not _NAME.match(name):
        raise PlanError(f"scratch VM name {name!r} is not a host name of at most "
                        f"{NAME_MAX} characters of a-z, 0-9 and '-'")
    return name


def data_vms(estate: Estate, code: str) -> list[VM]:
    """The system's data-bearing VMs: what a drill restores."""
    return [vm for vm in estate.vms_of(code) if vm.data]


def drillable(estate: Estate, code: str) -> str:
    """Why system ``code`` cannot be drilled, or "" when it can."""
    system = estate.systems.get(code)
    if system is None:
        return unknown_message("system", code, estate.systems)
    if system.backup is None:
        return f"system {code} has no backup to restore"
    if not data_vms(estate, code):
        return f"system {code} has no data-bearing VM"
    return ""


def drill_site(estate: Estate) -> Site:
    """The secondary site and its drill network. Raises PlanError when the estate has no
    secondary site or it names no drill network."""
    site = next((s for s in estate.sites.values() if s.role == "secondary"), None)
    if site is None:
        raise PlanError("the estate has no secondary site to drill in", exit_code=EXIT_BAD_INPUT)
    if site.drill_network is None:
        raise PlanError(f"site {site.name} names no drill_network: drills restore onto an "
                        "isolated network only", exit_code=EXIT_BAD_INPUT)
    return site


# ---------------------------------------------------------------- snapshots


def choose_snapshots(code: str, sources: Sequence[VM], selector: str,
                     snapshots: Sequence[Snapshot]) -> dict[str, Snapshot]:
    """Source VM name → the snapshot its scratch VM restores: the newest files snapshot made
    by that VM (``latest``), or the one whose id (or short id, or a prefix of at least 8 hex
    digits) is ``selector`` — that snapshot's VM only. A database dump's snapshot is never
    one: the recovery restores it, as the files snapshot's manifest names it. Raises
    PlanError when there is none."""
    if selector == "latest":
        chosen: dict[str, Snapshot] = {}
        for vm in sources:
            own = [s for s in snapshots if s.hostname == vm.name and not is_dump(s)]
            if not own:
                raise PlanError(f"system {code}'s repository holds no snapshot of {vm.name}: "
                                "back it up before a drill")
            chosen[vm.name] = max(own, key=lambda s: s.time)
        return chosen
    named = snapshot_by_id(code, selector, snapshots)
    if is_dump(named):
        raise PlanError(f"snapshot {named.short_id} is a dump of database "
                        f"{dump_name(named)!r}: give a files snapshot (its manifest names "
                        "the dump the drill restores)", exit_code=EXIT_BAD_INPUT)
    vm = next((v for v in sources if v.name == named.hostname), sources[0])
    return {vm.name: named}


def snapshot_by_id(code: str, selector: str, snapshots: Sequence[Snapshot]) -> Snapshot:
    """The snapshot whose id (or short id, or a prefix of at least 8 hex digits) is
    ``selector``. Raises PlanError (exit 2) for another form, none or more than one."""
    if not re.fullmatch(r"[0-9a-f]{8,64}", selector):
        raise PlanError(f"--snapshot {selector!r}: give 'latest' or a snapshot id (8 to 64 "
                        "hex digits)", exit_code=EXIT_BAD_INPUT)
    found = [s for s in snapshots if s.id.startswith(selector)]
    if len(found) != 1:
        raise PlanError(f"system {code}'s repository holds no snapshot {selector}"
                        if not found else f"snapshot id {selector} is ambiguous",
                        exit_code=EXIT_BAD_INPUT)
    return found[0]


# ---------------------------------------------------------------- addresses


class AddressBook:
    """Drill-network addresses held by the live drills of this control host
    (``<state>/drills/addresses.json``: address → drill id and PID), so that two drills
    started at once never pick the same one before vCenter shows it. A holder whose
    process is gone no longer holds anything. Addresses are handed out round the pool (the
    search starts after the last one given, as a DHCP server does), so an address is not
    reused at once while the network may still see the VM that just gave it up."""

    _threads = threading.Lock()

    def __init__(self, state: Path) -> None:
        self.path = state / "drills" / "addresses.json"

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._threads, open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                book = json.loads(self.path.read_text()) if self.path.exists() else {}
                held = book.get("held", {})
                book["held"] = {ip: h for ip, h in held.items()
                                if pid_alive(int(h.get("pid", 0)))}
                yield book
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(book, indent=1, sort_keys=True))
                tmp.replace(self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def take(self, drill_id: str, pool: Iterator[ipaddress.IPv4Address],
             taken: Collection[str], count: int) -> list[ipaddress.IPv4Address]:
        """``count`` addresses of ``pool`` that are not in ``taken`` (what vCenter shows,
        gateways, repository hosts) nor held by another live drill; held for ``drill_id``
        from now on. Raises PlanError when the pool runs short."""
        with self._locked() as book:
            held = book["held"]
            addresses = list(pool)
            last = book.get("last")
            start = next((i + 1 for i, ip in enumerate(addresses) if str(ip) == last), 0)
            out: list[ipaddress.IPv4Address] = []
            for ip in addresses[start:] + addresses[:start]:
                if len(out) == count:
                    break
                if str(ip) not in taken and str(ip) not in held:
                    out.append(ip)
            if len(out) < count:
                raise PlanError(f"the drill network's pool has {len(out)} free address(es), "
                                f"the drill needs {count}")
            for ip in out:
                held[str(ip)] = {"drill": drill_id, "pid": os.getpid()}
            book["last"] = str(out[-1])
            return out

    def release(self, drill_id: str) -> None:
        """Forget every address ``drill_id`` holds."""
        with self._locked() as book:
            held = book["held"]
            for ip in [ip for ip, h in held.items() if h.get("drill") == drill_id]:
                del held[ip]


def taken_addresses(estate: Estate, facts: Mapping[str, Inventory]) -> set[str]:
    """Addresses a scratch VM must not take: every address a VM reports in vCenter, the
    estate's own VMs' addresses, gateways and repository hosts."""
    taken = {vm.ip for inv in facts.values() for vm in inv.vms if vm.ip}
    taken |= {str(vm.ip) for vm in estate.vms}
    taken |= {str(h.address) for h in estate.settings.repository_hosts}
    taken |= {str(n.gateway) for s in estate.sites.values() for n in s.networks.values()}
    return taken


# ---------------------------------------------------------------- the plan


@dataclass(frozen=True)
class ScratchVM:
    """One scratch VM: the production VM whose data it restores, the VM spec provisioning
    makes, and the snapshot it restores."""

    source: VM
    vm: VM
    snapshot: Snapshot

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.vm.name, "source": self.source.name, "ip": str(self.vm.ip),
                "site": self.vm.site, "datacenter": self.vm.datacenter,
                "cluster": self.vm.cluster, "datastore": self.vm.datastore,
                "port_group": self.vm.port_group, "template": self.vm.template,
                "cpu": self.vm.cpu, "memory_mb": self.vm.memory_mb,
                "disks_gb": list(self.vm.disks_gb or ()), "snapshot": self.snapshot.id}


@dataclass(frozen=True)
class DrillPlan:
    """What one drill does: which system, where, onto which scratch VMs, from which
    snapshots, with which probes, against which targets."""

    drill_id: str
    estate: str
    system: str
    system_name: str
    tier: int
    rpo_seconds: float
    rto_seconds: float
    site: str
    network: str
    repository_host: str
    paths: tuple[str, ...]
    scratch: tuple[ScratchVM, ...]
    probes: tuple[Probe, ...]
    keep: bool = False
    #: what brings the service back after the restore, in order (``drill.recovery``)
    recovery: tuple[RecoveryStep, ...] = ()
    #: the dumps the backup makes (``backup.databases``): what restore_database and sql
    #: probes name
    databases: tuple[Database, ...] = ()

    @property
    def mark(self) -> str:
        return drill_mark(self.drill_id)

    @property
    def vms(self) -> list[VM]:
        return [s.vm for s in self.scratch]

    def as_dict(self) -> dict[str, Any]:
        return {"drill_id": self.drill_id, "estate": self.estate, "system": self.system,
                "system_name": self.system_name, "tier": self.tier,
                "targets": {"rpo_seconds": self.rpo_seconds, "rto_seconds": self.rto_seconds},
                "site": self.site, "network": self.network,
                "repository_host": self.repository_host, "paths": list(self.paths),
                "scratch_vms": [s.as_dict() for s in self.scratch],
                "recovery": [step_dict(step) for step in self.recovery],
                "probes": [probe_dict(p) for p in self.probes],
                "keep": self.keep}

    def database(self, name: str) -> Database:
        """The dump ``name`` of ``backup.databases`` (the estate's checks made sure every
        name a step or probe gives is one). Raises PlanError when it is not."""
        found = next((d for d in self.databases if d.name == name), None)
        if found is None:
            raise PlanError(f"system {self.system} dumps no database {name!r} "
                            "(backup.databases)")
        return found


def step_dict(step: RecoveryStep) -> dict[str, Any]:
    """A recovery step as the plan and the evidence show it."""
    what = {"command": step.command} if step.command is not None else {
        "restore_database": step.restore_database}
    return {"name": step.name, **what, "timeout_seconds": step.timeout.total_seconds()}


def probe_dict(probe: Probe) -> dict[str, Any]:
    """A probe as the plan shows it."""
    if probe.sql is not None:
        within = probe.newest_within
        return {"name": probe.name, "sql": probe.sql,
                "newest_within": within if within is None or isinstance(within, str)
                else within.total_seconds(),
                "timeout_seconds": probe.timeout.total_seconds()}
    return {"name": probe.name, "command": probe.command, "expect_rc": probe.expect_rc,
            "expect_stdout": probe.expect_stdout,
            "timeout_seconds": probe.timeout.total_seconds()}


# the scratch VM of an adopted VM whose hardware the estate does not declare
SCRATCH_CPU, SCRATCH_MEMORY_MB, SCRATCH_DISKS_GB = 2, 4096, (40,)


def plan_drill(estate: Estate, code: str, drill_id: str, snapshots: Mapping[str, Snapshot],
               addresses: Sequence[ipaddress.IPv4Address], *, keep: bool = False) -> DrillPlan:
    """The drill of system ``code``: one scratch VM per source VM of ``snapshots`` (source
    VM name → snapshot), sized like its source, on the secondary site's drill network at
    ``addresses`` (one each, in order). Raises PlanError when the system cannot be
    drilled or a name does not fit."""
    reason = drillable(estate, code)
    if reason:
        raise PlanError(reason, exit_code=EXIT_BAD_INPUT)
    system = estate.systems[code]
    assert system.backup is not None
    site = drill_site(estate)
    assert site.drill_network is not None
    net = site.networks[site.drill_network]
    tier = estate.tier(system.tier)
    sources = [vm for vm in data_vms(estate, code) if vm.name in snapshots]
    if len(addresses) < len(sources):
        raise PlanError(f"{len(addresses)} address(es) for {len(sources)} scratch VM(s)")
    scratch = []
    for source, ip in zip(sources, addresses, strict=False):
        vm = source.model_copy(update={
            "name": scratch_name(drill_id, source.name), "system": drill_mark(drill_id),
            "site": site.name, "datacenter": site.datacenter, "cluster": site.clusters[0],
            "datastore": site.datastores[0], "template": site.templates[0],
            "network": site.drill_network, "port_group": net.port_group, "ip": ip,
            "prefix_length": net.subnet.prefixlen, "gateway": net.gateway,
            "dns": list(net.dns), "existing": None, "manage_hardware": True,
            # an adopted VM whose hardware the estate does not say: a modest scratch VM
            "cpu": source.cpu or SCRATCH_CPU, "memory_mb": source.memory_mb or SCRATCH_MEMORY_MB,
            "disks_gb": list(source.disks_gb or SCRATCH_DISKS_GB)})
        scratch.append(ScratchVM(source, vm, snapshots[source.name]))
    return DrillPlan(
        drill_id=drill_id, estate=estate.id, system=code, system_name=system.name,
        tier=system.tier, rpo_seconds=tier.rpo.total_seconds(),
        rto_seconds=tier.rto.total_seconds(), site=site.name, network=site.drill_network,
        repository_host=system.backup.repository_host, paths=tuple(system.backup.paths),
        scratch=tuple(scratch), probes=tuple(system.drill.probes), keep=keep,
        recovery=tuple(system.drill.recovery), databases=tuple(system.backup.databases))


# ---------------------------------------------------------------- leftovers


def scratch_vms_in(facts: Mapping[str, Inventory], estate_id: str) -> dict[str, list[str]]:
    """Drill id → names of the scratch VMs this estate owns in vCenter (by their
    ``drill:<id>`` mark)."""
    found: dict[str, list[str]] = {}
    for inv in facts.values():
        for vm in inv.vms:
            mark = vm.attributes.get(SYSTEM) or ""
            if vm.owner == estate_id and mark.startswith(MARK_PREFIX):
                found.setdefault(mark.removeprefix(MARK_PREFIX), []).append(vm.name)
    return {k: sorted(v) for k, v in sorted(found.items())}


def is_leftover(status: str | None, params: Mapping[str, Any],
                summary: Mapping[str, Any] | None, this_host: str) -> bool:
    """Whether the scratch VMs of a drill with this ledger record are leftovers to tear
    down: the drill is unknown, or ended without ``--keep``, or is recorded as running by
    a process of this host that is gone. A drill running elsewhere, or kept, is left."""
    if status is None:
        return True
    if status == "running":
        return params.get("host") == this_host and not pid_alive(int(params.get("pid", 0)))
    return not (summary or {}).get("kept", False)
