"""``apply``: execute a checked provisioning plan against vCenter.

Each VM of the plan is converged by one worker thread, through the steps its action lists
(:mod:`orchestrator.actions.provision.plan`): clone from the site's template (into the cluster's
root pool, on the datacenter-qualified datastore, powered off, with hopnhat's mark in
extraConfig) → mark ownership (custom attributes owner/system/tier, at once, so a VM left
half-made is recognised and finished by the next run) → reconfigure (CPU, memory, disks,
NIC) → customize (LinuxPrep host name, fixed IP, gateway, DNS) while powered off → power
on → wait for the guest's IP → mark it provisioned → a ledger event.

Concurrency is bounded three ways: ``concurrency`` workers in all, and at most
``clones_per_host`` clones per destination host and ``clones_per_datastore`` per datastore
at a time (vCenter queues provisioning beyond a few per host; hopnhat picks the least busy
host of the cluster that mounts the datastore). A VM that fails does not stop the others;
the result says which failed and why. A plan without changes makes no vCenter call at all.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.actions.provision.model import (
    CREATE,
    STEP_ADOPT,
    STEP_CLONE,
    STEP_CUSTOMIZE,
    STEP_FINISH,
    STEP_MARK,
    STEP_POWER_ON,
    STEP_RECONFIGURE,
    STEP_WAIT_IP,
    Plan,
    VMAction,
)
from orchestrator.adapters.vsphere import VCenter
from orchestrator.adapters.vsphere_facts import (
    ADOPTED,
    MARKS,
    OWNER,
    PROVISIONED,
    SYSTEM,
    TIER,
    Inventory,
)
from orchestrator.adapters.vsphere_specs import (
    clone_spec,
    customization_spec,
    nic_backing,
    reconfig_spec,
)
from orchestrator.errors import EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL, HopnhatError, VSphereError
from orchestrator.ledger import Ledger


class Progress(Protocol):
    """What apply tells its caller while it runs (the CLI draws progress bars)."""

    def started(self, vm: str, steps: Sequence[str]) -> None: ...

    def step(self, vm: str, step: str) -> None: ...

    def finished(self, vm: str, ok: bool, detail: str) -> None: ...


class NoProgress:
    def started(self, vm: str, steps: Sequence[str]) -> None:
        del vm, steps

    def step(self, vm: str, step: str) -> None:
        del vm, step

    def finished(self, vm: str, ok: bool, detail: str) -> None:
        del vm, ok, detail


@dataclass(frozen=True)
class VMOutcome:
    """How one VM's convergence ended: ``failed_step`` and ``error`` when it failed."""

    vm: str
    action: str
    ok: bool
    seconds: float
    steps_done: tuple[str, ...] = ()
    failed_step: str = ""
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"vm": self.vm, "action": self.action, "ok": self.ok,
                "seconds": round(self.seconds, 3), "steps_done": list(self.steps_done),
                "failed_step": self.failed_step, "error": self.error}


@dataclass(frozen=True)
class ApplyResult:
    """The run: its ledger id, one outcome per changed VM, the wall time."""

    run_id: str
    outcomes: tuple[VMOutcome, ...]
    seconds: float
    unchanged: int = 0

    @property
    def failed(self) -> list[VMOutcome]:
        return [o for o in self.outcomes if not o.ok]

    @property
    def status(self) -> str:
        if not self.outcomes:
            return "no changes"
        if not self.failed:
            return "ok"
        return "failed" if len(self.failed) == len(self.outcomes) else "partial"

    @property
    def exit_code(self) -> int:
        """0 all done, 3 some VMs failed (partial), 1 every VM failed."""
        return {"failed": EXIT_FAILURE, "partial": EXIT_PARTIAL}.get(self.status, EXIT_OK)

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run_id, "status": self.status, "seconds": round(self.seconds, 3),
                "changed": len(self.outcomes) - len(self.failed), "failed": len(self.failed),
                "unchanged": self.unchanged, "vms": [o.as_dict() for o in self.outcomes]}


class CloneSlots:
    """At most ``per_host`` clones per host and ``per_datastore`` per datastore at once.
    :meth:`take` waits for room and picks the least busy of the candidate hosts."""

    def __init__(self, per_host: int, per_datastore: int) -> None:
        self.per_host = per_host
        self.per_datastore = per_datastore
        self._room = threading.Condition()
        self._hosts: Counter[str] = Counter()
        self._stores: Counter[str] = Counter()

    @contextmanager
    def take(self, hosts: Sequence[str], datastore: str) -> Iterator[str]:
        if not hosts:
            raise VSphereError("no host to clone on")
        with self._room:
            while True:
                free = [h for h in hosts if self._hosts[h] < self.per_host]
                if free and self._stores[datastore] < self.per_datastore:
                    host = min(free, key=lambda h: (self._hosts[h], h))
                    break
                self._room.wait()
            self._hosts[host] += 1
            self._stores[datastore] += 1
        try:
            yield host
        finally:
            with self._room:
                self._hosts[host] -= 1
                self._stores[datastore] -= 1
                self._room.notify_all()


