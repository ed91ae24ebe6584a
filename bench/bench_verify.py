"""Benchmarks of issue 5: ``hopnhat verify`` against raw ``restic check``, and over many
repositories at once.

A private repository host of the lab (an sshd guest with one chrooted SFTP account per
system, on 127.183.200.10; no vcsim, no VMs: verify reads repositories only) and a generated
estate:

1. one repository holding ~1 GiB (``orchestrator.lab.data.generate(size_mb=1024,
   files=2100)``; ``--size-mb`` to change it): ``hopnhat verify --system big`` against a raw
   ``restic check`` of the same repository with the same options (SFTP command, cache), for
   structure only and for a read-data subset of 1/14 — in-process (the action) and as the
   whole ``hopnhat`` process, median of ``--repeat`` runs, after one warm-up run (which
   measures the snapshot's size once; it is kept in the ledger);
2. N small repositories (``--repos``, default 50; 4 snapshots each): verify of all of them
   one at a time (concurrency 1) and at the estate's concurrency, wall time against the
   sequential sum of the per-repository times.

Prints figures and ratios; asserts nothing. Needs root (the lab's guest). Run:
``.venv/bin/python bench/bench_verify.py [--repos 50] [--size-mb 1024] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator import process  # noqa: E402
from orchestrator.actions.repositories import open_repository  # noqa: E402
from orchestrator.actions.verify import run as verify_action  # noqa: E402
from orchestrator.adapters.restic import Restic  # noqa: E402
from orchestrator.adapters.restic_argv import make_check_argv, make_environment  # noqa: E402
from orchestrator.adapters.ssh import ensure_keypair  # noqa: E402
from orchestrator.estate import load_estate  # noqa: E402
from orchestrator.lab import data, guests, repository  # noqa: E402
from orchestrator.lab.processes import ProcessTable  # noqa: E402
from orchestrator.lab.secrets import ensure_lab_secrets  # noqa: E402
from orchestrator.ledger import Ledger  # noqa: E402
from orchestrator.settings import Paths  # noqa: E402

HOPNHAT = Path(sys.executable).with_name("hopnhat")
HOST, ADDRESS = "repo-bench", "127.183.200.10"


def write_estate(root: Path, data_dir: Path, systems: list[str]) -> Path:
    """An estate of ``systems`` (tier 2, one data-bearing VM each) backing up to the bench's
    repository host."""
    (root / "sites").mkdir(parents=True)
    (root / "systems").mkdir()

    def dump(rel: str, value: object) -> None:
        (root / rel).write_text(yaml.safe_dump(value, sort_keys=False))

    dump("estate.yml", {
        "id": "bench", "name": "verify benchmark",
        "tiers": {2: {"rpo": "24h", "rto": "24h", "drill_interval": "90d",
                      "read_data_rotation": 14}},
        "repository_hosts": [{"name": HOST, "site": "bench2", "address": ADDRESS,
                              "storage_path": "/srv/restic", "capacity_gb": 1000}]})
    vcenter = {"url": "https://127.0.0.1:1/sdk", "username": "administrator@vsphere.local",
               "password": {"vault": "vcenter_password"}}
    for name, role, octet in (("bench", "primary", 183), ("bench2", "secondary", 184)):
        dump(f"sites/{name}.yml", {
            "name": name, "role": role, "vcenter": vcenter, "datacenter": f"DC-{name}",
            "clusters": ["CL"], "datastores": ["DS"], "templates": ["tpl"],
            "networks": {"srv": {"port_group": "PG", "subnet": f"127.{octet}.0.0/16",
                                 "gateway": f"127.{octet}.0.1",
                                 "pool": f"127.{octet}.1.1-127.{octet}.8.254"}}})
    for code in systems:
        dump(f"systems/{code}.yml", {
            "name": code, "code": code, "tier": 2,
            "vms": [{"role": "app", "site": "bench", "cpu": 1, "memory_mb": 512,
                     "disks_gb": [10], "network": "srv", "data": True}],
            "backup": {"repository_host": HOST, "password": {"vault": f"restic_{code}"},
                       "paths": [str(data_dir / code)], "schedule": "*-*-* 01:00:00"}})
    return root


@contextmanager
def bench_repositories(base: Path, systems: list[str]) -> Iterator[Paths]:
    """The estate, its vault and keys, and the repository host (stopped by PID at the end)."""
    estate_dir = write_estate(base / "inventory", base / "data", systems)
    paths = Paths(base / "state", load_estate(estate_dir))
    paths.lab.mkdir(parents=True)
    ensure_lab_secrets(paths)
    paths.known_hosts.parent.mkdir(parents=True, exist_ok=True)
    paths.known_hosts.touch()
    control = ensure_keypair(paths.private_key, "bench").read_text().strip()
    keys = {code: ensure_keypair(paths.repository_key(code), code).read_text().strip()
            for code in systems}
    table = ProcessTable(paths.lab)
    host = paths.estate.repository_host(HOST)
    repository.start_repository_host(paths.lab, table, HOST, HOST, ADDRESS, host.storage_path,
                                      [control], paths.known_hosts, keys)
    try:
        yield paths
    finally:
        guests.stop_guest(table, HOST)


def fill(paths: Paths, code: str, size_mb: float, files: int, snapshots: int) -> float:
    """``snapshots`` backups of ``code``'s generated data (a day of changes between each, the
    last one an hour ago). Returns the data's size in MiB."""
    source = Path(paths.estate.systems[code].backup.paths[0])  # type: ignore[union-attr]
    host = paths.estate.vms_of(code)[0].name
    now = datetime.now(UTC)
    with open_repository(paths, code) as repo:
        restic = Restic(repo, timeout=3600)
        restic.init(exist_ok=True)
        for day in range(snapshots):
            summary = data.generate(source, f"bench/{code}", size_mb, files, day=day)
            restic.backup([source], [f"system={code}", "tier=2", f"host={host}"], host=host,
                          time=now - timedelta(days=snapshots - 1 - day, hours=1))
    return summary.bytes / 2**20


