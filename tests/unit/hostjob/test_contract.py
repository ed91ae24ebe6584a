"""The contract between the control host and the job: the paths the control side uses are the
ones the backup_schedule role installs and renders, and the result names are the words the
status file, the textfile and the alert rules use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2.nativetypes import NativeEnvironment

from orchestrator.hostjob import contract
from orchestrator.hostjob.restic import restic_version
from tests.helpers import REPO
from tests.unit.hostjob.fakes import make_config

ROLE = REPO / "playbooks" / "roles" / "backup_schedule"


def _role_settings(code: str) -> dict[str, Any]:
    """The role's defaults for system ``code``, each rendered as Ansible would."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    settings: dict[str, Any] = {
        **defaults, "hopnhat_system": code, "hopnhat_tier": 1, "inventory_hostname": "h-01",
        "playbook_dir": str(REPO / "playbooks"),
        "hopnhat_backup": {"paths": ["/srv"], "retention": {"daily": 7}, "copy": None,
                           "repository": {"host": "repo-01", "user": f"restic-{code}",
                                          "path": "/repo"}}}
    environment = NativeEnvironment(undefined=jinja2.StrictUndefined)
    for _ in range(2):  # a default may name another
        settings = {key: environment.from_string(value).render(settings)
                    if isinstance(value, str) and "{{" in value else value
                    for key, value in settings.items()}
    return settings


def test_the_paths_are_the_backup_schedule_roles_own() -> None:
    settings = _role_settings("video")
    assert settings["backup_schedule_python"] == contract.JOB_PYTHON
    assert settings["backup_schedule_library_dir"] == contract.LIBRARY_DIR
    assert settings["backup_schedule_library_dir"] + "/backup_job.py" == contract.JOB_SCRIPT
    assert settings["backup_schedule_config_file"] == contract.JOB_CONFIG.format(code="video")
    assert settings["backup_schedule_state_dir"] == contract.STATE_DIR
    assert settings["backup_schedule_unit_name"] == contract.JOB_UNIT.format(code="video")
    service = (REPO / "templates" / "hopnhat-backup.service.j2").read_text()
    assert ("ExecStart={{ backup_schedule_python }} " + " ".join(contract.JOB_PYTHON_FLAGS)
            + " {{ backup_schedule_library_dir }}/backup_job.py --config "
            "{{ backup_schedule_config_file }}") in service


def test_the_config_the_role_renders_names_the_contracts_status_files() -> None:
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined)
    environment.filters["to_json"] = json.dumps
    template = (REPO / "templates" / "hopnhat-backup.json.j2").read_text()
    config = json.loads(environment.from_string(template).render(_role_settings("video")))
    assert config["status_file"] == contract.JOB_STATUS.format(code="video")
    assert config["textfile"] == contract.JOB_TEXTFILE.format(code="video")


def test_restics_version_is_kept_beside_the_status_file(tmp_path: Path) -> None:
    binary = tmp_path / "restic"
    binary.write_text("#!/bin/sh\necho 'restic 0.18.1 compiled with go1.24 on linux/amd64'\n")
    binary.chmod(0o755)
    config = make_config(tmp_path, restic=str(binary))
    assert restic_version(config) == (0, 18, 1)
    assert (config.status_file.parent / contract.VERSION_CACHE).is_file()


def test_the_result_names_and_exit_codes() -> None:
    # the words of the status file, the textfile's result label and the alert rules
    words = (contract.OK, contract.PARTIAL, contract.FAILED, contract.REFUSED)
    assert words == ("ok", "partial", "failed", "refused")
    assert words[:3] == contract.RESULTS  # best to worst: a run keeps the worst it earned
    assert [contract.EXIT_CODES[word] for word in words] == [0, 3, 1, 1]
