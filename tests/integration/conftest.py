"""Fixtures of the integration tests beyond the session lab: the restic version matrix
(:mod:`tests.integration.restic_matrix`)."""

from __future__ import annotations

from tests.integration.restic_matrix import restic_release

__all__ = ["restic_release"]
