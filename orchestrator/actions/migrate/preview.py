"""``migrate plan``: the plan of a move read from the world, changing nothing — the target
site's vCenter (what building the target VMs would do, capacity checked) and each source
VM's newest snapshot in the system's repository (what the targets would restore were the
run not to back the source up first)."""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator.actions.drill.remote import list_snapshots
from orchestrator.actions.migrate.plan import MigrationPlan, migration_of, plan_migration
from orchestrator.actions.provision import plan as provision_plan
from orchestrator.actions.provision import vcenters as provision_vcenters
from orchestrator.adapters.restic import Snapshot
from orchestrator.adapters.restic_results import is_dump
from orchestrator.adapters.vsphere import open_vcenters
from orchestrator.settings import Paths


def preview(paths: Paths, code: str, to: str) -> MigrationPlan:
    """The move of system ``code`` to site ``to``, with its targets' provisioning plan
    (:attr:`MigrationPlan.provision`: its refusals say what stops the move). Raises
    PlanError (exit 2) when the estate declares no such move."""
    estate = paths.estate
    migration_of(estate, code, to)
    targets = estate.targets_of(code)
    with open_vcenters(provision_vcenters.endpoints(paths, [to])) as vcenters:
        facts = provision_vcenters.read_facts(vcenters, {vm.name for vm in targets})
        building = provision_plan.plan(estate, targets, facts)
    return plan_migration(estate, code, to, building, newest(list_snapshots(paths, code)),
                          "a fresh backup of the source, taken by the run")


def newest(snapshots: Iterable[Snapshot]) -> dict[str, Snapshot]:
    """Host name → its newest files snapshot (a database dump's is not one)."""
    found: dict[str, Snapshot] = {}
    for snap in snapshots:
        if is_dump(snap):
            continue
        if snap.hostname not in found or snap.time > found[snap.hostname].time:
            found[snap.hostname] = snap
    return found
