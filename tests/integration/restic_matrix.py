"""The restic version matrix of the integration tests (tests/integration/conftest.py makes
its fixture visible): a test that takes ``restic_release`` runs once with Debian 12's restic
(0.14, /usr/bin/restic) and once with the newer restic the project pins
(``orchestrator/lab/go/restic/go.mod``), which the session lab builds into its lab folder
(:func:`orchestrator.lab.gobuild.restic_binary`). Either one missing, or not the version
expected, fails the test: it never skips.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.adapters.restic import Features, Repository, Restic
from orchestrator.adapters.restic_argv import Version

DEBIAN_RESTIC = Path("/usr/bin/restic")
DEBIAN_VERSION: Version = (0, 14, 0)  # Debian 12's package: the oldest restic hopnhat supports


def _pinned_version() -> str:
    """The pinned restic's version from its go.mod (read at collection, for the test IDs)."""
    from orchestrator.lab import gobuild

    return gobuild.pinned_version(gobuild.RESTIC.module_dir / "go.mod",
                                  gobuild.RESTIC.tool_module or "github.com/restic/restic")


DEBIAN = ".".join(map(str, DEBIAN_VERSION)) + " (Debian)"
PINNED = f"{_pinned_version()} (pinned)"
RELEASES = (DEBIAN, PINNED)


@dataclass(frozen=True)
class ResticRelease:
    """One restic of the matrix: its label, its binary and its version."""

    label: str
    binary: Path
    version: Version

    @property
    def features(self) -> Features:
        return Features(self.version)

    @property
    def restic(self) -> Callable[..., Restic]:
        """:class:`Restic` with this binary (same arguments otherwise)."""
        return functools.partial(Restic, binary=str(self.binary))

    def __str__(self) -> str:
        return self.label


def _version_of(binary: Path) -> Version:
    return Restic(Repository("/nonexistent", Path("/dev/null")), binary=str(binary),
                  timeout=30).version()


@pytest.fixture(scope="session", params=RELEASES)
def restic_release(request: pytest.FixtureRequest) -> ResticRelease:
    """Each restic of the matrix in turn; the pinned one from the session lab's build."""
    label: str = request.param
    if label == DEBIAN:
        binary = DEBIAN_RESTIC
        expected = DEBIAN_VERSION
        if not binary.is_file():
            pytest.fail(f"restic {label}: {binary} is missing (Debian package restic; "
                        "`make deps` installs it)")
    else:
        from orchestrator.lab import gobuild

        lab = request.getfixturevalue("lab")
        binary = gobuild.restic_binary(lab.state_dir / "lab")
        expected = tuple(int(part) for part in label.split()[0].split("."))  # type: ignore[assignment]
        if not binary.is_file():
            pytest.fail(f"restic {label}: the session lab did not build {binary} "
                        "(`hopnhat lab up` builds it with orchestrator.lab.gobuild)")
    found = _version_of(binary)
    if found != expected:
        pytest.fail(f"restic {label}: {binary} says it is restic "
                    f"{'.'.join(map(str, found))}")
    return ResticRelease(label, binary, found)
