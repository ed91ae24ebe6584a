"""Benchmark (issue 16): ``discover`` and ``plan`` over 10,000 VMs in two vCenters.

The issue's scale: 34 provinces x 300 VMs, two vCenters after the merger. Generates an
estate of 34 sites (17 provinces a vCenter, one datacenter each) and starts two private
vcsims (the lab's own, no sshd guests) whose model files create every VM at start
(main.go's ``vmSpec``: folder, guest IP, custom attributes) — much faster than cloning them
through the API. Of the N VMs (argv, default 10,000; N/2 a vCenter):

- half are **legacy**: unmarked, never described by the estate (what ``discover`` finds),
  in folders ``Legacy/<PROVINCE>/<APP>`` or, for two applications of seven, in the
  datacenter's VM folder itself (hopnhat then reads their clone marks too);
- half are **declared**: ``existing: [{vm, folder, address}]`` roles of one system a
  province (hardware declared as it is, not managed); 9 in 10 already carry hopnhat's marks
  (``hopnhat.owner/system/tier/adopted``: the plan finds them adopted, no-op), 1 in 10 not
  yet (the plan adopts them).

Measured in-process, sessions open (one per vCenter), medians of interleaved rounds:

1. ``discover``: :func:`orchestrator.actions.discover.read` + ``discover()`` — cold (no
   device cache, as on a new control host) and warm (the device cache of an earlier run
   current);
2. ``plan``: ``provision_vcenters.read_facts(vcenters, provision_vcenters.compared(vms), cache)`` +
   ``provision_plan.plan`` — cold and warm;
3. the bare reads beside them (:class:`Bare`): per vCenter ONE RetrievePropertiesEx (and
   its pages) over a ContainerView of exactly what hopnhat reads (``PROPERTIES``, incl.
   ``VM_PATHS``, and the custom field definitions), then the device lists of the VMs
   hopnhat reads them of (plan: the compared VMs; discover: every VM the estate does not
   own; both: the templates) and the extraConfig of those hopnhat reads the clone mark of
   — through pyVmomi's deserializer, without any modelling.

Prints per call the median wall time, this process's CPU time, the simulators' CPU time
(the vCenter's side of the work), this process's peak RSS, the HTTP requests per vCenter
(counted in-process), the ratios to the bare reads, and the process's peak RSS. Asserts
nothing timed and exits 0 (a plan that refuses, or a discover that misses VMs, is printed
as a WARNING). ``python bench/bench_discover.py [N [ROUNDS]]``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import resource
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml
from benchlab import REPO, free_port
from pyVmomi import vim

from orchestrator.actions import discover
from orchestrator.actions.provision import model as provision_model
from orchestrator.actions.provision import plan as provision_plan
from orchestrator.actions.provision import vcenters as provision_vcenters
from orchestrator.adapters import vsphere
from orchestrator.adapters.vsphere import moref_key
from orchestrator.adapters.vsphere_facts import (
    ADOPTED,
    OWNER,
    PAGE_SIZE,
    PROPERTIES,
    SYSTEM,
    TIER,
)
from orchestrator.estate import Estate, load_estate
from orchestrator.estate.model import VM
from orchestrator.lab import gobuild, vcsim
from orchestrator.lab.processes import ProcessTable

ESTATE_ID = "bench"
PROVINCES = 34  # 17 a vCenter
VCENTERS = ("vc1", "vc2")
USERNAME = "administrator@vsphere.local"
APPS = ("qlvb", "dvc", "hrm", "mail", "web", "gis", "kho")
AT_ROOT = ("mail", "web")  # legacy applications left in the datacenter's VM folder
LEGACY_ROLES = ("db", "app", "web")
DECLARED_ROLES = ("app", "db")
NOT_YET_ADOPTED = 10  # 1 declared VM in 10 carries no marks yet: the plan adopts it


# ---------------------------------------------------------------- the generated world


@dataclass(frozen=True)
class Province:
    index: int  # 1..PROVINCES
    vcenter: str  # one of VCENTERS
    vms: int  # how many VMs it holds (half legacy, half declared)

    @property
    def site(self) -> str:
        return f"p{self.index:02d}"

    @property
    def code(self) -> str:  # its declared system
        return f"p{self.index:02d}sys"

    @property
    def datacenter(self) -> str:
        return f"DC-P{self.index:02d}"

    @property
    def cluster(self) -> str:
        return f"CL-P{self.index:02d}"

    @property
    def datastore(self) -> str:
        return f"DS-P{self.index:02d}"

    @property
    def port_group(self) -> str:
        return f"PG-P{self.index:02d}"

    @property
    def template(self) -> str:
        return f"tpl-p{self.index:02d}"

    @property
    def declared(self) -> int:
        return self.vms // 2

    @property
    def legacy(self) -> int:
        return self.vms - self.declared


def provinces(total: int) -> list[Province]:
    """``total`` VMs spread over PROVINCES provinces, alternately on the two vCenters."""
    base, extra = divmod(total, PROVINCES)
    return [Province(i + 1, VCENTERS[i % 2], base + (1 if i < extra else 0))
            for i in range(PROVINCES)]


def declared_vms(p: Province) -> list[dict[str, Any]]:
    """The declared (existing) VMs of a province, by role: vCenter name, folder, address,
    hardware, whether it is adopted already."""
    out = []
    for i in range(p.declared):
        role = DECLARED_ROLES[i % len(DECLARED_ROLES)]
        number = i // len(DECLARED_ROLES) + 1
        out.append({"role": role, "vm": f"{p.site}-{role}-{number:03d}",
                    "folder": f"Systems/{p.code.upper()}",
                    "address": f"10.{p.index}.{1 + i // 250}.{1 + i % 250}",
                    "cpu": 2 if role == "app" else 4, "memory_mb": 4096 if role == "app" else 8192,
                    "disk_gb": 40, "adopted": i % NOT_YET_ADOPTED != NOT_YET_ADOPTED - 1})
    return out


def legacy_vms(p: Province) -> list[dict[str, Any]]:
    """The legacy VMs of a province (main.go vmSpec), spread over its applications."""
    out = []
    for i in range(p.legacy):
        app = APPS[i % len(APPS)]
        role = LEGACY_ROLES[(i // len(APPS)) % len(LEGACY_ROLES)]
        number = i // (len(APPS) * len(LEGACY_ROLES)) + 1
        spec: dict[str, Any] = {
            "name": f"{app}-{role}-{number:02d}", "cluster": p.cluster,
            "datastore": p.datastore, "portgroup": p.port_group,
            "cpu": 1 + i % 4, "memory_mb": 1024 * (1 + i % 8), "disk_gb": 20 + 10 * (i % 5),
            "power_on": i % 9 != 0, "ip": f"10.{p.index}.{100 + i // 250}.{1 + i % 250}",
            "hostname": f"{app}-{role}-{number:02d}"}
        if app not in AT_ROOT:
            spec["folder"] = f"Legacy/{p.site.upper()}/{app.upper()}"
        if role == "db":
            spec["extra_disks_gb"] = [100]
        out.append(spec)
    return out


def write_estate(root: Path, urls: dict[str, str], ca_bundles: dict[str, str],
                 world: list[Province]) -> Path:
    """estate.yml, a site per province, a system per province declaring its existing VMs."""
    root.mkdir(parents=True)
    (root / "sites").mkdir()
    (root / "systems").mkdir()

    def dump(rel: str, data: Any) -> None:
        (root / rel).write_text(yaml.safe_dump(data, sort_keys=False))

    dump("estate.yml", {
        "id": ESTATE_ID, "name": "benchmark estate: two vCenters after the merger",
        "tiers": {1: {"rpo": "1h", "rto": "4h", "drill_interval": "30d"}},
        "provisioning": {"concurrency": 8, "clones_per_host": 4, "clones_per_datastore": 8,
                         "capacity_headroom_pct": 10, "guest_ip_timeout": "5m"}})
    for p in world:
        dump(f"sites/{p.site}.yml", {
            "name": p.site, "role": "primary" if p.index == 1 else "secondary",
            "vcenter": {"url": urls[p.vcenter], "username": USERNAME,
                        "password": {"vault": f"vcenter_password_{p.vcenter}"},
                        "ca_bundle": ca_bundles[p.vcenter]},
            "datacenter": p.datacenter, "clusters": [p.cluster],
            "datastores": [p.datastore], "templates": [p.template],
            "networks": {"srv": {"port_group": p.port_group, "subnet": f"10.{p.index}.0.0/16",
                                 "gateway": f"10.{p.index}.0.254",
                                 "dns": [f"10.{p.index}.0.53"],
                                 "pool": f"10.{p.index}.200.1-10.{p.index}.200.250"}}})
        roles = []
        for role in DECLARED_ROLES:
            members = [d for d in declared_vms(p) if d["role"] == role]
            if not members:
                continue
            first = members[0]
            roles.append({"role": role, "site": p.site, "network": "srv",
                          "cpu": first["cpu"], "memory_mb": first["memory_mb"],
                          "disks_gb": [first["disk_gb"]], "data": True,
                          "existing": [{"vm": d["vm"], "folder": d["folder"],
                                        "address": d["address"]} for d in members]})
        if roles:
            dump(f"systems/{p.code}.yml", {"name": f"Province {p.index:02d} systems",
                                           "code": p.code, "tier": 1, "vms": roles})
    return root


def vcsim_datacenter(p: Province) -> dict[str, Any]:
    """A province's datacenter as vcsim's model says it, with its VMs."""
    vms = legacy_vms(p)
    for d in declared_vms(p):
        spec: dict[str, Any] = {
            "name": d["vm"], "cluster": p.cluster, "datastore": p.datastore,
            "portgroup": p.port_group, "cpu": d["cpu"], "memory_mb": d["memory_mb"],
            "disk_gb": d["disk_gb"], "power_on": True, "folder": d["folder"],
            "ip": d["address"], "hostname": d["vm"]}
        if d["adopted"]:
            spec["attributes"] = {OWNER: ESTATE_ID, SYSTEM: p.code, TIER: "1",
                                  ADOPTED: "bench-setup"}
        vms.append(spec)
    return {"name": p.datacenter,
            "clusters": [{"name": p.cluster, "hosts": 2, "host_cpu_cores": 256,
                          "host_cpu_mhz": 2600, "host_memory_mb": 4 * 1024 * 1024}],
            "datastores": [{"name": p.datastore, "capacity_gb": 500000, "free_gb": 400000}],
            "portgroups": [p.port_group],
            "templates": [{"name": p.template, "cpu": 1, "memory_mb": 1024, "disk_gb": 20,
                           "datastore": p.datastore, "portgroup": p.port_group,
                           "cluster": p.cluster}],
            "vms": vms}


@contextlib.contextmanager
def two_vcsims(base: Path, world: list[Province]
               ) -> Iterator[tuple[Estate, dict[str, vsphere.Endpoint], ProcessTable]]:
    """The estate and its two vCenters (each a private vcsim, started side by side and
    stopped by PID at the end)."""
    lab_dir = base / "lab"
    lab_dir.mkdir(parents=True)
    built = gobuild.binary_path(REPO / ".hopnhat" / "lab", gobuild.VCSIM)
    mine = gobuild.binary_path(lab_dir, gobuild.VCSIM)
    mine.parent.mkdir()
    for path in (built, built.with_name(built.name + ".sha256")):
        if path.is_file():  # the checkout's build, used when current (else rebuilt below)
            shutil.copy2(path, mine.parent / path.name)
    gobuild.build(lab_dir, gobuild.VCSIM)  # once, before the two start
    table = ProcessTable(lab_dir)
    ports = {vc: free_port() for vc in VCENTERS}
    urls = {vc: f"https://127.0.0.1:{ports[vc]}/sdk" for vc in VCENTERS}
    password = secrets.token_urlsafe(16)
    models = {}
    for vc in VCENTERS:
        folder = vcsim.state_dir(lab_dir, f"vcsim-{vc}")
        credentials = folder / "credentials.json"
        vcsim.write_credentials(credentials, USERNAME, password)
        models[vc] = {"listen": f"127.0.0.1:{ports[vc]}", "credentials_file": str(credentials),
                      "delays": {"delay_ms": 0, "jitter": 0.0, "methods": {}},
                      "datacenters": [vcsim_datacenter(p) for p in world if p.vcenter == vc]}
    certs = {vc: str(vcsim.state_dir(lab_dir, f"vcsim-{vc}") / "cert.pem") for vc in VCENTERS}
    try:
        with ThreadPoolExecutor(len(VCENTERS)) as pool:
            started = list(pool.map(lambda vc: vcsim.start(lab_dir, models[vc], table,
                                                           timeout=1800, name=f"vcsim-{vc}"),
                                    VCENTERS))
        estate = load_estate(write_estate(base / "inventory", urls, certs, world))
        endpoints = {vc: vsphere.Endpoint(
            url=urls[vc], username=USERNAME, password=password, ca_bundle=Path(certs[vc]),
            sites=tuple(p.site for p in world if p.vcenter == vc)) for vc in VCENTERS}
        assert all(rec.address == urls[vc] for rec, vc in zip(started, VCENTERS, strict=True))
        yield estate, endpoints, table
    finally:
        for vc in VCENTERS:
            vcsim.stop(table, name=f"vcsim-{vc}")


# ---------------------------------------------------------------- measuring


class PortCount:
    """HTTP requests made in this process, by the port they went to (one vCenter each)."""

    def __init__(self) -> None:
        self.requests: Counter[int] = Counter()
        self._original: Callable[..., Any] = http.client.HTTPConnection.request

    def __enter__(self) -> PortCount:
        original, counts = self._original, self.requests

        def counted(conn: Any, *args: Any, **kwargs: Any) -> Any:
            counts[int(conn.port)] += 1
            return original(conn, *args, **kwargs)

        http.client.HTTPConnection.request = counted  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        http.client.HTTPConnection.request = self._original  # type: ignore[method-assign]


def reset_peak() -> None:
    """Start a new peak of this process's RSS (VmHWM; Linux >= 4.0)."""
    with contextlib.suppress(OSError):  # else the peaks shown are the process's so far
        Path("/proc/self/clear_refs").write_text("5")


