"""Benchmarks 2 and 3 (issue 3): ``hopnhat apply`` with realistic clone times.

A generated estate and a private vcsim (no sshd guests; vcsim itself reports the guest IP
that the customization sets, at power-on). Every VM goes the whole way: clone → mark →
reconfigure → customize → power on → wait for its IP → mark provisioned.

2. 20 VMs with a 500 ms clone delay at concurrency 8 — the whole ``hopnhat apply --yes``
   process, and in-process (connect + read + plan + apply); then the no-change rerun, both
   ways, with the vCenter tasks it made (from vcsim's trace).
3. 100 VMs with a 2,000 ms clone delay at concurrency 8, against the ideal
   100 / 8 x the latency of one VM measured alone at the same delay.

After part 2, community.vmware's vmware_guest does the same 20 VMs at forks=8 and its
no-change rerun, against a vcsim of its own with the same delay (bench_vmware_guest.py, in a
venv of its own where the ``ansible`` package installs from PyPI; when it cannot, the issue's
figures for it are printed instead), with the ratios to hopnhat's figures of this run.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_vmware_guest import VMWARE_GUEST_20_FORKS8, VMWARE_GUEST_RERUN
from benchlab import HOPNHAT, BenchLab, bench_lab

from orchestrator import process
from orchestrator.actions.provision import apply as provision_apply
from orchestrator.actions.provision import plan as provision_plan
from orchestrator.actions.provision import vcenters as provision_vcenters
from orchestrator.adapters import vsphere
from orchestrator.ledger import Ledger


def in_process(lab: BenchLab, system: str, concurrency: int) -> tuple[float, float, str]:
    """Connect, read, plan, check and apply ``system``. Out: (total s, apply s, status)."""
    estate = lab.estate
    settings = estate.settings.provisioning
    start = time.perf_counter()
    vms = provision_vcenters.select(estate, [system])
    with vsphere.open_vcenters([lab.endpoint()], concurrency) as vcenters, \
            Ledger(lab.paths.ledger) as ledger:
        facts = provision_vcenters.read_facts(vcenters, {vm.name for vm in vms})
        plan = provision_plan.plan(estate, vms, facts)
        provision_plan.check(plan)
        result = provision_apply.apply(
            plan, facts, vcenters, ledger=ledger, concurrency=concurrency,
            clones_per_host=settings.clones_per_host,
            clones_per_datastore=settings.clones_per_datastore, guest_ip_timeout=60)
    assert result.status in ("ok", "no changes"), result.as_dict()
    return time.perf_counter() - start, result.seconds, result.status


def whole_process(lab: BenchLab, system: str, concurrency: int) -> float:
    start = time.perf_counter()
    done = process.run([str(HOPNHAT), "apply", "--system", system, "--yes",
                        "--concurrency", str(concurrency)], env=lab.env)
    assert done.returncode == 0, done.stderr[-2000:]
    return time.perf_counter() - start


def main() -> None:
    systems = {"twenty": 20, "twentycli": 20, "one": 1, "hundred": 100}
    with tempfile.TemporaryDirectory() as tmp, bench_lab(Path(tmp), systems) as lab:
        lab.set_delays({"CloneVM_Task": 500})
        print("2. 20 VMs, CloneVM_Task delay 500 ms, concurrency 8")
        total, applying, _ = in_process(lab, "twenty", 8)
        cli = whole_process(lab, "twentycli", 8)
        print(f"   in-process connect+read+plan+apply: {total:6.2f} s (apply alone "
              f"{applying:.2f} s)")
        print(f"   whole `hopnhat apply --yes` process: {cli:6.2f} s   target < 2.5 s; "
              f"vmware_guest forks=8: {VMWARE_GUEST_20_FORKS8} s -> "
              f"{VMWARE_GUEST_20_FORKS8 / cli:.1f}x faster (target >= 4x)")

        reruns, cli_reruns = [], []
        lab.reset_counts()
        for _ in range(5):
            reruns.append(in_process(lab, "twenty", 8)[0])
        tasks = {k: v for k, v in lab.counts().items() if k.endswith("_Task")}
        for _ in range(7):
            cli_reruns.append(whole_process(lab, "twentycli", 8))
        rerun, cli_rerun = statistics.median(reruns), statistics.median(cli_reruns)
        print(f"   no-change rerun in-process:          {rerun:6.3f} s, vCenter tasks: "
              f"{sum(tasks.values())}")
        print(f"   no-change rerun whole process:       {cli_rerun:6.3f} s   target < 0.5 s; "
              f"vmware_guest: {VMWARE_GUEST_RERUN[0]:.0f}-{VMWARE_GUEST_RERUN[1]:.0f} s -> "
              f"{VMWARE_GUEST_RERUN[0] / cli_rerun:.0f}-{VMWARE_GUEST_RERUN[1] / cli_rerun:.0f}x "
              f"faster (target >= 20x); in-process "
              f"{VMWARE_GUEST_RERUN[0] / rerun:.0f}-{VMWARE_GUEST_RERUN[1] / rerun:.0f}x")
        print("   every whole-process rerun (s):      "
              + " ".join(f"{t:.3f}" for t in cli_reruns))

        print("\n   community.vmware.vmware_guest, side by side (its own vcsim, same delay):")
        done = process.run([sys.executable, str(Path(__file__).with_name("bench_vmware_guest.py")),
                            "--vms", "20", "--forks", "8", "--clone-delay-ms", "500",
                            "--hopnhat-apply", f"{cli:.3f}", "--hopnhat-rerun",
                            f"{cli_rerun:.3f}"], timeout=3600)
        print("\n".join(f"   | {line}" for line in done.stdout.splitlines()))

        lab.set_delays({"CloneVM_Task": 2000})
        print("\n3. 100 VMs, CloneVM_Task delay 2,000 ms, concurrency 8")
        _, one, _ = in_process(lab, "one", 8)
        total, applying, _ = in_process(lab, "hundred", 8)
        ideal = 100 / 8 * one
        print(f"   one VM alone (per-VM latency):        {one:6.2f} s")
        print(f"   100 VMs, apply:                       {applying:6.2f} s "
              f"(with connect+read+plan {total:.2f} s)")
        print(f"   ideal 100/8 x latency:                {ideal:6.2f} s -> ratio "
              f"{applying / ideal:.3f} (target <= 1.15); with read+plan {total / ideal:.3f}")


if __name__ == "__main__":
    main()
