"""Fixtures of the integration tests beyond the session lab: the restic version matrix
(:mod:`tests.integration.restic_matrix`) and the configured backup estate of the backup
fault and security tests (:mod:`tests.integration.backup_estate`), which is torn down right
after the last test that uses it rather than at the session's end."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.integration.backup_estate import TEARDOWN, backup_estate
from tests.integration.restic_matrix import restic_release

__all__ = ["backup_estate", "restic_release"]

_LAST_USER = pytest.StashKey[str]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Remember the last test, in the order they will run, that uses the backup estate."""
    users = [item.nodeid for item in session.items
             if "backup_estate" in getattr(item, "fixturenames", ())]
    if users:
        session.stash[_LAST_USER] = users[-1]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item,
                            nextitem: pytest.Item | None) -> Generator[None, None, None]:
    """After the backup estate's last test (and its module's own teardown), the estate goes
    too: no later module finds its VMs, accounts or repository hosts."""
    try:
        return (yield)
    finally:
        if item.session.stash.get(_LAST_USER, None) == item.nodeid:
            teardown = item.session.stash.get(TEARDOWN, None)
            if teardown is not None:
                teardown()
