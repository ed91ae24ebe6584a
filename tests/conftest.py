"""Shared fixtures. The lab is started once per test session and stopped at its end.

The session's lab runs on its own copy of the example estate, moved to other loopback
addresses (127.110.x / 127.120.x and a free port for each of its two vCenters), so a
developer's `make demo` lab and the tests never collide.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orchestrator import process
from orchestrator.lab import control
from orchestrator.lab.handle import LabDirs
from orchestrator.lab.processes import ProcessTable, is_alive

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_ESTATE = REPO / "inventory"


# the example estate's vCenters: Đà Nẵng's (site danang), Quảng Nam's (site quangnam)
EXAMPLE_VCENTER_PORTS = (8989, 8990)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (all held open while chosen, so none repeats)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def copy_estate(dest: Path, *, ports: Sequence[int] | None = None, primary: str = "127.110.",
                secondary: str = "127.120.") -> Path:
    """A copy of the example estate on other loopback addresses and, with ``ports`` (one
    per vCenter of :data:`EXAMPLE_VCENTER_PORTS`, e.g. ``free_ports(2)``), other vCenter
    ports: each site's vCenter keeps its own port unless the same port is given twice."""
    shutil.copytree(EXAMPLE_ESTATE, dest, ignore=shutil.ignore_patterns("secrets.vault.yml"))
    if ports is not None:
        assert len(ports) == len(EXAMPLE_VCENTER_PORTS), "one port per vCenter of the example"
    for path in dest.rglob("*.yml"):
        text = path.read_text()
        text = text.replace("127.10.", primary).replace("127.20.", secondary)
        for old, new in zip(EXAMPLE_VCENTER_PORTS, ports or (), strict=False):
            text = text.replace(f"127.0.0.1:{old}/", f"127.0.0.1:{new}/")
        path.write_text(text)
    return dest


@dataclass
class LabHandle(LabDirs):
    """The session's running lab (its estate read again on each use)."""

    extra: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """Environment for running the `hopnhat` command against this lab."""
        return {**os.environ, "HOPNHAT_ESTATE": str(self.estate_dir),
                "HOPNHAT_STATE": str(self.state_dir)}


HOPNHAT = Path(sys.executable).with_name("hopnhat")


def hopnhat(env: dict[str, str], *args: str, timeout: float = 300,
            input: str = "") -> process.Completed:
    """Run the ``hopnhat`` command as an operator types it (no terminal: stdin ``input``)."""
    return process.run([str(HOPNHAT), *args], env={**env, "COLUMNS": "200"}, timeout=timeout,
                       input=input)


def as_json(done: process.Completed) -> Any:
    """The JSON document a command printed on stdout."""
    assert done.stdout.strip(), f"no JSON on stdout (exit {done.returncode}): {done.stderr}"
    return json.loads(done.stdout)


def wait_for(what: str, condition: Callable[[], Any], timeout: float = 60, *,
             interval: float = 0.2) -> Any:
    """Poll ``condition`` every ``interval`` seconds until it answers something true
    (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = condition()
        if answer:
            return answer
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def wait_task(task: Any, timeout: float = 60) -> Any:
    """Wait for a vCenter task (bounded); its result. Fails the test if the task failed."""
    deadline = time.monotonic() + timeout
    while task.info.state not in ("success", "error"):
        assert time.monotonic() < deadline, "vCenter task did not finish"
        time.sleep(0.05)
    assert task.info.state == "success", task.info.error
    return task.info.result


def estate_copy(lab: LabHandle, tmp_path: Path, edit: Callable[[Path], None]) -> dict[str, str]:
    """The lab's estate (with its vault) copied and edited; the env to run hopnhat on it
    against the same lab."""
    dest = tmp_path / "inventory"
    shutil.copytree(lab.estate_dir, dest)
    edit(dest)
    return {**lab.env, "HOPNHAT_ESTATE": str(dest)}


def readme_block(name: str) -> str:
    """The shell lines of README.md between ``<!-- name: begin -->`` and
    ``<!-- name: end -->`` (a fenced sh block), for a test to run exactly as written."""
    text = (REPO / "README.md").read_text()
    found = re.search(rf"<!-- {re.escape(name)}: begin -->\n```sh\n(.*?)```\n"
                      rf"<!-- {re.escape(name)}: end -->", text, re.S)
    assert found, f"README.md has no {name} block"
    return found.group(1)


def replace_in(path: Path, old: str, new: str) -> None:
    """Replace ``old``, which must occur exactly once in the file at ``path``, by ``new``."""
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {path}"
    path.write_text(text.replace(old, new))


#: how far apart (in the second octet) the labs of two pytest-xdist workers are
WORKER_SPACING = 20


def lab_octets(base: str, worker: str) -> tuple[int, int]:
    """The second octets (primary, secondary site) of the lab of xdist worker ``worker``
    (``gw0``, ``gw1``…) when the session's are ``base`` (``"110,120"``)."""
    first, second = (int(octet) for octet in base.split(","))
    shift = WORKER_SPACING * int(worker.removeprefix("gw") or 0)
    if max(first, second) + shift > 254:
        raise pytest.UsageError(f"HOPNHAT_TEST_OCTETS={base} leaves no room for worker "
                                f"{worker}'s lab (127.{first + shift}.x): lower them")
    return first + shift, second + shift


