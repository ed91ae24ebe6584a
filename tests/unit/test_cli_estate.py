"""``hopnhat estate validate | show | inventory``: exit codes, what is printed, and what not."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from orchestrator.cli import app
from tests.helpers import REPO, EstateCopy, tree_digest

runner = CliRunner()


def hopnhat(estate_dir: Path, *args: str, state: Path | None = None) -> Result:
    options = ["--estate", str(estate_dir)]
    if state is not None:
        options += ["--state", str(state)]
    return runner.invoke(app, [*options, *args])


def _plant_unknown_key(estate_copy: EstateCopy) -> None:
    estate_copy.edit("systems/qlvb.yml", lambda data: data["vms"][1].update(colour="red"))


def _plant_plain_secret(estate_copy: EstateCopy) -> None:
    estate_copy.replace("systems/dvc.yml", "password: {vault: restic_password_dvc}",
                        "password: hunter2")


# --- validate ---

def test_validate_accepts_the_example_estate_and_exits_0(estate_copy: EstateCopy) -> None:
    result = hopnhat(estate_copy.root, "estate", "validate")
    assert result.exit_code == 0, result.output
    assert "estate danang" in result.stdout
    assert "is valid: 2 sites, 10 systems, 15 VMs" in result.stdout


def test_validate_json_summarises_a_valid_estate(estate_copy: EstateCopy) -> None:
    result = hopnhat(estate_copy.root, "estate", "validate", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "valid": True, "estate": "danang", "sites": 2, "systems": 10, "vms": 15}


@pytest.mark.parametrize(("plant", "file", "key", "message"), [
    pytest.param(_plant_unknown_key, "systems/qlvb.yml", "vms[1].colour", "unknown key",
                 id="unknown-key"),
    pytest.param(lambda e: e.edit("sites/danang.yml",
                                  lambda d: d["networks"]["srv"].update(gateway="127.10.9.1")),
                 "sites/danang.yml", "networks.srv.gateway", "outside the subnet", id="gateway"),
    pytest.param(lambda e: e.path("estate.yml").unlink(), "estate.yml", "", "missing",
                 id="missing-estate-yml"),
])
def test_validate_exits_2_and_names_the_file_and_key_of_the_problem(
        estate_copy: EstateCopy, plant: Callable[[EstateCopy], object], file: str, key: str,
        message: str) -> None:
    plant(estate_copy)
    result = hopnhat(estate_copy.root, "estate", "validate")
    assert result.exit_code == 2, result.output
    expected = f"{file}: at '{key}': " if key else f"{file}: "
    assert expected in result.stderr
    assert message in result.stderr
    assert result.stdout == ""


def test_validate_lists_every_problem_in_one_run(estate_copy: EstateCopy) -> None:
    _plant_unknown_key(estate_copy)
    _plant_plain_secret(estate_copy)
    result = hopnhat(estate_copy.root, "estate", "validate")
    assert result.exit_code == 2
    assert "the estate has 2 problem(s)" in result.stderr
    assert "systems/qlvb.yml: at 'vms[1].colour': unknown key" in result.stderr
    assert "systems/dvc.yml: at 'backup.password': a secret is written here in plain text" \
        in result.stderr


def test_validate_json_lists_each_problem_with_file_key_and_message(
        estate_copy: EstateCopy) -> None:
    _plant_unknown_key(estate_copy)
    result = hopnhat(estate_copy.root, "estate", "validate", "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {"valid": False, "problems": [
        {"file": "systems/qlvb.yml", "key": "vms[1].colour", "message": "unknown key"}]}


@pytest.mark.parametrize("args", [
    pytest.param(["estate", "validate"], id="text"),
    pytest.param(["estate", "validate", "--json"], id="json"),
    pytest.param(["--json", "estate", "validate"], id="global-json"),
])
def test_validate_never_prints_a_secret_written_in_plain_text(
        estate_copy: EstateCopy, args: list[str]) -> None:
    _plant_plain_secret(estate_copy)
    result = hopnhat(estate_copy.root, *args)
    assert result.exit_code == 2
    assert "backup.password" in result.output
    assert "hunter2" not in result.output


def test_validate_prints_text_quoted_from_the_yaml_verbatim_not_as_markup(
        estate_copy: EstateCopy) -> None:
    estate_copy.edit("systems/sso.yml", lambda data: data["vms"][0].update(network="[/x]"))
    result = hopnhat(estate_copy.root, "estate", "validate")
    assert result.exit_code == 2, result.output
    assert "(found '[/x]')" in result.stderr


@pytest.mark.parametrize("plant", [
    pytest.param(lambda e: None, id="valid"),
    pytest.param(_plant_unknown_key, id="invalid"),
])
def test_validate_changes_nothing_in_the_estate_folder(
        estate_copy: EstateCopy, tmp_path: Path, plant: Callable[[EstateCopy], object]) -> None:
    plant(estate_copy)
    before = tree_digest(estate_copy.root)
    hopnhat(estate_copy.root, "estate", "validate", state=tmp_path / "state")
    hopnhat(estate_copy.root, "estate", "validate", "--json", state=tmp_path / "state")
    assert tree_digest(estate_copy.root) == before


def test_a_missing_estate_folder_exits_2(tmp_path: Path) -> None:
    result = hopnhat(tmp_path / "nowhere", "estate", "validate")
    assert result.exit_code == 2
    assert "the estate directory does not exist" in result.stderr


# --- show ---

def test_show_json_lists_sites_then_systems_then_vms_with_tier_and_targets(
        estate_copy: EstateCopy) -> None:
    result = hopnhat(estate_copy.root, "estate", "show", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["estate"], list(doc["sites"])) == ("danang", ["danang", "quangnam"])
    danang = doc["sites"]["danang"]
    assert (danang["role"], danang["datacenter"]) == ("primary", "DC-DaNang")
    # systems by tier, then code
    assert list(danang["systems"]) == [
        "dvc", "qlvb", "video", "email", "lgsp", "qlvbdn", "sso", "ioc", "opendata"]
    qlvb = danang["systems"]["qlvb"]
    assert {k: qlvb[k] for k in ("tier", "rpo", "rto", "drill_interval", "depends_on",
                                 "repository_host")} == {
        "tier": 1, "rpo": "1h", "rto": "4h", "drill_interval": "30d",
        "depends_on": ["sso", "lgsp"], "repository_host": "repo-qnam-01"}
    assert [(vm["name"], vm["ip"], vm["data"]) for vm in qlvb["vms"]] == [
        ("qlvb-app-01", "127.10.1.16", False), ("qlvb-app-02", "127.10.1.17", False),
        ("qlvb-db-01", "127.10.2.11", True)]
    assert [vm["existing"] for vm in qlvb["vms"]] == [None, None, None]
    assert danang["systems"]["ioc"]["rto"] == "3d"
    # an adopted VM: where it is in vCenter; hardware the estate does not declare is null
    [legacy] = danang["systems"]["qlvbdn"]["vms"]
    assert {k: legacy[k] for k in ("name", "ip", "existing", "cpu", "memory_mb",
                                   "disks_gb", "data")} == {
        "name": "qlvbdn-db-01", "ip": "127.10.1.5",
        "existing": "DC-DaNang/Legacy/QLVB/qlvb-db-01", "cpu": None, "memory_mb": None,
        "disks_gb": None, "data": True}
    # the secondary site runs only Quảng Nam's legacy QLVB, which hopnhat adopts
    assert list(doc["sites"]["quangnam"]["systems"]) == ["qlvbqn"]
    assert [(vm["name"], vm["ip"], vm["existing"], vm["cpu"], vm["disks_gb"])
            for vm in doc["sites"]["quangnam"]["systems"]["qlvbqn"]["vms"]] == [
        ("qlvbqn-db-01", "127.20.1.5", "DC-QuangNam/QLVB/qlvb-db-01", 4, [40, 200])]
    assert [h["name"] for h in doc["repository_hosts"]] == ["repo-qnam-01", "vault-danang-01"]


def test_show_prints_the_sites_and_repository_host(estate_copy: EstateCopy) -> None:
    result = hopnhat(estate_copy.root, "estate", "show")
    assert result.exit_code == 0, result.output
    assert "danang primary" in result.stdout
    assert "quangnam secondary" in result.stdout
    assert "repository host repo-qnam-01 127.20.2.10:22" in result.stdout


# --- inventory ---

def test_inventory_list_is_an_ansible_dynamic_inventory(
        estate_copy: EstateCopy, tmp_path: Path) -> None:
    result = hopnhat(estate_copy.root, "estate", "inventory", "--list", state=tmp_path / "st")
    assert result.exit_code == 0, result.output
    inventory = json.loads(result.stdout)
    assert inventory["system_qlvb"]["hosts"] == ["qlvb-app-01", "qlvb-app-02", "qlvb-db-01"]
    assert f'UserKnownHostsFile="{tmp_path / "st" / "known_hosts"}"' in (
        inventory["_meta"]["hostvars"]["qlvb-db-01"]["ansible_ssh_common_args"]
        ["__ansible_unsafe"])
    # no secret's reference but the key names (the vault host's name aside)
    text = result.stdout.replace("vault-danang-01", "").replace("vault_danang_01", "") \
        .replace("/srv/vault", "")
    assert text.count("vault") == text.count("password_vault_key") + \
        text.count("metrics_vault_key")
    assert result.stdout.count("restic_password_") == sum(
        1 for g in inventory.values() if "hopnhat_backup" in g.get("vars", {}))


def test_inventory_host_prints_that_hosts_variables(
        estate_copy: EstateCopy, tmp_path: Path) -> None:
    result = hopnhat(estate_copy.root, "estate", "inventory", "--host", "qlvb-db-01",
                     state=tmp_path / "st")
    assert result.exit_code == 0, result.output
    variables = json.loads(result.stdout)
    assert variables["ansible_host"] == {"__ansible_unsafe": "127.10.2.11"}
    assert variables["hopnhat_site"] == {"__ansible_unsafe": "danang"}


def test_the_inventory_script_hands_ansible_text_never_a_template(
        estate_copy: EstateCopy, tmp_path: Path) -> None:
    """A system's name written as a Jinja lookup reaches a real ansible-playbook through
    playbooks/inventory.py (as plain Ansible and AWX use it) as text: never run."""
    import os
    import subprocess
    import sys

    marker = tmp_path / "pwned"
    estate_copy.edit("systems/qlvb.yml", lambda data: data.update(
        name=f"{{{{ lookup('pipe', 'touch {marker}') }}}}"))
    play = tmp_path / "play.yml"
    play.write_text("- hosts: qlvb-db-01\n  connection: local\n  gather_facts: false\n"
                    "  tasks:\n    - ansible.builtin.debug:\n"
                    "        msg: \"[{{ hopnhat_system_name }}]\"\n")
    done = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "-i",
         str(REPO / "playbooks" / "inventory.py"), str(play)],
        capture_output=True, text=True, check=False, cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "ANSIBLE_NOCOLOR": "1",
             "HOPNHAT_ESTATE": str(estate_copy.root), "HOPNHAT_STATE": str(tmp_path / "st"),
             "ANSIBLE_LOCAL_TEMP": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert not marker.exists()
    assert f"touch {marker}" in done.stdout


@pytest.mark.parametrize("args", [
    pytest.param(["estate", "show"], id="show"),
    pytest.param(["estate", "inventory", "--list"], id="inventory"),
])
def test_other_estate_commands_on_an_invalid_estate_exit_2_naming_the_problem(
        estate_copy: EstateCopy, args: list[str]) -> None:
    _plant_unknown_key(estate_copy)
    result = hopnhat(estate_copy.root, *args)
    assert result.exit_code == 2, result.output
    assert "systems/qlvb.yml: at 'vms[1].colour': unknown key" in result.stderr
