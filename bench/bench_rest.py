"""Benchmark (issue 19): restic over REST (rest-server, append-only) beside restic over SFTP,
side by side in one run, on the same data, on loopback and through the lab's slowed link.

A lab of its own on loopback addresses (``127.175.x`` primary, ``127.176.x`` secondary by
default): the estate's repository host with one chrooted SFTP account (the lab's own sshd
guest, ``orchestrator/lab/repository.py``) and, on the same address, the lab's pinned
rest-server as issue 19 runs it: ``--append-only --private-repos --tls --htpasswd-file``, a
certificate for the address signed by a CA of the run's own (made with ``cryptography``), one
bcrypt htpasswd user. restic verifies it with ``--cacert``; the REST URL with its credentials
is only in a 0600 file given as ``--repository-file`` (never in argv), the password only in
``RESTIC_PASSWORD_FILE``; SFTP runs the adapter's ssh argv (the account's own key, the host
key pinned). Both storages are folders on disk. Everything is stopped by PID at the end, the
link restored, also on Ctrl-C or SIGTERM.

The data: ``--size-mib`` MiB in ``--files`` files from the lab's generator
(``orchestrator/lab/data.py``): day 0, then day 1 (``change_rate`` 0.05: 5 % of the files
rewritten, added or deleted), warm in the page cache, an untimed ``sync`` before each step.

Measured, a timer around each restic process, for each link and repeat, REST and SFTP one
after the other in each step, their order alternating from step to step and round to round
(so the machine's other load falls on both alike):
  first backup (repository emptied and initialised, restic's cache emptied: untimed) —
  5 %-changed backup — ``check`` — ``check --read-data`` — ``restore latest`` (no
  ``--verify``: the transfer, not the local re-read) into a folder removed after;
with the client's CPU (restic, and ssh for SFTP) and the server's (rest-server; the guest's
sshd and sftp-server) beside each.

Links: ``loopback`` (nothing in the way) and ``shaped``: the lab's link to the secondary site
(``orchestrator/lab/link.py``: an HTB class on ``lo`` at ``--rate``, both directions in one
class) with ``--latency`` each way. Where the kernel has no netem the latency cannot be made
by tc; it is then added by a relay of this benchmark (asyncio, in this process, on a
primary-site address): each chunk read from one side is written to the other ``--latency``
later, in both directions, so every request/response round trip costs twice ``--latency`` as
with netem — but TCP's own window and slow start see a short path (the relay acknowledges at
once), which the output says. The bytes the HTB class carried are printed, as proof that the
traffic crossed the slowed link.

Prints one table per link (medians; the ratio REST/SFTP, < 1 when REST is faster), every
run's figure, client and server CPU, the load average at start and end. Asserts nothing.

    .venv/bin/python bench/bench_rest.py [--size-mib 1024] [--files N] [--repeats 1]
        [--link loopback|shaped|both] [--restic BINARY] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchlab import free_port  # noqa: E402

from orchestrator import process  # noqa: E402
from orchestrator.adapters.restic_argv import (  # noqa: E402
    Repository,
    make_backup_argv,
    make_check_argv,
    make_environment,
    make_init_argv,
    make_restore_argv,
    sftp_option,
    ssh_command,
)
from orchestrator.adapters.ssh import ensure_keypair  # noqa: E402
from orchestrator.errors import LabError  # noqa: E402
from orchestrator.estate import load_estate  # noqa: E402
from orchestrator.lab import control, data, gobuild, link  # noqa: E402
from orchestrator.lab.guest_init import account_name  # noqa: E402
from orchestrator.lab.guests import (  # noqa: E402
    host_key,
    known_hosts_address,
    record_name,
    set_known_host,
)
from orchestrator.lab.processes import ProcessTable  # noqa: E402
from orchestrator.lab.repository import (  # noqa: E402
    repository_dir,
    repository_url,
    start_repository_host,
)
from orchestrator.settings import Paths  # noqa: E402

CODE = "bench"  # the system: its SFTP account and its rest-server user
CLIENT = "bench-client"  # restic's --host, so day 1 finds day 0's snapshot as its parent
TIMEOUT = 3 * 3600.0
REST_RECORD = "rest-server-bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")

FIRST, CHANGED, CHECK, READ, RESTORE = ("backup, first", "backup, 5 % changed", "check",
                                        "check --read-data", "restore latest")
STEPS = (FIRST, CHANGED, CHECK, READ, RESTORE)
REST, SFTP = "REST", "SFTP"
LOOPBACK, SHAPED = "loopback", "shaped"


# ------------------------------------------------------------------ TLS and htpasswd


def write_tls(folder: Path, addresses: Sequence[str]) -> tuple[Path, Path, Path]:
    """A CA of this run and a server certificate for ``addresses`` (IP SANs) signed by it;
    (ca.pem, cert.pem, key.pem), the key 0600."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hopnhat bench CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, addresses[0])]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    ca_pem, cert_pem, key_pem = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    private_file(key_pem, key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return ca_pem, cert_pem, key_pem


