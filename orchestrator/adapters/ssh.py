"""SSH: keys, connections with pinned host keys, remote commands.

hopnhat checks host keys strictly against its own known_hosts file: an unknown or changed
key refuses the connection. (Never AutoAddPolicy, never StrictHostKeyChecking=no.)

Two clients: paramiko (:func:`connect`, :func:`execute`: several commands on one
connection, with stdin; :class:`Remote`: one host's connection, shared by commands running
at once and cut by one call) and OpenSSH's ``ssh`` (:func:`run_streaming`: one long command
whose output streams; ~0.15 s quicker to start, as paramiko's import is not paid;
:class:`StreamedJobs`: such commands on several hosts at once, ended by one call). Both
trust only hopnhat's key and known_hosts.
"""

from __future__ import annotations

import collections
import functools
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator import process
from orchestrator.errors import CommandError, SSHError
from orchestrator.process import run
from orchestrator.quoting import ssh_option

if TYPE_CHECKING:
    import subprocess

    import paramiko  # imported where used: ~0.15 s that run_streaming does not pay


def ensure_keypair(path: Path, comment: str) -> Path:
    """Create an ed25519 key pair at ``path`` (0600) and ``path.pub`` unless present.
    Returns the path of the public key."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True, timeout=30)
    path.chmod(0o600)
    return path.with_name(path.name + ".pub")


@dataclass(frozen=True)
class Target:
    """Where and how to reach one host."""

    host: str
    address: str
    port: int
    user: str
    key_file: Path
    known_hosts: Path


@dataclass(frozen=True)
class RemoteResult:
    host: str
    command: str
    returncode: int
    stdout: str
    stderr: str


#: a connection that stays silent this long (seconds between probes, probes) is given up:
#: the same bound as OpenSSH's ServerAliveInterval x ServerAliveCountMax that hopnhat's ssh
#: and restic's SFTP connections use
ALIVE_INTERVAL, ALIVE_COUNT = 15, 4


def watch_for_a_dead_link(sock: socket.socket, interval: int = ALIVE_INTERVAL,
                          count: int = ALIVE_COUNT) -> None:
    """Make the kernel give ``sock`` up once its peer stops answering: TCP keep-alive probes
    after ``interval`` s of silence, every ``interval`` s, ``count`` of them (an idle
    connection, e.g. waiting for a long command's output), and at most ``interval`` x
    ``count`` s for sent data to be acknowledged (a busy one). paramiko's own keep-alive
    expects no answer, so without this a cut link hangs a command until TCP's retries end
    (about 15 minutes)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, interval)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, interval * count * 1000)


def connect(target: Target, timeout: float = 15.0, *,
            alive: tuple[int, int] = (ALIVE_INTERVAL, ALIVE_COUNT)) -> paramiko.SSHClient:
    """An SSH connection that trusts only the keys in ``target.known_hosts`` and is given up
    when the host has not answered for ``alive`` (interval, count: see
    :func:`watch_for_a_dead_link`)."""
    import paramiko

    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.load_host_keys(str(target.known_hosts))
    except OSError as exc:
        raise SSHError(f"{target.known_hosts}: cannot read known_hosts ({exc.strerror})") from None
    try:
        client.connect(
            target.address, port=target.port, username=target.user,
            key_filename=str(target.key_file), timeout=timeout, banner_timeout=timeout,
            auth_timeout=timeout, allow_agent=False, look_for_keys=False,
        )
    except paramiko.SSHException as exc:
        client.close()
        raise SSHError(f"{target.host} ({target.address}:{target.port}): {exc}") from None
    except OSError as exc:
        client.close()
        raise SSHError(f"{target.host} ({target.address}:{target.port}): cannot connect "
                       f"({exc.strerror or exc})") from None
    transport = client.get_transport()
    if transport is not None and isinstance(transport.sock, socket.socket):
        watch_for_a_dead_link(transport.sock, *alive)
    return client


STREAMED_TAIL = 200  # stdout lines a streamed command's result keeps


