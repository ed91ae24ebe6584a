"""The wheel works on its own: built from the checkout, installed into a virtualenv of its own
outside the checkout and run from another folder with no PYTHONPATH, hopnhat finds its
templates and playbooks inside the installed package (``orchestrator.templates``,
``orchestrator.playbooks``), and configure tells the roles to copy the backup job from there.
(Before: the wheel left templates/ and playbooks/ out, and ``schedule install --print``
ended in TemplateNotFound.)

The virtualenv is clean — no ``--system-site-packages``, which would see the project's
.venv and its editable install of the checkout. pip resolves the wheel's own dependencies
(its metadata is under test too) from PyPI, as ``make`` installs the project's, pinned by a
constraints file to the versions of the project's .venv that the rest of the suite tests;
``--no-compile`` keeps the install to ~15 s.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator import process
from orchestrator.adapters import ssh
from orchestrator.settings import Paths
from tests.helpers import REPO, hopnhat, wait_for

pytestmark = pytest.mark.lab

#: what the build never needs (and must not pick up: a stale build/ of the checkout would
#: slip old modules into the wheel): hidden folders and files (.git, .venv, .hopnhat, the
#: tools' caches), build output, bytecode and the lab's vault
NOT_SOURCES = (".*", "build", "dist", "*.egg-info", "__pycache__", "secrets.vault.yml")
SYSTEM, CLIENT, REPOSITORY_HOST = "email", "email-mail-01", "repo-qnam-01"


@dataclass(frozen=True)
class Installed:
    source: Path  # the copy of the checkout the wheel was built from
    wheel: Path
    venv: Path
    elsewhere: Path  # the working folder of every command: neither the checkout nor the venv

    @property
    def site_packages(self) -> Path:
        return self.venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / \
            "site-packages"

    def run(self, *args: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> process.Completed:
        """``args[0]`` from the venv's bin/, in :attr:`elsewhere`, with only the venv and the
        system on PATH, no PYTHONPATH and no VIRTUAL_ENV (``env`` adds variables)."""
        clean = {"PATH": f"{self.venv / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                         "/usr/bin:/sbin:/bin",
                 "COLUMNS": "200", "LANG": "C.UTF-8", **(env or {})}
        return process.run([str(self.venv / "bin" / args[0]), *args[1:]], env=clean,
                           cwd=self.elsewhere, timeout=timeout)


def _pip(python: Path | str, *args: str, timeout: float = 600) -> process.Completed:
    done = process.run([str(python), "-m", "pip", "--disable-pip-version-check", *args],
                       timeout=timeout)
    assert done.ok, f"pip {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SOURCES), symlinks=True)
    _pip(sys.executable, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(base / "dist"),
         str(source))
    [wheel] = (base / "dist").glob("hopnhat-*.whl")
    venv = base / "venv"
    # no pip of its own (ensurepip: seconds): the project's pip installs into it (--python)
    done = process.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=120)
    assert done.ok, done.stderr
    constraints = base / "constraints.txt"
    constraints.write_text(_pip(sys.executable, "freeze", "--exclude-editable").stdout)
    _pip(sys.executable, "--python", str(venv / "bin" / "python"), "install", "--quiet",
         "--no-compile", "--constraint", str(constraints), str(wheel))
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    return Installed(source, wheel, venv, elsewhere)


def test_the_wheel_holds_every_module_template_and_playbook_of_the_checkout(
        installed: Installed) -> None:
    source = installed.source
    wanted = {f"orchestrator/{p.relative_to(source / 'orchestrator')}"
              for p in (source / "orchestrator").rglob("*.py")
              if "__pycache__" not in p.parts}
    for folder in ("templates", "playbooks"):
        wanted |= {f"orchestrator/{p.relative_to(source)}"
                   for p in (source / folder).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts
                   and not p.name.startswith(".")}  # .ansible-lint: the linter's, not ours
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
    assert "orchestrator/templates/hopnhat-verify.service.j2" in wanted
    assert "orchestrator/playbooks/roles/backup_schedule/tasks/install.yml" in wanted
    assert sorted(wanted - names) == []


def test_the_installed_package_is_the_wheels_not_the_checkouts(installed: Installed) -> None:
    done = installed.run("python", "-c", "import json, sys, orchestrator\n"
                         "from orchestrator import resources\n"
                         "print(json.dumps({'package': orchestrator.__file__, 'path': sys.path,"
                         " 'templates': str(resources.templates_dir()),"
                         " 'playbooks': str(resources.playbooks_dir())}))")
    assert done.ok, done.stderr
    found = json.loads(done.stdout)
    site = installed.site_packages
    assert found["package"] == str(site / "orchestrator" / "__init__.py")
    assert found["templates"] == str(site / "orchestrator" / "templates")
    assert found["playbooks"] == str(site / "orchestrator" / "playbooks")
    assert [p for p in found["path"] if p.startswith(str(REPO))] == []


def test_help_lists_the_command_groups(installed: Installed) -> None:
    done = installed.run("hopnhat", "--help")
    assert done.ok, done.stderr
    assert "Usage: hopnhat" in done.stdout
    for group in ("estate", "configure", "schedule", "drill"):
        assert f" {group} " in done.stdout, group


def test_estate_validate_reads_the_example_estate(installed: Installed) -> None:
    done = installed.run("hopnhat", "--estate", str(REPO / "inventory"), "--state",
                         str(installed.elsewhere / "state"), "estate", "validate")
    assert done.ok, done.stdout + done.stderr
    estate = re.escape(str(REPO / "inventory"))
    assert re.search(rf"\({estate}\) is valid: \d+ sites, \d+ systems, \d+ VMs", done.stdout), \
        done.stdout


def test_schedule_install_print_renders_the_units_from_the_installed_templates(
        installed: Installed) -> None:
    done = installed.run("hopnhat", "--estate", str(REPO / "inventory"), "--state",
                         str(installed.elsewhere / "state"), "schedule", "install", "--print")
    assert done.ok, done.stdout + done.stderr
    assert "TemplateNotFound" not in done.stdout + done.stderr
    assert "[Timer]" in done.stdout and "OnCalendar=" in done.stdout
    # the service runs the wheel's hopnhat, the one that printed it
    assert f"ExecStart={installed.venv / 'bin' / 'hopnhat'} " in done.stdout


@dataclass(frozen=True)
class Checked:
    paths: Paths
    result: dict[str, Any]  # the wheel's configure --check --json


@pytest.fixture(scope="module")
def checked(installed: Installed, lab: Any) -> Iterator[Checked]:
    """One system's VM, built by the checkout's hopnhat (set-up, not under test) and up with
    its sshd, then checked by the wheel's hopnhat: ``configure --check``, which changes
    nothing (tests/integration/test_configure.py shows it on hosts never configured) and so
    needs no converge of its own. Destroyed afterwards, leaving the session's lab as it was
    found."""
    done = hopnhat(lab.env, "apply", "--system", SYSTEM, "--yes", timeout=300)
    assert done.ok, done.stderr
    paths: Paths = lab.paths
    try:
        vm = next(vm for vm in paths.estate.vms if vm.name == CLIENT)
        wait_for(f"ssh on {CLIENT}", lambda: ssh.wait_for_port(str(vm.ip), 22, 1.0), 120)
        ran = installed.run("hopnhat", "--estate", str(paths.estate.root), "--state",
                            str(paths.state), "configure", "--system", SYSTEM, "--check",
                            "--json", timeout=600)
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
        yield Checked(paths, json.loads(ran.stdout))
    finally:
        gone = hopnhat(lab.env, "destroy", "--system", SYSTEM, "--yes", "--no-backup-gate",
                       "--reason", "test teardown", timeout=300)
        assert gone.ok, gone.stderr


def test_configure_check_from_the_wheel_runs_the_installed_playbooks_and_job(
        installed: Installed, checked: Checked) -> None:
    """The run was the installed site.yml, the roles were told to take the backup job and
    its modules from the installed package, and backup_schedule ran on the client (its
    preflight checks that each of them is there)."""
    package = installed.site_packages / "orchestrator"
    artifacts = Path(checked.result["artifacts"])
    command = json.loads((artifacts / "command").read_text())
    assert str(package / "playbooks" / "site.yml") in command["command"]
    extravars = json.loads((checked.paths.state / "runs" / checked.result["run_id"] / "env"
                            / "extravars").read_text())
    assert extravars["hopnhat_package_dir"] == {"__ansible_unsafe": str(package)}
    events = [json.loads(p.read_text()) for p in (artifacts / "job_events").glob("*.json")]
    ran = {(e["event_data"].get("role"), e["event_data"].get("host"))
           for e in events if e.get("event") == "runner_on_ok"}
    assert ("backup_schedule", CLIENT) in ran


def test_configure_check_from_the_wheel_says_what_would_change_on_a_new_host(
        checked: Checked) -> None:
    """The wheel's check ran its roles to the end on both hosts of the system: ok, and the
    client, fresh from apply, would change."""
    result = checked.result
    assert (result["status"], result["plan"]["check"]) == ("ok", True)
    assert set(result["hosts"]) == {CLIENT, REPOSITORY_HOST}
    assert result["failures"] == []
    assert result["hosts"][CLIENT]["changed"] > 0  # never configured: all of it would change