def peak_mib(pid: int | str = "self") -> float:
    """VmHWM (peak RSS since start or :func:`reset_peak`) of ``pid``, MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds the processes ``pids`` used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


@dataclass(frozen=True)
class Sample:
    """One call: wall seconds, this process's CPU seconds, the vcsims' CPU seconds, this
    process's peak RSS during it (MiB), HTTP requests by vCenter port."""

    seconds: float
    cpu: float
    server: float
    peak: float
    requests: Mapping[int, int]

    def __add__(self, other: Sample) -> Sample:
        return Sample(self.seconds + other.seconds, self.cpu + other.cpu,
                      self.server + other.server, max(self.peak, other.peak),
                      Counter(self.requests) + Counter(other.requests))


T = TypeVar("T")


def measured(fn: Callable[[], T], servers: Sequence[int]) -> tuple[Sample, T]:
    """Call ``fn`` once: its :class:`Sample` and result."""
    reset_peak()
    server, cpu = cpu_seconds(servers), time.process_time()
    with PortCount() as count:
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
    return Sample(seconds, time.process_time() - cpu, cpu_seconds(servers) - server,
                  peak_mib(), dict(count.requests)), result


@dataclass
class Figure:
    label: str
    samples: list[Sample] = field(default_factory=list)

    def median(self, what: str) -> float:
        return float(statistics.median(getattr(s, what) for s in self.samples))


