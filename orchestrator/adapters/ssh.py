"""SSH: keys, connections with pinned host keys, remote commands.

hopnhat checks host keys strictly against its own known_hosts file: an unknown or changed
key refuses the connection. (Never AutoAddPolicy, never StrictHostKeyChecking=no.)
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko

from orchestrator.errors import SSHError
from orchestrator.process import run


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


def connect(target: Target, timeout: float = 15.0) -> paramiko.SSHClient:
    """An SSH connection that trusts only the keys in ``target.known_hosts``."""
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
    return client


def execute(
    client: paramiko.SSHClient, target: Target, command: str, *, timeout: float = 600.0,
    on_line: Callable[[str], None] | None = None, stdin: str | None = None,
) -> RemoteResult:
    """Run ``command`` on the host; stream stdout lines to ``on_line`` as they come."""
    try:
        chan_in, chan_out, chan_err = client.exec_command(command, timeout=timeout)
        if stdin is not None:
            chan_in.write(stdin)
            chan_in.channel.shutdown_write()
        out: list[str] = []
        for line in iter(chan_out.readline, ""):
            out.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))
        err = chan_err.read().decode(errors="replace")
        code = chan_out.channel.recv_exit_status()
    except (TimeoutError, paramiko.SSHException, OSError) as exc:
        raise SSHError(f"{target.host}: {command.split()[0]}: {exc or 'timed out'}") from None
    return RemoteResult(target.host, command, code, "".join(out), err)


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
