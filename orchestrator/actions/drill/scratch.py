"""A drill's scratch VMs: made by the provisioning code, given the restic client by the
configure code (ansible-runner, ``playbooks/drill.yml``), torn down by the destroy code.

- :func:`provision` plans the scratch VMs against vCenter's facts like any VM of the estate
  (``provision_plan.plan`` → ``check`` → ``provision_apply.apply``) and waits until each answers
  SSH with its pinned host key;
- :func:`configure` runs ``playbooks/drill.yml`` (roles base and restic_client, repository
  not initialised) against an inventory of the scratch VMs alone: the system's password
  from the vault, its repository key, ssh settings pinned to the repository host;
- :func:`teardown` destroys what carries the drill's mark (``provision_destroy``: only what
  this estate owns), :func:`leftovers` finds the scratch VMs of drills that ended without
  tearing down (a crash, a killed process) so the next drill removes them first.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.actions.configure import Verdict, converge, extra_vars
from orchestrator.actions.drill.plan import DrillPlan, drill_mark, is_leftover, scratch_vms_in
from orchestrator.actions.provision import apply as provision_apply
from orchestrator.actions.provision import destroy as provision_destroy
from orchestrator.actions.provision import plan as provision_plan
from orchestrator.actions.provision import vcenters as provision_vcenters
from orchestrator.adapters import ssh
from orchestrator.adapters.ansible import PLAYBOOKS, PlaybookRun
from orchestrator.adapters.vsphere import VCenter
from orchestrator.adapters.vsphere_facts import Inventory
from orchestrator.errors import HopnhatError, SSHError, VSphereError
from orchestrator.estate.inventory import _connection, restic_vars, system_vars
from orchestrator.estate.model import VM
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths

DRILL_PLAYBOOK = PLAYBOOKS / "drill.yml"
SSH_TIMEOUT = 120.0


def target(paths: Paths, vm: VM) -> ssh.Target:
    return ssh.Target(host=vm.name, address=str(vm.ip), port=22,
                      user=paths.estate.settings.ssh.user, key_file=paths.private_key,
                      known_hosts=paths.known_hosts)


def wait_for_ssh(paths: Paths, vm: VM, timeout: float = SSH_TIMEOUT,
                 stopped: Callable[[], bool] = lambda: False) -> None:
    """Wait until ``vm`` accepts hopnhat's key and shows the host key pinned for it (a VM
    that has an IP may not run its sshd yet). Raises SSHError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last = ""
    while not stopped():
        try:
            ssh.connect(target(paths, vm), timeout=5).close()
            return
        except SSHError as exc:
            last = str(exc)
        if time.monotonic() > deadline:
            raise SSHError(f"{vm.name} did not answer SSH within {timeout:.0f} s ({last})")
        time.sleep(0.25)  # poll interval of the deadline loop above
    raise SSHError(f"{vm.name}: the drill was stopped")


def provision_scratch(paths: Paths, plan: DrillPlan, vcenters: Mapping[str, VCenter],
                      facts: Mapping[str, Inventory], ledger: Ledger,
                      stopped: Callable[[], bool] = lambda: False
                      ) -> provision_apply.ApplyResult:
    """Make the drill's scratch VMs with the provisioning code and wait for their SSH.
    Raises PlanError (refused plan), VSphereError (a VM failed), SSHError."""
    settings = paths.estate.settings.provisioning
    the_plan = provision_plan.plan(paths.estate, plan.vms, facts)
    provision_plan.check(the_plan)
    result = provision_apply.apply(
        the_plan, facts, vcenters, ledger=ledger, concurrency=settings.concurrency,
        clones_per_host=settings.clones_per_host,
        clones_per_datastore=settings.clones_per_datastore,
        guest_ip_timeout=settings.guest_ip_timeout.total_seconds(),
        params={"drill": plan.drill_id, "system": plan.system})
    if result.failed:
        first = result.failed[0]
        raise VSphereError(f"scratch VM {first.vm}: {first.failed_step}: {first.error}")
    for vm in plan.vms:
        wait_for_ssh(paths, vm, stopped=stopped)
    return result


