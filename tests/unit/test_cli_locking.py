"""The estate lock as real ``hopnhat`` processes meet it: a command that changes the world
refuses at once naming the holder, waits with --lock-timeout and then goes on, and a
read-only command never waits. The holder is another process holding the lock through
orchestrator.estate_lock (as a long apply would); the commands run against the example
estate, whose vCenters are never reached: the lock is taken before any connection."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from orchestrator.cli.locking import parse_lock_timeout
from tests.helpers import EXAMPLE_ESTATE, HOPNHAT, wait_for

HOLDER = """
import sys
from pathlib import Path
from orchestrator.estate_lock import hold
with hold(Path(sys.argv[1]), "apply") as me:
    print(me.pid, me.since, flush=True)
    sys.stdin.readline()
"""


class Held:
    def __init__(self, process: subprocess.Popen[str], pid: int, since: str) -> None:
        self.process, self.pid, self.since = process, pid, since

    def release(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()


@pytest.fixture
def held(tmp_path: Path) -> Iterator[Held]:
    """The state folder's lock held by operator 'ana' running 'apply' in another process
    until ``release()``."""
    env = {**os.environ, "HOPNHAT_OPERATOR": "ana"}
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "state")],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env=env)
    assert process.stdout is not None
    pid, since = process.stdout.readline().split()
    try:
        yield Held(process, int(pid), since)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def hopnhat(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOPNHAT_OPERATOR": "ben", "COLUMNS": "200"}
    return subprocess.run([str(HOPNHAT), "--estate", str(EXAMPLE_ESTATE), "--state", str(state),
                           *args], capture_output=True, text=True, timeout=120, env=env,
                          check=False)


@pytest.mark.parametrize("args", [
    ("apply", "--yes"),
    ("destroy", "--system", "qlvb", "--yes"),
    ("hosts", "forget", "--host", "qlvb-db-01"),
], ids=lambda a: a[0])
def test_a_changing_command_refuses_at_once_naming_the_holder(
        tmp_path: Path, held: Held, args: tuple[str, ...]) -> None:
    started = time.monotonic()
    done = hopnhat(tmp_path / "state", *args)
    assert done.returncode == 1, done.stderr
    said = " ".join(done.stderr.split())
    for part in ("the estate is locked by operator 'ana' running 'apply'",
                 f"PID {held.pid} on host {socket.gethostname()}", f"since {held.since}",
                 "--lock-timeout"):
        assert part in said
    assert "Connecting" not in said
    assert time.monotonic() - started < 30


def test_with_lock_timeout_a_changing_command_waits_then_goes_on(
        tmp_path: Path, held: Held) -> None:
    env = {**os.environ, "HOPNHAT_OPERATOR": "ben", "COLUMNS": "200"}
    said = tmp_path / "waiter.err"
    with said.open("w") as err_file:
        waiter = subprocess.Popen(
            [str(HOPNHAT), "--estate", str(EXAMPLE_ESTATE), "--state", str(tmp_path / "state"),
             "hosts", "forget", "--host", "qlvb-db-01", "--lock-timeout", "1m"],
            stdout=subprocess.PIPE, stderr=err_file, text=True, env=env)
    waiting = "waiting up to 1 min for the estate lock, held by operator 'ana'"

    def says_it_waits() -> bool:
        assert waiter.poll() is None, "it did not wait for the lock: " + said.read_text()
        return waiting in " ".join(said.read_text().split())

    wait_for("the command to say it waits for the lock", says_it_waits, 30, interval=0.05)
    held.release()
    out, _ = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, said.read_text()
    assert "known_hosts line(s) removed" in out


@pytest.mark.parametrize("args", [("estate", "validate"), ("verify", "history")],
                         ids=lambda a: " ".join(a))
def test_a_read_only_command_runs_while_the_lock_is_held(
        tmp_path: Path, held: Held, args: tuple[str, ...]) -> None:
    done = hopnhat(tmp_path / "state", *args)
    assert done.returncode == 0, done.stderr
    assert "lock" not in done.stderr
    assert held.process.poll() is None


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("5m", 300), ("1h", 3600), ("45", 45), ("0", 0), ("2.5s", 2.5)])
def test_lock_timeout_reads_durations_and_seconds(text: str, seconds: float) -> None:
    assert parse_lock_timeout(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5", "5d", "1m30s"])
def test_lock_timeout_refuses_anything_else(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_lock_timeout(text)


def test_the_lock_of_a_killed_command_is_taken_over_and_said_so(tmp_path: Path) -> None:
    code = ("import os, signal, sys; from pathlib import Path; "
            "from orchestrator.estate_lock import hold\n"
            "with hold(Path(sys.argv[1]), 'migrate cutover'):\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    killed = subprocess.run([sys.executable, "-c", code, str(tmp_path / "state")],
                            timeout=60, check=False)
    assert killed.returncode == -9
    done = hopnhat(tmp_path / "state", "hosts", "forget", "--host", "qlvb-db-01")
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stderr.split())
    assert "took over the lock of operator" in said and "running 'migrate cutover'" in said
    assert said.endswith("its process is gone")