def private_file(path: Path, content: bytes) -> Path:
    """``path`` created 0600 (never readable by others, not even for a moment)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    return path


# ------------------------------------------------------------------ the delay relay


class DelayRelay:
    """A TCP relay from ``listen_ip`` (a free port) to ``target`` that writes each chunk it
    reads ``delay`` seconds later, in both directions (asyncio, in a thread of this
    process). ``start`` returns the port; ``stop`` closes everything."""

    CHUNK = 256 * 1024
    QUEUE = 64  # chunks in flight per direction: far above 1 Gbit/s x 5 ms

    def __init__(self, listen_ip: str, target: tuple[str, int], delay: float) -> None:
        self.listen_ip, self.target, self.delay = listen_ip, target, delay
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="delay-relay",
                                        daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> int:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(30)

    async def _serve(self) -> int:
        self._server = await asyncio.start_server(self._handle, self.listen_ip, 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            down_w.close()
            return
        pair = {down_w, up_w}
        self._writers |= pair
        try:
            await asyncio.gather(self._pipe(down_r, up_w, pair), self._pipe(up_r, down_w, pair))
        finally:
            for w in pair:
                w.close()
            self._writers -= pair

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    pair: set[asyncio.StreamWriter]) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(self.QUEUE)

        async def pull() -> None:
            try:
                while chunk := await reader.read(self.CHUNK):
                    await queue.put((loop.time() + self.delay, chunk))
            except OSError:
                pass
            await queue.put(None)

        puller = asyncio.create_task(pull())
        try:
            while (item := await queue.get()) is not None:
                wait = item[0] - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(item[1])
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except OSError:  # one side reset: end both
            for w in pair:
                w.close()
        finally:
            puller.cancel()

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._writers):
                w.close()
            await asyncio.sleep(0.1)

        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


# ------------------------------------------------------------------ measuring


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, as /proc shows them now."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError):
                raw = Path(entry.path, "stat").read_text()
                children.setdefault(int(raw[raw.rindex(")") + 2:].split()[1]), []).append(
                    int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


class CpuAccount:
    """A cgroup of this run counting the CPU of the processes moved into it and of all they
    fork later, wherever those are reparented (sshd's session processes end up under init,
    out of reach of their parent's ``cutime``): cgroup v1's ``cpuacct`` where mounted,
    else cgroup v2's ``cpu.stat``. ``seconds`` is None where neither can be made."""

    def __init__(self, name: str) -> None:
        self.path: Path | None = None
        v1 = Path("/sys/fs/cgroup/cpuacct")
        v2 = Path("/sys/fs/cgroup")
        for root in (v1, v2 / "unified", v2):
            if (root / ("cpuacct.usage" if root == v1 else "cgroup.procs")).exists():
                path = root / f"hopnhat-bench-rest-{os.getpid()}-{name}"
                with contextlib.suppress(OSError):
                    path.mkdir()
                    self.path = path
                    break

    def add(self, pid: int) -> None:
        """Move ``pid`` and its descendants in (their later children follow by themselves)."""
        if self.path is not None:
            for p in descendants(pid):
                with contextlib.suppress(OSError):
                    (self.path / "cgroup.procs").write_text(f"{p}\n")

    def seconds(self) -> float | None:
        if self.path is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            if (self.path / "cpuacct.usage").exists():
                return int((self.path / "cpuacct.usage").read_text()) / 1e9
            stat = dict(line.split() for line in (self.path / "cpu.stat").read_text()
                        .splitlines())
            return int(stat["usage_usec"]) / 1e6
        return None

    def remove(self) -> None:
        """Remove the cgroup (its processes are stopped by then; an empty cgroup goes)."""
        if self.path is not None:
            for _ in range(50):
                try:
                    self.path.rmdir()
                    return
                except FileNotFoundError:
                    return
                except OSError:
                    time.sleep(0.1)
            print(f"cgroup {self.path} not removed: processes left in it", file=sys.stderr)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def class_bytes(lab_dir: Path) -> int:
    """Bytes the lab's HTB class on ``lo`` let through (both directions)."""
    classid = f"1:{link.class_minor(lab_dir):x}"
    done = process.run(["tc", "-s", "class", "show", "dev", link.DEVICE, "classid", classid],
                       timeout=30)
    found = re.search(r"Sent (\d+) bytes", done.stdout)
    return int(found.group(1)) if done.ok and found else 0


@dataclass
class Run:
    seconds: float
    client_cpu: float
    server_cpu: float | None
    wire: int | None = None  # bytes through the slowed link's class


@dataclass
class Protocol:
    """One way to the repository: its argv (per link), storage and server process."""

    name: str
    binary: str
    repo: Repository
    env: dict[str, str]
    storage: Path  # the repository's folder on this machine; emptied, never removed
    server: CpuAccount
    argv_for: dict[str, tuple[str, ...]]  # link → what replaces ("--repo", url) in argv
    runs: dict[tuple[str, str], list[Run]] = field(default_factory=dict)

    def argv(self, adapter_argv: Sequence[str], link_name: str) -> list[str]:
        """The adapter's argv with this binary and this link's way to the repository."""
        argv = list(adapter_argv)
        at = argv.index("--repo")
        argv[at:at + 2] = self.argv_for[link_name]
        if self.name == REST and any(a.startswith("rest:") for a in argv):
            raise AssertionError("the REST URL (with its credentials) must not be in argv")
        return [self.binary, *argv[1:]]

    def run(self, adapter_argv: Sequence[str], link_name: str, what: str,
            lab_dir: Path | None = None) -> tuple[Run, str]:
        """Run one restic command; (its Run, stdout). Any exit but 0 ends the benchmark."""
        argv = self.argv(adapter_argv, link_name)
        cpu0, server0 = children_cpu(), self.server.seconds()
        wire0 = class_bytes(lab_dir) if lab_dir else 0
        start = time.perf_counter()
        done = subprocess.run(argv, env=self.env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=TIMEOUT, check=False)
        took = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{self.name} ({link_name}): {what}: exit {done.returncode}: "
                             f"{done.stderr.strip()[-1500:]}")
        time.sleep(0.2)  # untimed: the server's session processes end
        server1 = self.server.seconds()
        return Run(took, children_cpu() - cpu0,
                   server1 - server0 if server0 is not None and server1 is not None else None,
                   class_bytes(lab_dir) - wire0 if lab_dir else None), done.stdout

    def empty(self) -> None:
        """An empty repository (initialised, untimed) and an empty cache."""
        for child in self.storage.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        assert self.repo.cache_dir is not None
        shutil.rmtree(self.repo.cache_dir, ignore_errors=True)
        self.run(make_init_argv(self.repo), LOOPBACK, "init")


# ------------------------------------------------------------------ the lab


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


def bench_estate(dest: Path, octets: tuple[str, str]) -> Path:
    """The example estate on ``127.<octets>`` (its vault left out: nothing here reads it)."""
    shutil.copytree(REPO / "inventory", dest, ignore=shutil.ignore_patterns("secrets.vault.yml"))
    for path in dest.rglob("*.yml"):
        text = path.read_text().replace("127.10.", f"127.{octets[0]}.")
        path.write_text(text.replace("127.20.", f"127.{octets[1]}."))
    return dest


def wait_listening(ip: str, port: int, pid: int, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            break
        with contextlib.suppress(OSError), socket.create_connection((ip, port), timeout=1):
            return
        time.sleep(0.1)
    tail = log.read_text()[-1500:] if log.exists() else ""
    raise SystemExit(f"rest-server did not listen on {ip}:{port}: {tail}")


def start_rest_server(paths: Paths, table: ProcessTable, ip: str, storage: Path,
                      tls: tuple[Path, Path], htpasswd: Path) -> int:
    """The lab's pinned rest-server on ``ip``, as issue 19 runs it; recorded in the lab's
    process table (so ``lab down`` stops it too). Returns its port."""
    binary = gobuild.build(paths.lab, gobuild.REST_SERVER)
    port = free_port(ip)
    log = paths.lab / "rest-server.log"
    proc = process.spawn([str(binary), "--path", str(storage), "--listen", f"{ip}:{port}",
                          "--append-only", "--private-repos", "--tls", "--tls-cert",
                          str(tls[0]), "--tls-key", str(tls[1]), "--htpasswd-file",
                          str(htpasswd)], log=log)
    table.record(REST_RECORD, "rest-server", proc.pid, f"{ip}:{port}")
    wait_listening(ip, port, proc.pid, log)
    return port



def kernel_has_netem() -> bool:
    """Whether tc can make a netem qdisc (on the loopback of a network namespace of its
    own, which vanishes with the command: nothing of this machine is touched)."""
    return process.run(["unshare", "-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                        "delay", "1ms"], timeout=30).ok


def latency_seconds(latency: str) -> float:
    """``5ms`` → 0.005 (tc's units)."""
    value = link.check_latency(latency)
    unit = re.sub(r"^[\d.]+", "", value)
    return float(value.removesuffix(unit)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]


@dataclass
class Setup:
    """What the measuring needs besides the protocols."""

    paths: Paths
    base: Path
    restic_banner: str
    netem: bool
    relayed: bool  # the latency made by this benchmark's relay (no netem)
    load_start: tuple[float, float, float]


@contextlib.contextmanager
def bench_lab(base: Path, octets: tuple[str, str], args: argparse.Namespace,
              links: list[str]) -> Iterator[tuple[Setup, list[Protocol]]]:
    """The repository host (SFTP) and rest-server beside it, and (without netem, for the
    shaped link) a delay relay in front of each; all stopped at the end whatever happens.
    Yields the setup and the two protocols, REST first."""
    load_start = os.getloadavg()
    paths = Paths(base / "state", load_estate(bench_estate(base / "inventory", octets)))
    paths.lab.mkdir(parents=True)
    built = REPO / ".hopnhat" / "lab" / "bin"
    if built.is_dir():  # the pinned restic and rest-server, when `make` built them already
        shutil.copytree(built, gobuild.bin_dir(paths.lab),
                        ignore=shutil.ignore_patterns(".*.tmp"))
    table = ProcessTable(paths.lab)
    with contextlib.ExitStack() as stack:
        accounts: list[CpuAccount] = []
        stack.callback(remove_all, accounts)  # runs after lab down: once their processes are gone
        stack.callback(lab_down, paths.lab)  # rest-server, the repository host, the link
        host = paths.estate.settings.repository_hosts[0]
        address = str(host.address)
        # the relays listen on the primary site's side: only their leg to the host crosses
        # the link's class (once), as a client's traffic does
        primary = next(str(n.gateway) for s in paths.estate.sites.values()
                       if s.role == "primary" for n in s.networks.values())
        control_pub = ensure_keypair(paths.private_key, "hopnhat@bench").read_text().strip()
        paths.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        paths.known_hosts.touch(mode=0o644)
        sftp_key = ensure_keypair(paths.repository_key(CODE), f"restic-{CODE}@bench")
        start_repository_host(paths.lab, table, host.name, host.name, address,
                              host.storage_path, [control_pub], paths.known_hosts,
                              {CODE: sftp_key.read_text().strip()}, port=host.port)
        guest = table.running(record_name(host.name))
        if guest is None:
            raise SystemExit(f"the repository host {host.name} did not start")
        try:
            restic = args.restic or str(gobuild.build(paths.lab, gobuild.RESTIC))
        except LabError as exc:
            raise SystemExit(f"the pinned restic cannot be built: {exc}") from exc
        banner = process.run([restic, "version"], timeout=60).stdout.strip()

        secret = base / "secret"
        secret.mkdir(mode=0o700)
        password_file = private_file(secret / "restic-password",
                                     secrets.token_urlsafe(32).encode())
        rest_storage = base / "rest-storage"
        rest_storage.mkdir(mode=0o700)
        rest_password = secrets.token_urlsafe(24)
        htpasswd = private_file(secret / "htpasswd", CODE.encode() + b":" + bcrypt.hashpw(
            rest_password.encode(), bcrypt.gensalt(rounds=10)) + b"\n")
        ca, cert, key = write_tls(secret / "tls", [address, primary])
        try:
            rest_port = start_rest_server(paths, table, address, rest_storage, (cert, key),
                                          htpasswd)
        except LabError as exc:
            raise SystemExit(f"rest-server: {exc}") from exc
        rest_record = table.running(REST_RECORD)
        assert rest_record is not None

        netem = kernel_has_netem()
        relayed = SHAPED in links and not netem
        ends = {LOOPBACK: ((address, rest_port), (address, host.port))}
        if SHAPED in links:
            ends[SHAPED] = ends[LOOPBACK]
        if relayed:
            delay = latency_seconds(args.latency)
            relays = [DelayRelay(primary, target, delay) for target in ends[LOOPBACK]]
            for r in relays:
                stack.callback(r.stop)
            rest_relay, sftp_relay = (r.start() for r in relays)
            ends[SHAPED] = ((primary, rest_relay), (primary, sftp_relay))
            set_known_host(paths.known_hosts, known_hosts_address(primary, sftp_relay),
                           host_key(paths.lab, host.name))

        rest_argv: dict[str, tuple[str, ...]] = {}
        sftp_argv: dict[str, tuple[str, ...]] = {}
        user = account_name(CODE)
        for name, ((rest_ip, rest_at), (ssh_ip, ssh_at)) in ends.items():
            url = f"rest:https://{CODE}:{rest_password}@{rest_ip}:{rest_at}/{CODE}/"
            repo_file = private_file(secret / f"repository-{name}", url.encode() + b"\n")
            rest_argv[name] = ("--repository-file", str(repo_file), "--cacert", str(ca))
            command = ssh_command(f"{user}@{ssh_ip}", paths.repository_key(CODE),
                                  paths.known_hosts, port=ssh_at)
            # the URL's host is a label only: restic runs the ssh argv of sftp.command
            sftp_argv[name] = ("--repo", repository_url(address, CODE, host.port),
                               "-o", sftp_option(command))
        scratch = base / "tmp"
        scratch.mkdir()

        def protocol(name: str, storage: Path, server_pid: int,
                     argv_for: dict[str, tuple[str, ...]]) -> Protocol:
            account = CpuAccount(name.lower())
            accounts.append(account)
            account.add(server_pid)
            # the adapter's argv builders need a URL; Protocol.argv replaces it
            repo = Repository(url=f"<{name}>", password_file=password_file,
                              cache_dir=base / "cache" / name, name=f"{CODE}@{host.name}")
            env = make_environment(repo, path=os.environ.get("PATH", "/usr/bin:/bin"),
                                   home=str(paths.state), tmpdir=str(scratch))
            return Protocol(name, restic, repo, env, storage, account, argv_for)

        protocols = [
            protocol(REST, rest_storage, rest_record.pid, rest_argv),
            protocol(SFTP, repository_dir(paths.lab, host.name, host.storage_path, CODE),
                     guest.pid, sftp_argv),
        ]
        print(f"lab ready: repository host {host.name}, SFTP at {address}:{host.port} "
              f"(chrooted account, host key pinned), rest-server "
              f"{gobuild.REST_SERVER.binary_name()} at https://{address}:{rest_port} "
              f"(--append-only --private-repos, TLS, htpasswd)"
              + (f"; delay relays on {primary}" if relayed else ""), flush=True)
        yield Setup(paths, base, banner, netem, relayed, load_start), protocols


def remove_all(accounts: list[CpuAccount]) -> None:
    for account in accounts:
        account.remove()


def lab_down(lab_dir: Path) -> None:
    try:
        control.down(lab_dir)
    except LabError as exc:
        print(f"lab down: {exc}", file=sys.stderr)


@contextlib.contextmanager
def shaped_link(setup: Setup, rate: str, latency: str) -> Iterator[None]:
    """The lab's link slowed to ``rate`` (and ``latency`` by netem where the kernel has it);
    restored after, whatever happens."""
    try:
        link.slow(setup.paths.lab, setup.paths.estate, rate, latency if setup.netem else None)
        yield
    finally:
        try:
            link.restore(setup.paths.lab)
        except LabError as exc:  # lab down at the end tries again
            print(f"  the link could not be restored yet: {exc}", file=sys.stderr)


def measure(setup: Setup, protocols: list[Protocol], links: list[str],
            args: argparse.Namespace) -> None:
    """Every step for every link and repeat, REST and SFTP in alternating order."""
    source = setup.base / "data" / "srv" / CODE

    def day(n: int) -> data.DataSummary:
        return data.generate(source, seed="bench-rest", size_mb=args.size_mib,
                             files=args.files, day=n, change_rate=0.05)

    summary = day(0)
    args.files_made, args.bytes_made = summary.files, summary.bytes
    print(f"data: {summary.files} files, {summary.bytes / 2**20:,.1f} MiB; "
          f"{setup.restic_banner}; {os.cpu_count()} cores; load average at start "
          + " ".join(f"{x:.2f}" for x in setup.load_start), flush=True)
    started = time.perf_counter()
    for r in range(args.repeats):
        for li, link_name in enumerate(links):
            flip = (r + li) % 2
            with (shaped_link(setup, args.rate, args.latency) if link_name == SHAPED
                  else contextlib.nullcontext()):
                one_round(setup, protocols, link_name, flip, day)
            print(f"  repeat {r + 1}/{args.repeats}, {link_name}: done at "
                  f"{time.perf_counter() - started:.0f} s", flush=True)


def one_round(setup: Setup, protocols: list[Protocol], link_name: str, flip: int,
              day: Any) -> None:
    lab_dir = setup.paths.lab if link_name == SHAPED else None
    source = setup.base / "data" / "srv" / CODE

    def in_order(step: int) -> list[Protocol]:
        return protocols if (flip + step) % 2 == 0 else protocols[::-1]

    def record(p: Protocol, step: str, argv: Sequence[str]) -> None:
        os.sync()
        run, _ = p.run(argv, link_name, step, lab_dir)
        p.runs.setdefault((link_name, step), []).append(run)

    day(0)
    for p in in_order(0):
        p.empty()
        record(p, FIRST, make_backup_argv(p.repo, [str(source)], [f"system={CODE}"],
                                          host=CLIENT))
    day(1)
    for p in in_order(1):
        record(p, CHANGED, make_backup_argv(p.repo, [str(source)], [f"system={CODE}"],
                                            host=CLIENT))
    for p in in_order(2):
        record(p, CHECK, make_check_argv(p.repo))
    for p in in_order(3):
        record(p, READ, make_check_argv(p.repo, "all"))
    for p in in_order(4):
        target = setup.base / "restore" / p.name
        record(p, RESTORE, make_restore_argv(p.repo, "latest", target, verify=False,
                                             host=CLIENT))
        shutil.rmtree(target)


# ------------------------------------------------------------------ report


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(setup: Setup, protocols: list[Protocol], links: list[str],
           args: argparse.Namespace) -> dict[str, Any]:
    """Print the tables; return the figures (for --json)."""
    rest, sftp = protocols
    load_end = os.getloadavg()
    shaped_name = (f"shaped: {args.rate}, {args.latency} each way"
                   + (" (netem)" if setup.netem else " (relay: this kernel has no netem)"))
    doc: dict[str, Any] = {
        "restic": setup.restic_banner, "rest_server": gobuild.REST_SERVER.binary_name(),
        "size_mib": args.size_mib, "files": args.files_made, "bytes": args.bytes_made,
        "repeats": args.repeats,
        "cores": os.cpu_count(), "load_start": list(setup.load_start),
        "load_end": list(load_end), "rate": args.rate, "latency": args.latency,
        "latency_by": "netem" if setup.netem else "relay", "links": {}}
    width = 22
    for link_name in links:
        title = "loopback" if link_name == LOOPBACK else shaped_name
        print(f"\n{title} — {args.bytes_made / 2**20:,.1f} MiB in {args.files_made} files, "
              f"median of {args.repeats} (seconds; CPU seconds c/s: client — restic, and its "
              "ssh for SFTP — / server)")
        head = (f"  {'step':<{width}} {'REST':>8} {'SFTP':>8} {'REST/SFTP':>10}"
                f" {'CPU REST c/s':>14} {'CPU SFTP c/s':>14}")
        if link_name == SHAPED:
            head += f" {'wire MiB REST/SFTP':>20}"
        print(head)
        steps: dict[str, Any] = {}
        for step in STEPS:
            a, b = rest.runs[(link_name, step)], sftp.runs[(link_name, step)]
            ta, tb = median([x.seconds for x in a]), median([x.seconds for x in b])
            row = (f"  {step:<{width}} {ta:8.2f} {tb:8.2f} {ta / tb:10.3f}"
                   f" {cpu(a):>14} {cpu(b):>14}")
            if link_name == SHAPED:
                row += f" {wire(a):>9} / {wire(b):<8}"
            print(row)
            steps[step] = {"ratio_rest_sftp": ta / tb,
                           **{p.name: {"median_s": median([x.seconds for x in
                                                             p.runs[(link_name, step)]]),
                                       "runs": [vars(x) for x in p.runs[(link_name, step)]]}
                              for p in protocols}}
        doc["links"][link_name] = steps
    print("\nevery run (s)")
    for link_name in links:
        for step in STEPS:
            for p in protocols:
                print(f"  {link_name:<9} {step:<{width}} {p.name:<5} "
                      + " ".join(f"{x.seconds:.2f}" for x in p.runs[(link_name, step)]))
    print("\nREST no slower than SFTP?")
    for link_name in links:
        slower = [(s, doc["links"][link_name][s]["ratio_rest_sftp"]) for s in STEPS
                  if doc["links"][link_name][s]["ratio_rest_sftp"] > 1.0]
        print(f"  {link_name}: " + ("yes, in every step" if not slower else
              "no: " + ", ".join(f"{s} ({(r - 1) * 100:.1f} % slower)" for s, r in slower)))
    if setup.relayed:
        print(f"  (shaped: the {args.latency} each way is added by this benchmark's relay, "
              "as the kernel has no netem: request/response round trips pay it as on a real "
              "link, TCP's window and slow start do not)")
    print("\nload average at start " + " ".join(f"{x:.2f}" for x in setup.load_start)
          + ", at end " + " ".join(f"{x:.2f}" for x in load_end)
          + f" ({os.cpu_count()} cores)")
    return doc


def cpu(runs: list[Run]) -> str:
    server = [x.server_cpu for x in runs if x.server_cpu is not None]
    return (f"{median([x.client_cpu for x in runs]):.1f}/"
            + (f"{median(server):.1f}" if server else "n/a"))


def wire(runs: list[Run]) -> str:
    return f"{median([float(x.wire or 0) for x in runs]) / 2**20:,.1f}"


# ------------------------------------------------------------------ main


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=float, default=1024)
    parser.add_argument("--files", type=int, default=None,
                        help="files in the data (default: 2100 per GiB, at least 50)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--link", choices=(LOOPBACK, SHAPED, "both"), default="both")
    parser.add_argument("--rate", default="1gbit", help="the shaped link's rate")
    parser.add_argument("--latency", default="5ms",
                        help="the shaped link's delay, each way (as the lab's netem)")
    parser.add_argument("--restic", default=None,
                        help="restic binary (default: the lab's pinned restic 0.18.1)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--octets", default=os.environ.get("HOPNHAT_BENCH_OCTETS", "175,176"),
                        help="second octets of the lab's primary and secondary addresses")
    args = parser.parse_args(argv)
    try:
        link.check_rate(args.rate)
        link.check_latency(args.latency)
    except LabError as exc:
        parser.error(str(exc))
    if args.files is None:
        args.files = max(50, round(2100 * args.size_mib / 1024))
    octets = args.octets.split(",")
    if len(octets) != 2:
        parser.error("--octets: two numbers, such as 175,176")
    if os.geteuid() != 0:
        raise SystemExit("the lab needs root (mount namespaces, sshd, tc)")
    links = [LOOPBACK, SHAPED] if args.link == "both" else [args.link]
    started = time.perf_counter()
    with stopped_on_signals(), tempfile.TemporaryDirectory(prefix="hopnhat-bench-rest-") as tmp:
        try:
            with bench_lab(Path(tmp), (octets[0], octets[1]), args, links) as (setup, protocols):
                measure(setup, protocols, links, args)
                doc = report(setup, protocols, links, args)
        except KeyboardInterrupt:
            print("\ninterrupted: the lab is stopped and the link restored", file=sys.stderr)
            raise SystemExit(130) from None
    doc["wall_s"] = time.perf_counter() - started
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nthe whole run took {doc['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
