"""What the provisioning benchmarks share: a generated estate of N VMs and a private vcsim
(the lab's own, without sshd guests) serving it on a free loopback port.

Not a test helper: the benchmarks print figures; nothing here asserts.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orchestrator.estate import Estate, load_estate  # noqa: E402
from orchestrator.estate.secrets import Secrets  # noqa: E402
from orchestrator.lab import vcsim  # noqa: E402
from orchestrator.lab.config import load_lab_config, vcsim_model  # noqa: E402
from orchestrator.lab.handle import LabDirs  # noqa: E402
from orchestrator.lab.processes import ProcessTable  # noqa: E402
from orchestrator.lab.secrets import ensure_lab_secrets  # noqa: E402

HOPNHAT = Path(sys.executable).with_name("hopnhat")


def free_port(ip: str = "127.0.0.1") -> int:
    """A TCP port free on ``ip`` now (the benchmarks' one copy)."""
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def write_estate(root: Path, port: int, systems: dict[str, int], *, cpu: int = 1,
                 memory_mb: int = 512, disk_gb: int = 10, concurrency: int = 8) -> Path:
    """An estate of ``systems`` (code → number of VMs, up to 500 a system, 2,000 in all),
    on one primary site, sized so that capacity never refuses."""
    root.mkdir(parents=True)
    (root / "sites").mkdir()
    (root / "systems").mkdir()
    dump = lambda rel, data: (root / rel).write_text(yaml.safe_dump(data, sort_keys=False))  # noqa: E731
    dump("estate.yml", {
        "id": "bench", "name": "benchmark estate",
        "tiers": {1: {"rpo": "1h", "rto": "4h", "drill_interval": "30d"}},
        "provisioning": {"concurrency": concurrency, "clones_per_host": 4,
                         "clones_per_datastore": 8, "capacity_headroom_pct": 10,
                         "guest_ip_timeout": "5m"}})
    vcenter = {"url": f"https://127.0.0.1:{port}/sdk",
               "username": "administrator@vsphere.local",
               "password": {"vault": "vcenter_password"}, "ca_bundle": "lab/vcsim/cert.pem"}
    for name, role, dc, octet in (("bench", "primary", "DC-Bench", 50),
                                  ("bench2", "secondary", "DC-Bench2", 51)):
        dump(f"sites/{name}.yml", {
            "name": name, "role": role, "vcenter": vcenter, "datacenter": dc,
            "clusters": [f"CL-{octet}"], "datastores": [f"DS-{octet}"],
            "templates": ["tpl-bench"],
            "networks": {"srv": {"port_group": f"PG-{octet}", "subnet": f"127.{octet}.0.0/16",
                                 "gateway": f"127.{octet}.0.1", "dns": [f"127.{octet}.0.53"],
                                 "pool": f"127.{octet}.1.1-127.{octet}.8.254"}}})
    for code, count in systems.items():
        dump(f"systems/{code}.yml", {
            "name": code, "code": code, "tier": 1,
            "vms": [{"role": "app", "count": count, "site": "bench", "cpu": cpu,
                     "memory_mb": memory_mb, "disks_gb": [disk_gb], "network": "srv"}]})
    dump("lab.yml", {
        "clusters": {"default": {"hosts": 8, "host_cpu_cores": 256, "host_cpu_mhz": 2600,
                                 "host_memory_mb": 1024 * 1024}},
        "datastores": {"default": {"capacity_gb": 200000, "free_gb": 190000}},
        "template": {"cpu": 1, "memory_mb": 512, "disk_gb": disk_gb},
        "delays": {"delay_ms": 0, "jitter": 0.0, "methods": {}}})
    return root


@dataclass
class BenchLab(LabDirs):
    """The benchmarks' generated estate (read once) and its private vcsim."""

    @cached_property
    def estate(self) -> Estate:
        """The estate, read once."""
        return load_estate(self.estate_dir)

    @property
    def table(self) -> ProcessTable:
        return ProcessTable(self.paths.lab)

    @property
    def env(self) -> dict[str, str]:
        import os
        return {**os.environ, "HOPNHAT_ESTATE": str(self.estate_dir),
                "HOPNHAT_STATE": str(self.state_dir), "COLUMNS": "160"}

    def counts(self) -> dict[str, int]:
        rec = self.table.running("vcsim")
        assert rec is not None
        return vcsim.method_counts(rec.address, rec.details["cafile"])

    def reset_counts(self) -> None:
        rec = self.table.running("vcsim")
        assert rec is not None
        vcsim.reset_method_counts(rec.address, rec.details["cafile"])

    def set_delays(self, methods: dict[str, int]) -> None:
        vcsim.set_delays(self.paths.lab, self.table, {"methods": methods})


@contextmanager
def bench_lab(base: Path, systems: dict[str, int], **sizing: Any) -> Iterator[BenchLab]:
    """A generated estate and its own vcsim, stopped (by PID) at the end."""
    lab = BenchLab(write_estate(base / "inventory", free_port(), systems, **sizing),
                   base / "state")
    paths = lab.paths
    paths.lab.mkdir(parents=True)
    built = REPO / ".hopnhat" / "lab" / "bin"
    if built.is_dir():
        shutil.copytree(built, paths.lab / "bin")
    ensure_lab_secrets(paths)
    estate = paths.estate
    model = vcsim_model(estate, load_lab_config(estate), paths.lab)
    site = next(iter(estate.sites.values()))
    vcsim.write_credentials(Path(model["credentials_file"]), site.vcenter.username,
                            Secrets(paths).get(site.vcenter.password))
    vcsim.start(paths.lab, model, lab.table, timeout=120)
    try:
        yield lab
    finally:
        vcsim.stop(lab.table)


class HTTPCount:
    """Counts HTTP requests made in this process (pyVmomi's connections are http.client's)."""

    def __init__(self) -> None:
        self.requests = 0
        self._original: Callable[..., Any] = http.client.HTTPConnection.request

    def __enter__(self) -> HTTPCount:
        original, counter = self._original, self

        def counted(conn: Any, *args: Any, **kwargs: Any) -> Any:
            counter.requests += 1
            return original(conn, *args, **kwargs)

        http.client.HTTPConnection.request = counted  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        http.client.HTTPConnection.request = self._original  # type: ignore[method-assign]


def timed(fn: Callable[[], Any], repeat: int = 5) -> tuple[float, int, Any]:
    """Median wall time of ``fn`` over ``repeat`` runs, the HTTP requests of one run, and
    the last result."""
    times, requests, result = [], 0, None
    for _ in range(repeat):
        with HTTPCount() as count:
            start = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - start)
        requests = count.requests
    return statistics.median(times), requests, result
