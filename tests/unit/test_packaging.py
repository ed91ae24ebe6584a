"""pyproject.toml lists hopnhat's packages by hand (a find directive cannot map the top-level
templates/ and playbooks/ into the package): every folder of orchestrator/ that holds a
module must be listed, or the wheel leaves it out while the editable install still imports
it — a hole only an installed wheel would show."""

from __future__ import annotations

import tomllib
from typing import Any

from tests.helpers import REPO

MAPPED = {"orchestrator.templates": "templates", "orchestrator.playbooks": "playbooks"}


def _setuptools() -> Any:
    with (REPO / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)["tool"]["setuptools"]


def _packages_on_disk() -> set[str]:
    folders = {path.parent for path in (REPO / "orchestrator").rglob("*.py")
               if "__pycache__" not in path.parts}
    return {".".join(folder.relative_to(REPO).parts) for folder in folders}


def test_every_folder_of_orchestrator_with_a_module_is_a_listed_package() -> None:
    listed = set(_setuptools()["packages"])
    missing = _packages_on_disk() - listed
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
    assert listed - _packages_on_disk() == set(MAPPED)


def test_templates_and_playbooks_ship_as_subpackages_of_the_top_level_folders() -> None:
    config = _setuptools()
    assert config["package-dir"] == MAPPED
    for folder in MAPPED.values():
        assert (REPO / folder / "__init__.py").is_file()  # the editable install maps packages
    assert config["package-data"]["orchestrator.templates"] == ["*.j2"]