@dataclass
class _Run:
    """What every worker of one apply shares."""

    plan: Plan
    facts: Mapping[str, Inventory]
    vcenters: Mapping[str, VCenter]
    ledger: Ledger
    run_id: str
    guest_ip_timeout: float
    slots: CloneSlots
    progress: Progress
    fields: dict[str, dict[str, int]] = field(default_factory=dict)  # URL → name → key
    stopping: threading.Event = field(default_factory=threading.Event)


def apply(plan: Plan, facts: Mapping[str, Inventory], vcenters: Mapping[str, VCenter], *,
          ledger: Ledger, concurrency: int, clones_per_host: int, clones_per_datastore: int,
          guest_ip_timeout: float, progress: Progress | None = None,
          params: dict[str, Any] | None = None) -> ApplyResult:
    """Converge every VM of a checked ``plan`` (see
    :func:`~orchestrator.actions.provision.plan.check`)
    with at most ``concurrency`` at once. ``facts`` and ``vcenters`` are the ones the plan
    was made from (URL → Inventory / session).

    Out: :class:`ApplyResult` (``exit_code`` 0, 3 partial, 1 all failed); the run and one
    event per VM are in the ledger. Raises VSphereError only when the custom attribute
    definitions cannot be created (before any VM is touched); a VM's own failure is in its
    outcome.
    """
    started = time.monotonic()
    pending = plan.pending
    run_id = ledger.start("provision", plan.estate, {
        **(params or {}), "changes": len(pending), "concurrency": concurrency})
    run = _Run(plan, facts, vcenters, ledger, run_id, guest_ip_timeout,
               CloneSlots(clones_per_host, clones_per_datastore), progress or NoProgress())
    outcomes: list[VMOutcome] = []
    try:
        if pending:
            # the definitions are made once, before the workers start (never concurrently)
            for url in sorted({a.vcenter for a in pending}):
                run.fields[url] = vcenters[url].ensure_fields(MARKS, facts[url].fields)
            outcomes = run_all(pending, lambda a: _converge(run, a), concurrency,
                               run.stopping)
    finally:
        result = ApplyResult(run_id, tuple(outcomes), time.monotonic() - started,
                             unchanged=len(plan.actions) - len(pending))
        ledger.finish(run_id, result.status if outcomes or not pending else "failed",
                      {k: v for k, v in result.as_dict().items() if k != "vms"})
    return result


def run_all(items: Sequence[Any], work: Callable[[Any], VMOutcome], concurrency: int,
            stopping: threading.Event) -> list[VMOutcome]:
    """``work`` on each item, ``concurrency`` at once, outcomes in item order. On an
    interrupt (Ctrl-C) the items not started are cancelled and ``stopping`` tells the
    running ones to stop before their next step; the interrupt is raised again."""
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="vm") as pool:
        futures = [pool.submit(work, item) for item in items]
        try:
            return [future.result() for future in futures]
        except BaseException:
            stopping.set()
            for future in futures:
                future.cancel()
            raise


def _converge(run: _Run, action: VMAction) -> VMOutcome:
    vm = action.vm
    vc = run.vcenters[action.vcenter]
    inv = run.facts[action.vcenter]
    fields = run.fields[action.vcenter]
    ref: Any = action.target if action.kind != CREATE else None
    done: list[str] = []
    started = time.monotonic()
    run.progress.started(vm.name, action.steps)
    step = ""
    try:
        for step in action.steps:
            if run.stopping.is_set():
                raise VSphereError(f"{vm.name}: stopped by the operator before {step}")
            run.progress.step(vm.name, step)
            ref = _STEPS[step](run, vc, inv, fields, action, ref)
            done.append(step)
    except (HopnhatError, OSError) as exc:
        error = str(exc)
        run.ledger.event(run.run_id, vm.name, "failed", action=action.kind, step=step,
                         error=error, steps_done=done)
        run.progress.finished(vm.name, False, f"{step}: {error}")
        return VMOutcome(vm.name, action.kind, False, time.monotonic() - started,
                         tuple(done), step, error)
    seconds = time.monotonic() - started
    run.ledger.event(run.run_id, vm.name, action.kind, steps=done, seconds=round(seconds, 3),
                     changes=[str(c) for c in action.changes], ip=str(vm.ip),
                     vcenter=action.vcenter)
    run.progress.finished(vm.name, True, action.kind)
    return VMOutcome(vm.name, action.kind, True, seconds, tuple(done))


