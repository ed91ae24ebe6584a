"""Benchmark (issue 19): maintenance of N rest repositories (default 50) — hopnhat's pass
(``hopnhat maintain``) beside a plain loop of ``restic forget --prune``, in one run, on the
same repositories.

On this machine (root, loopback, no lab VM): a generated estate of N systems (``m000``…,
tier 2, retention ``daily: 7, weekly: 4, monthly: 6`` — keep-within-daily 7d,
keep-within-weekly 28d, keep-within-monthly 6m) backing up to one rest repository host on
``127.185.200.10``, and that host's maintenance endpoint as the lab runs it: the project's
pinned rest-server (``make lab-build``: ``.hopnhat/lab/bin``) WITHOUT ``--append-only``, its
argv from ``orchestrator.lab.rest.Server`` (TLS with a certificate of the estate's CA made by
``orchestrator.lab.rest.ensure_pki``, the control host's user alone in its htpasswd,
``orchestrator.estate.endpoints.htpasswd_line``), ``--path`` the host's storage folder, so
system ``c``'s repository is ``/c/c/`` as ``endpoints.maintenance_url`` says. The estate's
``restic.binary`` is the pinned restic; its vault is made by ``ensure_lab_secrets``.

The repositories (untimed): one template repository gets ``--snapshots`` backups of the lab
generator's data (``orchestrator/lab/data.py``: ``--size-mib`` MiB, day d for the d-th
snapshot, 5 % of the files changed from one to the next), dated in the past with ``restic
backup --time``: a backup every 12 hours for the last days, then a thinned history (weekly,
then monthly, the oldest older than 6 months), so the retention removes about a third of
them and prune has packs to rewrite or drop. Each system's repository is then made from it
(``init --copy-chunker-params`` + ``restic copy``, in parallel): the same history in each,
under the repository's own password, key and ID (so restic's caches are not shared). A
restic process opens a repository with scrypt (~0.5 s of a core): one ``copy`` per
repository instead of K backups each keeps the fill short. The filled storage is copied
aside; before each pass it is put back (``cp -a``), restic's caches emptied (every pass
starts cold), and ``sync`` run.

Timed, one pass after the other, all N repositories one at a time (as ``maintain`` does),
through the maintenance endpoint (TLS, htpasswd, the location with its credentials only in a
0600 file given as ``--repository-file``):

1. ``plain``: ``restic forget --prune --keep-within-daily 7d --keep-within-weekly 28d
   --keep-within-monthly 6m --keep-tag final --keep-tag archived`` per repository, no
   hopnhat;
2. ``hopnhat``: what ``hopnhat maintain`` runs, in this process: ``load_estate``,
   ``plan_maintenance``, ``Secrets`` + ``require_secrets`` (the vault read), then the action
   ``orchestrator.actions.maintain.run.maintain`` (per repository: ``restic version``, a
   ``forget --dry-run`` whose IDs go to the ledger, ``forget --prune``, the removals
   recorded again, an event per repository);
3. ``dry-run + prune``: per repository ``restic forget --dry-run`` then ``restic forget
   --prune`` (the two restic runs hopnhat makes, without hopnhat), each timed — the split of
   what hopnhat's extra costs go to.

Prints the table: wall time in all, per repository (median, p90, max), snapshots removed and
kept (counted in the storage's ``snapshots/`` folders), CPU seconds (restic, rest-server,
this Python process), the ratios hopnhat/plain and hopnhat/(dry-run + prune), the ledger's
size after the pass, restic's and rest-server's versions, the load average at start and end.
Asserts nothing. Everything started is stopped by PID at the end, also on Ctrl-C or SIGTERM;
the temporary folder is removed.

    .venv/bin/python bench/bench_maintain.py [--repositories 50] [--snapshots 24]
        [--size-mib 4] [--files N] [--jobs N] [--address 127.185.200.10] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchlab import free_port  # noqa: E402

from orchestrator.actions.maintain.plan import describe, plan_maintenance  # noqa: E402
from orchestrator.actions.maintain.run import (  # noqa: E402
    Outcome,
    maintain,
    require_secrets,
)
from orchestrator.actions.snapshot_log import removed_since  # noqa: E402
from orchestrator.adapters.restic import restic_local_zone  # noqa: E402
from orchestrator.adapters.restic_argv import (  # noqa: E402
    Features,
    Repository,
    make_backup_argv,
    make_copy_argv,
    make_environment,
    make_init_argv,
)
from orchestrator.adapters.vault import write_private  # noqa: E402
from orchestrator.estate import load_estate  # noqa: E402
from orchestrator.estate.endpoints import (  # noqa: E402
    htpasswd_line,
    maintenance_location,
)
from orchestrator.estate.model import SecretRef  # noqa: E402
from orchestrator.estate.secrets import Secrets  # noqa: E402
from orchestrator.lab import data, gobuild  # noqa: E402
from orchestrator.lab.rest import ensure_pki, servers  # noqa: E402
from orchestrator.lab.secrets import ensure_lab_secrets  # noqa: E402
from orchestrator.ledger import Ledger  # noqa: E402
from orchestrator.settings import Paths  # noqa: E402

HOST = "repo-bench"
ESTATE_ID = "benchmaintain"
#: the systems' retention, and the same as restic flags (README: weeks as days)
RETENTION = {"daily": 7, "weekly": 4, "monthly": 6}
KEEP_FLAGS = ("--keep-within-daily", "7d", "--keep-within-weekly", "28d",
              "--keep-within-monthly", "6m", "--keep-tag", "final", "--keep-tag", "archived")
#: the thinned history before the twice-daily backups, in days (oldest first)
HISTORY_DAYS = (200, 165, 135, 105, 75, 45, 27, 21, 14)
RECENT_EVERY_H = 12
FIRST_SYSTEM_PORT = 21000  # each system's own (append-only) server: not started here
TIMEOUT = 3600.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
PLAIN, HOPNHAT, DRY = "plain", "hopnhat", "dry-run + prune"


# ------------------------------------------------------------------ processes


class Children:
    """The restic (and cp) processes this run has started and not yet reaped, by PID, so
    that an interrupt can stop each one (worker threads wait on them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[int, subprocess.Popen[str]] = {}
        self.stopping = threading.Event()

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None, what: str) -> float:
        """Run ``argv`` to its end; its wall seconds. Any exit but 0 ends the benchmark."""
        if self.stopping.is_set():
            raise KeyboardInterrupt("stopping")
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), env=dict(env) if env is not None else None,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        with self._lock:
            self._live[proc.pid] = proc
        try:
            _, err = proc.communicate(timeout=TIMEOUT)
        except BaseException:  # an interrupt, or the timeout: this one goes too
            stop_pid(proc.pid, proc)
            raise
        finally:
            with self._lock:
                self._live.pop(proc.pid, None)
        took = time.perf_counter() - start
        if proc.returncode != 0:
            if self.stopping.is_set():
                raise KeyboardInterrupt("stopping")
            raise SystemExit(f"{what}: exit {proc.returncode}: {err.strip()[-1500:]}")
        return took

    def stop_all(self) -> None:
        self.stopping.set()
        with self._lock:
            live = list(self._live.values())
        for proc in live:
            stop_pid(proc.pid, proc)


