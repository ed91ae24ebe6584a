"""Benchmark (issue 4): ``hopnhat configure`` of 50 lab hosts.

A lab of its own for a generated estate: the example's sites and repository host, and
``--systems`` systems of ``--vms`` one-CPU VMs each (50 by default), every VM data-bearing with
a backup, so every host gets all of its roles (base, restic_client, backup_schedule) and the
repository host one SFTP account per system. The VMs are made with ``hopnhat apply`` (real
sshd guests), then configured through ansible-runner with the forks the estate sets
(``configuration.forks``, ``--forks`` to write another).

Prints the wall time of the first configure and of a second (no-change) one, per host, the
CPU time Ansible's processes used, and the runner's changed/ok counts; asserts nothing.

    .venv/bin/python bench/bench_configure.py [--systems 5] [--vms 10] [--forks N]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_backup import free_port, private_lab  # noqa: E402

from orchestrator import process  # noqa: E402
from orchestrator.actions.configure import ConfigureResult, configure, plan  # noqa: E402
from orchestrator.adapters import ssh  # noqa: E402
from orchestrator.ledger import Ledger  # noqa: E402
from orchestrator.settings import Paths  # noqa: E402

HOPNHAT = Path(sys.executable).with_name("hopnhat")


def generated_estate(dest: Path, octets: tuple[str, str], systems: int, vms: int,
                     forks: int | None) -> Path:
    """The example's estate.yml, sites and lab sizing on ``127.<octets>``, with ``systems``
    generated systems of ``vms`` data-bearing VMs each instead of the example's systems."""
    shutil.copytree(REPO / "inventory", dest,
                    ignore=shutil.ignore_patterns("secrets.vault.yml", "systems"))
    ports = {8989: free_port()}  # Đà Nẵng's vCenter, then Quảng Nam's on another port
    while len(set(ports.values())) < 2:
        ports[8990] = free_port()
    for path in dest.rglob("*.yml"):
        text = path.read_text().replace("127.10.", f"127.{octets[0]}.")
        text = text.replace("127.20.", f"127.{octets[1]}.")
        for old, new in ports.items():
            text = text.replace(f"127.0.0.1:{old}/", f"127.0.0.1:{new}/")
        path.write_text(text)
    settings = yaml.safe_load((dest / "estate.yml").read_text())
    if forks is not None:
        settings["configuration"] = {"forks": forks}
    (dest / "estate.yml").write_text(yaml.safe_dump(settings, sort_keys=False))
    lab = yaml.safe_load((dest / "lab.yml").read_text())
    lab["data"] = {"size_mb": 1, "files": 5, "change_rate": 0.05}
    (dest / "lab.yml").write_text(yaml.safe_dump(lab, sort_keys=False))
    (dest / "systems").mkdir()
    repository_host = settings["repository_hosts"][0]["name"]
    for number in range(systems):
        code = f"cfg{number + 1:02d}"
        system = {
            "name": f"generated system {code}", "code": code, "tier": 2,
            "vms": [{"role": "app", "count": vms, "site": "danang", "cpu": 1,
                     "memory_mb": 1024, "disks_gb": [20], "network": "srv", "data": True}],
            "backup": {"repository_host": repository_host,
                       "password": {"vault": f"restic_password_{code}"},
                       "paths": [f"/srv/{code}"], "schedule": "*-*-* 02:00:00",
                       "retention": {"daily": 7, "weekly": 4, "monthly": 6}},
        }
        (dest / "systems" / f"{code}.yml").write_text(yaml.safe_dump(system, sort_keys=False))
    return dest


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_configure(paths: Paths) -> tuple[float, float, ConfigureResult]:
    """(wall s, CPU s of the processes it ran, result) of one configure of every host."""
    cpu, start = children_cpu(), time.perf_counter()
    with Ledger(paths.ledger) as ledger:
        result = configure(paths, plan(paths.estate), ledger=ledger)
    return time.perf_counter() - start, children_cpu() - cpu, result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", type=int, default=5)
    parser.add_argument("--vms", type=int, default=10, help="VMs per system")
    parser.add_argument("--forks", type=int, default=None,
                        help="write this configuration.forks into the estate (default: the "
                             "example estate's)")
    parser.add_argument("--octets", default=os.environ.get("HOPNHAT_BENCH_OCTETS", "197,198"))
    args = parser.parse_args(argv)
    first_octet, second_octet = args.octets.split(",")
    with tempfile.TemporaryDirectory(prefix="hopnhat-bench-configure-") as tmp:
        base = Path(tmp)
        estate_dir = generated_estate(base / "inventory", (first_octet, second_octet),
                                      args.systems, args.vms, args.forks)
        with private_lab(base / "state", estate_dir) as paths:
            run(paths)


def run(paths: Paths) -> None:
    estate = paths.estate
    env = {**os.environ, "HOPNHAT_ESTATE": str(estate.root), "HOPNHAT_STATE": str(paths.state)}
    start = time.perf_counter()
    done = process.run([str(HOPNHAT), "apply", "--yes"], env=env, timeout=1800)
    if not done.ok:
        raise SystemExit(done.stderr[-2000:])
    applied = time.perf_counter() - start
    deadline = time.monotonic() + 900
    for vm in estate.vms:
        seeded = paths.lab / "guests" / vm.name / ".seeded"
        while not (seeded.exists() and ssh.wait_for_port(str(vm.ip), 22, 1.0)):
            if time.monotonic() > deadline:
                raise SystemExit(f"{vm.name}: no guest after 15 min")
            time.sleep(0.2)  # poll interval while the lab starts the guests
    ready = time.perf_counter() - start
    hosts = len(estate.vms) + len(estate.settings.repository_hosts)
    forks = estate.settings.configuration.forks
    print(f"{len(estate.vms)} VMs in {len(estate.systems)} systems + "
          f"{len(estate.settings.repository_hosts)} repository host = {hosts} hosts; forks "
          f"{forks} (from the estate); {os.cpu_count()} cores")
    print(f"apply: {applied:.1f} s; every guest up with its data: {ready:.1f} s")

    for label in ("first configure", "second configure (no change)"):
        wall, cpu, result = timed_configure(paths)
        stats = result.run.hosts.values()
        print(f"{label:<30} {wall:7.1f} s wall, {wall / hosts:5.2f} s per host, "
              f"{cpu:7.1f} s CPU ({cpu / hosts:.2f} s per host); status {result.verdict.status}, "
              f"changed {sum(s.changed for s in stats)}, ok {sum(s.ok for s in stats)}, "
              f"failed {sum(s.failed for s in stats)}")
        if result.exit_code != 0:
            print(f"  failures: {result.run.failures[:3]}")
    ideal = hosts / forks
    print(f"hosts per fork: {ideal:.1f} (waves of {forks})")


if __name__ == "__main__":
    main()