#: the lab modules of the second xdist worker: each brings its own hosts and estate copy and
#: leaves the session lab as it found it; every other lab module runs on the first, in the
#: order a single run has (some expect what the modules before them left in the lab)
SECOND_LAB = frozenset({"tests/integration/test_drill.py", "tests/integration/test_restic.py",
                        "tests/integration/test_verify.py",
                        "tests/integration/test_lab_vcsim.py",
                        "tests/integration/test_secret_leaks.py"})


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With pytest-xdist (``make test``: ``-n 2``), the lab modules run in two fixed groups,
    each whole on one worker with a lab of its own and in collection order
    (:data:`SECOND_LAB` on one, the others on the other); unit tests go wherever a worker
    is free. (xdist's own ``--dist loadgroup`` does not group under pytest 9: it renames
    node IDs through an attribute pytest no longer reads.)"""
    from xdist.scheduler import LoadScopeScheduling

    class LabGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            if not path.startswith(("tests/integration/", "tests/e2e/")):
                return nodeid
            return "lab-b" if path in SECOND_LAB else "lab-a"

    return LabGroups(config, log)


def _prebuilt_vcsim(lab_dir: Path) -> None:
    """Reuse the vcsim that `make` built under ./.hopnhat (saves a rebuild per session)."""
    built = REPO / ".hopnhat" / "lab" / "bin"
    if built.is_dir() and not (lab_dir / "bin").exists():
        shutil.copytree(built, lab_dir / "bin")


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHandle]:
    if os.geteuid() != 0:
        pytest.fail("the lab tests need root (namespaces, sshd); run `make test` as root")
    base = tmp_path_factory.mktemp("lab")
    # $HOPNHAT_TEST_OCTETS ("110,120") moves the lab elsewhere, so that two test sessions
    # on one machine (two developers) do not collide; each pytest-xdist worker's lab is
    # WORKER_SPACING further on (gw1 of the default: 130,140)
    first, second = lab_octets(os.environ.get("HOPNHAT_TEST_OCTETS", "110,120"),
                               os.environ.get("PYTEST_XDIST_WORKER", "gw0"))
    handle = LabHandle(copy_estate(base / "inventory", ports=free_ports(2),
                                   primary=f"127.{first}.", secondary=f"127.{second}."),
                       base / "state")
    _prebuilt_vcsim(handle.state_dir / "lab")
    try:
        control.up(handle.paths)
        yield handle
    finally:
        control.down(handle.state_dir / "lab")
        leftovers = [r.name for r in ProcessTable(handle.state_dir / "lab").all() if is_alive(r)]
        assert not leftovers, f"lab processes left running: {leftovers}"


def state_beside(lab: LabHandle, state: Path) -> Path:
    """A state folder of its own (ledger, device cache, vault copy) at ``state`` that uses
    the session's lab: its SSH keys, CA and certificates, known_hosts and vault password
    copied, its lab linked."""
    state.mkdir()
    shutil.copytree(lab.state_dir / "ssh", state / "ssh")
    shutil.copytree(lab.state_dir / "pki", state / "pki")
    for name in ("known_hosts", "vault-password"):
        shutil.copy2(lab.state_dir / name, state / name)
    (state / "lab").symlink_to(lab.state_dir / "lab")
    return state


def ledger_dump(path: Path) -> str:
    """The ledger's whole content as SQL text, read by the sqlite3 program in another
    process: reading the file's bytes here would drop the SQLite locks that any connection
    of this process holds on it (POSIX locks are per process), and a concurrent writer
    could then corrupt it."""
    done = subprocess.run(["sqlite3", str(path), ".dump"], capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout
