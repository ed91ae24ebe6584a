"""Shared fixtures. The lab is started once per test session and stopped at its end.

The session's lab runs on its own copy of the example estate, moved to other loopback
addresses (127.110.x / 127.120.x and a free port for each of its two vCenters), so a
developer's `make demo` lab and the tests never collide. What tests share besides fixtures
is in :mod:`tests.helpers`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.lab import control
from orchestrator.lab.processes import ProcessTable, is_alive
from tests.helpers import LabHandle, copy_estate, free_ports, prebuilt_vcsim

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
    # xdist ships no type information: its scheduler is Any to mypy
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    class LabGroups(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            if not path.startswith(("tests/integration/", "tests/e2e/")):
                return nodeid
            return "lab-b" if path in SECOND_LAB else "lab-a"

    return LabGroups(config, log)


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
    prebuilt_vcsim(handle.state_dir / "lab")
    try:
        control.up(handle.paths)
        yield handle
    finally:
        control.down(handle.state_dir / "lab")
        leftovers = [r.name for r in ProcessTable(handle.state_dir / "lab").all() if is_alive(r)]
        assert not leftovers, f"lab processes left running: {leftovers}"