@contextlib.contextmanager
def stopped_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP end the run as Ctrl-C does, so every ``finally`` runs."""
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def stop_pid(pid: int, proc: subprocess.Popen[Any]) -> None:
    """SIGTERM process ``pid`` (``proc``), SIGKILL after 10 s; reaped."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        proc.wait()


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far (0 once gone)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ------------------------------------------------------------------ the estate and the server


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_estate(root: Path, storage: Path, address: str, port: int, restic: Path,
                 systems: Sequence[str]) -> Path:
    """An estate of ``systems`` (tier 2, one data-bearing VM each, retention
    :data:`RETENTION`) on one rest repository host at ``address`` whose maintenance port is
    ``port`` and storage ``storage``; hopnhat runs ``restic``."""
    (root / "sites").mkdir(parents=True)
    (root / "systems").mkdir()

    def dump(rel: str, value: object) -> None:
        (root / rel).write_text(yaml.safe_dump(value, sort_keys=False))

    dump("estate.yml", {
        "id": ESTATE_ID, "name": "maintenance benchmark",
        "tiers": {2: {"rpo": "24h", "rto": "24h", "drill_interval": "90d",
                      "read_data_rotation": 14}},
        "repository_hosts": [{"name": HOST, "site": "bench2", "address": address,
                              "storage_path": str(storage), "capacity_gb": 1000,
                              "protocol": "rest", "maintenance_port": port,
                              "tls_ca": "pki/ca.pem"}],
        "restic": {"binary": str(restic), "sha256": sha256_of(restic)}})
    vcenter = {"url": "https://127.0.0.1:1/sdk", "username": "administrator@vsphere.local",
               "password": {"vault": "vcenter_password"}}
    for name, role, base in (("bench", "primary", 0), ("bench2", "secondary", 64)):
        dump(f"sites/{name}.yml", {
            "name": name, "role": role, "vcenter": vcenter, "datacenter": f"DC-{name}",
            "clusters": ["CL"], "datastores": ["DS"], "templates": ["tpl"],
            "networks": {"srv": {"port_group": "PG", "subnet": f"127.185.{base}.0/18",
                                 "gateway": f"127.185.{base}.1",
                                 "pool": f"127.185.{base + 1}.1-127.185.{base + 8}.254"}}})
    for i, code in enumerate(systems):
        dump(f"systems/{code}.yml", {
            "name": code, "code": code, "tier": 2,
            "vms": [{"role": "app", "site": "bench", "cpu": 1, "memory_mb": 512,
                     "disks_gb": [10], "network": "srv", "data": True}],
            "backup": {"repository_host": HOST, "port": FIRST_SYSTEM_PORT + i,
                       "password": {"vault": f"restic_{code}"},
                       "paths": [f"/srv/{code}"], "schedule": "*-*-* *:00/30:00",
                       "retention": RETENTION}})
    return root