Step = Callable[[_Run, VCenter, Inventory, dict[str, int], VMAction, Any], Any]


def _clone(run: _Run, vc: VCenter, inv: Inventory, fields: dict[str, int],
           action: VMAction, ref: Any) -> Any:
    del fields, ref
    vm = action.vm
    dc = vm.datacenter
    cluster = inv.clusters[(dc, vm.cluster)]
    store = inv.datastores[(dc, vm.datastore)]
    template = inv.templates[(dc, vm.template)]
    hosts = {h.name: h for h in inv.hosts.values()
             if h.datacenter == dc and h.cluster == vm.cluster and h.usable
             and vm.datastore in h.datastores}
    keys = {f"{action.vcenter}|{dc}|{name}": name for name in hosts}
    with run.slots.take(sorted(keys), f"{action.vcenter}|{dc}|{vm.datastore}") as key:
        spec = clone_spec(cluster.pool, store.ref, hosts[keys[key]].ref,
                          mark=(OWNER, run.plan.estate))
        return vc.clone_vm(template.ref, inv.datacenters[dc].vm_folder, vm.name, spec)


def _mark(run: _Run, vc: VCenter, inv: Inventory, fields: dict[str, int],
          action: VMAction, ref: Any) -> Any:
    del inv
    vm = action.vm
    vc.set_fields(ref, vm.name, {fields[OWNER]: run.plan.estate, fields[SYSTEM]: vm.system,
                                 fields[TIER]: str(vm.tier)})
    return ref


def _reconfigure(run: _Run, vc: VCenter, inv: Inventory, fields: dict[str, int],
                 action: VMAction, ref: Any) -> Any:
    del run, fields
    vm = action.vm
    network = inv.networks[(vm.datacenter, vm.port_group)]
    backing = nic_backing(network.name, network.ref, network.switch_uuid,
                          network.portgroup_key)
    changed = {c.what for c in action.changes}
    new = action.kind == CREATE
    spec = reconfig_spec(vc.vm_devices(ref, vm.name),
                         cpu=vm.cpu if new or "cpu" in changed else None,
                         memory_mb=vm.memory_mb if new or "memory" in changed else None,
                         disks_gb=vm.disks_gb or (), nic=backing)
    if spec is not None:
        vc.reconfigure_vm(ref, vm.name, spec)
    return ref


def _customize(run: _Run, vc: VCenter, inv: Inventory, fields: dict[str, int],
               action: VMAction, ref: Any) -> Any:
    del run, inv, fields
    vm = action.vm
    vc.customize_vm(ref, vm.name, customization_spec(
        vm.hostname, str(vm.ip), vm.prefix_length, str(vm.gateway), [str(d) for d in vm.dns]))
    return ref


def _power_on(run: _Run, vc: VCenter, inv: Inventory, fields: dict[str, int],
              action: VMAction, ref: Any) -> Any:
    del run, inv, fields
    vc.power_on_vm(ref, action.vm.name)
    return ref


def _wait_ip(run: _Run, vc: VCenter, inv: Inventory, fields: dict[str, int],
             action: VMAction, ref: Any) -> Any:
    del inv, fields
    vc.wait_for_ip(ref, action.vm.name, str(action.vm.ip), run.guest_ip_timeout)
    return ref


def _finish(run: _Run, vc: VCenter, inv: Inventory, fields: dict[str, int],
            action: VMAction, ref: Any) -> Any:
    del inv
    vc.set_fields(ref, action.vm.name, {fields[PROVISIONED]: run.run_id})
    return ref


def _adopt(run: _Run, vc: VCenter, inv: Inventory, fields: dict[str, int],
           action: VMAction, ref: Any) -> Any:
    """The one thing adopting does: this estate's marks on the VM, at once (no hardware,
    power or name change)."""
    del inv
    vm = action.vm
    vc.set_fields(ref, vm.name, {fields[OWNER]: run.plan.estate, fields[SYSTEM]: vm.system,
                                 fields[TIER]: str(vm.tier), fields[ADOPTED]: run.run_id})
    return ref


_STEPS: dict[str, Step] = {
    STEP_ADOPT: _adopt,
    STEP_CLONE: _clone, STEP_MARK: _mark, STEP_RECONFIGURE: _reconfigure,
    STEP_CUSTOMIZE: _customize, STEP_POWER_ON: _power_on, STEP_WAIT_IP: _wait_ip,
    STEP_FINISH: _finish,
}
