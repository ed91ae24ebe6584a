"""The lab's guests: one real ``sshd`` per powered-on VM, each in its own world.

A guest lives under ``<lab dir>/guests/<name>/``:

- ``ssh_host_ed25519_key[.pub]`` — its host key, made once and kept, so a restarted guest
  presents the same key (as a VM's disk keeps its keys);
- ``sshd_config``, ``guest.json`` (what :mod:`orchestrator.lab.guest_init` reads), ``sshd.log``;
- ``overlay/<dir>/{upper,work}`` — its private changes to /etc, /root, /var, /opt, /usr/local;
- ``srv/`` — its own /srv.

Its sshd runs as ``unshare --mount --uts --propagation private <python> -m
orchestrator.lab.guest_init <guest.json>``, which execs sshd in place, so the recorded PID is
sshd itself. hopnhat reaches guests with strict host-key checking only: :func:`start_guest`
writes each guest's key line into the lab's known_hosts — except a legacy guest's (started
with ``known_hosts=None``), whose key hopnhat must learn and check by itself.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import ipaddress
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from orchestrator.errors import LabError
from orchestrator.lab.guest_init import GUEST_ENV, OVERLAID, GuestSpec, check_public_key
from orchestrator.lab.processes import (
    ProcessRecord,
    ProcessTable,
    is_alive,
    parent_pid,
    start_ticks,
)
from orchestrator.process import run, spawn
from orchestrator.resources import package_parent

SSHD = "/usr/sbin/sshd"
HOST_KEY = "ssh_host_ed25519_key"
START_TIMEOUT = 20.0
#: how long a guest that runs database engines may take to answer: at its first boot they
#: are created and seeded before its sshd starts
ENGINES_START_TIMEOUT = 180.0
#: the slowest first-boot load the start timeout allows for (main records a second)
ROWS_PER_SECOND = 1000.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
#: the folder holding the ``orchestrator`` package (the checkout, or the site-packages of an
#: installed wheel), for ``python -m`` inside a guest
_PROJECT = package_parent()
#: what ``python -m orchestrator.lab.guest_init`` runs with (never the lab's own environment)
INIT_ENV = dict(GUEST_ENV, PYTHONPATH=str(_PROJECT), PYTHONDONTWRITEBYTECODE="1")

# Popen objects of the guests this process started, kept so Python does not warn about (or
# lose track of) live children; the ProcessTable remains the record that counts.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def is_guest_name(name: str) -> bool:
    """True when ``name`` can name a guest (its folder under ``guests/`` and its process
    record): letters, digits, '.', '_', '-', starting with a letter or digit, at most 63."""
    return bool(_NAME.match(name))


def record_name(name: str) -> str:
    """The ProcessTable name of guest ``name``."""
    return f"guest-{name}"


def guest_root(lab_dir: Path, name: str) -> Path:
    """``<lab dir>/guests/<name>``; LabError when ``name`` is not a safe folder name."""
    if not _NAME.match(name):
        raise LabError(f"bad guest name {name!r}")
    return lab_dir.resolve() / "guests" / name


def guest_srv(lab_dir: Path, name: str) -> Path:
    """The host-side folder that guest ``name`` sees as its /srv."""
    return guest_root(lab_dir, name) / "srv"


def guest_view(table: ProcessTable, name: str, path: str) -> Path:
    """``path`` as the running guest ``name`` sees it (through ``/proc/<pid>/root``): reaches
    what lives only in the guest's mounts, such as a tmpfs storage or its /etc overlay.
    Raises LabError when the guest is not running."""
    rec = table.running(record_name(name))
    if rec is None:
        raise LabError(f"guest {name} is not running")
    return Path(f"/proc/{rec.pid}/root") / path.lstrip("/")


# --- host keys and known_hosts --------------------------------------------------------------


def ensure_host_key(root: Path, name: str) -> str:
    """Make the guest's ed25519 host key once; return its public part ``ssh-ed25519 AAAA…``
    (no comment). Raises CommandError if ssh-keygen fails."""
    root.mkdir(parents=True, exist_ok=True)
    key = root / HOST_KEY
    pub = root / f"{HOST_KEY}.pub"
    if not key.exists():
        pub.unlink(missing_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"hopnhat-lab-{name}",
             "-f", str(key)], check=True, timeout=30)
    elif not pub.exists():
        pub.write_text(run(["ssh-keygen", "-y", "-f", str(key)], check=True).stdout)
    fields = pub.read_text().split()
    return f"{fields[0]} {fields[1]}"


def host_key(lab_dir: Path, name: str) -> str:
    """Guest ``name``'s public host key, ``ssh-ed25519 AAAA…`` (no comment), as its folder
    holds it. Raises LabError when it has none (the guest never started)."""
    pub = guest_root(lab_dir, name) / f"{HOST_KEY}.pub"
    try:
        fields = pub.read_text().split()
    except OSError as exc:
        raise LabError(f"guest {name} has no host key ({pub}: {exc.strerror})") from None
    if len(fields) < 2:
        raise LabError(f"guest {name}: {pub} is not a public key")
    return f"{fields[0]} {fields[1]}"


def fingerprint(public_key: str) -> str:
    """``SHA256:<base64, no padding>`` of an OpenSSH public key line (``ssh-ed25519 AAAA…``),
    as ``ssh-keygen -lf`` prints it. Raises LabError on a line that is not one."""
    try:
        blob = base64.b64decode(public_key.split()[1], validate=True)
    except (IndexError, binascii.Error) as exc:
        raise LabError("not an OpenSSH public key line") from exc
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def host_key_fingerprint(lab_dir: Path, name: str) -> str:
    """The SHA-256 fingerprint (``SHA256:…``) of guest ``name``'s host key: what the
    hypervisor publishes in vCenter for a legacy VM, and what hopnhat must compare before it
    trusts that guest. Raises LabError when the guest has no host key."""
    return fingerprint(host_key(lab_dir, name))


def known_hosts_address(ip: str, port: int) -> str:
    """The host field OpenSSH and paramiko look up: ``ip``, or ``[ip]:port`` off port 22."""
    return ip if port == 22 else f"[{ip}]:{port}"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (guests start in parallel threads/processes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def guest_lock(lab_dir: Path, name: str) -> Iterator[None]:
    """Serialize changes to guest ``name`` (start, stop, destroy, accounts) across threads
    and processes."""
    with _locked(guest_root(lab_dir, name).parent / f".{name}.lock"):
        yield


def set_known_host(known_hosts: Path, address: str, key: str | None) -> None:
    """Replace every line for ``address`` in ``known_hosts`` by ``address key`` (or just drop
    them when ``key`` is None). Written atomically, mode 0600 (hopnhat's state is its own)."""
    with _locked(known_hosts.with_name(known_hosts.name + ".lock")):
        lines = known_hosts.read_text().splitlines() if known_hosts.exists() else []
        kept = [line for line in lines if address not in line.split(" ", 1)[0].split(",")]
        if key is not None:
            kept.append(f"{address} {key}")
        tmp = known_hosts.with_name(f".{known_hosts.name}.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.chmod(tmp, 0o600)
        tmp.replace(known_hosts)


# --- liveness -------------------------------------------------------------------------------


def _listening_inodes(ip: str, port: int) -> set[str]:
    """Socket inodes listening on ip:port (from /proc/net/tcp, whose addresses are the raw
    32-bit value in host byte order, in hex)."""
    want = f"{struct.unpack('=I', socket.inet_aton(ip))[0]:08X}:{port:04X}"
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == want and fields[3] == "0A":  # 0A: LISTEN
            inodes.add(fields[9])
    return inodes


def _holds_socket(pid: int, inodes: set[str]) -> bool:
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return True
    except OSError:
        return False
    return False


def _accepts(ip: str, port: int) -> bool:
    """True when something accepts TCP connections on ip:port."""
    try:
        with socket.create_connection((ip, port), timeout=1.0):
            return True
    except OSError:
        return False


def _greets(ip: str, port: int) -> bool:
    """True when ip:port accepts a connection and greets with an SSH banner (sshd then logs
    one 'Connection closed' line for this probe)."""
    try:
        with socket.create_connection((ip, port), timeout=2.0) as sock:
            return sock.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


def _log_tail(log: Path, lines: int = 8) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_ready(proc: subprocess.Popen[bytes], ip: str, port: int, log: Path,
                name: str, timeout: float = START_TIMEOUT) -> None:
    """Wait until *this* process (now sshd) listens on ip:port and accepts a connection.

    Checking that the listening socket is held by our PID, not just that something answers,
    keeps a stray listener from passing for our guest. Raises LabError (after stopping the
    process) when it exits or the deadline passes.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise LabError(f"guest {name}: sshd exited ({proc.returncode}): {_log_tail(log)}")
        if _holds_socket(proc.pid, _listening_inodes(ip, port)) and _greets(ip, port):
            return
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise LabError(f"guest {name}: sshd not listening on {ip}:{port} after "
                           f"{timeout:.0f} s: {_log_tail(log)}")
        time.sleep(0.05)  # poll interval of the deadline loop above


# --- configuration --------------------------------------------------------------------------


def sshd_config(spec: GuestSpec) -> str:
    """The guest's sshd_config text (pure: from the spec alone)."""
    lines = [
        f"# hopnhat lab guest {spec.name}: rewritten at every start",
        f"ListenAddress {spec.ip}:{spec.port}",
        f"HostKey {Path(spec.root) / HOST_KEY}",
        "PidFile none",
        "LogLevel INFO",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes yes",
        "AuthorizedKeysFile .ssh/authorized_keys",
        "PrintMotd no",
        "UseDNS no",
        # Ansible forks and parallel restic runs open many connections at once
        "MaxStartups 100:30:300",
        "MaxSessions 64",
        "Subsystem sftp internal-sftp",
    ]
    if spec.storage is not None:
        # one chrooted, SFTP-only account per system; the home dir is the chroot
        # (<storage>/<code>), so new accounts need no sshd reload
        lines += [
            "",
            "Match User restic-*",
            "    AuthorizedKeysFile /etc/ssh/authorized/%u",
            "    ChrootDirectory %h",
            "    ForceCommand internal-sftp -d /repo",
            "    DisableForwarding yes",
            "    PermitTTY no",
            "    PermitTunnel no",
            "    PermitUserRC no",
        ]
    return "\n".join(lines) + "\n"


def _validate(lab_dir: Path, name: str, hostname: str, ip: str, port: int,
              authorized_keys: list[str]) -> Path:
    root = guest_root(lab_dir, name)
    if not _HOSTNAME.match(hostname):
        raise LabError(f"guest {name}: bad hostname {hostname!r}")
    try:
        address = ipaddress.IPv4Address(ip)
    except ValueError as exc:
        raise LabError(f"guest {name}: bad IPv4 address {ip!r}") from exc
    if not address.is_loopback:
        raise LabError(f"guest {name}: the lab only uses loopback addresses, not {ip}")
    if not 0 < port < 65536:
        raise LabError(f"guest {name}: bad port {port}")
    if not authorized_keys:
        raise LabError(f"guest {name}: no authorized key")
    for key in authorized_keys:
        check_public_key(key)
    # overlayfs refuses an upper dir inside its own lower dir, and mount options split on ','
    for target in (*OVERLAID, "/srv"):
        if root.is_relative_to(target):
            raise LabError(f"the lab dir must not lie under {target} (guests mount over it)")
    if any(c in str(root) for c in ",:\n "):
        raise LabError(f"lab dir {root}: no ',', ':' or spaces allowed (mount options)")
    return root


def _mount_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def start_guest(lab_dir: Path, table: ProcessTable, name: str, hostname: str, ip: str,
                authorized_keys: list[str], known_hosts: Path | None, port: int = 22, *,
                storage: str | None = None, capacity_mb: int | None = None,
                accounts: dict[str, str] | None = None,
                on_ready: Callable[[], None] | None = None,
                legacy: bool = False,
                engines: list[dict[str, Any]] | None = None) -> ProcessRecord:
    """Start guest ``name`` (an sshd as root on ``ip:port`` in its own namespaces), or return
    the record of the live one already on that address.

    ``authorized_keys`` go to the guest's /root/.ssh/authorized_keys; the guest's host key line
    is written into ``known_hosts`` (replacing any older line for that address), unless
    ``known_hosts`` is None: a legacy guest, whose key hopnhat must not find trusted (it
    is never written there, nor removed by :func:`destroy_guest`). The process is
    recorded in ``table`` as ``guest-<name>`` (kind ``guest``, address ``ip:port``).
    The keyword-only extras make a repository host (see :mod:`orchestrator.lab.repository`):
    ``storage`` (a path under /srv), ``capacity_mb`` (a tmpfs of that size as storage) and
    ``accounts`` (system code → public key, merged into those the guest already has). A live
    guest is reused as it runs when its address and storage are unchanged (with the keys it
    booted with; the repository module applies new accounts), else restarted.
    ``legacy`` (a legacy VM's guest): its disk says who it is, as a VM's does — root's
    authorized_keys keeps what it holds (keys installed since survive a restart) and gets
    those of ``authorized_keys`` it lacks, and from its second start on it takes the hostname
    of its own /etc/hostname; otherwise root's authorized_keys is ``authorized_keys`` and the
    hostname ``hostname``, at every start.
    ``engines``: the database engines the guest runs, each seeded once
    (:class:`orchestrator.lab.guest_engines.EngineSpec` as dicts): up before its sshd answers.
    ``on_ready`` is called once a newly started sshd answers, before it is recorded (so
    whoever sees the guest recorded finds done what it does); if it raises, the guest is
    stopped and the exception propagates.
    Raises LabError on bad input, a taken address, or an sshd that does not come up.
    """
    root = _validate(lab_dir, name, hostname, ip, port, authorized_keys)
    known_hosts = None if known_hosts is None else known_hosts.resolve()
    address = f"{ip}:{port}"
    pinned = known_hosts_address(ip, port)

    def pin(key: str | None) -> None:
        if known_hosts is not None:
            set_known_host(known_hosts, pinned, key)

    with guest_lock(lab_dir, name):
        old = _load_spec(root)
        live = table.running(record_name(name))
        if live is not None:
            same_storage = old is not None and (old.storage, old.capacity_mb, old.engines) == (
                storage, capacity_mb, list(engines or []))
            if live.address == address and same_storage:
                pin(ensure_host_key(root, name))
                return live
            _stop(table, name)
        table.forget(record_name(name))
        if _accepts(ip, port):
            raise LabError(f"guest {name}: {address} is already taken by another process")
        merged = dict(old.accounts) if old is not None else {}
        merged.update(accounts or {})
        spec = GuestSpec(
            name=name, hostname=hostname, ip=ip, port=port, root=str(root),
            config=str(root / "sshd_config"), sshd=SSHD,
            known_hosts="" if known_hosts is None else str(known_hosts),
            authorized_keys=[check_public_key(k) for k in authorized_keys],
            storage=storage, capacity_mb=capacity_mb, accounts=merged,
            legacy=legacy, engines=list(engines or []),
        )
        host_key = ensure_host_key(root, name)
        (root / "srv").mkdir(mode=0o755, exist_ok=True)
        (root / "sshd_config").write_text(sshd_config(spec))
        spec.save()
        # pin the key before sshd listens: whoever sees the port open (a test, a hopnhat
        # command waiting for the VM) must find the key already in known_hosts
        pin(host_key)
        pid, namespace = _launch(spec, root, pin, on_ready)
        details = {"root": str(root), "hostname": hostname, "mntns": namespace}
        if storage is not None:
            details["role"] = "repository"
            details["storage"] = storage
        return table.record(record_name(name), "guest", pid, address, **details)


def _launch(spec: GuestSpec, root: Path, pin: Callable[[str | None], None],
            on_ready: Callable[[], None] | None) -> tuple[int, str]:
    """Start the sshd of ``spec`` in namespaces of its own, wait until it answers, then call
    ``on_ready``. Out: its PID and its mount namespace. If any of it fails, the sshd is
    stopped and its host key unpinned (``pin(None)``) before the error propagates."""
    log = root / "sshd.log"
    proc = spawn(["unshare", "--mount", "--uts", "--propagation", "private",
                  sys.executable, "-m", "orchestrator.lab.guest_init", str(spec.path)],
                 env=INIT_ENV, inherit_env=False, log=log, cwd="/")
    _CHILDREN[proc.pid] = proc
    try:
        _wait_ready(proc, spec.ip, spec.port, log, spec.name, _start_timeout(spec))
    except LabError:
        _CHILDREN.pop(proc.pid, None)
        pin(None)
        raise
    namespace = _mount_namespace(proc.pid)
    if namespace is None or namespace == _mount_namespace(os.getpid()):
        _kill_process(proc.pid)
        pin(None)
        raise LabError(f"guest {spec.name}: sshd is not in a namespace of its own")
    if on_ready is not None:
        try:
            on_ready()
        except BaseException:
            _kill_process(proc.pid)
            pin(None)
            raise
    return proc.pid, namespace


def _start_timeout(spec: GuestSpec) -> float:
    """How long the guest may take to answer: longer with engines, and with the rows their
    first boot loads (:data:`ROWS_PER_SECOND` at worst)."""
    if not spec.engines:
        return START_TIMEOUT
    rows = sum(int(engine.get("rows", 0)) for engine in spec.engines)
    return ENGINES_START_TIMEOUT + rows / ROWS_PER_SECOND


def _load_spec(root: Path) -> GuestSpec | None:
    path = root / "guest.json"
    if not path.exists():
        return None
    try:
        return GuestSpec.load(path)
    except LabError:
        return None  # a damaged spec is rewritten at this start


# --- stopping -------------------------------------------------------------------------------


def _kill_process(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    proc = _CHILDREN.pop(pid, None)
    if proc is not None:
        proc.wait()


def _members(namespace: str) -> dict[int, int]:
    """PID → start ticks of every live process in mount namespace ``namespace``."""
    found: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _mount_namespace(int(entry)) == namespace:
            ticks = start_ticks(int(entry))
            if ticks is not None:
                found[int(entry)] = ticks
    return found


def _deepest_first(members: dict[int, int]) -> list[dict[int, int]]:
    """``members`` grouped by depth in their process tree, leaves first."""
    depth: dict[int, int] = {}
    for pid in members:
        d, parent = 0, parent_pid(pid)
        while parent in members and d < len(members):
            d, parent = d + 1, parent_pid(parent)
        depth[pid] = d
    return [{p: members[p] for p in members if depth[p] == level}
            for level in sorted(set(depth.values()), reverse=True)]


def _terminate(pids: dict[int, int], timeout: float) -> None:
    """SIGTERM each (PID, start ticks) still running, SIGKILL after ``timeout``; return when
    all are gone (or zombies)."""
    deadline = time.monotonic() + timeout
    sig = signal.SIGTERM
    while alive := [p for p, t in pids.items() if start_ticks(p) == t]:
        for pid in alive:
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        if sig == signal.SIGTERM and time.monotonic() > deadline:
            sig = signal.SIGKILL
        time.sleep(0.02)  # poll interval while the signalled processes exit


def _hold_namespace(rec: ProcessRecord) -> int | None:
    """An open handle on the recorded process's mount namespace, or None. While it is open
    the kernel cannot free the namespace and hand its id to another guest, so every process
    found with that id is this guest's."""
    namespace = rec.details.get("mntns", "")
    try:
        handle = os.open(f"/proc/{rec.pid}/ns/mnt", os.O_RDONLY)
    except OSError:
        return None
    # same PID and start time after the open: it was our sshd's namespace we opened
    if is_alive(rec) and f"mnt:[{os.fstat(handle).st_ino}]" == namespace:
        return handle
    os.close(handle)
    return None


def _under(pid: int, ancestor: int, members: dict[int, int]) -> bool:
    """True when ``ancestor`` is ``pid``'s parent, or its parent's, through ``members``."""
    parent = parent_pid(pid)
    for _ in range(len(members) + 1):
        if parent is None or parent == ancestor:
            return parent == ancestor
        if parent not in members:
            return False
        parent = parent_pid(parent)
    return False


def _stop_services(services: dict[int, int], timeout: float) -> None:
    """Stop the guest's daemons (processes not under its sshd: engines, what ``setsid`` or
    ``nohup`` left running, rest-servers entered with nsenter) as a VM's shutdown does:
    SIGTERM to all of them at once (a postmaster then makes its shutdown checkpoint once
    its backends, signalled too, are gone: signalling only the top of each tree would leave
    it waiting for a client that ignores SIGTERM, such as runuser), SIGKILL to what is left
    after ``timeout``."""
    _terminate(services, timeout)


def _stop(table: ProcessTable, name: str, timeout: float = 10.0) -> bool:
    """Stop the guest's sshd and every process in its namespace (SSH sessions, what Ansible
    started there, its database engines): a powered-off VM runs nothing. Each is signalled
    by PID, checked against its start time: first the SSH sessions (leaves first), then
    the daemons (all at once, so an engine shuts down cleanly), then sshd.
    Returns True if a live sshd was stopped."""
    rec = table.get(record_name(name))
    if rec is None:
        return False
    handle = _hold_namespace(rec) if is_alive(rec) else None
    namespace = rec.details.get("mntns", "")
    try:
        if handle is not None:
            # leaves first while their parents live to reap them: orphans go to PID 1,
            # which on some machines (this lab's sandbox) never reaps them
            others = {p: t for p, t in _members(namespace).items() if p != rec.pid}
            sessions = {p: t for p, t in others.items() if _under(p, rec.pid, others)}
            for level in _deepest_first(sessions):
                _terminate(level, timeout)
            _stop_services({p: t for p, t in others.items() if p not in sessions}, timeout)
        stopped = table.stop(record_name(name), timeout=timeout)
        proc = _CHILDREN.pop(rec.pid, None)
        if proc is not None:
            proc.poll()
        if handle is not None:
            # whatever sshd forked meanwhile
            while left := _members(namespace):
                for level in _deepest_first(left):
                    _terminate(level, timeout)
    finally:
        if handle is not None:
            os.close(handle)
    return stopped


def stop_guest(table: ProcessTable, name: str) -> bool:
    """Stop guest ``name`` by its recorded PID (and whatever still runs inside it), and forget
    its record. Its disk (host key, overlays, /srv) stays for the next start. Returns True if
    a live guest was stopped."""
    return _stop(table, name)


def destroy_guest(lab_dir: Path, table: ProcessTable, name: str) -> None:
    """Stop guest ``name``, remove its root (disk, host key) and the known_hosts line it
    wrote. A legacy guest (started without known_hosts) wrote none, so known_hosts is left
    as it is: a line for its address is hopnhat's own (``hosts trust`` put it there after
    comparing fingerprints), a decision the lab does not undo — as deleting a VM in vCenter
    edits no one's known_hosts. A machine later at that address with another key is then
    refused by strict checking, the safe outcome."""
    root = guest_root(lab_dir, name)
    with guest_lock(lab_dir, name):
        spec = _load_spec(root)
        _stop(table, name)
        if spec is not None and spec.known_hosts:
            set_known_host(Path(spec.known_hosts), known_hosts_address(spec.ip, spec.port), None)
        if root.exists():
            shutil.rmtree(root)
