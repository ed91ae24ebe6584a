"""``migrate plan``: what moving a system to another site will do, as data.

A system moves by restore: its migration (``System.migration`` in the estate) describes the
VMs to build at the target site; each data-bearing source VM hands its data to the target VM
of the same role and number (:attr:`VM.source`). The plan says which VMs will be built (the
provisioning plan of the targets, capacity checked), which snapshot each target restores
(the one the run takes first, or an older one named with ``--snapshot`` and ``--reason``),
and what keeps running at the source.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.actions.drill.plan import snapshot_by_id
from orchestrator.actions.provision import model as provision_model
from orchestrator.actions.selection import require_known
from orchestrator.adapters.restic import Snapshot
from orchestrator.adapters.restic_results import is_dump
from orchestrator.errors import EXIT_BAD_INPUT, PlanError
from orchestrator.estate.model import VM, Estate, Migration
from orchestrator.human import duration

LATEST = "latest"


def migration_of(estate: Estate, code: str, to: str) -> Migration:
    """System ``code``'s migration, which must go to site ``to``. Raises PlanError (exit 2)
    naming the system, the site or the file that says otherwise."""
    require_known(estate, systems=[code])
    system = estate.systems[code]
    if to not in estate.sites:
        raise PlanError(f"--to {to!r}: no such site (sites: {', '.join(sorted(estate.sites))})",
                        exit_code=EXIT_BAD_INPUT)
    rel = estate.file_of("system", code)
    if system.migration is None:
        raise PlanError(f"{rel}: system {code} has no migration: describe the VMs to build at "
                        f"{to} under migration: (to, vms)", exit_code=EXIT_BAD_INPUT)
    if system.migration.to != to:
        raise PlanError(f"{rel}: migration.to is {system.migration.to!r}, not {to!r}",
                        exit_code=EXIT_BAD_INPUT)
    return system.migration


def sources(estate: Estate, code: str) -> list[VM]:
    """The system's data-bearing VMs: what hands its data over."""
    return [vm for vm in estate.vms_of(code) if vm.data]


@dataclass(frozen=True)
class Pair:
    """A target VM, the source VM whose data it receives, and the snapshot it restores (None
    until the run has backed the source up)."""

    target: VM
    source: VM
    snapshot: Snapshot | None = None

    def as_dict(self) -> dict[str, Any]:
        snap = self.snapshot
        return {"target": self.target.name, "target_ip": str(self.target.ip),
                "source": self.source.name, "source_ip": str(self.source.ip),
                "source_site": self.source.site,
                "snapshot": None if snap is None else {
                    "id": snap.id, "short_id": snap.short_id, "time": snap.time.isoformat(),
                    "hostname": snap.hostname, "paths": list(snap.paths),
                    "tags": list(snap.tags)}}


@dataclass(frozen=True)
class MigrationPlan:
    """One migration: the system, from which site(s) to which, the target VMs (and the
    provisioning plan for them), what each receives, what stays at the source."""

    estate: str
    system: str
    system_name: str
    to: str
    targets: tuple[VM, ...]
    pairs: tuple[Pair, ...]
    provision: provision_model.Plan | None
    paths: tuple[str, ...]
    staying: tuple[VM, ...]
    parallel_run_seconds: float
    from_unit: str
    to_unit: str
    snapshot_note: str = ""

    @property
    def from_sites(self) -> list[str]:
        return sorted({vm.site for vm in self.staying})

    def as_dict(self) -> dict[str, Any]:
        return {"estate": self.estate, "system": self.system, "system_name": self.system_name,
                "from_sites": self.from_sites, "to": self.to,
                "from_unit": self.from_unit, "to_unit": self.to_unit,
                "targets": [{"name": vm.name, "role": vm.role, "site": vm.site,
                             "ip": str(vm.ip), "cpu": vm.cpu, "memory_mb": vm.memory_mb,
                             "disks_gb": list(vm.disks_gb or ()), "data": vm.data,
                             "receives": vm.source} for vm in self.targets],
                "pairs": [p.as_dict() for p in self.pairs],
                "provision": None if self.provision is None else self.provision.as_dict(),
                "paths": list(self.paths),
                "staying": [{"name": vm.name, "site": vm.site, "ip": str(vm.ip)}
                            for vm in self.staying],
                "parallel_run_days": round(self.parallel_run_seconds / 86400, 1),
                "snapshot": self.snapshot_note}


def plan_migration(estate: Estate, code: str, to: str,
                   provision_plan: provision_model.Plan | None = None,
                   snapshots: Mapping[str, Snapshot] | None = None,
                   snapshot_note: str = "") -> MigrationPlan:
    """The migration of ``code`` to ``to`` (pure). ``snapshots``: source VM name → the
    snapshot its target restores, when known."""
    migration = migration_of(estate, code, to)
    system = estate.systems[code]
    assert system.backup is not None  # the estate's checks: a migration needs a backup
    targets = estate.targets_of(code)
    by_name = {vm.name: vm for vm in estate.vms_of(code)}
    pairs = tuple(Pair(t, by_name[t.source], (snapshots or {}).get(t.source))
                  for t in targets if t.source is not None and t.source in by_name)
    return MigrationPlan(
        estate=estate.id, system=code, system_name=system.name, to=to,
        targets=tuple(targets), pairs=pairs, provision=provision_plan,
        paths=tuple(system.backup.paths), staying=tuple(estate.vms_of(code)),
        parallel_run_seconds=migration.parallel_run.total_seconds(),
        from_unit=migration.from_unit, to_unit=migration.to_unit,
        snapshot_note=snapshot_note)


def choose(code: str, source_vms: Sequence[VM], snapshots: Sequence[Snapshot], selector: str,
           rpo_seconds: float, reason: str, now: float | None = None) -> dict[str, Snapshot]:
    """Source VM name → the snapshot its target restores: each VM's newest (``latest``), or
    the one named by id (its VM's only; the others' newest). A snapshot older than the
    tier's RPO is refused unless it was named and ``reason`` says why. Raises PlanError
    (exit 2) naming the VM or the snapshot."""
    now = time.time() if now is None else now
    named: Snapshot | None = None
    if selector != LATEST:
        named = snapshot_by_id(code, selector, snapshots)
        if is_dump(named):
            raise PlanError(f"snapshot {named.short_id} holds a database dump; a move restores "
                            "a files snapshot", exit_code=EXIT_BAD_INPUT)
        if named.hostname not in {vm.name for vm in source_vms}:
            raise PlanError(f"snapshot {named.short_id} was made by {named.hostname!r}, not by "
                            f"a data-bearing VM of {code}", exit_code=EXIT_BAD_INPUT)
    chosen: dict[str, Snapshot] = {}
    for vm in source_vms:
        if named is not None and named.hostname == vm.name:
            chosen[vm.name] = named
            continue
        own = [s for s in snapshots if s.hostname == vm.name and not is_dump(s)]
        if not own:
            raise PlanError(f"system {code}'s repository holds no snapshot of {vm.name}",
                            exit_code=EXIT_BAD_INPUT)
        chosen[vm.name] = max(own, key=lambda s: s.time)
    for name, snap in chosen.items():
        age = now - snap.time.timestamp()
        if age > rpo_seconds and not (snap is named and reason):
            raise PlanError(
                f"the newest snapshot of {name} ({snap.short_id}) is "
                f"{duration(age, 'compact')} old, older than the tier's RPO "
                f"({duration(rpo_seconds, 'estate')}): a move starts from "
                "a fresh backup (or name the snapshot with --snapshot and say why with "
                "--reason)", exit_code=EXIT_BAD_INPUT)
    return chosen