def execute(
    client: paramiko.SSHClient, target: Target, command: str, *, timeout: float = 600.0,
    on_line: Callable[[str], None] | None = None, stdin: str | None = None,
) -> RemoteResult:
    """Run ``command`` on the host; stream stdout lines to ``on_line`` as they come (then
    the result's ``stdout`` keeps only the last :data:`STREAMED_TAIL` lines: a listing of
    millions of files is not held twice)."""
    import paramiko

    try:
        chan_in, chan_out, chan_err = client.exec_command(command, timeout=timeout)
        if stdin is not None:
            chan_in.write(stdin)
            chan_in.channel.shutdown_write()
        out: collections.deque[str] | list[str] = \
            collections.deque(maxlen=STREAMED_TAIL) if on_line is not None else []
        for line in iter(chan_out.readline, ""):
            out.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))
        err = chan_err.read().decode(errors="replace")
        code = chan_out.channel.recv_exit_status()
    except (TimeoutError, paramiko.SSHException, OSError) as exc:
        if not _alive(client):
            raise SSHError(f"{target.host} ({target.address}): the connection was lost "
                           f"(no answer from the host: {exc or 'timed out'})") from None
        raise SSHError(f"{target.host}: {command.split()[0]}: {exc or 'timed out'}") from None
    if code == -1 and not _alive(client):  # paramiko's "no exit status": the link died
        raise SSHError(f"{target.host} ({target.address}): the connection was lost while "
                       f"{command.split()[0]} ran (no answer from the host)")
    return RemoteResult(target.host, command, code, "".join(out), err)


def _alive(client: paramiko.SSHClient) -> bool:
    transport = client.get_transport()
    return transport is not None and transport.is_active()


@dataclass
class Remote:
    """SSH connections to one host (host key checked against hopnhat's known_hosts); each
    command gets its own channel, so a restore and a listing can run at once.
    :meth:`close` (from any thread) ends whatever runs on it; a command asked for after it
    raises SSHError."""

    target: Target
    alive: tuple[int, int] = (ALIVE_INTERVAL, ALIVE_COUNT)
    _clients: list[paramiko.SSHClient] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False

    def _client(self) -> paramiko.SSHClient:
        with self._lock:
            if self._closed:
                raise SSHError(f"{self.target.host}: the drill was stopped")
            if self._clients:
                return self._clients[0]
        client = connect(self.target, alive=self.alive)
        with self._lock:
            if self._closed:
                client.close()
                raise SSHError(f"{self.target.host}: the drill was stopped")
            self._clients.append(client)
        return client

    def run(self, command: str, *, timeout: float = 3600.0, stdin: str | None = None,
            on_line: Callable[[str], None] | None = None) -> RemoteResult:
        """``command`` on the host; stdout lines to ``on_line`` as they come. Raises
        SSHError when the connection fails or :meth:`close` was called."""
        return execute(self._client(), self.target, command, timeout=timeout,
                       stdin=stdin, on_line=on_line)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()


#: the key exchanges paramiko prefers, in its order: ML-KEM hybrid (post-quantum; OpenSSH
#: 9.9+), else curve25519. OpenSSH 9.2's own first choice, sntrup761x25519, costs ~0.1 s a
#: connection on a small host — as much again as the rest of the handshake.
PREFERRED_KEX = ("mlkem768x25519-sha256", "curve25519-sha256", "curve25519-sha256@libssh.org")


def preferred_kex(supported: Sequence[str]) -> tuple[str, ...]:
    """Of :data:`PREFERRED_KEX`, those this ssh offers (``ssh -Q kex``), in that order."""
    return tuple(name for name in PREFERRED_KEX if name in supported)


@functools.cache
def local_kex() -> tuple[str, ...]:
    """The key exchanges the local ``ssh`` offers (asked once per process); () when ssh
    cannot say — then its own order is used."""
    try:
        done = run(["ssh", "-Q", "kex"], timeout=10, inherit_env=False)
    except CommandError:
        return ()
    return tuple(done.stdout.split()) if done.ok else ()