def wait_listening(ip: str, port: int, pid: int, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            break
        with contextlib.suppress(OSError), socket.create_connection((ip, port), timeout=1):
            return
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
    raise SystemExit(f"rest-server did not listen on {ip}:{port}: {tail.strip()}")


@dataclass
class Setup:
    """What the passes need."""

    paths: Paths
    base: Path
    storage: Path
    pristine: Path
    restic: Path
    rest_server: Path
    server_pid: int
    ca: Path
    systems: list[str]
    #: per system: (location file with the maintenance credentials, password file)
    files: dict[str, tuple[Path, Path]]
    versions: dict[str, str]
    load_start: tuple[float, float, float]
    fill: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def bench_host(base: Path, args: argparse.Namespace,
               children: Children) -> Iterator[Setup]:
    """The estate, its vault, CA and certificate, and the maintenance rest-server (stopped by
    PID at the end, whatever happens)."""
    load_start = os.getloadavg()
    lab = REPO / ".hopnhat" / "lab"
    restic = Path(args.restic) if args.restic else gobuild.restic_binary(lab)
    rest_server = (Path(args.rest_server) if args.rest_server
                   else gobuild.rest_server_binary(lab))
    for binary in (restic, rest_server):
        if not os.access(binary, os.X_OK):
            raise SystemExit(f"{binary}: missing; `make lab-build` builds the pinned restic "
                             "and rest-server")
    systems = [f"m{i:03d}" for i in range(args.repositories)]
    storage = base / "storage"
    storage.mkdir(mode=0o700)
    port = free_port(args.address)
    paths = Paths(base / "state", load_estate(write_estate(
        base / "inventory", storage, args.address, port, restic.resolve(), systems)))
    paths.state.mkdir(mode=0o700)
    ensure_lab_secrets(paths)
    host = paths.estate.repository_host(HOST)
    cert, key = ensure_pki(paths, host)
    ca = paths.tls_ca(host.tls_ca)
    assert ca is not None
    secrets = Secrets(paths)
    server = next(s for s in servers(paths.estate, secrets, host) if s.name == "maintenance")
    folder = base / "rest"
    folder.mkdir(mode=0o700)
    shutil.copyfile(cert, folder / "server.pem")
    write_private(folder / "server.key", key.read_bytes())
    write_private(folder / f"{server.name}.htpasswd",
                  (htpasswd_line(server.user, server.password) + "\n").encode())
    argv = server.argv(str(rest_server), str(host.address), folder)
    assert "--append-only" not in argv
    versions = {name: " ".join(subprocess.run(
        [str(binary), flag], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, check=False, timeout=60).stdout.split())
        for name, binary, flag in (("restic", restic, "version"),
                                   ("rest_server", rest_server, "--version"))}
    # the files a plain restic loop reads: the maintenance location with its credentials
    # and the repository's password, each 0600 (never in argv)
    secret_dir = base / "secret"
    files = {}
    maintenance_password = secrets.get(SecretRef(vault=host.maintenance_secret))
    for code in systems:
        backup = paths.estate.systems[code].backup
        assert backup is not None
        location = secret_dir / f"{code}.location"
        password = secret_dir / f"{code}.password"
        write_private(location, maintenance_location(host, code, maintenance_password).encode())
        write_private(password, secrets.get(backup.password).encode())
        files[code] = (location, password)
    log = folder / "maintenance.log"
    out = log.open("ab")
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        out.close()
    try:
        wait_listening(str(host.address), port, proc.pid, log)
        print(f"maintenance endpoint: {Path(argv[0]).name} pid {proc.pid} at "
              f"https://{host.address}:{port} (no --append-only; TLS, htpasswd user "
              f"{server.user}), --path {storage}", flush=True)
        yield Setup(paths, base, storage, base / "pristine", restic, rest_server, proc.pid,
                    ca, systems, files, versions, load_start)
    finally:
        children.stop_all()
        stop_pid(proc.pid, proc)


# ------------------------------------------------------------------ the fill (untimed)


def snapshot_times(k: int, now: datetime) -> list[datetime]:
    """``k`` snapshot times, oldest first: a thinned history (the first of
    :data:`HISTORY_DAYS`, 3/8 of ``k``), then a backup every 12 hours, the newest an hour
    ago."""
    history = [timedelta(days=d) for d in HISTORY_DAYS[:min(len(HISTORY_DAYS),
                                                            round(k * 0.375))]]
    recent = [timedelta(hours=1 + RECENT_EVERY_H * i) for i in range(k - len(history))]
    return [now - age for age in [*history, *sorted(recent, reverse=True)]]


def local_repo(path: Path, password: Path) -> Repository:
    return Repository(url=str(path), password_file=password, name=path.name)


def environment(repo: Repository, tmp: Path, from_repo: Repository | None = None) -> dict[str, str]:
    return make_environment(repo, path=os.environ.get("PATH", "/usr/bin:/bin"),
                            home=str(tmp), tmpdir=str(tmp), from_repo=from_repo,
                            features=Features((0, 18, 0)))


def fill(setup: Setup, args: argparse.Namespace, children: Children) -> None:
    """The template repository (K backups, dated in the past), then each system's repository
    copied from it, ``--jobs`` at a time; then the storage copied aside."""
    started = time.perf_counter()
    tmp = setup.base / "tmp"
    tmp.mkdir()
    restic = str(setup.restic)
    template_password = setup.base / "secret" / "template.password"
    write_private(template_password, os.urandom(24).hex().encode())
    template = local_repo(setup.base / "template", template_password)
    children.run((restic, *make_init_argv(template)[1:]), environment(template, tmp),
                 "template: init")
    source = setup.base / "source" / "srv" / "app"
    times = snapshot_times(args.snapshots, datetime.now(UTC))
    zone = restic_local_zone()
    summary = None
    for day, when in enumerate(times):
        summary = data.generate(source, seed="bench-maintain", size_mb=args.size_mib,
                                files=args.files, day=day, change_rate=0.05)
        argv = make_backup_argv(template, [source], ["bench"], host="app-01", json=False,
                                time=when, zone=zone)
        children.run((restic, "--quiet", *argv[1:]), environment(template, tmp),
                     f"template: backup {day}")
    assert summary is not None
    shutil.rmtree(setup.base / "source")
    made = time.perf_counter() - started
    print(f"template: {len(times)} snapshots of {summary.files} files, "
          f"{summary.bytes / 2**20:.1f} MiB each (5 % changed from one to the next), "
          f"{times[0]:%Y-%m-%d} .. {times[-1]:%Y-%m-%d %H:%M} UTC, in {made:.0f} s",
          flush=True)

    def one(code: str) -> None:
        folder = setup.storage / code
        folder.mkdir(mode=0o700)
        repo = local_repo(folder / code, setup.files[code][1])
        env = environment(repo, tmp, template)
        children.run((restic, *make_init_argv(repo, chunker_from=template)[1:]), env,
                     f"{code}: init")
        children.run((restic, "--quiet", *make_copy_argv(template, repo)[1:]), env,
                     f"{code}: copy")

    copied = time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=args.jobs, thread_name_prefix="fill")
    try:
        futures: list[Future[None]] = [pool.submit(one, code) for code in setup.systems]
        for i, future in enumerate(futures, 1):
            future.result()
            if i % 10 == 0 or i == len(futures):
                print(f"  {i}/{len(futures)} repositories filled "
                      f"({time.perf_counter() - copied:.0f} s)", flush=True)
    except BaseException:
        children.stop_all()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    children.run(("cp", "-a", str(setup.storage), str(setup.pristine)), None,
                 "copy of the storage")
    snaps = sum(snapshot_count(setup.storage, c) for c in setup.systems)
    setup.fill = {"snapshots_per_repository": len(times), "files": summary.files,
                  "bytes": summary.bytes, "snapshots_total": snaps,
                  "storage_bytes": tree_bytes(setup.storage),
                  "oldest": times[0].isoformat(), "newest": times[-1].isoformat(),
                  "seconds": time.perf_counter() - started}
    print(f"filled {len(setup.systems)} repositories ({snaps} snapshots, "
          f"{setup.fill['storage_bytes'] / 2**20:,.0f} MiB on disk) in "
          f"{setup.fill['seconds']:.0f} s, untimed", flush=True)


