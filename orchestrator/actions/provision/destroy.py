"""``destroy``: remove a system's VMs — only those this estate owns.

:func:`plan_destroy` (pure) picks, from the facts, the VMs whose ``hopnhat.owner`` mark is
this estate and whose ``hopnhat.system`` mark is the system (or, for a clone cut off before
its attributes were set, whose name is one of the system's and whose clone mark is this
estate's). A VM of one of the system's names without that mark is listed as left alone and
never touched. :func:`destroy` powers each one off (when on) and destroys it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.actions.provision.apply import (
    ApplyResult,
    NoProgress,
    Progress,
    VMOutcome,
    run_all,
)
from orchestrator.adapters.vsphere import VCenter
from orchestrator.adapters.vsphere_facts import ADOPTED, SYSTEM, Inventory
from orchestrator.errors import EXIT_BAD_INPUT, HopnhatError, PlanError, VSphereError
from orchestrator.estate.model import VM, Estate
from orchestrator.ledger import Ledger

STEP_POWER_OFF, STEP_DESTROY = "power off", "destroy"


@dataclass(frozen=True)
class DestroyAction:
    """One VM to remove."""

    name: str
    vcenter: str
    datacenter: str
    cluster: str
    powered_on: bool
    ip: str
    data: bool  # the estate says it holds data (what the backup gate guards)
    ref: Any = field(default=None, compare=False, repr=False)

    @property
    def steps(self) -> tuple[str, ...]:
        return (STEP_POWER_OFF, STEP_DESTROY) if self.powered_on else (STEP_DESTROY,)

    def as_dict(self) -> dict[str, Any]:
        return {"vm": self.name, "datacenter": self.datacenter, "cluster": self.cluster,
                "powered_on": self.powered_on, "ip": self.ip, "data": self.data,
                "steps": list(self.steps)}


@dataclass(frozen=True)
class DestroyPlan:
    estate: str
    system: str
    actions: tuple[DestroyAction, ...]
    left_alone: tuple[str, ...] = ()  # VMs with the system's names that are not ours
    adopted: tuple[str, ...] = ()  # VMs hopnhat took over: destroy never touches them

    def check(self) -> None:
        """Raise PlanError (exit 2) when the system holds VMs hopnhat adopted: destroy
        never destroys a VM it did not build; closing such a system is ``hopnhat
        retire``."""
        if self.adopted:
            raise PlanError(
                f"system {self.system} has VM(s) hopnhat adopted rather than built: "
                f"{', '.join(self.adopted)}; destroy never destroys an adopted VM (closing "
                "a system that runs on them is `hopnhat retire`); nothing was destroyed",
                exit_code=EXIT_BAD_INPUT)

    def data_bearing(self) -> list[DestroyAction]:
        return [a for a in self.actions if a.data]

    def gated_vms(self) -> list[tuple[str, str]]:
        """(system, VM name) of :meth:`data_bearing`: what the backup gate guards."""
        return [(self.system, a.name) for a in self.data_bearing()]

    def as_dict(self) -> dict[str, Any]:
        return {"estate": self.estate, "system": self.system,
                "destroy": [a.as_dict() for a in self.actions],
                "left_alone": list(self.left_alone), "adopted": list(self.adopted)}


def plan_destroy(estate: Estate, system: str, facts: Mapping[str, Inventory],
                 datacenters: Sequence[str] = (), vms: Sequence[VM] | None = None,
                 adopted_too: bool = False) -> DestroyPlan:
    """The VMs of ``system`` this estate owns, in ``datacenters`` (all when empty), and the
    same-named VMs it does not own (left alone). Pure: reads only ``facts``.

    ``vms``: the VMs that carry ``system``'s mark, when they are not the estate's own (a
    drill's scratch VMs, marked ``drill:<id>``); default: the estate's VMs of ``system``.
    ``adopted_too``: the VMs hopnhat adopted are destroyed as well (``retire`` only)."""
    wanted = {vm.name: vm for vm in (estate.vms_of(system) if vms is None else vms)}
    actions: list[DestroyAction] = []
    left_alone: list[str] = []
    adopted: list[str] = []
    declared = {vm.existing.uuid for vm in wanted.values()
                if vm.existing is not None and vm.existing.uuid}
    for url, inv in sorted(facts.items()):
        for found in sorted(inv.vms, key=lambda v: v.name):
            if datacenters and found.datacenter not in datacenters:
                continue
            mark = found.attributes.get(SYSTEM)
            ours = found.owner == estate.id and (
                mark == system or (mark is None and found.name in wanted))
            if ours and not adopted_too and (ADOPTED in found.attributes
                                             or (found.uuid or "-") in declared):
                adopted.append(f"{found.name} ({found.datacenter}"
                               f"{'/' + found.folder if found.folder else ''})")
            elif ours:
                known = wanted.get(found.name)
                actions.append(DestroyAction(
                    name=found.name, vcenter=url, datacenter=found.datacenter or "",
                    cluster=found.cluster or "", powered_on=found.powered_on,
                    ip=found.ip or "", data=bool(known and known.data) or known is None,
                    ref=found.ref))
            elif found.name in wanted:
                whose = "no hopnhat mark" if found.owner is None else \
                    f"owned by estate {found.owner!r}" if found.owner != estate.id else \
                    f"marked for system {mark!r}"
                left_alone.append(f"{found.name} ({found.datacenter}, {whose})")
    return DestroyPlan(estate.id, system, tuple(actions), tuple(left_alone), tuple(adopted))


def destroy(dplan: DestroyPlan, vcenters: Mapping[str, VCenter], *, ledger: Ledger,
            concurrency: int, progress: Progress | None = None) -> ApplyResult:
    """Power off (when on) and destroy each VM of ``dplan``, ``concurrency`` at once.
    Out: :class:`ApplyResult` (exit 3 when some failed); the ledger has one event per VM."""
    started = time.monotonic()
    report = progress or NoProgress()
    run_id = ledger.start("destroy", dplan.estate, {"system": dplan.system,
                                                   "vms": [a.name for a in dplan.actions]})
    stopping = threading.Event()

    def one(action: DestroyAction) -> VMOutcome:
        vc = vcenters[action.vcenter]
        done: list[str] = []
        step = ""
        begun = time.monotonic()
        report.started(action.name, action.steps)
        try:
            for step in action.steps:
                if stopping.is_set():
                    raise VSphereError(f"{action.name}: stopped by the operator before {step}")
                report.step(action.name, step)
                if step == STEP_POWER_OFF:
                    vc.power_off_vm(action.ref, action.name)
                else:
                    vc.destroy_vm(action.ref, action.name)
                done.append(step)
        except (HopnhatError, OSError) as exc:
            ledger.event(run_id, action.name, "failed", action="destroy", step=step,
                         error=str(exc))
            report.finished(action.name, False, f"{step}: {exc}")
            return VMOutcome(action.name, "destroy", False, time.monotonic() - begun,
                             tuple(done), step, str(exc))
        ledger.event(run_id, action.name, "destroyed", system=dplan.system, ip=action.ip)
        report.finished(action.name, True, "destroyed")
        return VMOutcome(action.name, "destroy", True, time.monotonic() - begun, tuple(done))

    outcomes: list[VMOutcome] = []
    try:
        outcomes = run_all(dplan.actions, one, concurrency, stopping)
    finally:
        result = ApplyResult(run_id, tuple(outcomes), time.monotonic() - started)
        ledger.finish(run_id, result.status, {k: v for k, v in result.as_dict().items()
                                              if k != "vms"})
    return result