class Bare:
    """What hopnhat reads, through pyVmomi's deserializer, modelling nothing: per vCenter
    ONE RetrievePropertiesEx (and pages) over a ContainerView of ``PROPERTIES`` and the
    custom field definitions; then the device lists of the VMs hopnhat reads them of (and
    of the templates) and the extraConfig of those of them without hopnhat's owner mark
    that sit in their datacenter's VM folder (hopnhat's clone-mark read)."""

    def __init__(self, vcenters: Mapping[str, vsphere.VCenter]) -> None:
        self.vcenters = vcenters
        self.rows: dict[str, list[dict[str, Any]]] = {}

    def properties(self) -> int:
        self.rows = {}
        for url, vc in self.vcenters.items():
            manager = vc.content.customFieldsManager
            self.rows[url] = vc.view_properties(
                "bare read", dict(PROPERTIES),
                extra=[(manager, vim.CustomFieldsManager, ["field"])], page_size=PAGE_SIZE)
        return sum(len(rows) for rows in self.rows.values())

    def rest(self, chosen: Callable[[dict[str, Any], str | None], bool]) -> int:
        """The second and third reads, for the VMs ``chosen(row, owner)`` picks (owner: the
        row's hopnhat.owner value)."""
        count = 0
        for url, vc in self.vcenters.items():
            rows = self.rows[url]
            owner_key = next((d.key for r in rows
                              if isinstance(r["obj"], vim.CustomFieldsManager)
                              for d in r.get("field") or [] if d.name == OWNER), None)
            vm_folders = {moref_key(r["vmFolder"]) for r in rows
                          if isinstance(r["obj"], vim.Datacenter) and r.get("vmFolder")}
            devices, marks = [], []
            for row in rows:
                if not isinstance(row["obj"], vim.VirtualMachine):
                    continue
                if row.get("config.template"):
                    devices.append(row["obj"])
                    continue
                owner = next((v.value for v in row.get("customValue") or []
                              if v.key == owner_key and v.value), None)
                if chosen(row, owner):
                    devices.append(row["obj"])
                    parent = row.get("parent")
                    if owner is None and parent is not None and moref_key(parent) in vm_folders:
                        marks.append(row["obj"])
            count += len(vc.object_properties("bare devices", devices, vim.VirtualMachine,
                                              ["config.hardware.device"], PAGE_SIZE))
            count += len(vc.object_properties("bare clone marks", marks, vim.VirtualMachine,
                                              ["config.extraConfig"], PAGE_SIZE))
        return count


