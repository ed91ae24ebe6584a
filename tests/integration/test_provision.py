"""``hopnhat plan | apply | destroy`` against the lab: vcsim as vCenter, one real sshd guest
per powered-on VM. The commands run as an operator types them (the installed console
script, in a subprocess). vCenter's work is counted from the simulator's own trace
(GET /lab/methods: SOAP calls by method name).

Every system here lives at site danang: the tests work on Đà Nẵng's vCenter (the lab runs
one vcsim per site), each on its own systems (qlvb, sso, video, opendata, lgsp, dvc), and
the test that stops that vcsim runs last. Work across both vCenters is test_vcenters.py's.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVmomi import vim

from orchestrator import process
from orchestrator.adapters import ssh, vsphere, vsphere_specs
from orchestrator.adapters.vault import read_vault, write_vault
from orchestrator.adapters.vsphere_facts import (
    ADOPTED,
    OWNER,
    PROVISIONED,
    SYSTEM,
    TIER,
    Inventory,
    VMFacts,
    read_inventory,
)
from orchestrator.lab import control, guests, vcsim
from orchestrator.lab.config import load_lab_config
from orchestrator.lab.processes import ProcessTable
from orchestrator.ledger import Ledger
from tests.helpers import (
    HOPNHAT,
    as_json,
    estate_copy,
    guest_gone,
    hopnhat,
    replace_in,
    wait_for,
)

pytestmark = pytest.mark.lab

DC = "DC-DaNang"
GB = 1024 * 1024  # KB
# qlvb-db-01 holds data and is never backed up here: its changes pass the backup gate by an
# override (the gate itself is tested in test_backup.py)
NO_GATE = ("--no-backup-gate", "--reason", "test_provision: provisioning, not backups")


# ---------------------------------------------------------------- helpers


VCSIM = "vcsim-danang"  # Đà Nẵng's vCenter, where every system of this module lives


def vcsim_record(lab: Any) -> Any:
    rec = ProcessTable(lab.paths.lab).running(VCSIM)
    assert rec is not None, f"{VCSIM} is not running"
    return rec


def method_counts(lab: Any) -> dict[str, int]:
    rec = vcsim_record(lab)
    return vcsim.method_counts(rec.address, rec.details["cafile"])


def reset_counts(lab: Any) -> None:
    rec = vcsim_record(lab)
    vcsim.reset_method_counts(rec.address, rec.details["cafile"])


def tasks(counts: dict[str, int]) -> dict[str, int]:
    return {name: n for name, n in counts.items() if name.endswith("_Task")}


def inventory(lab: Any) -> Inventory:
    with vsphere.open_vcenter(lab.endpoint()) as vc:
        return read_inventory(vc)


def the_vm(inv: Inventory, name: str) -> VMFacts:
    """The VM ``name`` that hopnhat builds, in its datacenter's VM folder (Đà Nẵng's own
    legacy qlvb-db-01, in folder Legacy/QLVB, shares the name)."""
    found = [vm for vm in inv.vms_named(name) if vm.folder == ""]
    assert len(found) == 1, f"{len(found)} VMs named {name}"
    return found[0]


def make_vm(lab: Any, name: str, attributes: dict[str, str] | None = None,
            second_nic: bool = False) -> None:
    """A VM made behind hopnhat's back (by pyVmomi), optionally with custom attributes
    and a second network card."""
    with vsphere.open_vcenter(lab.endpoint()) as vc:
        inv = read_inventory(vc, lambda _: False)
        template = inv.templates[(DC, "tpl-debian12")]
        spec = vsphere_specs.clone_spec(inv.clusters[(DC, "CL-DN-01")].pool,
                                  inv.datastores[(DC, "DS-DN-SSD-01")].ref, None)
        ref = vc.clone_vm(template.ref, inv.datacenters[DC].vm_folder, name, spec)
        if attributes:
            fields = vc.ensure_fields(list(attributes), inv.fields)
            vc.set_fields(ref, name, {fields[k]: v for k, v in attributes.items()})
        if second_nic:
            network = inv.networks[(DC, "PG-DN-SRV")]
            card = vim.vm.device.VirtualVmxnet3(
                key=-1, addressType="generated",
                backing=vsphere_specs.nic_backing(network.name, network.ref))
            vc.reconfigure_vm(ref, name, vim.vm.ConfigSpec(deviceChange=[
                vim.vm.device.VirtualDeviceSpec(operation="add", device=card)]))


def hostname_over_ssh(lab: Any, name: str, ip: str, timeout: float = 60) -> str:
    """``hostname`` run on the guest at ``ip``, host key checked against the lab's
    known_hosts (RejectPolicy); retried until the guest is up."""
    target = ssh.Target(host=name, address=ip, port=22, user="root",
                        key_file=lab.paths.private_key, known_hosts=lab.paths.known_hosts)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client = ssh.connect(target, timeout=5)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
            continue
        try:
            return ssh.execute(client, target, "hostname", timeout=30).stdout.strip()
        finally:
            client.close()


def lab_delays(lab: Any) -> dict[str, Any]:
    return load_lab_config(lab.estate).delays.model_dump()


@pytest.fixture(scope="module")
def qlvb_applied(lab: Any) -> Iterator[dict[str, Any]]:
    """System qlvb provisioned once for the tests that look at it."""
    done = hopnhat(lab.env, "apply", "--system", "qlvb", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    yield as_json(done)


# ---------------------------------------------------------------- plan and apply


def test_plan_on_an_empty_site_lists_the_creates(lab: Any) -> None:
    done = hopnhat(lab.env, "plan", "--system", "qlvb", "--json")
    assert done.returncode == 0, done.stderr
    doc = as_json(done)
    assert [(a["vm"], a["action"]) for a in doc["actions"]] == [
        ("qlvb-app-01", "create"), ("qlvb-app-02", "create"), ("qlvb-db-01", "create")]
    assert doc["totals"]["add_cpu"] == 16 and doc["refusals"] == []
    people = hopnhat(lab.env, "plan", "--system", "qlvb", "--detailed-exitcode")
    assert people.returncode == 2, people.stderr
    assert "Plan: 3 to create" in people.stdout


def test_apply_creates_vms_with_their_size_address_name_and_marks(
        lab: Any, qlvb_applied: dict[str, Any]) -> None:
    result = qlvb_applied["result"]
    assert (result["status"], result["changed"], result["failed"]) == ("ok", 3, 0)
    inv = inventory(lab)
    for vm in lab.estate.vms_of("qlvb"):
        found = the_vm(inv, vm.name)
        assert (found.cpu, found.memory_mb, found.ip, found.hostname, found.powered_on) == (
            vm.cpu, vm.memory_mb, str(vm.ip), vm.name, True)
        assert found.disks_kb == tuple(d * GB for d in vm.disks_gb)
        assert found.port_groups == (vm.port_group,)
        assert (found.cluster, found.datastores) == (vm.cluster, (vm.datastore,))
        assert {k: found.attributes[k] for k in (OWNER, SYSTEM, TIER)} == {
            OWNER: lab.estate.id, SYSTEM: "qlvb", TIER: "1"}
        assert found.attributes[PROVISIONED] == result["run"]
    with Ledger(lab.paths.ledger) as ledger:
        run = next(r for r in ledger.runs("provision") if r.id == result["run"])
        assert run.status == "ok"
        assert sorted(e["subject"] for e in ledger.events(run.id)) == [
            "qlvb-app-01", "qlvb-app-02", "qlvb-db-01"]


def test_each_created_vm_answers_ssh_as_itself(lab: Any, qlvb_applied: dict[str, Any]) -> None:
    for vm in lab.estate.vms_of("qlvb"):
        assert hostname_over_ssh(lab, vm.name, str(vm.ip)) == vm.name


def test_second_plan_says_no_changes(lab: Any, qlvb_applied: dict[str, Any]) -> None:
    done = hopnhat(lab.env, "plan", "--system", "qlvb", "--detailed-exitcode")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No changes" in done.stdout
    doc = as_json(hopnhat(lab.env, "plan", "--system", "qlvb", "--json"))
    assert {a["action"] for a in doc["actions"]} == {"no-op"}
    assert all("matches the estate" in a["reason"] for a in doc["actions"])


def test_second_apply_makes_no_vcenter_task(lab: Any, qlvb_applied: dict[str, Any]) -> None:
    reset_counts(lab)
    done = hopnhat(lab.env, "apply", "--system", "qlvb", "--yes")
    assert done.returncode == 0, done.stderr
    counts = method_counts(lab)
    assert tasks(counts) == {}
    assert "SetField" not in counts and "AddCustomFieldDef" not in counts
    # the reads: view + one RetrievePropertiesEx for the inventory, one for the devices
    assert counts["RetrievePropertiesEx"] <= 3, counts


def test_the_lean_reader_sees_what_pyvmomi_sees(lab: Any, qlvb_applied: dict[str, Any]) -> None:
    with vsphere.open_vcenter(lab.endpoint()) as vc:
        lean, full = read_inventory(vc, lean=True), read_inventory(vc, lean=False)
    assert [v for v in lean.vms if v.name.startswith("qlvb-")]
    for part in ("vms", "templates", "clusters", "hosts", "datastores", "networks", "fields",
                 "datacenters"):
        assert getattr(lean, part) == getattr(full, part), part


def test_a_plan_rereads_device_lists_only_of_vms_whose_configuration_changed(
        lab: Any, qlvb_applied: dict[str, Any]) -> None:
    hopnhat(lab.env, "plan", "--system", "qlvb")  # the device cache as a plan leaves it
    assert lab.paths.device_cache.stat().st_mode & 0o777 == 0o600
    reset_counts(lab)
    assert hopnhat(lab.env, "plan", "--system", "qlvb", "--detailed-exitcode").returncode == 0
    assert method_counts(lab)["RetrievePropertiesEx"] == 1  # no device list read

    # qlvb-app-01's network card moved to another port group behind hopnhat's back
    with vsphere.open_vcenter(lab.endpoint()) as vc:
        inv = read_inventory(vc, lambda found: found.name == "qlvb-app-01")
        vm = the_vm(inv, "qlvb-app-01")
        card = next(d for d in vc.vm_devices(vm.ref, vm.name)
                    if isinstance(d, vim.vm.device.VirtualEthernetCard))
        other = inv.networks[(DC, "PG-DN-DB")]
        card.backing = vsphere_specs.nic_backing(other.name, other.ref)
        vc.reconfigure_vm(vm.ref, vm.name, vim.vm.ConfigSpec(deviceChange=[
            vim.vm.device.VirtualDeviceSpec(operation="edit", device=card)]))
    reset_counts(lab)
    doc = as_json(hopnhat(lab.env, "plan", "--system", "qlvb", "--json"))
    assert method_counts(lab)["RetrievePropertiesEx"] == 2  # the changed VM's devices
    assert {a["vm"]: (a["action"], a["changes"]) for a in doc["actions"]} == {
        "qlvb-app-01": ("reconfigure", [{"what": "network", "from": "PG-DN-DB",
                                         "to": "PG-DN-SRV"}]),
        "qlvb-app-02": ("no-op", []), "qlvb-db-01": ("no-op", [])}
    assert hopnhat(lab.env, "apply", "--system", "qlvb", "--yes").returncode == 0
    assert the_vm(inventory(lab), "qlvb-app-01").port_groups == ("PG-DN-SRV",)
    assert hopnhat(lab.env, "plan", "--system", "qlvb", "--detailed-exitcode").returncode == 0


def test_changing_one_vms_cpu_reconfigures_only_that_vm(
        lab: Any, qlvb_applied: dict[str, Any], tmp_path: Path) -> None:
    env = estate_copy(lab, tmp_path, lambda root: replace_in(
        root / "systems" / "qlvb.yml", "cpu: 8", "cpu: 12"))
    doc = as_json(hopnhat(env, "plan", "--system", "qlvb", "--json"))
    lines = {a["vm"]: (a["action"], a["changes"]) for a in doc["actions"]}
    assert lines == {"qlvb-app-01": ("no-op", []), "qlvb-app-02": ("no-op", []),
                     "qlvb-db-01": ("reconfigure", [{"what": "cpu", "from": "8", "to": "12"}])}
    reset_counts(lab)
    done = hopnhat(env, "apply", "--system", "qlvb", "--yes", *NO_GATE)
    assert done.returncode == 0, done.stderr
    assert tasks(method_counts(lab)) == {"ReconfigVM_Task": 1}
    assert the_vm(inventory(lab), "qlvb-db-01").cpu == 12


def test_a_foreign_vm_with_a_wanted_name_is_refused(lab: Any) -> None:
    make_vm(lab, "sso-idp-01")  # sso's name, not made by hopnhat
    reset_counts(lab)
    done = hopnhat(lab.env, "apply", "--system", "sso", "--yes")
    assert done.returncode == 1
    assert "sso-idp-01: a VM named sso-idp-01 exists in DC-DaNang/CL-DN-01 without " \
           "hopnhat's mark: not ours, left alone" in done.stderr
    assert "nothing was changed" in done.stderr and "Traceback" not in done.stderr
    assert tasks(method_counts(lab)) == {}
    plan = as_json(hopnhat(lab.env, "plan", "--system", "sso", "--json"))
    assert {a["vm"]: a["action"] for a in plan["actions"]} == {
        "sso-idp-01": "foreign", "sso-db-01": "create"}


def test_destroy_removes_only_the_vms_hopnhat_owns(
        lab: Any, qlvb_applied: dict[str, Any]) -> None:
    # another estate's VM marked for a system called qlvb: same words, not ours
    make_vm(lab, "qlvb-legacy-01", {OWNER: "hue", SYSTEM: "qlvb"})
    table = ProcessTable(lab.paths.lab)
    wait_for("the qlvb guests", lambda: all(
        table.running(guests.record_name(vm.name)) for vm in lab.estate.vms_of("qlvb")))

    refused = hopnhat(lab.env, "destroy", "--system", "qlvb", *NO_GATE, input="qlv\n")
    assert refused.returncode == 1 and "cancelled" in refused.stderr
    assert len(inventory(lab).vms_named("qlvb-app-01")) == 1

    done = hopnhat(lab.env, "destroy", "--system", "qlvb", *NO_GATE, input="qlvb\n")
    assert done.returncode == 0, done.stderr
    assert "qlvb-db-01" in done.stdout and "qlvb-legacy-01" not in done.stdout
    inv = inventory(lab)
    # everything of qlvb that hopnhat built is gone; a VM it adopted (Đà Nẵng's own
    # qlvb-db-01, system qlvbdn, once test_merger_day_one adopted it) never is
    assert not [v for v in inv.vms if v.name.startswith("qlvb-") and v.owner == lab.estate.id
                and ADOPTED not in v.attributes]
    assert [v.folder for v in inv.vms_named("qlvb-db-01")] == ["Legacy/QLVB"]
    assert the_vm(inv, "qlvb-legacy-01").owner == "hue"  # never touched
    assert the_vm(inv, "sso-idp-01").owner is None
    def taken_away(vm: str) -> Callable[[], bool]:
        disk_gone = guest_gone(lab.paths.lab, vm)
        return lambda: table.running(guests.record_name(vm)) is None and disk_gone()

    for vm in lab.estate.vms_of("qlvb"):  # the lab's hypervisor takes the guests away
        wait_for(f"guest {vm.name} to go", taken_away(vm.name))
    again = hopnhat(lab.env, "destroy", "--system", "qlvb", "--yes")
    assert again.returncode == 0 and "Nothing to destroy" in again.stdout


# ---------------------------------------------------------------- refusals and errors


def test_capacity_overflow_is_refused_before_any_task(lab: Any, tmp_path: Path) -> None:
    env = estate_copy(lab, tmp_path, lambda root: replace_in(
        root / "systems" / "video.yml", "memory_mb: 16384", "memory_mb: 4194304"))
    reset_counts(lab)
    done = hopnhat(env, "apply", "--system", "video", "--yes")
    assert done.returncode == 1
    assert "cluster DC-DaNang/CL-DN-01: memory MB short by" in done.stderr
    assert "video-mcu-01: 4194304 MB exceed every host of CL-DN-01" in done.stderr
    assert tasks(method_counts(lab)) == {}
    assert inventory(lab).vms_named("video-mcu-01") == []


def test_wrong_password_is_a_clear_error_and_exit_1(lab: Any, tmp_path: Path) -> None:
    def wrong_password(root: Path) -> None:
        vault = root / "secrets.vault.yml"
        secrets = read_vault(vault, lab.paths.vault_password_file)
        secrets["vcenter_danang_password"] = "not-the-password"
        write_vault(vault, lab.paths.vault_password_file, secrets)

    env = estate_copy(lab, tmp_path, wrong_password)
    done = hopnhat(env, "plan", "--system", "qlvb")
    assert done.returncode == 1
    assert "refused the login of 'administrator@vsphere.local' (wrong user name or " \
           "password)" in done.stderr
    assert "not-the-password" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_template_is_named(lab: Any, tmp_path: Path) -> None:
    env = estate_copy(lab, tmp_path, lambda root: replace_in(
        root / "sites" / "danang.yml", "templates: [tpl-debian12]", "templates: [tpl-gone]"))
    done = hopnhat(env, "plan", "--system", "opendata")
    assert done.returncode == 1
    assert "DC-DaNang: no template 'tpl-gone' (templates there: tpl-debian12), wanted by " \
           "opendata-portal-01" in done.stderr


def test_tls_is_verified_unless_insecure_is_asked(lab: Any, tmp_path: Path) -> None:
    def no_bundle(root: Path) -> None:
        for site in (root / "sites").glob("*.yml"):
            replace_in(site, f"  ca_bundle: lab/vcsim-{site.stem}/cert.pem", "")
    env = estate_copy(lab, tmp_path, no_bundle)
    done = hopnhat(env, "plan", "--system", "opendata")
    assert done.returncode == 1
    assert "the vCenter certificate is not trusted" in done.stderr
    insecure = hopnhat(env, "plan", "--system", "opendata", "--insecure")
    assert insecure.returncode == 0, insecure.stderr
    assert "TLS verification of vCenter" in insecure.stderr
    assert "(site danang) is OFF (--insecure)" in insecure.stderr


# ---------------------------------------------------------------- failures half-way


def test_a_failed_vm_does_not_stop_the_others_and_the_run_is_partial(lab: Any) -> None:
    # a half-made ioc-app-01 (ours, not provisioned) with two NICs: vCenter refuses its
    # one-NIC customization (NicSettingMismatch); email-mail-01 is independent of it
    make_vm(lab, "ioc-app-01", {OWNER: lab.estate.id, SYSTEM: "ioc", TIER: "3"},
            second_nic=True)
    done = hopnhat(lab.env, "apply", "--system", "ioc", "--system", "email", "--yes", "--json")
    assert done.returncode == 3, done.stderr
    result = as_json(done)["result"]
    outcomes = {o["vm"]: o for o in result["vms"]}
    assert result["status"] == "partial"
    assert outcomes["email-mail-01"]["ok"] is True
    failed = outcomes["ioc-app-01"]
    assert (failed["ok"], failed["action"], failed["failed_step"]) == (False, "resume",
                                                                      "customize")
    assert "NicSettingMismatch" in failed["error"]
    with Ledger(lab.paths.ledger) as ledger:
        events = ledger.events(result["run"])
    assert {(e["subject"], e["kind"]) for e in events} == {
        ("email-mail-01", "create"), ("ioc-app-01", "failed")}
    assert the_vm(inventory(lab), "email-mail-01").attributes[PROVISIONED] == result["run"]


def test_a_run_cut_off_mid_clone_is_finished_by_the_next_apply(
        lab: Any, tmp_path: Path) -> None:
    """The apply process dies (SIGKILL) while vCenter clones: vCenter finishes the clone
    with no custom attribute on it — only the mark of hopnhat's clone spec. The next run
    recognises it as its own and finishes it (customize, power on, IP, marks)."""
    table = ProcessTable(lab.paths.lab)
    vcsim.set_delays(lab.paths.lab, table, {"methods": {"CloneVM_Task": 1500}}, name=VCSIM)
    try:
        reset_counts(lab)
        proc = process.spawn([str(HOPNHAT), "apply", "--system", "lgsp", "--yes"],
                             env=lab.env, log=tmp_path / "apply.log")
        wait_for("the clone to start", lambda: method_counts(lab).get("CloneVM_Task"))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        half = wait_for("vCenter to finish the clone", lambda: inventory(lab).vms_named(
            "lgsp-esb-01"))[0]
    finally:
        vcsim.set_delays(lab.paths.lab, table, lab_delays(lab), name=VCSIM)
    assert OWNER not in half.attributes and half.owner == lab.estate.id
    assert not half.powered_on
    plan = as_json(hopnhat(lab.env, "plan", "--system", "lgsp", "--json"))
    assert [(a["vm"], a["action"]) for a in plan["actions"]] == [("lgsp-esb-01", "resume")]
    done = hopnhat(lab.env, "apply", "--system", "lgsp", "--yes")
    assert done.returncode == 0, done.stderr
    found = the_vm(inventory(lab), "lgsp-esb-01")
    wanted_ip = next(str(vm.ip) for vm in lab.estate.vms if vm.name == "lgsp-esb-01")
    assert (found.cpu, found.ip, found.powered_on) == (4, wanted_ip, True)
    assert found.attributes[OWNER] == lab.estate.id and PROVISIONED in found.attributes
    assert hopnhat(lab.env, "plan", "--system", "lgsp", "--detailed-exitcode").returncode == 0


def test_vcenter_stopped_mid_apply_is_a_clear_error_and_a_rerun_converges(
        lab: Any, tmp_path: Path) -> None:
    """vcsim is stopped (by its recorded PID) while clones are in flight: every VM fails
    with a message naming vCenter, exit 1, no traceback. vcsim keeps its inventory in
    memory, so the restarted one has none of the VMs: the rerun proves the error path and
    a clean convergence after it, not the finishing of half-made VMs (the test above)."""
    table = ProcessTable(lab.paths.lab)
    vcsim.set_delays(lab.paths.lab, table, {"methods": {"CloneVM_Task": 3000}}, name=VCSIM)
    log = tmp_path / "apply.log"
    proc = process.spawn([str(HOPNHAT), "apply", "--system", "dvc", "--yes"],
                         env={**lab.env, "COLUMNS": "200"}, log=log)
    try:
        wait_for("the clones to start", lambda: method_counts(lab).get("CloneVM_Task", 0) >= 3)
        assert vcsim.stop(table, name=VCSIM)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        control.up(lab.paths)  # a fresh vcsim with the lab's own delays
    output = log.read_text()
    assert code == 1, output
    for vm in lab.estate.vms_of("dvc"):
        assert f"lost the connection to vCenter while cloning {vm.name} (" in output, output
    assert "0 done, 3 failed" in output and "Traceback" not in output

    done = hopnhat(lab.env, "apply", "--system", "dvc", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    assert as_json(done)["result"]["changed"] == 3
    assert hopnhat(lab.env, "plan", "--system", "dvc", "--detailed-exitcode").returncode == 0
    db_ip = next(str(vm.ip) for vm in lab.estate.vms if vm.name == "dvc-db-01")
    assert hostname_over_ssh(lab, "dvc-db-01", db_ip) == "dvc-db-01"