def openssh_argv(target: Target, command: str, *, connect_timeout: float = 15.0,
                 alive_interval: int = 15, alive_count: int = 4,
                 kex_first: Sequence[str] = ()) -> tuple[str, ...]:
    """OpenSSH's ``ssh`` running ``command`` on ``target``: no ssh_config, no agent, no
    prompts; hopnhat's key only; the host key checked strictly against hopnhat's known_hosts
    and never added to it; a connection silent for ``alive_interval`` × ``alive_count``
    seconds is dropped. ``kex_first``: key exchanges tried before ssh's own list (which
    follows them: a server without them still connects)."""
    options: dict[str, str | Path] = {
        "BatchMode": "yes", "StrictHostKeyChecking": "yes", "UpdateHostKeys": "no",
        "UserKnownHostsFile": target.known_hosts,
        "GlobalKnownHostsFile": "/dev/null", "CheckHostIP": "no",
        "IdentitiesOnly": "yes", "IdentityAgent": "none",
        "IdentityFile": target.key_file,
        "ControlMaster": "no", "ControlPath": "none",
        "ConnectTimeout": str(max(1, round(connect_timeout))),
        "ServerAliveInterval": str(alive_interval), "ServerAliveCountMax": str(alive_count),
        "LogLevel": "ERROR",
    }
    if kex_first:
        options["KexAlgorithms"] = "^" + ",".join(kex_first)
    argv = ["ssh", "-F", "/dev/null", "-T"]
    for key, value in options.items():
        # paths quoted for ssh (blanks, % tokens); the rest are hopnhat's own words
        argv += ["-o", ssh_option(key, value) if isinstance(value, Path) else f"{key}={value}"]
    return (*argv, "-p", str(target.port), "-l", target.user, "--", target.address, command)


_CONNECT = re.compile(r"^ssh: connect to host \S+ port \d+: (?P<why>.+)$")


def ssh_failure(stderr: str) -> str:
    """What OpenSSH's own failure (exit 255) says, in one line: ``cannot connect (…)`` when
    the TCP connection failed, else ssh's last line (e.g. ``Host key verification
    failed.``, ``Permission denied (publickey).``)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return "ssh failed (exit 255) and said nothing"
    found = _CONNECT.match(lines[-1])
    return f"cannot connect ({found['why']})" if found else lines[-1]


def run_streaming(
    target: Target, command: str, *, on_line: Callable[[str], None] | None = None,
    silence_timeout: float = 600.0, connect_timeout: float = 15.0,
    on_start: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> RemoteResult:
    """Run ``command`` on the host with OpenSSH's ``ssh`` (:func:`openssh_argv`); stdout
    lines go to ``on_line`` as they come. Raises SSHError when ssh itself fails (exit 255:
    host unreachable, host key unknown or changed, key refused, connection lost) or the
    command prints nothing for ``silence_timeout`` seconds; the message names the host."""
    where = f"{target.host} ({target.address}:{target.port})"
    try:
        argv = openssh_argv(target, command, connect_timeout=connect_timeout,
                            kex_first=preferred_kex(local_kex()))
        done = process.stream(argv,
                              on_line=on_line, silence_timeout=silence_timeout,
                              on_start=on_start, inherit_env=False)
    except CommandError as exc:
        raise SSHError(f"{where}: {exc}") from None
    if done.returncode == 255:
        raise SSHError(f"{where}: {ssh_failure(done.stderr)}")
    return RemoteResult(target.host, command, done.returncode, done.stdout, done.stderr)


class StreamedJobs:
    """Long commands (a backup job) run with :func:`run_streaming` on several hosts at once,
    one thread each, each silent at most ``silence_timeout`` seconds. :meth:`close_all` (an
    interrupt) kills every ``ssh`` still running, and any started after it at once: the
    host's sshd then ends the command's session."""

    def __init__(self, silence_timeout: float = 600.0) -> None:
        self.silence_timeout = silence_timeout
        self._running = process.Running()

    def run(self, target: Target, command: str, *,
            on_line: Callable[[str], None] | None = None) -> RemoteResult:
        """``command`` on ``target``, its stdout lines to ``on_line`` as they come; raises
        SSHError as :func:`run_streaming` does."""
        try:
            return run_streaming(target, command, on_line=on_line,
                                 silence_timeout=self.silence_timeout,
                                 on_start=self._running.started)
        finally:
            self._running.forget_ended()

    def close_all(self) -> None:
        self._running.kill_all()


def wait_for_port(address: str, port: int, timeout: float) -> bool:
    """True once ``address:port`` accepts TCP, False when ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=1.0):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)