def snapshot_count(storage: Path, code: str) -> int:
    folder = storage / code / code / "snapshots"
    return sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def restore_storage(setup: Setup, children: Children) -> None:
    """The storage as the fill left it; restic's caches emptied; ``sync``."""
    for child in setup.storage.iterdir():
        shutil.rmtree(child)
    children.run(("cp", "-a", f"{setup.pristine}/.", str(setup.storage)), None,
                 "restore of the storage")
    for cache in (setup.base / "cache", setup.paths.state / "cache"):
        shutil.rmtree(cache, ignore_errors=True)
    os.sync()
    time.sleep(1.0)


# ------------------------------------------------------------------ the passes (timed)


@dataclass
class Pass:
    """One pass over every repository."""

    name: str
    wall: float = 0.0
    per_repo: dict[str, float] = field(default_factory=dict)
    parts: dict[str, dict[str, float]] = field(default_factory=dict)  # part → code → s
    removed: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    cpu_restic: float = 0.0
    cpu_server: float = 0.0
    cpu_python: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def counted(setup: Setup, result: Pass) -> Iterator[None]:
    """Wall time and CPU (restic: this process's children; the rest-server; this process)
    of the block into ``result``."""
    before = (children_cpu(), process_cpu(setup.server_pid), self_cpu())
    start = time.perf_counter()
    yield
    result.wall = time.perf_counter() - start
    after = (children_cpu(), process_cpu(setup.server_pid), self_cpu())
    result.cpu_restic, result.cpu_server, result.cpu_python = (
        a - b for a, b in zip(after, before, strict=True))


