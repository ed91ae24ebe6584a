"""Benchmark 1 (issue 3): ``hopnhat plan`` over 1,000 VMs against a vcsim holding them.

Generates an estate of 1,000 VMs (10 systems x 100), starts a private vcsim (no sshd
guests), provisions all 1,000 with hopnhat's own apply (zero delays), then measures:

- the issue's bare baseline: one RetrievePropertiesEx over a ContainerView of the VMs
  (name, CPU, memory, power state, IP);
- the same bare read, through pyVmomi's deserializer, of exactly what a plan reads (every
  object's properties, then the device lists of the 1,000 VMs), without any modelling
  (hopnhat parses these two answers with ElementTree instead: adapters/vsphere_xml.py);
- hopnhat's read + diff + capacity in-process (session open): cold (no device cache, as
  the first plan on a control host: every device list read) and warm (the device cache of
  the state folder current: only the VMs whose configuration changed are re-read — none
  here), and warm with the login;
- the whole ``hopnhat plan`` process (subprocess);
- the lazy-attribute baseline (vm.name, vm.config, vm.runtime, vm.guest, vm.customValue
  for each VM: one HTTP request each).

Prints medians, HTTP requests (counted in-process) and SOAP calls (vcsim's trace), and
ratios. Run as root? No: it needs no namespace; ``python bench/bench_plan.py [N]``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchlab import HOPNHAT, HTTPCount, bench_lab, timed
from pyVmomi import vim

from orchestrator import process
from orchestrator.actions.provision import apply as provision_apply
from orchestrator.actions.provision import model as provision_model
from orchestrator.actions.provision import plan as provision_plan
from orchestrator.actions.provision import vcenters as provision_vcenters
from orchestrator.adapters import vsphere
from orchestrator.adapters.vsphere_facts import PROPERTIES, VM_PATHS
from orchestrator.ledger import Ledger

ROUNDS = 7


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int
                ) -> dict[str, tuple[float, int, Any]]:
    """Each of ``fns`` once per round, in order, ``rounds`` times. Out: name → (median
    seconds, HTTP requests of one call, the last result)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    out: dict[str, tuple[float, int, Any]] = {}
    for _ in range(rounds):
        for name, fn in fns.items():
            seconds, requests, result = timed(fn, repeat=1)
            times[name].append(seconds)
            out[name] = (0.0, requests, result)
    return {name: (statistics.median(times[name]), r, res)
            for name, (_, r, res) in out.items()}


BARE_PATHS = ["name", "config.hardware.numCPU", "config.hardware.memoryMB",
              "runtime.powerState", "guest.ipAddress"]


