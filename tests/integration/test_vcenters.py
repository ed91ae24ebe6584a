"""Two vCenters, one estate: Đà Nẵng's vCenter (site danang) and Quảng Nam's (site
quangnam), each a vcsim of the lab with its own port, certificate and credentials.

System ``gis`` (added to a copy of the lab's estate) has one VM at each site: its
application server in Đà Nẵng and its data-bearing replica in Quảng Nam. Facts reading,
plan, apply, the backup gate and destroy are run on it across both vCenters as an operator
types them; a wrong password on one vCenter, and one vCenter stopped, are named with their
URL and do not hide the other site in ``plan``. The module works in a state folder of its
own (ledger, keys, vault copy) on the session's lab, and leaves no VM behind.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.actions.repositories import open_repository
from orchestrator.adapters import ssh, vsphere
from orchestrator.adapters.restic import Restic
from orchestrator.adapters.vault import read_vault, write_vault
from orchestrator.adapters.vsphere_facts import OWNER, SYSTEM, Inventory, read_inventory
from orchestrator.estate import load_estate
from orchestrator.lab import control, data, guests, vcsim
from orchestrator.lab.processes import ProcessTable, is_alive
from orchestrator.lab.secrets import ensure_lab_secrets
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths
from tests.helpers import as_json, guest_gone, hopnhat, state_beside, wait_for

pytestmark = pytest.mark.lab

CODE = "gis"
APP, REPLICA = "gis-app-01", "gis-replica-01"  # at danang, at quangnam
SITE_OF = {APP: "danang", REPLICA: "quangnam"}
GATE_OFF = ("--no-backup-gate", "--reason", "test_vcenters: not about backups")


@dataclass
class TwoSites:
    """The estate copy with system gis, its own state folder, on the session's lab."""

    lab: Any
    paths: Paths
    data: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "HOPNHAT_ESTATE": str(self.paths.estate.root),
                "HOPNHAT_STATE": str(self.paths.state), "COLUMNS": "220"}

    def url(self, site: str) -> str:
        return str(self.paths.estate.sites[site].vcenter.url)

    def label(self, site: str) -> str:
        return f"{self.url(site)} (site {site})"


def inventory(lab: Any, site: str) -> Inventory:
    with vsphere.open_vcenter(lab.endpoint(site)) as vc:
        return read_inventory(vc)


def names_in(lab: Any, site: str) -> set[str]:
    """The gis VMs the vCenter of ``site`` holds."""
    return {v.name for v in inventory(lab, site).vms if v.name.startswith(f"{CODE}-")}


def reset_counts(lab: Any) -> None:
    for site in lab.estate.sites:
        rec = lab.vcsim(site)
        vcsim.reset_method_counts(rec.address, rec.details["cafile"])


def tasks(lab: Any) -> dict[str, dict[str, int]]:
    """site → the tasks its vCenter ran since the counts were reset."""
    out = {}
    for site in lab.estate.sites:
        rec = lab.vcsim(site)
        counts = vcsim.method_counts(rec.address, rec.details["cafile"])
        out[site] = {name: n for name, n in counts.items() if name.endswith("_Task")}
    return out


def _write_estate(lab: Any, root: Path, data_dir: Path) -> None:
    """The lab's estate (and vault) with system gis: one VM per site, addresses pinned at
    the top of each srv pool (the other systems' addresses stay as they are)."""
    shutil.copytree(lab.estate_dir, root)
    estate = lab.estate
    pinned = {site: str(estate.sites[site].networks["srv"].pool.end - 5)
              for site in ("danang", "quangnam")}
    (root / "systems" / f"{CODE}.yml").write_text(yaml.safe_dump({
        "name": "Bản đồ số (GIS): app in Đà Nẵng, replica in Quảng Nam", "code": CODE,
        "tier": 3,
        "vms": [
            {"role": "app", "count": 1, "site": "danang", "cpu": 1, "memory_mb": 1024,
             "disks_gb": [20], "network": "srv", "ips": [pinned["danang"]]},
            {"role": "replica", "count": 1, "site": "quangnam", "cpu": 1, "memory_mb": 1024,
             "disks_gb": [20], "network": "srv", "data": True, "ips": [pinned["quangnam"]]}],
        "backup": {"repository_host": "repo-qnam-01", "port": 8191,
                   "password": {"vault": f"restic_password_{CODE}"},
                   "paths": [str(data_dir)], "schedule": "*-*-* 02:00:00"},
    }, allow_unicode=True))