def plain_argv(setup: Setup, code: str, *extra: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """``restic forget`` against ``code``'s repository on the maintenance endpoint as an
    operator would type it, and its environment."""
    location, password = setup.files[code]
    argv = (str(setup.restic), "--repository-file", str(location), "--cacert", str(setup.ca),
            "forget", *extra, *KEEP_FLAGS)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(setup.base / "tmp"),
           "TMPDIR": str(setup.base / "tmp"), "RESTIC_PASSWORD_FILE": str(password),
           "RESTIC_CACHE_DIR": str(setup.base / "cache" / "restic")}
    return argv, env


def count_after(setup: Setup, result: Pass, before: dict[str, int]) -> None:
    for code in setup.systems:
        now = snapshot_count(setup.storage, code)
        result.removed[code] = before[code] - now
        result.kept[code] = now


def progress(name: str, i: int, n: int, started: float) -> None:
    if i % 10 == 0 or i == n:
        print(f"  {name}: {i}/{n} ({time.perf_counter() - started:.0f} s)", flush=True)


def pass_plain(setup: Setup, children: Children) -> Pass:
    result = Pass(PLAIN)
    before = {c: snapshot_count(setup.storage, c) for c in setup.systems}
    started = time.perf_counter()
    with counted(setup, result):
        for i, code in enumerate(setup.systems, 1):
            argv, env = plain_argv(setup, code, "--prune")
            result.per_repo[code] = children.run(argv, env, f"{code}: forget --prune")
            progress(PLAIN, i, len(setup.systems), started)
    count_after(setup, result, before)
    return result


