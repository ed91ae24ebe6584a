"""The merger's first day against the lab: the VMs the two former provinces built by hand
(``lab.yml``'s legacy VMs, with real guests and data) are discovered, adopted, trusted,
configured and backed up — as an operator types it (test_migrate then moves one).

The example estate declares two of them (``qlvbdn``: Đà Nẵng's own ``qlvb-db-01`` in folder
Legacy/QLVB; ``qlvbqn``: Quảng Nam's ``qlvb-db-01`` in folder QLVB) and leaves two out
(``portal-web-01``, undeclared; ``motcua-app-01``, owned by estate ``quangnam-vnpt``). The
tests run in order on the session's lab and its state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.adapters import vsphere
from orchestrator.adapters.vsphere_facts import ADOPTED, OWNER, SYSTEM, TIER, read_inventory
from orchestrator.lab import guests
from tests.helpers import LabHandle, as_json, estate_copy, hopnhat, replace_in

pytestmark = pytest.mark.lab

QN, DN = "qlvbqn", "qlvbdn"
HOST = "qlvbqn-db-01"
ADOPTABLE = ("--system", QN, "--system", DN)


def vcenter_vms(lab: LabHandle) -> dict[tuple[str, str, str], Any]:
    """(datacenter, folder, name) → facts of every VM of both vCenters."""
    from orchestrator.actions.provision.vcenters import endpoints

    out = {}
    with vsphere.open_vcenters(endpoints(lab.paths, list(lab.paths.estate.sites))) as vcs:
        for vc in vcs.values():
            for vm in read_inventory(vc, lambda _: False).vms:
                out[(vm.datacenter or "", vm.folder, vm.name)] = vm
    return out


def operator_key(lab: LabHandle) -> Path:
    return lab.state_dir / "lab" / "operator" / "id_ed25519"


def test_discover_lists_exactly_what_the_estate_does_not_describe(lab: LabHandle,
                                                                 tmp_path: Path) -> None:
    done = hopnhat(lab.env, "discover", "--json")
    assert done.returncode == 0, done.stderr
    doc = as_json(done)
    found = {(vm["datacenter"], vm["folder"], vm["name"]): vm for vm in doc["vms"]}
    assert set(found) == {("DC-DaNang", "Legacy/Portal", "portal-web-01"),
                          ("DC-QuangNam", "MotCua", "motcua-app-01")}
    portal = found[("DC-DaNang", "Legacy/Portal", "portal-web-01")]
    primary = str(lab.paths.estate.sites["danang"].networks["srv"].gateway).rsplit(".", 1)[0]
    assert (portal["ip"], portal["hostname"], portal["cpu"], portal["memory_mb"],
            portal["disks_gb"], portal["network"], portal["power_state"]) == \
        (f"{primary}.6", "portal-web-01", 2, 4096, [40], "srv", "poweredOn")
    assert portal["uuid"] and portal["owner"] is None
    assert found[("DC-QuangNam", "MotCua", "motcua-app-01")]["owner"] == "quangnam-vnpt"
    assert [c["code"] for c in doc["candidates"]] == ["portal"]

    # drafts: written once, never overwritten, and refused by validate until filled
    env = estate_copy(lab, tmp_path, lambda _: None)
    drafts = tmp_path / "drafts"
    first = hopnhat(env, "discover", "--site", "danang", "--write", str(drafts))
    assert first.returncode == 0, first.stderr
    draft = (drafts / "portal.yml").read_text()
    assert f"uuid: {portal['uuid']}" in draft and "FILL IN" in draft
    again = hopnhat(env, "discover", "--site", "danang", "--write", str(drafts))
    assert again.returncode == 2 and "never overwrites" in again.stderr
    assert (drafts / "portal.yml").read_text() == draft
    (Path(env["HOPNHAT_ESTATE"]) / "systems" / "portal.yml").write_text(draft)
    refused = hopnhat(env, "estate", "validate")
    assert refused.returncode == 2
    for key in ("'tier'", "'backup.paths'", "'drill.probes'"):
        assert f"systems/portal.yml: at {key}" in refused.stderr, refused.stderr
    assert hopnhat(env, "discover", "--site", "nowhere").returncode == 2


def test_plan_shows_the_adoption_and_apply_writes_only_the_marks(lab: LabHandle) -> None:
    before = vcenter_vms(lab)
    plan = as_json(hopnhat(lab.env, "plan", *ADOPTABLE, "--json"))
    kinds = {(a["vm"], a["site"], a["vcenter_vm"]): a["action"] for a in plan["actions"]}
    assert kinds == {("qlvbdn-db-01", "danang", "qlvb-db-01"): "adopt",
                     ("qlvbqn-db-01", "quangnam", "qlvb-db-01"): "adopt"}
    assert hopnhat(lab.env, "plan", *ADOPTABLE, "--detailed-exitcode").returncode == 2
    done = hopnhat(lab.env, "apply", *ADOPTABLE, "--yes", "--json")
    assert done.returncode == 0, done.stderr
    assert [v["action"] for v in as_json(done)["result"]["vms"]] == ["adopt", "adopt"]
    after = vcenter_vms(lab)
    assert after.keys() == before.keys()
    for key, vm in after.items():
        old = before[key]
        if key in (("DC-DaNang", "Legacy/QLVB", "qlvb-db-01"), ("DC-QuangNam", "QLVB",
                                                                "qlvb-db-01")):
            code = DN if key[0] == "DC-DaNang" else QN
            assert vm.attributes[OWNER] == lab.paths.estate.id
            assert (vm.attributes[SYSTEM], vm.attributes[TIER]) == \
                (code, str(lab.paths.estate.systems[code].tier))
            assert vm.attributes[ADOPTED].startswith("provision")
            # nothing but the marks: same hardware, power, name, place
            assert (vm.cpu, vm.memory_mb, vm.power_state, vm.uuid, vm.ip) == \
                (old.cpu, old.memory_mb, old.power_state, old.uuid, old.ip)
        else:
            assert vm.attributes == old.attributes, key
    assert hopnhat(lab.env, "plan", *ADOPTABLE, "--detailed-exitcode").returncode == 0
    second = as_json(hopnhat(lab.env, "apply", *ADOPTABLE, "--yes", "--json"))
    assert second["result"]["vms"] == [] and second["result"]["status"] == "no changes"


def test_drift_is_shown_and_changed_only_where_managed(lab: LabHandle, tmp_path: Path) -> None:
    env = estate_copy(lab, tmp_path, lambda d: replace_in(
        d / "systems" / f"{QN}.yml", "cpu: 4 ", "cpu: 8 "))
    plan = as_json(hopnhat(env, "plan", "--system", QN, "--json"))
    [act] = plan["actions"]
    assert act["action"] == "drift" and {"what": "cpu", "from": "4", "to": "8"} in \
        act["changes"]
    assert hopnhat(env, "plan", "--system", QN, "--detailed-exitcode").returncode == 0
    replace_in(Path(env["HOPNHAT_ESTATE"]) / "systems" / f"{QN}.yml",
               "manage_hardware: false", "manage_hardware: true")
    plan = as_json(hopnhat(env, "plan", "--system", QN, "--json"))
    assert plan["actions"][0]["action"] == "reconfigure"
    assert "reconfigure" in plan["actions"][0]["steps"]


def test_an_adoption_hopnhat_cannot_make_is_named_and_refused(lab: LabHandle,
                                                              tmp_path: Path) -> None:
    def other_estates(d: Path) -> None:
        (d / "systems" / "motcua.yml").write_text(yaml.safe_dump({
            "name": "Một cửa", "code": "motcua", "tier": 2, "vms": [{
                "role": "app", "site": "quangnam", "network": "srv",
                "existing": [{"vm": "motcua-app-01",
                              "address": str(lab.paths.estate.sites["quangnam"].networks[
                                  "srv"].gateway).rsplit(".", 1)[0] + ".6"}]}]}))

    env = estate_copy(lab, tmp_path, other_estates)
    done = hopnhat(env, "apply", "--system", "motcua", "--yes")
    assert done.returncode == 2 and "owned by estate 'quangnam-vnpt'" in done.stdout + \
        done.stderr
    ghost = estate_copy(lab, tmp_path / "ghost", lambda d: replace_in(
        d / "systems" / f"{QN}.yml", "vm: qlvb-db-01", "vm: qlvb-db-09"))
    gone = hopnhat(ghost, "plan", "--system", QN)
    assert gone.returncode == 2 and "no VM named qlvb-db-09" in gone.stdout + gone.stderr
    # destroy never destroys what hopnhat adopted
    refused = hopnhat(lab.env, "destroy", "--system", QN, "--yes", "--no-backup-gate",
                      "--reason", "test")
    assert refused.returncode == 2 and "never destroys an adopted VM" in refused.stderr
    assert ("DC-QuangNam", "QLVB", "qlvb-db-01") in vcenter_vms(lab)


def test_an_adopted_host_is_trusted_only_on_a_word_for_its_key(lab: LabHandle) -> None:
    known = lab.paths.known_hosts.read_text()
    untrusted = hopnhat(lab.env, "configure", "--system", QN)
    assert untrusted.returncode == 3, untrusted.stdout + untrusted.stderr
    assert f"hosts trust --host {HOST}" in untrusted.stdout
    wrong = hopnhat(lab.env, "hosts", "trust", "--host", HOST, "--fingerprint",
                    "SHA256:" + "A" * 43)
    assert wrong.returncode == 2 and "not the fingerprint given" in wrong.stderr
    silent = hopnhat(lab.env, "hosts", "trust", "--host", HOST)  # no terminal, no word
    assert silent.returncode == 2 and "nothing was recorded" in silent.stderr
    assert lab.paths.known_hosts.read_text() == known
    offered = guests.host_key_fingerprint(lab.state_dir / "lab",
                                          "qlvb-db-01.dc-quangnam")
    done = hopnhat(lab.env, "hosts", "trust", "--host", HOST, "--yes", "--login-key",
                   str(operator_key(lab)), "--json")
    assert done.returncode == 0, done.stderr
    doc = as_json(done)
    assert doc["check"]["vcenter_fingerprint"] == offered == doc["result"]["fingerprint"]
    assert doc["result"]["confirmed_by"] == "vcenter" and doc["result"]["key_installed"]
    # the other province's: the operator's own fingerprint, vCenter not asked
    other = guests.host_key_fingerprint(lab.state_dir / "lab", "qlvb-db-01.dc-danang")
    assert other != offered
    by_hand = hopnhat(lab.env, "hosts", "trust", "--host", "qlvbdn-db-01", "--no-vcenter",
                      "--fingerprint", other, "--login-key", str(operator_key(lab)))
    assert by_hand.returncode == 0, by_hand.stderr
    assert "vouched for by --fingerprint" in by_hand.stdout
    again = as_json(hopnhat(lab.env, "hosts", "trust", "--host", HOST, "--json"))
    assert (again["result"]["recorded"], again["result"]["key_installed"],
            again["result"]["hopnhat_key_works"]) == (False, False, True)


def test_a_host_that_does_not_answer_is_named(lab: LabHandle, tmp_path: Path) -> None:
    env = estate_copy(lab, tmp_path, lambda d: replace_in(
        d / "systems" / f"{DN}.yml", "1.5}", "1.99}"))
    done = hopnhat(env, "hosts", "trust", "--host", "qlvbdn-db-01", "--yes")
    assert done.returncode == 2 and "cannot connect" in done.stderr
    assert "qlvbdn-db-01" in done.stderr and "nothing was recorded" in done.stderr
    unknown = hopnhat(env, "hosts", "trust", "--host", "nobody-01")
    assert unknown.returncode == 2 and "no host 'nobody-01'" in unknown.stderr


def test_an_adopted_host_is_configured_and_backed_up(lab: LabHandle) -> None:
    """Its backup restored elsewhere and checked file by file is test_migrate's (the move of
    qlvbqn to Đà Nẵng, a superset of a drill of it); `make demo` also drills it."""
    configured = hopnhat(lab.env, "configure", "--system", QN)
    assert configured.returncode == 0, configured.stdout + configured.stderr
    backup = as_json(hopnhat(lab.env, "backup", "run", "--system", QN, "--json"))
    assert backup["status"] == "ok", backup
    [host] = backup["hosts"]
    assert host["host"] == HOST and host["snapshot_id"]