@pytest.fixture(scope="module")
def two(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoSites]:
    base = tmp_path_factory.mktemp("vcenters")
    _write_estate(lab, base / "inventory", base / "data")
    state = state_beside(lab, base / "state")
    paths = Paths(state, load_estate(base / "inventory"))
    # the copy's vault (gis's repository is reached from the control host through the
    # repository host's maintenance endpoint: its own server is not needed here)
    assert ensure_lab_secrets(paths) == [f"rest_password_{CODE}", f"restic_password_{CODE}"]
    setup = TwoSites(lab, paths, base / "data")
    try:
        yield setup
    finally:  # whatever a failed test left: gis's VMs in either vCenter
        hopnhat(setup.env, "destroy", "--system", CODE, "--yes", *GATE_OFF)
        for name in (APP, REPLICA):
            wait_for(f"the guest of {name} to go", guest_gone(lab.paths.lab, name), 60)


# ---------------------------------------------------------------- plan and apply


def test_plan_reads_each_sites_vcenter_with_its_own_credentials(two: TwoSites) -> None:
    done = hopnhat(two.env, "plan", "--system", CODE, "--json")
    assert done.returncode == 0, done.stderr
    doc = as_json(done)
    assert [(a["vm"], a["site"], a["action"]) for a in doc["actions"]] == [
        (APP, "danang", "create"), (REPLICA, "quangnam", "create")]
    assert doc["unreachable"] == [] and doc["refusals"] == []
    assert f"Connecting to {two.label('danang')}, {two.label('quangnam')}" in done.stderr
    vault = read_vault(two.paths.vault_file, two.paths.vault_password_file)
    for secret in (vault["vcenter_danang_password"], vault["vcenter_quangnam_password"]):
        assert secret not in done.stdout + done.stderr


def test_apply_makes_each_vm_in_its_own_sites_vcenter(two: TwoSites) -> None:
    lab = two.lab
    reset_counts(lab)
    done = hopnhat(two.env, "apply", "--system", CODE, "--yes", "--json")
    assert done.returncode == 0, done.stderr
    result = as_json(done)["result"]
    assert (result["status"], result["changed"], result["failed"]) == ("ok", 2, 0)
    made = tasks(lab)
    for site in ("danang", "quangnam"):
        assert made[site].get("CloneVM_Task") == 1, made
        assert made[site].get("PowerOnVM_Task") == 1, made
    assert names_in(lab, "danang") == {APP}
    assert names_in(lab, "quangnam") == {REPLICA}
    for name, site in SITE_OF.items():
        (found,) = inventory(lab, site).vms_named(name)
        vm = next(v for v in two.paths.estate.vms if v.name == name)
        assert (found.datacenter, found.ip, found.powered_on) == (vm.datacenter, str(vm.ip),
                                                                  True)
        assert (found.attributes[OWNER], found.attributes[SYSTEM]) == (lab.estate.id, CODE)
    with Ledger(two.paths.ledger) as ledger:
        events = ledger.events(result["run"])
    assert {e["subject"]: e["vcenter"] for e in events} == {
        APP: two.url("danang"), REPLICA: two.url("quangnam")}
    # the lab's hypervisor follows both vCenters: each VM is a real SSH host
    for name in SITE_OF:
        vm = next(v for v in two.paths.estate.vms if v.name == name)
        target = ssh.Target(name, str(vm.ip), 22, "root", lab.paths.private_key,
                            lab.paths.known_hosts)
        assert ssh.wait_for_port(str(vm.ip), 22, timeout=60), f"{name} has no sshd"
        client = ssh.connect(target)
        try:
            assert ssh.execute(client, target, "hostname", timeout=30).stdout.strip() == name
        finally:
            client.close()