def pass_dry(setup: Setup, children: Children) -> Pass:
    result = Pass(DRY, parts={"forget --dry-run": {}, "forget --prune": {}})
    before = {c: snapshot_count(setup.storage, c) for c in setup.systems}
    started = time.perf_counter()
    with counted(setup, result):
        for i, code in enumerate(setup.systems, 1):
            argv, env = plain_argv(setup, code, "--dry-run")
            dry = children.run(argv, env, f"{code}: forget --dry-run")
            argv, env = plain_argv(setup, code, "--prune")
            prune = children.run(argv, env, f"{code}: forget --prune")
            result.parts["forget --dry-run"][code] = dry
            result.parts["forget --prune"][code] = prune
            result.per_repo[code] = dry + prune
            progress(DRY, i, len(setup.systems), started)
    count_after(setup, result, before)
    return result


def pass_hopnhat(setup: Setup) -> Pass:
    """What ``hopnhat maintain`` does after parsing its options, in this process."""
    result = Pass(HOPNHAT, parts={"load estate, plan, vault": {}})
    before = {c: snapshot_count(setup.storage, c) for c in setup.systems}
    started = time.perf_counter()
    outcomes: list[Outcome] = []

    def on_outcome(outcome: Outcome) -> None:
        outcomes.append(outcome)
        progress(HOPNHAT, len(outcomes), len(setup.systems), started)

    with counted(setup, result):
        paths = Paths(setup.paths.state, load_estate(setup.paths.estate.root))
        targets = plan_maintenance(paths.estate)
        secrets = Secrets(paths)
        require_secrets(paths, targets, secrets)
        prepared = time.perf_counter()
        with Ledger(paths.ledger) as ledger:
            done = maintain(paths, targets, ledger=ledger, secrets=secrets,
                            on_outcome=on_outcome)
    result.parts["load estate, plan, vault"]["all"] = prepared - started
    count_after(setup, result, before)
    for outcome in done.outcomes:
        result.per_repo[outcome.target.system] = outcome.seconds
    failed = {o.target.system: o.error for o in done.outcomes if o.status != "ok"}
    ledger_files = [setup.paths.ledger, *(setup.paths.ledger.with_name(
        setup.paths.ledger.name + s) for s in ("-wal", "-shm"))]
    with Ledger(setup.paths.ledger) as ledger:
        recorded = sum(len(removed_since(ledger, o.target.system, o.target.repository))
                       for o in done.outcomes)
        events = len(ledger.events(done.run_id))
    result.extra = {
        "run_id": done.run_id, "exit_code": done.exit_code, "maintain_s": done.seconds,
        "failed": failed, "removed_by_outcomes": sum(len(o.removed) for o in done.outcomes),
        "policy": describe(targets[0].policy) if targets else "",
        "ledger_bytes": {p.name: p.stat().st_size for p in ledger_files if p.exists()},
        "ledger_removals": recorded, "ledger_events": events}
    return result


# ------------------------------------------------------------------ report