def measure(estate: Estate, vcenters: Mapping[str, vsphere.VCenter], servers: Sequence[int],
            state: Path, rounds: int, bare_rounds: int) -> dict[str, Figure]:
    """The interleaved rounds (bare reads, plan cold and warm, discover cold and warm; a
    drift of the machine's load weighs on all alike). Out: key → Figure."""
    vms = provision_vcenters.select(estate)
    names = provision_vcenters.compared(vms)
    calls = hopnhat_calls(estate, vcenters, vms, names, state)
    bare = Bare(vcenters)
    figures = {key: Figure(label) for key, label in LABELS.items()}
    for n in range(rounds):
        if n < bare_rounds:
            bare_round(bare, servers, names, figures)
        for key, fn in calls.items():
            sample, result = measured(fn, servers)
            figures[key].samples.append(sample)
            RESULTS[key] = result
    return figures


def hopnhat_calls(estate: Estate, vcenters: Mapping[str, vsphere.VCenter],
                  vms: list[VM], names: set[str], state: Path
                  ) -> dict[str, Callable[[], Any]]:
    """hopnhat's plan and discover, cold (their device cache removed first) and warm, by
    the keys of :data:`LABELS`."""
    plan_cache, discover_cache = state / "plan-devices.json", state / "discover-devices.json"

    def run_plan(cold: bool) -> provision_model.Plan:
        if cold:
            plan_cache.unlink(missing_ok=True)
        facts = provision_vcenters.read_facts(vcenters, names, plan_cache)
        return provision_plan.plan(estate, vms, facts)

    def run_discover(cold: bool) -> discover.Discovery:
        if cold:
            discover_cache.unlink(missing_ok=True)
        facts, failed = discover.read(estate, vcenters, discover_cache)
        if failed:
            raise SystemExit(f"discover could not read: {failed}")
        return discover.discover(estate, facts)

    return {"plan_cold": lambda: run_plan(True), "plan_warm": lambda: run_plan(False),
            "discover_cold": lambda: run_discover(True),
            "discover_warm": lambda: run_discover(False)}


