"""``orchestrator.resources``: hopnhat finds its templates, playbooks and package through the
import system (in the checkout's editable install: the project's top-level folders), never
by counting parent folders; a package that is not a folder on disk is refused by name."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

import orchestrator
from orchestrator import resources
from orchestrator.adapters import ansible
from orchestrator.adapters.ansible import PlaybookRequest, run_playbook
from orchestrator.errors import HopnhatError
from orchestrator.quoting import ansible_value
from tests.helpers import REPO


def test_in_the_checkout_the_templates_and_playbooks_are_the_projects_top_level_folders(
) -> None:
    assert resources.templates_dir() == REPO / "templates"
    assert resources.playbooks_dir() == REPO / "playbooks"
    assert (resources.templates_dir() / "hopnhat-verify.service.j2").is_file()
    assert (resources.playbooks_dir() / "site.yml").is_file()
    assert (resources.playbooks_dir() / "roles" / "backup_schedule" / "tasks").is_dir()


def test_the_package_folder_and_its_parent_are_where_python_imported_it_from() -> None:
    assert resources.package_dir() == Path(orchestrator.__file__).resolve().parent
    assert (resources.package_parent() / "orchestrator" / "__init__.py").is_file()


def test_a_package_imported_from_a_zip_is_refused_by_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "zipped.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("hopnhat_zipped_data/__init__.py", "")
        zipped.writestr("hopnhat_zipped_data/site.yml", "---\n")
    monkeypatch.syspath_prepend(str(archive))
    monkeypatch.delitem(sys.modules, "hopnhat_zipped_data", raising=False)
    with pytest.raises(HopnhatError, match=r"hopnhat_zipped_data is not a folder on disk"):
        resources._folder("hopnhat_zipped_data")


def test_every_playbook_run_is_told_where_the_package_and_its_templates_lie(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The backup_schedule role copies the job from ``hopnhat_package_dir``: the adapter
    passes it to every run, and a request's own extra vars still win."""
    given: dict[str, Any] = {}

    class Finished:
        rc, status, stats = 0, "successful", None

    def fake_runner(**kwargs: Any) -> Finished:
        given.update(kwargs)
        return Finished()

    monkeypatch.setattr(ansible, "_run_runner", fake_runner)
    run_playbook(PlaybookRequest(playbook=ansible.SITE, inventory={},
                                 extravars={"hopnhat_state_dir": "/srv/state"}),
                 tmp_path / "run", "vars-check")
    # (each string marked unsafe, as every extra var is: a path is never a template)
    assert given["extravars"] == ansible_value({
        "hopnhat_package_dir": str(resources.package_dir()),
        "hopnhat_templates_dir": str(resources.templates_dir()),
        "hopnhat_state_dir": "/srv/state"})
    assert given["project_dir"] == str(resources.playbooks_dir())
