"""Shared fixtures of the unit tests: a copy of the example estate to plant errors in."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import EXAMPLE_ESTATE, EstateCopy


@pytest.fixture
def estate_copy(tmp_path: Path) -> EstateCopy:
    """A fresh copy of the example estate (``inventory/``) to plant one error in."""
    root = tmp_path / "inventory"
    shutil.copytree(EXAMPLE_ESTATE, root, ignore=shutil.ignore_patterns("secrets.vault.yml"))
    return EstateCopy(root)