def bare_round(bare: Bare, servers: Sequence[int], names: set[str],
               figures: dict[str, Figure]) -> None:
    """One round of the bare reads of what a plan (the VMs of ``names``) and discover (the
    VMs the estate does not own) read."""
    def for_plan(row: dict[str, Any], owner: str | None) -> bool:
        uuid = row.get("config.instanceUuid")
        return row.get("name") in names or (uuid is not None and str(uuid).lower() in names)

    def for_discover(row: dict[str, Any], owner: str | None) -> bool:
        return owner != ESTATE_ID

    props, _ = measured(bare.properties, servers)
    rest_plan, _ = measured(lambda: bare.rest(for_plan), servers)
    rest_discover, _ = measured(lambda: bare.rest(for_discover), servers)
    figures["bare_plan"].samples.append(props + rest_plan)
    figures["bare_discover"].samples.append(props + rest_discover)
    bare.rows = {}


LABELS = {
    "bare_discover": "bare pyVmomi read of what discover reads",
    "discover_cold": "discover, cold (no device cache)",
    "discover_warm": "discover, warm (device cache current)",
    "bare_plan": "bare pyVmomi read of what a plan reads",
    "plan_cold": "plan, cold (no device cache)",
    "plan_warm": "plan, warm (device cache current)",
}
RESULTS: dict[str, Any] = {}  # the last result of each measured call