# --- taking over hosts hopnhat did not build -------------------------------------------------


def key_fingerprint(blob: bytes) -> str:
    """``SHA256:<base64, no padding>`` of a public key's wire form, as ``ssh-keygen -lf``
    prints it."""
    import base64
    import hashlib

    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@dataclass(frozen=True)
class HostKey:
    """A host's public key as its server offered it."""

    kind: str  # ssh-ed25519, ecdsa-sha2-nistp256, rsa-sha2-512 …
    blob: bytes

    @property
    def fingerprint(self) -> str:
        return key_fingerprint(self.blob)

    def line(self) -> str:
        """The key as known_hosts writes it after the address (``ssh-ed25519 AAAA…``)."""
        import base64

        return f"{self.kind} {base64.b64encode(self.blob).decode()}"


def known_hosts_name(address: str, port: int) -> str:
    """How known_hosts names ``address:port`` (``[a]:p`` unless the port is 22)."""
    return address if port == 22 else f"[{address}]:{port}"


def scan_host_key(address: str, port: int, timeout: float = 15.0) -> HostKey:
    """The key ``address:port``'s SSH server offers (no authentication, nothing trusted):
    what an operator compares before trusting it. Raises SSHError naming the address when
    it does not answer or is not an SSH server."""
    import paramiko

    where = f"{address}:{port}"
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except OSError as exc:
        raise SSHError(f"{where}: cannot connect ({exc.strerror or exc})") from None
    transport = paramiko.Transport(sock)
    transport.banner_timeout = timeout
    try:
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
        return HostKey(key.get_name(), key.asbytes())
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise SSHError(f"{where}: no SSH host key offered ({exc or 'timed out'})") from None
    finally:
        transport.close()


def known_keys(known_hosts: Path, address: str, port: int) -> list[HostKey]:
    """The keys ``known_hosts`` holds for ``address:port`` (plain or hashed lines)."""
    import paramiko

    if not known_hosts.exists():
        return []
    try:
        keys = paramiko.HostKeys(str(known_hosts))
    except (OSError, paramiko.SSHException) as exc:
        raise SSHError(f"{known_hosts}: cannot read known_hosts ({exc})") from None
    found: dict[str, Any] = dict(keys.lookup(known_hosts_name(address, port)) or {})
    return [HostKey(kind, key.asbytes()) for kind, key in found.items()]