def p90(values: Sequence[float]) -> float:
    """Nearest-rank 90th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)] if ordered else float("nan")


def stats(values: Sequence[float]) -> dict[str, float]:
    vals = list(values)
    return {"median_s": statistics.median(vals) if vals else float("nan"),
            "p90_s": p90(vals), "max_s": max(vals) if vals else float("nan"),
            "sum_s": sum(vals)}


def report(setup: Setup, passes: list[Pass], args: argparse.Namespace) -> dict[str, Any]:
    """Print the table; return the figures (for --json)."""
    load_end = os.getloadavg()
    by = {p.name: p for p in passes}
    hop = by[HOPNHAT]
    n = len(setup.systems)
    fill_ = setup.fill
    print(f"\nmaintenance of {n} rest repositories, one at a time — "
          f"{fill_['snapshots_per_repository']} snapshots each ({fill_['files']} files, "
          f"{fill_['bytes'] / 2**20:.1f} MiB of "
          f"data per snapshot, {fill_['storage_bytes'] / n / 2**20:.1f} MiB per repository "
          f"on disk); restic caches cold")
    print(f"  {setup.versions['restic']}")
    print(f"  {setup.versions['rest_server']} (the maintenance endpoint: no --append-only, "
          "TLS, htpasswd)")
    print(f"  hopnhat's policy: {hop.extra['policy']}; plain restic: "
          + " ".join(KEEP_FLAGS))
    width = 34
    print(f"\n  {'pass':<{width}} {'wall s':>8} {'per repository s':>26} {'removed':>8}"
          f" {'kept':>6} {'CPU s restic/server/python':>28}")
    print(f"  {'':<{width}} {'':>8} {'median':>8} {'p90':>8} {'max':>8}")
    doc_passes: dict[str, Any] = {}

    def row(label: str, wall: float | None, values: Sequence[float], p: Pass | None) -> None:
        s = stats(values)
        line = (f"  {label:<{width}} {'' if wall is None else f'{wall:8.1f}':>8}"
                f" {s['median_s']:8.2f} {s['p90_s']:8.2f} {s['max_s']:8.2f}")
        if p is not None:
            line += (f" {sum(p.removed.values()):8d} {sum(p.kept.values()):6d}"
                     f" {p.cpu_restic:12.1f}/{p.cpu_server:.1f}/{p.cpu_python:.1f}")
        print(line)

    for p in passes:
        label = {PLAIN: "plain: restic forget --prune", HOPNHAT: "hopnhat maintain",
                 DRY: "restic forget --dry-run, --prune"}[p.name]
        row(label, p.wall, list(p.per_repo.values()), p)
        for part, values in p.parts.items():
            if p.name == HOPNHAT:
                print(f"    {part:<{width - 2}} {values['all']:8.1f}")
            else:
                row(f"  of which {part}", sum(values.values()), list(values.values()), None)
        if p.name == HOPNHAT:
            print(f"    {'maintain() itself':<{width - 2}} {p.extra['maintain_s']:8.1f}")
        doc_passes[p.name] = {
            "wall_s": p.wall, "per_repository": stats(list(p.per_repo.values())),
            "per_repository_s": p.per_repo, "removed": sum(p.removed.values()),
            "kept": sum(p.kept.values()), "removed_per_repository": p.removed,
            "cpu_restic_s": p.cpu_restic, "cpu_server_s": p.cpu_server,
            "cpu_python_s": p.cpu_python,
            "parts": {k: stats(list(v.values())) for k, v in p.parts.items()}, **p.extra}
    plain, dry = by[PLAIN], by[DRY]
    ratio_plain, ratio_dry = hop.wall / plain.wall, hop.wall / dry.wall
    med = (statistics.median(hop.per_repo.values())
           / statistics.median(plain.per_repo.values()))
    print(f"\n  hopnhat / plain forget --prune:    {ratio_plain:.2f} (wall), "
          f"{med:.2f} (median per repository)")
    print(f"  hopnhat / (dry-run + prune):       {ratio_dry:.2f} (wall)")
    same = plain.removed == hop.removed == dry.removed
    print(f"  same snapshots removed per repository in the three passes: "
          f"{'yes' if same else 'NO'} ({sum(hop.removed.values())} in all; hopnhat's "
          f"outcomes name {hop.extra['removed_by_outcomes']})")
    if hop.extra["failed"]:
        print(f"  hopnhat failed on: {hop.extra['failed']}")
    sizes = hop.extra["ledger_bytes"]
    print(f"  ledger after the pass: {sum(sizes.values()) / 1024:,.0f} KiB ("
          + ", ".join(f"{k} {v / 1024:,.0f} KiB" for k, v in sizes.items())
          + f"); {hop.extra['ledger_removals']} removals recorded, "
          f"{hop.extra['ledger_events']} events of run {hop.extra['run_id']}")
    print("  load average at start " + " ".join(f"{x:.2f}" for x in setup.load_start)
          + ", at end " + " ".join(f"{x:.2f}" for x in load_end)
          + f" ({os.cpu_count()} cores)")
    return {"repositories": n, "snapshots": args.snapshots, "size_mib": args.size_mib,
            "versions": setup.versions, "fill": fill_, "passes": doc_passes,
            "ratio_hopnhat_plain": ratio_plain, "ratio_hopnhat_dry_prune": ratio_dry,
            "ratio_hopnhat_plain_median": med, "same_removals": same,
            "cores": os.cpu_count(), "load_start": list(setup.load_start),
            "load_end": list(load_end)}


# ------------------------------------------------------------------ main


def run_passes(setup: Setup, children: Children) -> list[Pass]:
    """plain, hopnhat, dry-run + prune: hopnhat in the middle, so a drift of the machine's
    load weighs on both baselines alike."""
    order: list[tuple[str, Callable[[], Pass]]] = [
        (PLAIN, lambda: pass_plain(setup, children)),
        (HOPNHAT, lambda: pass_hopnhat(setup)),
        (DRY, lambda: pass_dry(setup, children))]
    passes = []
    for i, (name, measure) in enumerate(order):
        if i:
            restore_storage(setup, children)
        else:
            _cold_start(setup)
        print(f"pass {i + 1}/3: {name}", flush=True)
        passes.append(measure())
        print(f"  {name}: {passes[-1].wall:.1f} s", flush=True)
    return passes


def _cold_start(setup: Setup) -> None:
    for cache in (setup.base / "cache", setup.paths.state / "cache"):
        shutil.rmtree(cache, ignore_errors=True)
    os.sync()
    time.sleep(1.0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repositories", type=int, default=50)
    parser.add_argument("--snapshots", type=int, default=24,
                        help="snapshots per repository (about a third removed)")
    parser.add_argument("--size-mib", type=float, default=4.0,
                        help="MiB of data per snapshot")
    parser.add_argument("--files", type=int, default=None,
                        help="files in the data (default: 15 per MiB, at least 20)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2,
                        help="repositories filled at once (the fill only; passes are serial)")
    parser.add_argument("--address", default="127.185.200.10",
                        help="the repository host's loopback address")
    parser.add_argument("--restic", default=None,
                        help="restic binary (default: the lab's pinned one)")
    parser.add_argument("--rest-server", default=None,
                        help="rest-server binary (default: the lab's pinned one)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    if args.repositories < 1 or args.snapshots < 2 or args.size_mib <= 0 or args.jobs < 1:
        parser.error("--repositories >= 1, --snapshots >= 2, --size-mib > 0, --jobs >= 1")
    if args.files is None:
        args.files = max(20, round(15 * args.size_mib))
    if os.geteuid() != 0:
        raise SystemExit("run as root (as the lab: its repository host serves on loopback)")
    started = time.perf_counter()
    children = Children()
    with stopped_on_signals(), tempfile.TemporaryDirectory(prefix="hopnhat-bench-maintain-") \
            as tmp:
        try:
            with bench_host(Path(tmp), args, children) as setup:
                fill(setup, args, children)
                passes = run_passes(setup, children)
                doc = report(setup, passes, args)
        except KeyboardInterrupt:
            print("\ninterrupted: every process started is stopped, the temporary folder "
                  "removed", file=sys.stderr)
            raise SystemExit(130) from None
    doc["wall_s"] = time.perf_counter() - started
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nthe whole run took {doc['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