def report(world: list[Province], figures: dict[str, Figure], ports: list[int],
           rounds: int, bare_rounds: int) -> None:
    total = sum(p.vms for p in world)
    legacy = sum(p.legacy for p in world)
    plan: provision_model.Plan = RESULTS["plan_warm"]
    found: discover.Discovery = RESULTS["discover_warm"]
    totals = plan.totals()
    print(f"plan: {len(plan.actions):,} actions ({totals['adopt']:,} adopt, "
          f"{totals['no-op']:,} no-op, {totals['drift']:,} drift, "
          f"{len(plan.refusals)} refusals); discover: {len(found.vms):,} VMs not described "
          f"in {len(found.candidates)} candidate systems, {found.described:,} described")
    if plan.refusals or len(plan.actions) != total - legacy or len(found.vms) != legacy:
        print(f"WARNING: not the intended work (plan refusals: {list(plan.refusals)[:3]}; "
              f"expected {total - legacy:,} actions and {legacy:,} VMs found)")
    head = f"what ({total:,} VMs, in-process, sessions open)"
    reqs = " ".join(f"{'req vc' + str(i + 1):>7}" for i in range(len(ports)))
    print(f"\n{head:50} {'median s':>8} {'py CPU':>7} {'vcsim CPU':>9} {'peak MiB':>8} {reqs}")
    for figure in figures.values():
        if not figure.samples:
            continue
        last = figure.samples[-1]
        counts = " ".join(f"{last.requests.get(port, 0):7d}" for port in ports)
        print(f"{figure.label:50} {figure.median('seconds'):8.2f} {figure.median('cpu'):7.2f} "
              f"{figure.median('server'):9.2f} {max(s.peak for s in figure.samples):8.0f} "
              f"{counts}")
    print(f"\nmedians of {rounds} interleaved rounds ({bare_rounds} of the bare reads); "
          "py CPU: this process's CPU seconds, vcsim CPU: both simulators' (the vCenter's "
          "side); peak MiB: this process's peak RSS during the call; requests of one call "
          "per vCenter (target <= 8)")
    for what in ("discover", "plan"):
        bare_t = figures[f"bare_{what}"].median("seconds")
        for temp in ("cold", "warm"):
            figure = figures[f"{what}_{temp}"]
            t = figure.median("seconds")
            most = max(figure.samples[-1].requests.values(), default=0)
            print(f"{what + ' ' + temp + ':':15} {t:6.2f} s (target < 3 s: "
                  f"{'met' if t < 3 else 'NOT met'}), {t / bare_t:5.2f}x the bare read "
                  f"(target <= 2x: {'met' if t / bare_t <= 2 else 'NOT met'}), at most {most} "
                  f"requests a vCenter ({'met' if most <= 8 else 'NOT met'}); of which "
                  f"{figure.median('cpu'):.2f} s this process's CPU")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    hopnhat_peak = max(s.peak for key in ("plan_cold", "plan_warm", "discover_cold",
                                          "discover_warm") for s in figures[key].samples)
    print(f"peak RSS of this process (ru_maxrss): {rss:,.0f} MiB, of which during hopnhat's "
          f"calls at most {hopnhat_peak:,.0f} MiB (target < 1,024 MiB: "
          f"{'met' if rss < 1024 else 'NOT met'})")


