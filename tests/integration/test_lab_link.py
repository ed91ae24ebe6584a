"""The lab's link to the secondary site, as `hopnhat lab link` drives it on the real kernel:
a cut drops packets (a connection hangs, none is refused), a slowed link limits the rate,
restore brings it back, and `lab down` never leaves a link cut behind."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import process
from orchestrator.adapters import ssh
from orchestrator.errors import SSHError
from orchestrator.lab import control, link
from orchestrator.lab.processes import ProcessTable
from tests.helpers import HOPNHAT, LabHandle

pytestmark = pytest.mark.lab

MIB = 1024 * 1024


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HOPNHAT), *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def repository_address(lab: LabHandle) -> str:
    return str(lab.estate.settings.repository_hosts[0].address)


def site_address(lab: LabHandle, role: str, last: int = 250) -> str:
    """An unused address of the first network of the site of ``role`` (for a listener)."""
    site = next(s for s in lab.estate.sites.values() if s.role == role)
    network = next(iter(site.networks.values()))
    return str(network.subnet.network_address + last)


def attempt(address: str, port: int, timeout: float) -> str:
    """"answered" (the peer spoke or accepted), "refused", or "no answer" (packets dropped)."""
    try:
        with socket.create_connection((address, port), timeout=timeout) as s:
            s.settimeout(timeout)
            with contextlib.suppress(TimeoutError):
                s.recv(64)
            return "answered"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "no answer"


@contextlib.contextmanager
def sink(address: str) -> Iterator[int]:
    """A TCP listener on ``address`` that reads and discards what it gets; its port."""
    server = socket.create_server((address, 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                while conn.recv(1 << 16):
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def send_seconds(address: str, port: int, size: int) -> float:
    """Seconds to send ``size`` bytes to ``address:port`` and close (bounded)."""
    payload = b"\0" * MIB
    started = time.monotonic()
    with socket.create_connection((address, port), timeout=30) as s:
        for _ in range(size // MIB):
            s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(30)
        s.recv(1)  # the sink closes after reading everything
    return time.monotonic() - started


def lab_classes() -> str:
    return process.run(["tc", "class", "show", "dev", "lo"], timeout=30).stdout


@pytest.fixture
def restored(lab: LabHandle) -> Iterator[LabHandle]:
    """The session's lab, its link restored after the test whatever happens."""
    try:
        yield lab
    finally:
        link.restore(lab.state_dir / "lab")


def test_link_commands_without_a_lab_say_so_with_exit_2(lab: LabHandle, tmp_path: Path) -> None:
    env = {**lab.env, "HOPNHAT_STATE": str(tmp_path / "state")}
    for args in (("cut",), ("slow", "--rate", "1gbit"), ("restore",)):
        result = cli(env, "lab", "link", *args)
        assert result.returncode == 2, result
        assert "no lab is running" in result.stdout + result.stderr
    assert not link.state_path(tmp_path / "state" / "lab").exists()


def test_a_cut_link_drops_packets_and_restore_brings_it_back(restored: LabHandle) -> None:
    lab = restored
    repo = repository_address(lab)
    assert attempt(repo, 22, 5) == "answered"
    established = socket.create_connection((repo, 22), timeout=5)
    try:
        assert established.recv(64).startswith(b"SSH-2.0-")

        result = cli(lab.env, "lab", "link", "cut", "--json")
        assert result.returncode == 0, result
        assert json.loads(result.stdout)["state"] == "cut"
        # a new connection gets no answer at all (not "refused"), ...
        assert attempt(repo, 22, 1.5) == "no answer"
        # ... and one under way hangs: what it sends is never answered
        established.sendall(b"not ssh\r\n")
        established.settimeout(1.5)
        with pytest.raises(TimeoutError):
            established.recv(64)
        # the primary site is not behind the link
        with sink(site_address(lab, "primary")) as port:
            assert attempt(site_address(lab, "primary"), port, 5) == "answered"
        status = json.loads(cli(lab.env, "lab", "link", "status", "--json").stdout)
        assert status["state"] == "cut" and status["subnets"]

        result = cli(lab.env, "lab", "link", "restore", "--json")
        assert result.returncode == 0, result
        assert json.loads(result.stdout)["state"] == "up"
        assert attempt(repo, 22, 5) == "answered"
    finally:
        established.close()


def test_a_slowed_link_limits_the_rate_and_restore_lifts_it(restored: LabHandle) -> None:
    lab = restored
    behind = site_address(lab, "secondary")
    minor = f"1:{link.class_minor(lab.state_dir / 'lab'):x}"
    with sink(behind) as port:
        result = cli(lab.env, "lab", "link", "slow", "--rate", "16mbit", "--json")
        assert result.returncode == 0, result
        assert json.loads(result.stdout) | {"subnets": []} == {
            "state": "slow", "rate": "16mbit", "latency": None, "subnets": []}
        assert f"class htb {minor} " in lab_classes()
        # 4 MiB at 16 Mbit/s cannot take less than 2.1 s
        assert send_seconds(behind, port, 4 * MIB) > 1.8

        assert cli(lab.env, "lab", "link", "restore").returncode == 0
        assert f"class htb {minor} " not in lab_classes()
        assert send_seconds(behind, port, 4 * MIB) < 1.0


def _kernel_has_netem() -> bool:
    done = process.run(["unshare", "-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                        "delay", "1ms"], timeout=30)
    return done.ok


def test_a_latency_is_added_where_the_kernel_has_netem_else_refused_naming_it(
        restored: LabHandle) -> None:
    lab = restored
    result = cli(lab.env, "lab", "link", "slow", "--rate", "1gbit", "--latency", "20ms")
    if _kernel_has_netem():
        assert result.returncode == 0, result
        repo = repository_address(lab)
        started = time.monotonic()
        assert attempt(repo, 22, 5) == "answered"
        assert time.monotonic() - started >= 0.04  # SYN, SYN-ACK and the banner: 2+ RTTs
    else:
        assert result.returncode == 2, result
        assert "no netem" in result.stdout + result.stderr
        minor = f"1:{link.class_minor(lab.state_dir / 'lab'):x}"
        assert f"class htb {minor} " not in lab_classes()
        assert link.status(lab.state_dir / "lab")["state"] == "up"


def test_bad_rates_are_refused_before_anything_changes(restored: LabHandle) -> None:
    result = cli(restored.env, "lab", "link", "slow", "--rate", "fast")
    assert result.returncode == 2 and "--rate 'fast'" in result.stdout + result.stderr
    assert link.status(restored.state_dir / "lab")["state"] == "up"


def test_lab_down_restores_a_cut_link(lab: LabHandle, tmp_path: Path) -> None:
    # a second, tiny lab (one recorded process) whose link cuts the same subnets
    lab_dir = tmp_path / "lab"
    sleeper = process.spawn(["sleep", "300"])
    ProcessTable(lab_dir).record("sleeper", "sleeper", sleeper.pid)
    state = link.cut(lab_dir, lab.estate)
    tables = process.run(["nft", "list", "tables"], timeout=30).stdout
    assert f"table inet {state.table}" in tables
    assert attempt(repository_address(lab), 22, 1.5) == "no answer"

    control.down(lab_dir)
    sleeper.wait(timeout=10)
    assert f"table inet {state.table}" not in process.run(["nft", "list", "tables"],
                                                          timeout=30).stdout
    assert attempt(repository_address(lab), 22, 5) == "answered"


def test_a_command_over_ssh_behind_a_cut_link_fails_within_its_keepalive_bound(
        restored: LabHandle) -> None:
    """hopnhat's own SSH sessions (drills, backup status) notice a silent link instead of
    hanging until TCP gives up (about 15 minutes)."""
    lab = restored
    host = lab.estate.settings.repository_hosts[0]
    target = ssh.Target(host=host.name, address=str(host.address), port=host.port,
                        user="root", key_file=lab.paths.private_key,
                        known_hosts=lab.paths.known_hosts)
    interval, count = 1, 3
    client = ssh.connect(target, alive=(interval, count))
    started, outcome = threading.Event(), {}

    def run() -> None:
        try:
            ssh.execute(client, target, "echo started; sleep 120; echo done", timeout=300,
                        on_line=lambda line: started.set())
        except SSHError as exc:
            outcome["error"] = str(exc)
        else:
            outcome["error"] = ""

    worker = threading.Thread(target=run, daemon=True)
    try:
        worker.start()
        assert started.wait(30), "the command did not start on the host"
        link.cut(lab.state_dir / "lab", lab.estate)
        cut_at = time.monotonic()
        worker.join(timeout=interval * (count + 1) + 20)
        took = time.monotonic() - cut_at
    finally:
        client.close()
    assert not worker.is_alive(), "the command hung behind the cut link"
    assert "the connection was lost" in outcome["error"], outcome
    assert host.name in outcome["error"]
    assert took < interval * (count + 1) + 10, f"noticed {took:.1f} s after the cut"