def main(total: int = 1000) -> None:
    per_system = 100
    systems = {f"s{i:02d}": per_system for i in range(total // per_system)}
    with tempfile.TemporaryDirectory() as tmp, bench_lab(Path(tmp), systems) as lab:
        estate = lab.estate
        vms = provision_vcenters.select(estate)
        names = {vm.name for vm in vms}
        print(f"estate: {len(vms)} VMs in {len(systems)} systems; vcsim on {lab.endpoint().url}")

        start = time.perf_counter()
        with vsphere.open_vcenters([lab.endpoint()], 16) as vcenters, \
                Ledger(lab.paths.ledger) as ledger:
            facts = provision_vcenters.read_facts(vcenters, names)
            the_plan = provision_plan.plan(estate, vms, facts)
            provision_plan.check(the_plan)
            result = provision_apply.apply(
                the_plan, facts, vcenters, ledger=ledger, concurrency=16,
                clones_per_host=4, clones_per_datastore=16, guest_ip_timeout=60)
        print(f"provisioned {len(result.outcomes)} VMs ({result.status}) in "
              f"{time.perf_counter() - start:.1f} s with hopnhat apply, concurrency 16\n")

        endpoint = lab.endpoint()
        with vsphere.open_vcenter(endpoint, 2) as vc:
            url = vc.url
            rows = vc.view_properties("bare read", {vim.VirtualMachine: BARE_PATHS})
            assert len(rows) >= total

            def bare_same() -> int:
                everything = vc.view_properties("bare read", dict(PROPERTIES))
                vm_refs = [r["obj"] for r in everything
                           if isinstance(r["obj"], vim.VirtualMachine)]
                devices = vc.object_properties("devices", vm_refs, vim.VirtualMachine,
                                               ["config.hardware.device"])
                return len(everything) + len(devices)
            same_t, same_req, _ = timed(bare_same)

            cache = lab.paths.device_cache

            def read_diff_capacity(cold: bool) -> provision_model.Plan:
                if cold:
                    cache.unlink(missing_ok=True)
                plan = provision_plan.plan(estate, vms,
                                      provision_vcenters.read_facts({url: vc}, names, cache))
                provision_plan.check(plan)
                return plan
            # the baseline and the plans in interleaved rounds (bare, warm, cold): a drift of
            # the machine's load weighs on all of them alike
            measured = interleaved({
                "bare": lambda: vc.view_properties("bare read",
                                                   {vim.VirtualMachine: BARE_PATHS}),
                "warm": lambda: read_diff_capacity(False),
                "cold": lambda: read_diff_capacity(True)}, ROUNDS)
            (bare_t, bare_req, _), (plan_t, plan_req, plan), (cold_t, cold_req, _) = (
                measured["bare"], measured["warm"], measured["cold"])
            lab.reset_counts()
            read_diff_capacity(False)
            soap_per_plan = lab.counts()
        assert not plan.has_changes, "the plan should find nothing to change"

        def with_login() -> provision_model.Plan:
            with vsphere.open_vcenters([endpoint], 2) as vcs:
                facts = provision_vcenters.read_facts(vcs, names, cache)
                plan = provision_plan.plan(estate, vms, facts)
            provision_plan.check(plan)
            return plan
        login_t, login_req, _ = timed(with_login)

        whole = []
        for _ in range(3):
            start = time.perf_counter()
            done = process.run([str(HOPNHAT), "plan", "--detailed-exitcode"], env=lab.env)
            whole.append(time.perf_counter() - start)
            assert done.returncode == 0, done.stderr[-2000:]
        whole_t = statistics.median(whole)
        startup = []
        for _ in range(3):
            start = time.perf_counter()
            process.run([str(HOPNHAT), "--version"], env=lab.env, check=True)
            startup.append(time.perf_counter() - start)
        startup_t = statistics.median(startup)

        with vsphere.open_vcenter(endpoint, 2) as vc, HTTPCount() as lazy_count:
            start = time.perf_counter()
            view = vc.content.viewManager.CreateContainerView(
                vc.content.rootFolder, [vim.VirtualMachine], True)
            for vm in view.view:
                _ = (vm.name, vm.config.hardware.numCPU, vm.runtime.powerState,
                     vm.guest.ipAddress, vm.customValue)
            view.Destroy()
            lazy_t = time.perf_counter() - start

    print(f"{'what (1,000 VMs)':66} {'median s':>9} {'HTTP req':>9}")
    rows_out = [
        ("bare RetrievePropertiesEx, 5 paths (the issue's baseline)", bare_t, bare_req),
        (f"bare pyVmomi read of what a plan reads ({len(VM_PATHS)} VM paths + devices)",
         same_t, same_req),
        ("hopnhat read + diff + capacity, cold (no device cache)", cold_t, cold_req),
        ("hopnhat read + diff + capacity, warm (device cache current)", plan_t, plan_req),
        ("hopnhat read + diff + capacity, warm, with login/logout", login_t, login_req),
        ("whole `hopnhat plan` process", whole_t, None),
        ("  of which CLI start-up (`hopnhat --version`: imports)", startup_t, None),
        ("lazy attribute access (5 attributes a VM)", lazy_t, lazy_count.requests),
    ]
    for label, seconds, requests in rows_out:
        shown = "" if requests is None else str(requests)
        print(f"{label:66} {seconds:9.3f} {shown:>9}")
    print(f"\nSOAP calls of one warm plan (vcsim trace): {soap_per_plan}")
    print(f"medians of {ROUNDS} interleaved rounds (bare, warm, cold); the rest of 5 runs")
    print(f"ratio plan (warm) / bare 5-path read:   {plan_t / bare_t:6.2f}x (target <= 2x)")
    print(f"ratio plan (cold) / bare 5-path read:   {cold_t / bare_t:6.2f}x")
    print(f"ratio plan (cold) / bare pyVmomi read of the same data: {cold_t / same_t:6.2f}x")
    print(f"requests of one plan (session open):    warm {plan_req}, cold {cold_req} "
          "(target <= 8)")
    print(f"whole process:                          {whole_t:.2f} s (target < 1.5 s)")
    print(f"lazy baseline / plan:                   {lazy_t / plan_t:6.1f}x slower, "
          f"{lazy_count.requests / max(plan_req, 1):.0f}x the requests")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
