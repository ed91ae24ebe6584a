"""``hopnhat plan | apply | destroy`` from end to end, each one flow the CLI calls once.

plan: connect to the selection's vCenters (one that cannot be read is named in the plan),
read them, plan, show, check. apply and destroy: connect, read, plan, show, check, then the
same gated change — the backup gate (:func:`~orchestrator.actions.provision.plan.backup_gate`),
the operator's confirmation (``confirm``: refused, nothing is changed and nothing more is
recorded), and the change itself with its run in the ledger.

The caller hears of each stage through :class:`Hooks` (the CLI draws lines, tables and
progress bars; the defaults say nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from orchestrator.actions.backup.gate import GateDecision, GateRequest
from orchestrator.actions.provision import plan as provision_plan
from orchestrator.actions.provision.apply import ApplyResult, NoProgress, Progress, apply
from orchestrator.actions.provision.destroy import DestroyPlan, destroy, plan_destroy
from orchestrator.actions.provision.model import GatedPlan, Plan
from orchestrator.actions.provision.plan import backup_gate
from orchestrator.actions.provision.vcenters import (
    compared,
    endpoints,
    read_each,
    read_facts,
    select,
)
from orchestrator.adapters.vsphere import Endpoint, VCenter, open_each_vcenter, open_vcenters
from orchestrator.estate.model import VM
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths

if TYPE_CHECKING:
    from orchestrator.actions.backup.run import LineCallback

P = TypeVar("P", bound=GatedPlan)
Confirm = Callable[[P], bool]
Change = Callable[[Ledger, Progress, GateDecision], ApplyResult]


def _nothing(*_: object) -> None:
    """A hook that says nothing."""


@contextmanager
def _no_progress(total: int) -> Iterator[Progress]:
    del total
    yield NoProgress()


@dataclass(frozen=True)
class Hooks(Generic[P]):
    """What a flow tells its caller as it goes; each may be left out."""

    say: Callable[[str], None] = _nothing  # where it is: "Connecting to …", "Reading …"
    planned: Callable[[P], None] = _nothing  # the plan, shown before it is checked
    backup_line: LineCallback | None = None  # a line of the backup --backup-first makes
    gated: Callable[[GateDecision], None] = _nothing  # the backup gate's verdict
    #: the progress of the change, for so many VMs
    progress: Callable[[int], AbstractContextManager[Progress]] = field(
        default=_no_progress)


@dataclass(frozen=True)
class Provisioned(Generic[P]):
    """How an apply or a destroy ended. ``result`` is None when nothing ran: the operator
    refused (``cancelled``), or a destroy found nothing to destroy (``gate`` None too)."""

    plan: P
    gate: GateDecision | None
    result: ApplyResult | None
    cancelled: bool = False


def plan_flow(paths: Paths, *, systems: Sequence[str] = (), sites: Sequence[str] = (),
              insecure: bool = False, hooks: Hooks[Plan] | None = None) -> Plan:
    """The plan of the selected VMs (all when ``systems`` and ``sites`` are empty), shown
    through ``hooks.planned`` and then checked. Each vCenter is read on its own: one that
    cannot be (down, login refused) is named in the plan. Raises PlanError (exit 1) for a
    refused plan, one with a vCenter unread among them."""
    hooks = hooks or Hooks()
    estate = paths.estate
    vms = select(estate, systems, sites)
    with open_each_vcenter(_announced(paths, _sites_of(vms), insecure, hooks.say), 2) as (
            vcenters, failed):
        hooks.say("Reading vCenter …")
        facts, lost = read_each(vcenters, compared(vms), paths.device_cache)
        the_plan = provision_plan.plan_reachable(estate, vms, facts, {**failed, **lost})
    hooks.planned(the_plan)
    provision_plan.check(the_plan)
    return the_plan


def apply_flow(paths: Paths, *, confirm: Confirm[Plan], systems: Sequence[str] = (),
               sites: Sequence[str] = (), concurrency: int | None = None,
               insecure: bool = False, gate: GateRequest | None = None,
               hooks: Hooks[Plan] | None = None) -> Provisioned[Plan]:
    """Make vCenter match the estate for the selected VMs: plan, show, check, the backup
    gate, ``confirm`` (asked only when the plan changes something), apply. Raises PlanError
    for a refused plan or a refusing gate (nothing changed)."""
    hooks = hooks or Hooks()
    estate = paths.estate
    settings = estate.settings.provisioning
    workers = concurrency or settings.concurrency
    vms = select(estate, systems, sites)
    with _connected(paths, _sites_of(vms), insecure, workers, hooks.say) as vcenters:
        hooks.say("Reading vCenter …")
        facts = read_facts(vcenters, compared(vms), paths.device_cache)
        the_plan = provision_plan.plan(estate, vms, facts)
        hooks.planned(the_plan)
        provision_plan.check(the_plan)

        def change(ledger: Ledger, progress: Progress, decision: GateDecision) -> ApplyResult:
            return apply(the_plan, facts, vcenters, ledger=ledger, concurrency=workers,
                         clones_per_host=settings.clones_per_host,
                         clones_per_datastore=settings.clones_per_datastore,
                         guest_ip_timeout=settings.guest_ip_timeout.total_seconds(),
                         progress=progress,
                         params={"systems": list(systems), "sites": list(sites),
                                 "backup_gate": decision.run_id})

        asked = confirm if the_plan.has_changes else _agreed
        return _gated(paths, the_plan, "apply", gate, asked, hooks, len(the_plan.pending),
                      change)


def destroy_flow(paths: Paths, system: str, *, confirm: Confirm[DestroyPlan],
                 sites: Sequence[str] = (), insecure: bool = False,
                 gate: GateRequest | None = None,
                 hooks: Hooks[DestroyPlan] | None = None) -> Provisioned[DestroyPlan]:
    """Power off and destroy the VMs of ``system`` this estate owns (at ``sites``, all when
    empty): plan, show, check, then — when there is something to destroy — the backup gate,
    ``confirm``, destroy. Raises PlanError for a system holding adopted VMs or a refusing
    gate (nothing destroyed)."""
    hooks = hooks or Hooks()
    estate = paths.estate
    concurrency = estate.settings.provisioning.concurrency
    datacenters = [estate.sites[s].datacenter for s in sites]
    names = compared(estate.vms_of(system))
    with _connected(paths, list(sites or estate.sites), insecure, concurrency,
                    hooks.say) as vcenters:
        hooks.say("Reading vCenter …")
        facts = read_facts(vcenters, names, paths.device_cache)
        dplan = plan_destroy(estate, system, facts, datacenters)
        hooks.planned(dplan)
        dplan.check()
        if not dplan.actions:
            return Provisioned(dplan, None, None)

        def change(ledger: Ledger, progress: Progress, decision: GateDecision) -> ApplyResult:
            del decision
            return destroy(dplan, vcenters, ledger=ledger, concurrency=concurrency,
                           progress=progress)

        return _gated(paths, dplan, "destroy", gate, confirm, hooks, len(dplan.actions),
                      change)


def _gated(paths: Paths, plan: P, command: str, request: GateRequest | None,
           confirm: Confirm[P], hooks: Hooks[P], changes: int,
           change: Change) -> Provisioned[P]:
    """The gated change of a checked plan: the backup gate (raises PlanError when it
    refuses), the operator's confirmation, then ``change`` with its progress and the
    ledger."""
    decision = backup_gate(plan, paths, request, command=command, on_line=hooks.backup_line)
    hooks.gated(decision)
    if not confirm(plan):
        return Provisioned(plan, decision, None, cancelled=True)
    with hooks.progress(changes) as progress, Ledger(paths.ledger) as ledger:
        return Provisioned(plan, decision, change(ledger, progress, decision))


def _agreed(plan: GatedPlan) -> bool:
    """A plan without changes needs no one's agreement."""
    del plan
    return True


def _sites_of(vms: Sequence[VM]) -> list[str]:
    return sorted({vm.site for vm in vms})


def _announced(paths: Paths, sites: Sequence[str], insecure: bool,
               say: Callable[[str], None]) -> list[Endpoint]:
    """The vCenters of ``sites``, said through ``say``."""
    found = endpoints(paths, sites, insecure)
    if found:
        say(f"Connecting to {', '.join(e.label for e in found)} …")
    else:
        say("The selection holds no VM: nothing to read.")
    return found


@contextmanager
def _connected(paths: Paths, sites: Sequence[str], insecure: bool, pool_size: int,
               say: Callable[[str], None]) -> Iterator[dict[str, VCenter]]:
    """One session per vCenter of ``sites`` for the block (the first that cannot be
    logged in to raises its VSphereError)."""
    with open_vcenters(_announced(paths, sites, insecure, say), pool_size) as vcenters:
        yield vcenters

