"""ansible-runner's child gets the children's allow-list, not hopnhat's whole environment:
ansible-runner copies os.environ into the playbook's environment and into
``artifacts/<ident>/command``, so a RESTIC_PASSWORD in the operator's shell reached
ansible-playbook, every module and the run's files on disk."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from orchestrator.adapters.ansible import PlaybookRequest, run_playbook

PLANTED = "PLANTED-a61c0de5"


def test_a_planted_variable_reaches_neither_the_playbook_nor_the_artifacts_0600(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESTIC_PASSWORD", PLANTED)
    monkeypatch.setenv("HOPNHAT_PLANTED", PLANTED)
    playbook = tmp_path / "project" / "env.yml"
    playbook.parent.mkdir()
    playbook.write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.command: env\n      register: seen\n"
        "    - ansible.builtin.debug: {var: seen.stdout_lines}\n")
    inventory = {"_meta": {"hostvars": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}},
        "all": {"hosts": ["localhost"]}}
    done = run_playbook(PlaybookRequest(playbook=playbook, inventory=inventory),
                        tmp_path / "runner", "env-check")
    assert done.status == "successful", done.failures
    written = [p for p in (tmp_path / "runner").rglob("*") if p.is_file()]
    stdout = (done.artifacts / "stdout").read_text()
    assert "PATH=" in stdout  # the env task ran and its output is there to search
    assert [p for p in written if PLANTED in p.read_text(errors="replace")] == []
    # and the run's files are its owner's alone (ansible-runner makes some under the umask)
    modes = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode))
             for p in (tmp_path / "runner").rglob("*") if not p.is_symlink()}
    assert set(modes.values()) <= {"0o600", "0o700"}, modes
