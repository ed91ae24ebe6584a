"""Benchmark: a restore drill of a system holding ~1 GiB (2,100 files), in a lab of its own.

    .venv/bin/python bench/bench_drill.py [--size-mb 1024] [--files 2100] [--octets 211,212]

Sets up: the lab (on 127.<a>.x / 127.<b>.x), qlvb's data VM provisioned, ``lab.data.generate``
filling its /srv/qlvb with SIZE_MB in FILES files, the host configured, one backup. Then:

1. a warm-up drill (the repository host's page cache is then as warm as for what follows);
2. the measured drill (``--keep``): each step, achieved RTO;
3. on its scratch VM, a raw ``restic restore --verify`` of the same snapshot into the same
   place, with a cache of its own (best of two), against the drill's restore-and-check phase
   (restore --verify with the listing and the sampled files read alongside, then the
   restored side read and compared):
   target ≤ 1.15x;
4. the fixed part: provision + configure + probes + teardown: target < 15 s.

Prints figures; asserts nothing. Stops its lab at the end (every process by its PID).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator import process  # noqa: E402
from orchestrator.actions.configure import ConfigurePlan, configure  # noqa: E402
from orchestrator.actions.drill import scratch as drill_scratch  # noqa: E402
from orchestrator.actions.drill.remote import (  # noqa: E402
    restic_env,
    scratch_repository,
)
from orchestrator.actions.drill.result import DrillResult  # noqa: E402
from orchestrator.actions.drill.run import run_drill  # noqa: E402
from orchestrator.actions.provision import apply as provision_apply  # noqa: E402
from orchestrator.actions.provision import plan as provision_plan  # noqa: E402
from orchestrator.actions.provision import vcenters as provision_vcenters  # noqa: E402
from orchestrator.adapters.ssh import Remote  # noqa: E402
from orchestrator.adapters.vsphere import open_vcenters  # noqa: E402
from orchestrator.estate import load_estate  # noqa: E402
from orchestrator.lab import control, data, guests  # noqa: E402
from orchestrator.ledger import Ledger  # noqa: E402
from orchestrator.settings import Paths  # noqa: E402

CODE, VM = "qlvb", "qlvb-db-01"
HOPNHAT = Path(sys.executable).with_name("hopnhat")


def setup(base: Path, octets: tuple[str, str],
          edit: Callable[[Path], None] | None = None) -> Paths:
    """A lab of its own on 127.<a>.x / 127.<b>.x for a copy of the example estate
    (``edit``: changes the copy's folder first, e.g. lab.yml's sizing)."""
    from tests.helpers import copy_estate, free_ports, prebuilt_vcsim

    estate_dir = copy_estate(base / "inventory", ports=free_ports(2),
                             primary=f"127.{octets[0]}.", secondary=f"127.{octets[1]}.")
    if edit is not None:
        edit(estate_dir)
    (base / "state").mkdir(mode=0o700)
    paths = Paths(base / "state", load_estate(estate_dir))
    prebuilt_vcsim(paths.lab)
    control.up(paths)
    return paths


def provision_vm(paths: Paths, ledger: Ledger, name: str) -> None:
    """Build VM ``name`` of the estate (one clone, as ``hopnhat apply`` would)."""
    estate = paths.estate
    vm = next(v for v in estate.vms if v.name == name)
    s = estate.settings.provisioning
    with open_vcenters(provision_vcenters.endpoints(paths, [vm.site])) as vcs:
        facts = provision_vcenters.read_facts(vcs, {name})
        the_plan = provision_plan.plan(estate, [vm], facts)
        provision_apply.apply(the_plan, facts, vcs, ledger=ledger, concurrency=1,
                              clones_per_host=s.clones_per_host,
                              clones_per_datastore=s.clones_per_datastore,
                              guest_ip_timeout=120)


def prepare(paths: Paths, size_mb: int, files: int) -> None:
    estate = paths.estate
    with Ledger(paths.ledger) as ledger:
        provision_vm(paths, ledger, VM)
        seeded = paths.lab / "guests" / VM / ".seeded"
        deadline = time.monotonic() + 120
        while not seeded.exists():
            if time.monotonic() > deadline:
                raise SystemExit(f"{VM} was never seeded")
            time.sleep(0.2)  # poll interval of the deadline loop
        t = time.monotonic()
        summary = data.generate(guests.guest_srv(paths.lab, VM) / CODE, seed="bench/qlvb",
                                size_mb=size_mb, files=files)
        print(f"data: {summary.files} files, {summary.bytes / 2**20:.0f} MiB generated in "
              f"{time.monotonic() - t:.1f} s")
        hosts = (VM, "repo-qnam-01")
        t = time.monotonic()
        done = configure(paths, ConfigurePlan(estate.id, (CODE,), ",".join(hosts), hosts, False,
                                              False, 4), ledger=ledger)
        print(f"configure (site.yml): {done.verdict.status} in {time.monotonic() - t:.1f} s")
        t = time.monotonic()
        env = {"HOPNHAT_ESTATE": str(estate.root), "HOPNHAT_STATE": str(paths.state)}
        backup = process.run([str(HOPNHAT), "backup", "run", "--system", CODE], env=env,
                             timeout=3600)
        print(f"backup: exit {backup.returncode} in {time.monotonic() - t:.1f} s")


def show(result: DrillResult) -> None:
    for step in result.steps:
        print(f"  {step.name:10} {step.start:7.1f} s → {step.end:7.1f} s  ({step.seconds:6.2f} s)"
              f"{'' if step.ok else '  FAILED ' + step.detail}")
    rto = "—" if result.rto_seconds is None else f"{result.rto_seconds:.1f} s"
    print(f"  verdict {result.verdict}, achieved RTO {rto}, RPO {result.rpo_seconds:.0f} s")


def raw_restore(paths: Paths, result: DrillResult, attempt: int) -> float:
    assert result.plan is not None
    scratch = result.plan.scratch[0]
    remote = Remote(drill_scratch.target(paths, scratch.vm))
    try:
        repo = scratch_repository(paths.estate, CODE)
        cache = f"/var/cache/hopnhat/bench-raw-{attempt}"
        command = (f"rm -rf /srv/{CODE} {cache} && {restic_env(repo)} RESTIC_CACHE_DIR={cache} "
                   f"/usr/bin/restic --no-lock --repo {repo.url} restore {scratch.snapshot.id} "
                   "--target / --verify")
        t = time.monotonic()
        done = remote.run(command + " 2>&1", timeout=3600)
        seconds = time.monotonic() - t
        if done.returncode != 0:
            raise SystemExit(f"raw restore failed: {done.stdout[-500:]}")
        return seconds
    finally:
        remote.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--files", type=int, default=2100)
    parser.add_argument("--octets", default="211,212")
    args = parser.parse_args()
    a, b = args.octets.split(",")
    base = Path(tempfile.mkdtemp(prefix="hopnhat-bench-drill-"))
    paths = setup(base, (a, b))
    try:
        prepare(paths, args.size_mb, args.files)
        with Ledger(paths.ledger) as ledger:
            print("warm-up drill:")
            show(run_drill(paths, CODE, ledger=ledger))
            print("measured drill (--keep):")
            result = run_drill(paths, CODE, ledger=ledger, keep=True)
            show(result)
            raw = min(raw_restore(paths, result, n) for n in (1, 2))
            steps = {s.name: s.seconds for s in result.steps}
            phase = steps["restore"] + steps["check"]
            print(f"restore-and-check phase: {phase:.1f} s (restore {steps['restore']:.1f} s + "
                  f"check {steps['check']:.1f} s); raw restore --verify {raw:.1f} s: "
                  f"{phase / raw:.2f}x (target ≤ 1.15x)")
            t = time.monotonic()
            drill_scratch.teardown_kept(paths, result.drill_id, ledger)
            teardown = time.monotonic() - t
            fixed = steps["provision"] + steps["configure"] + steps["probes"] + teardown
            print(f"fixed part: provision {steps['provision']:.1f} s + configure "
                  f"{steps['configure']:.1f} s + probes {steps['probes']:.2f} s + teardown "
                  f"{teardown:.2f} s = {fixed:.1f} s (target < 15 s); with the plan step "
                  f"({steps['plan']:.1f} s) {fixed + steps['plan']:.1f} s")
            print(f"data: {args.size_mb} MiB in {args.files} files")
    finally:
        control.down(paths.lab)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