def test_a_second_plan_across_both_vcenters_has_no_change(two: TwoSites) -> None:
    reset_counts(two.lab)
    done = hopnhat(two.env, "plan", "--system", CODE, "--detailed-exitcode")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No changes" in done.stdout
    again = hopnhat(two.env, "apply", "--system", CODE, "--yes")
    assert again.returncode == 0, again.stderr
    assert tasks(two.lab) == {"danang": {}, "quangnam": {}}


# ---------------------------------------------------------------- one vCenter failing


def test_a_wrong_password_on_one_vcenter_names_that_one(two: TwoSites,
                                                        tmp_path: Path) -> None:
    estate = tmp_path / "inventory"
    shutil.copytree(two.paths.estate.root, estate)
    vault = estate / "secrets.vault.yml"
    secrets = read_vault(vault, two.paths.vault_password_file)
    secrets["vcenter_quangnam_password"] = "not-quangnams-password"
    write_vault(vault, two.paths.vault_password_file, secrets)
    env = {**two.env, "HOPNHAT_ESTATE": str(estate)}

    done = hopnhat(env, "plan", "--system", CODE, "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    doc = as_json(done)
    assert [(a["vm"], a["action"]) for a in doc["actions"]] == [(APP, "no-op")]
    refused = (f"{two.label('quangnam')}: vCenter refused the login of "
               "'administrator@quangnam.local' (wrong user name or password)")
    assert doc["unreachable"] == [{"vcenter": two.url("quangnam"), "sites": ["quangnam"],
                                   "error": refused, "vms": [REPLICA]}]
    assert refused in done.stderr and f"{two.label('danang')}:" not in done.stderr
    assert "not-quangnams-password" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr

    reset_counts(two.lab)
    applied = hopnhat(env, "apply", "--system", CODE, "--yes")
    assert applied.returncode == 1
    assert refused in applied.stderr and "Traceback" not in applied.stderr
    assert tasks(two.lab) == {"danang": {}, "quangnam": {}}


def test_with_one_vcenter_down_plan_still_shows_the_other_site(two: TwoSites) -> None:
    """Quảng Nam's vcsim is stopped by its PID from the lab's process table: `lab status`
    says so, plan shows Đà Nẵng's VM and names Quảng Nam's vCenter with its URL, apply
    refuses before any task; `lab up` brings a fresh one back (vcsim keeps its inventory in
    memory: the replica is gone with it, and the hypervisor takes its guest away), and
    apply makes the replica again there."""
    lab = two.lab
    table = ProcessTable(lab.paths.lab)
    record = lab.vcsim("quangnam")
    assert record.name == "vcsim-quangnam"
    try:
        os.kill(record.pid, signal.SIGTERM)
        wait_for("Quảng Nam's vcsim to stop", lambda: not is_alive(record), 30)
        status = hopnhat(two.env, "lab", "status", "--json")
        assert status.returncode == 1
        alive = {p["name"]: p["alive"] for p in as_json(status)}
        assert (alive["vcsim-danang"], alive["vcsim-quangnam"]) == (True, False)

        done = hopnhat(two.env, "plan", "--system", CODE, "--json")
        assert done.returncode == 1, done.stdout + done.stderr
        doc = as_json(done)
        assert [(a["vm"], a["site"], a["action"]) for a in doc["actions"]] == [
            (APP, "danang", "no-op")]
        (gone,) = doc["unreachable"]
        assert (gone["vcenter"], gone["sites"], gone["vms"]) == (
            two.url("quangnam"), ["quangnam"], [REPLICA])
        assert gone["error"].startswith(f"{two.label('quangnam')}: cannot reach vCenter (")
        assert "1 vCenter(s) could not be read" in done.stderr
        assert gone["error"] in done.stderr and "Traceback" not in done.stderr

        people = hopnhat(two.env, "plan", "--system", CODE, "--detailed-exitcode")
        assert people.returncode == 1
        assert APP in people.stdout and "not read:" in people.stdout
        assert "No changes" not in people.stdout

        danang = lab.vcsim("danang")
        vcsim.reset_method_counts(danang.address, danang.details["cafile"])
        applied = hopnhat(two.env, "apply", "--system", CODE, "--yes")
        assert applied.returncode == 1
        assert f"{two.label('quangnam')}: cannot reach vCenter" in applied.stderr
        counts = vcsim.method_counts(danang.address, danang.details["cafile"])
        assert not [name for name in counts if name.endswith("_Task")], counts
    finally:
        control.up(lab.paths)  # starts only what is not running: Quảng Nam's vcsim
    assert table.running("vcsim-quangnam") is not None
    assert lab.vcsim("danang").pid != lab.vcsim("quangnam").pid
    wait_for(f"the hypervisor to take {REPLICA}'s guest away", lambda: not (
        lab.paths.lab / "guests" / REPLICA).exists(), 60)
    assert table.running(guests.record_name(APP)) is not None  # Đà Nẵng's VM runs on
    plan = as_json(hopnhat(two.env, "plan", "--system", CODE, "--json"))
    assert {a["vm"]: a["action"] for a in plan["actions"]} == {APP: "no-op",
                                                               REPLICA: "create"}
    done = hopnhat(two.env, "apply", "--system", CODE, "--yes")
    assert done.returncode == 0, done.stderr
    assert names_in(lab, "quangnam") == {REPLICA}
    wait_for(f"{REPLICA}'s guest", lambda: table.running(guests.record_name(REPLICA)))


# ---------------------------------------------------------------- backup gate and destroy


def test_destroy_across_both_vcenters_waits_for_a_fresh_backup_of_the_replica(
        two: TwoSites) -> None:
    lab = two.lab
    reset_counts(lab)
    refused = hopnhat(two.env, "destroy", "--system", CODE, "--yes")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "the backup gate refuses this destroy" in refused.stderr
    assert REPLICA in refused.stderr and APP not in refused.stderr.split("refuses")[1]
    assert tasks(lab) == {"danang": {}, "quangnam": {}}
    assert (names_in(lab, "danang"), names_in(lab, "quangnam")) == ({APP}, {REPLICA})

    # a fresh snapshot of the replica (the VM in Quảng Nam's vCenter) opens the gate
    data.generate(two.data, f"vcenters/{CODE}", 0.5, 10)
    with open_repository(two.paths, CODE) as repo:
        restic = Restic(repo, timeout=300)
        restic.init(exist_ok=True)
        restic.backup([two.data], [f"system={CODE}", "tier=3", f"host={REPLICA}"],
                      host=REPLICA, time=datetime.now(UTC))
    done = hopnhat(two.env, "destroy", "--system", CODE, "--yes", "--json")
    assert done.returncode == 0, done.stderr
    doc = as_json(done)
    assert doc["backup_gate"]["status"] == "passed"
    assert sorted(a["vm"] for a in doc["plan"]["destroy"]) == [APP, REPLICA]
    made = tasks(lab)
    assert made["danang"].get("Destroy_Task") == 1 and made["quangnam"].get(
        "Destroy_Task") == 1, made
    assert names_in(lab, "danang") == set() and names_in(lab, "quangnam") == set()
    for name in SITE_OF:
        wait_for(f"the guest of {name} to go", guest_gone(lab.paths.lab, name), 60)