def inventory(paths: Paths, plan: DrillPlan) -> dict[str, Any]:
    """The Ansible inventory of the drill's scratch VMs alone (dynamic-inventory form): each
    a backup client of the system it restores, with that system's variables."""
    names = [vm.name for vm in plan.vms]
    hostvars = {vm.name: {**_connection(paths, str(vm.ip), 22), "hopnhat_site": vm.site,
                          "hopnhat_role": vm.role, "hopnhat_data": True,
                          "hopnhat_drill": plan.drill_id,
                          # a scratch VM is a clone of the site's template: no discovery
                          "ansible_python_interpreter": "/usr/bin/python3"} for vm in plan.vms}
    return {
        "drill_scratch": {"hosts": names},
        "backup_clients": {"hosts": names},
        f"system_{plan.system}": {"hosts": names,
                                  "vars": system_vars(paths, plan.system)},
        "all": {"children": ["ungrouped", "backup_clients", "drill_scratch",
                             f"system_{plan.system}"],
                "vars": {"hopnhat_estate": paths.estate.id, **restic_vars(paths)}},
        "_meta": {"hostvars": hostvars},
    }


@dataclass(frozen=True)
class ConfigureOutcome:
    run: PlaybookRun
    verdict: Verdict

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.verdict.status, "changed": self.run.changed,
                "duration_seconds": round(self.run.duration, 2),
                "failures": [f.as_dict() for f in self.run.failures],
                "artifacts": str(self.run.artifacts)}


def configure_scratch(paths: Paths, plan: DrillPlan) -> ConfigureOutcome:
    """Give the scratch VMs the system's restic client (``playbooks/drill.yml``). Raises
    AnsibleError naming the failed tasks unless every scratch VM was configured."""
    run, verdict = converge(paths, DRILL_PLAYBOOK, inventory(paths, plan),
                            extra_vars(paths, [plan.system]), f"{plan.drill_id}-configure",
                            "the scratch VMs", forks=len(plan.vms), timeout=600)
    return ConfigureOutcome(run, verdict)


def teardown_scratch(paths: Paths, drill_id: str, vms: Sequence[VM],
                     vcenters: Mapping[str, VCenter], ledger: Ledger
                     ) -> provision_apply.ApplyResult:
    """Destroy the VMs carrying drill ``drill_id``'s mark (and clones of ``vms`` cut off
    before they were marked) that this estate owns. Reads vCenter first, so a VM already
    gone is no error. Raises VSphereError when a VM could not be destroyed."""
    names = {vm.name for vm in vms}
    facts = provision_vcenters.read_facts(vcenters, names)
    dplan = provision_destroy.plan_destroy(paths.estate, drill_mark(drill_id), facts, vms=vms)
    result = provision_destroy.destroy(dplan, vcenters, ledger=ledger,
                                       concurrency=max(1, len(dplan.actions)))
    if result.failed:
        first = result.failed[0]
        raise VSphereError(f"tearing down {first.vm}: {first.error}")
    return result


def leftovers(paths: Paths, facts: Mapping[str, Inventory], ledger: Ledger,
              current: str = "") -> dict[str, list[str]]:
    """Drill id → scratch VMs in vCenter left by drills that are over (or whose process is
    gone) and were not kept: what the next drill tears down first."""
    runs = {r.id: r for r in ledger.runs("drill", limit=100_000)}
    host = socket.gethostname()
    out = {}
    for drill_id, names in scratch_vms_in(facts, paths.estate.id).items():
        if drill_id == current:
            continue
        run = runs.get(drill_id)
        if is_leftover(run.status if run else None, run.params if run else {},
                       run.summary if run else None, host):
            out[drill_id] = names
    return out


def remove_leftovers(paths: Paths, found: Mapping[str, list[str]],
                     vcenters: Mapping[str, VCenter], ledger: Ledger) -> list[str]:
    """Tear down every drill's leftovers in ``found``; the names destroyed. A drill whose
    VMs cannot be removed is reported by a VSphereError after the others were tried."""
    done: list[str] = []
    errors: list[str] = []
    for drill_id, _ in sorted(found.items()):
        try:
            result = teardown_scratch(paths, drill_id, (), vcenters, ledger)
            done += [o.vm for o in result.outcomes if o.ok]
        except HopnhatError as exc:
            errors.append(str(exc))
    if errors:
        raise VSphereError("leftover scratch VMs could not be removed: " + "; ".join(errors))
    return done


def teardown_kept(paths: Paths, drill_id: str, ledger: Ledger) -> list[str]:
    """Destroy the scratch VMs a drill left running (``--keep``): those carrying its mark.
    Out: the names destroyed (none when none is left)."""
    from orchestrator.actions.drill.plan import drill_site
    from orchestrator.adapters.vsphere import open_vcenters

    site = drill_site(paths.estate)
    with open_vcenters(provision_vcenters.endpoints(paths, [site.name])) as vcenters:
        result = teardown_scratch(paths, drill_id, (), vcenters, ledger)
    return [o.vm for o in result.outcomes if o.ok]