def main(total: int = 10_000, rounds: int | None = None) -> None:
    began = time.perf_counter()
    world = provinces(total)
    rounds = rounds or (5 if total <= 2000 else 3)
    bare_rounds = rounds if total <= 2000 else 1  # the pyVmomi read of 10,000 VMs is slow
    with tempfile.TemporaryDirectory(prefix="bench-discover-") as tmp, \
            two_vcsims(Path(tmp), world) as (estate, endpoints, table):
        legacy = sum(p.legacy for p in world)
        declared = total - legacy
        adopted = sum(1 for p in world for d in declared_vms(p) if d["adopted"])
        at_root = sum(1 for p in world for v in legacy_vms(p) if "folder" not in v)
        print(f"{total:,} VMs in {PROVINCES} provinces (a datacenter each) on "
              f"{len(VCENTERS)} vCenters ("
              + ", ".join(f"{vc}: {sum(p.vms for p in world if p.vcenter == vc):,}"
                          for vc in VCENTERS)
              + f"): {legacy:,} legacy ({at_root:,} in the datacenters' VM folders, the rest "
              f"in sub-folders), {declared:,} declared as existing ({adopted:,} adopted "
              f"already, {declared - adopted:,} to adopt); vcsims up and estate read in "
              f"{time.perf_counter() - began:.0f} s")
        servers = [rec.pid for vc in VCENTERS
                   if (rec := table.running(f"vcsim-{vc}")) is not None]
        ports = [int(urlsplit(endpoints[vc].url).port or 443) for vc in VCENTERS]
        state = Path(tmp) / "state"
        state.mkdir()
        with vsphere.open_vcenters([endpoints[vc] for vc in VCENTERS], 2) as vcenters:
            figures = measure(estate, vcenters, servers, state, rounds, bare_rounds)
        report(world, figures, ports, rounds, bare_rounds)
        print("vcsim peak RSS: " + ", ".join(f"{vc} {peak_mib(pid):,.0f} MiB"
                                             for vc, pid in zip(VCENTERS, servers, strict=True)))
    print(f"benchmark run time: {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000,
         int(sys.argv[2]) if len(sys.argv) > 2 else None)