def record_host_key(known_hosts: Path, address: str, port: int, key: HostKey) -> None:
    """Write ``key`` as the one key of ``address:port`` in ``known_hosts`` (lines of other
    hosts kept; written whole to a temporary file, then renamed; 0600, like everything in
    the state folder)."""
    import os

    name = known_hosts_name(address, port)
    lines = known_hosts.read_text().splitlines() if known_hosts.exists() else []
    kept = [line for line in lines if not line.split(" ", 1)[0].split(",").count(name)]
    kept.append(f"{name} {key.line()}")
    known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = known_hosts.with_name(f".{known_hosts.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(kept) + "\n")
    tmp.chmod(0o600)
    tmp.replace(known_hosts)


def forget_host_key(known_hosts: Path, address: str, port: int) -> int:
    """Remove every line of ``address:port`` from ``known_hosts``; how many were removed."""
    import os

    if not known_hosts.exists():
        return 0
    name = known_hosts_name(address, port)
    lines = known_hosts.read_text().splitlines()
    kept = [line for line in lines if not line.split(" ", 1)[0].split(",").count(name)]
    if len(kept) != len(lines):
        tmp = known_hosts.with_name(f".{known_hosts.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(f"{line}\n" for line in kept))
        tmp.chmod(0o644)
        tmp.replace(known_hosts)
    return len(lines) - len(kept)


@dataclass(frozen=True)
class Login:
    """The operator's own way into a host hopnhat did not build: their key file, or a
    password (asked at the terminal, kept in memory only, never written or logged)."""

    user: str
    key_file: Path | None = None
    password: str | None = field(default=None, repr=False)

    def describe(self) -> str:
        return f"{self.user} with the key {self.key_file}" if self.key_file is not None \
            else f"{self.user} with a password"


def _pinned_client(address: str, port: int, key: HostKey) -> paramiko.SSHClient:
    import paramiko

    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.get_host_keys().add(known_hosts_name(address, port), key.kind,
                               paramiko.PKey.from_type_string(key.kind, key.blob))
    return client


def accepts_key(address: str, port: int, host_key: HostKey, user: str, key_file: Path,
                timeout: float = 15.0) -> bool:
    """Whether the host (its key pinned to ``host_key``) lets ``user`` in with
    ``key_file``. Raises SSHError when it cannot be reached or its key differs."""
    import paramiko

    client = _pinned_client(address, port, host_key)
    try:
        client.connect(address, port=port, username=user, key_filename=str(key_file),
                       timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                       allow_agent=False, look_for_keys=False)
        return True
    except paramiko.AuthenticationException:
        return False
    except (paramiko.SSHException, OSError) as exc:
        raise SSHError(f"{address}:{port}: {exc or 'cannot connect'}") from None
    finally:
        client.close()


def install_authorized_key(address: str, port: int, host_key: HostKey, login: Login,
                           public_key: str, timeout: float = 15.0) -> bool:
    """Add ``public_key`` (one OpenSSH line) to ``login.user``'s ``~/.ssh/authorized_keys``
    on the host, over SFTP (no shell: nothing of the key or the path is interpreted), the
    host's key pinned to ``host_key``. Out: True when added, False when it was there.
    Raises SSHError naming the host when the login is refused or the file cannot be
    written."""
    import paramiko

    where = f"{address}:{port}"
    client = _pinned_client(address, port, host_key)
    try:
        client.connect(address, port=port, username=login.user,
                       key_filename=str(login.key_file) if login.key_file else None,
                       password=login.password, timeout=timeout, banner_timeout=timeout,
                       auth_timeout=timeout, allow_agent=False, look_for_keys=False)
    except paramiko.AuthenticationException:
        client.close()
        raise SSHError(f"{where}: the host refused {login.describe()}") from None
    except (paramiko.SSHException, OSError) as exc:
        client.close()
        raise SSHError(f"{where}: {exc or 'cannot connect'}") from None
    try:
        sftp = client.open_sftp()
        home = sftp.normalize(".")
        folder, file = f"{home.rstrip('/')}/.ssh", f"{home.rstrip('/')}/.ssh/authorized_keys"
        try:
            sftp.stat(folder)
        except OSError:
            sftp.mkdir(folder, mode=0o700)
        try:
            with sftp.open(file, "r") as handle:
                current = handle.read().decode(errors="replace")
        except OSError:
            current = ""
        wanted = " ".join(public_key.split()[:2])
        if any(" ".join(line.split()[:2]) == wanted for line in current.splitlines()):
            return False
        with sftp.open(file, "a") as handle:
            handle.write(("" if not current or current.endswith("\n") else "\n")
                         + public_key.strip() + "\n")
        sftp.chmod(file, 0o600)
        return True
    except (paramiko.SSHException, OSError) as exc:
        raise SSHError(f"{where}: cannot add hopnhat's key to {login.user}'s "
                       f"authorized_keys ({exc})") from None
    finally:
        client.close()
