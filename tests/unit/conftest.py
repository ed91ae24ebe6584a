"""Shared fixtures of the unit tests: a copy of the example estate to plant errors in."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.errors import EstateError
from orchestrator.estate import Estate, load_estate

EXAMPLE_ESTATE = Path(__file__).resolve().parents[2] / "inventory"

Problem = tuple[str, str, str]


class EstateCopy:
    """A copy of ``inventory/`` in a temporary folder, with helpers to break it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, rel: str) -> Path:
        return self.root / rel

    def data(self, rel: str) -> Any:
        return yaml.safe_load(self.path(rel).read_text(encoding="utf-8"))

    def edit(self, rel: str, change: Callable[[Any], object]) -> None:
        """Load ``rel``, let ``change`` modify the data in place, write it back."""
        data = self.data(rel)
        change(data)
        self.write(rel, data)

    def write(self, rel: str, data: Any) -> None:
        self.path(rel).parent.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
        self.path(rel).write_text(text, encoding="utf-8")

    def replace(self, rel: str, old: str, new: str) -> None:
        """Replace the one occurrence of ``old`` in the text of ``rel``."""
        text = self.path(rel).read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {rel}"
        self.path(rel).write_text(text.replace(old, new), encoding="utf-8")

    def load(self) -> Estate:
        return load_estate(self.root)

    def problems(self) -> list[Problem]:
        """Every problem ``load_estate`` reports (fails if the estate loads)."""
        with pytest.raises(EstateError) as caught:
            load_estate(self.root)
        return caught.value.problems

    def assert_only_problems(self, *expected: Problem) -> list[Problem]:
        """The estate reports exactly ``expected``, each ``(file, key path, message
        fragment)``, in any order."""
        found = self.problems()
        unmatched = list(found)
        for file, key, fragment in expected:
            match = next((p for p in unmatched
                          if p[0] == file and p[1] == key and fragment in p[2]), None)
            assert match is not None, (
                f"no problem ({file!r}, {key!r}, …{fragment!r}…) among:\n" + _lines(found))
            unmatched.remove(match)
        assert not unmatched, "unexpected problems:\n" + _lines(unmatched)
        return found


def _lines(problems: list[Problem]) -> str:
    return "\n".join(f"  {p}" for p in problems) or "  (none)"


@pytest.fixture
def estate_copy(tmp_path: Path) -> EstateCopy:
    """A fresh copy of the example estate (``inventory/``) to plant one error in."""
    root = tmp_path / "inventory"
    shutil.copytree(EXAMPLE_ESTATE, root, ignore=shutil.ignore_patterns("secrets.vault.yml"))
    return EstateCopy(root)