def median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def raw_check(paths: Paths, code: str, subset: str | None) -> None:
    """restic check as an operator would type it, with the repository's own options."""
    with open_repository(paths, code) as repo:
        env = make_environment(repo, path="/usr/bin:/bin", home="/root", tmpdir="/tmp")
        done = process.run(make_check_argv(repo, subset), env=env, inherit_env=False,
                           timeout=3600)
    assert done.ok, done.stderr[-500:]


def _seconds(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def in_process(paths: Paths, systems: list[str], subset: str,
               concurrency: int | None = None) -> verify_action.VerifyResult:
    with Ledger(paths.ledger) as ledger:
        the_plan = verify_action.plan(paths.estate, systems, subset, ledger, concurrency)
        result = verify_action.verify(paths, the_plan, ledger=ledger)
    assert result.exit_code == 0, [c.message for r in result.reports for c in r.checks
                                   if not c.passed]
    return result


def whole_process(paths: Paths, systems: list[str], subset: str) -> None:
    argv = [str(HOPNHAT), "--estate", str(paths.estate.root), "--state", str(paths.state),
            "verify", "--read-data-subset", subset, *(a for s in systems for a in ("--system", s))]
    done = process.run(argv, timeout=3600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=50)
    parser.add_argument("--size-mb", type=float, default=1024.0)
    parser.add_argument("--files", type=int, default=2100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    small = [f"s{i:03d}" for i in range(args.repos)]
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as scratch, \
            bench_repositories(Path(scratch), ["big", *small]) as paths:
        start = time.perf_counter()
        size = fill(paths, "big", args.size_mb, args.files, 1)
        print(f"big: {size:.0f} MiB in {args.files} files, backed up in "
              f"{time.perf_counter() - start:.1f} s")
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda code: fill(paths, code, 4, 60, 4), small))
        print(f"{len(small)} small repositories (4 MiB, 4 snapshots each) made in "
              f"{time.perf_counter() - start:.1f} s")

        print(f"\n1. one repository of {size:.0f} MiB: hopnhat verify vs raw restic check "
              f"(median of {args.repeat}; target <= 1.10x)")
        in_process(paths, ["big"], "none")  # warm-up: the snapshot's size, measured once
        for label, subset, option in (("structure only", None, "none"),
                                      ("read-data 1/14", "1/14", "1/14")):
            # interleaved (raw, in-process, process) rounds: a drift of the machine's load
            # weighs on the three alike
            raw, ours, cli = [], [], []
            for _ in range(args.repeat):
                raw.append(median_time(lambda s=subset: raw_check(paths, "big", s), 1))
                ours.append(median_time(lambda o=option: in_process(paths, ["big"], o), 1))
                cli.append(median_time(lambda o=option: whole_process(paths, ["big"], o), 1))
            r, o, c = (statistics.median(x) for x in (raw, ours, cli))
            print(f"   {label:15s} raw restic check {r:6.2f} s | verify in-process "
                  f"{o:6.2f} s ({o / r:.2f}x) | hopnhat verify process {c:6.2f} s "
                  f"({c / r:.2f}x, of which {c - o:.2f} s Python start-up, imports, vault)")
            print(f"   {'':15s} every round: raw {_seconds(raw)} | in-process {_seconds(ours)} | "
                  f"process {_seconds(cli)}")

        print(f"\n2. verify over {len(small)} repositories (structure + read-data auto)")
        in_process(paths, small, "none")  # warm-up: sizes measured once, kept in the ledger
        start = time.perf_counter()
        one = in_process(paths, small, "auto", concurrency=1)
        sequential = time.perf_counter() - start
        for concurrency in (2, 4, 8):
            start = time.perf_counter()
            many = in_process(paths, small, "auto", concurrency=concurrency)
            wall = time.perf_counter() - start
            summed = sum(r.duration_seconds for r in many.reports)
            print(f"   concurrency {concurrency}: wall {wall:6.1f} s | one at a time "
                  f"{sequential:6.1f} s -> speed-up {sequential / wall:.2f}x | sum of the "
                  f"per-repository times in this run {summed:6.1f} s ({summed / wall:.2f}x)")
        per_repo = statistics.median(r.duration_seconds for r in one.reports)
        print(f"   one repository alone: median {per_repo:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
