"""Existing VMs in the plan: adopt, drift, renames, refusals — facts built by hand."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from orchestrator.actions.provision import model as provision_model
from orchestrator.actions.provision import plan as provision_plan
from orchestrator.actions.provision.destroy import plan_destroy
from orchestrator.actions.provision.model import (
    ADOPT,
    CREATE,
    DRIFT,
    FOREIGN,
    NO_OP,
    RECONFIGURE,
    REFUSED,
    STEP_ADOPT,
    STEP_RECONFIGURE,
    Change,
)
from orchestrator.adapters.vsphere_facts import ADOPTED, OWNER, SYSTEM, TIER, VMFacts
from orchestrator.errors import EXIT_BAD_INPUT, PlanError
from orchestrator.estate.model import VM
from tests.unit.actions.provision.test_plan import ESTATE, GB, lab_inventory, ours, vm_of

DN, QN = "DC-DaNang", "DC-QuangNam"
URL_DN = ESTATE.sites["danang"].vcenter.url
URL_QN = ESTATE.sites["quangnam"].vcenter.url
UUID = "50123456-789a-bcde-f012-3456789abcde"


def legacy(dc: str = DN, folder: str = "Legacy/QLVB", **changes: Any) -> VMFacts:
    """Đà Nẵng's (or Quảng Nam's) own qlvb-db-01, as that province's team built it."""
    facts = VMFacts(name="qlvb-db-01", datacenter=dc, cluster="CL-DN-01", cpu=4,
                    memory_mb=8192, power_state="poweredOn", ip="127.10.1.5",
                    folder=folder, uuid=UUID, disks_kb=(40 * GB, 100 * GB),
                    port_groups=("PG-DN-SRV" if dc == DN else "PG-QN-SRV",), ref=object())
    return replace(facts, **changes)


def adopted(vm: VM, **changes: Any) -> VMFacts:
    marks = {OWNER: ESTATE.id, SYSTEM: vm.system, TIER: str(vm.tier), ADOPTED: "provision-1"}
    return legacy(attributes=marks, **changes)


def plan_of(vm: VM, found: list[VMFacts], url: str = URL_DN) -> provision_model.Plan:
    return provision_plan.plan(ESTATE, [vm], {url: lab_inventory(found)})


def test_an_existing_vm_is_adopted_with_marks_only() -> None:
    vm = vm_of("qlvbdn-db-01")
    plan = plan_of(vm, [legacy()])
    [act] = plan.actions
    assert act.kind == ADOPT and act.steps == (STEP_ADOPT,)
    assert act.vcenter_name == "qlvb-db-01" and act.target is not None
    assert {c.what for c in act.changes} == {"mark owner", "mark system", "mark tier"}
    assert act.add_cpu == act.add_memory_mb == act.add_disk_gb == 0
    assert plan.has_changes and not plan.refusals
    assert "ownership marks only" in act.reason


def test_once_adopted_the_plan_has_nothing_to_do() -> None:
    vm = vm_of("qlvbdn-db-01")
    plan = plan_of(vm, [adopted(vm)])
    assert [a.kind for a in plan.actions] == [NO_OP] and not plan.has_changes


def test_drift_is_shown_and_not_changed_unless_the_estate_manages_the_hardware() -> None:
    vm = vm_of("qlvbdn-db-01").model_copy(update={"cpu": 8, "memory_mb": 8192,
                                                   "disks_gb": [40, 100]})
    plan = plan_of(vm, [adopted(vm)])
    [act] = plan.actions
    assert act.kind == DRIFT and not act.steps and not plan.has_changes
    assert Change("cpu", "4", "8") in act.changes
    managed = vm.model_copy(update={"manage_hardware": True})
    [act] = plan_of(managed, [adopted(managed)]).actions
    assert act.kind == RECONFIGURE and STEP_RECONFIGURE in act.steps and act.add_cpu == 4


def test_drift_that_would_shrink_a_disk_is_never_applied() -> None:
    vm = vm_of("qlvbdn-db-01").model_copy(update={"disks_gb": [40], "manage_hardware": True,
                                                   "cpu": 4, "memory_mb": 8192})
    [act] = plan_of(vm, [adopted(vm)]).actions
    assert act.kind == DRIFT and "never removes a disk" in act.reason


def test_a_vm_of_another_estate_is_refused_naming_the_owner() -> None:
    plan = plan_of(vm_of("qlvbdn-db-01"), [legacy(attributes={OWNER: "quangnam-vnpt"})])
    assert plan.actions[0].kind == FOREIGN
    with pytest.raises(PlanError, match="owned by estate 'quangnam-vnpt'"):
        provision_plan.check(plan)


def test_a_missing_vm_is_named_and_refused() -> None:
    plan = plan_of(vm_of("qlvbdn-db-01"), [legacy(folder="Other")])
    assert plan.actions[0].kind == REFUSED
    assert "no VM named qlvb-db-01 in DC-DaNang (DC-DaNang/Legacy/QLVB/qlvb-db-01)" \
        in plan.actions[0].reason


def test_two_matches_are_refused_never_guessed() -> None:
    vm = vm_of("qlvbdn-db-01")
    assert vm.existing is not None
    vm = vm.model_copy(update={"existing": vm.existing.model_copy(update={"folder": None})})
    plan = plan_of(vm, [legacy(), legacy(folder="Archive", uuid=UUID.replace("5", "6"))])
    assert plan.actions[0].kind == REFUSED and "2 VMs match" in plan.actions[0].reason
    assert "folder: or uuid:" in plan.actions[0].reason


def _with_uuid(uuid: str = UUID) -> VM:
    vm = vm_of("qlvbdn-db-01")
    assert vm.existing is not None
    return vm.model_copy(update={"existing": vm.existing.model_copy(update={"uuid": uuid})})


def test_a_renamed_vm_is_found_by_its_uuid_and_the_rename_shown() -> None:
    vm = _with_uuid()
    plan = plan_of(vm, [adopted(vm, name="qlvb-db-01-old", folder="Moved")])
    [act] = plan.actions
    assert act.kind == NO_OP and Change("vCenter name", "qlvb-db-01", "qlvb-db-01-old") \
        in act.changes
    assert any("renamed qlvb-db-01-old" in w for w in plan.warnings)


def test_a_uuid_gone_or_claimed_twice_is_named() -> None:
    vm = _with_uuid()
    gone = plan_of(vm, [legacy(uuid="50000000-0000-0000-0000-000000000000")])
    assert gone.actions[0].kind == REFUSED and f"no VM with instance UUID {UUID}" in \
        gone.actions[0].reason and "other UUIDs" in gone.actions[0].reason
    twice = plan_of(vm, [legacy(), legacy(name="copy", folder="X")])
    assert twice.actions[0].kind == REFUSED and "two VMs claim one instance UUID" in \
        twice.actions[0].reason


def test_an_adopted_namesake_is_not_the_vm_hopnhat_builds() -> None:
    """Đà Nẵng's legacy qlvb-db-01 (folder Legacy/QLVB) and the consolidated qlvb-db-01."""
    built = vm_of("qlvb-db-01")
    for found in ([legacy()], [adopted(vm_of("qlvbdn-db-01"))]):
        plan = provision_plan.plan(ESTATE, [built], {URL_DN: lab_inventory(found)})
        assert plan.actions[0].kind == CREATE, plan.actions[0].reason
    # an unmarked namesake the estate does not declare stays ambiguous: never guessed
    plan = provision_plan.plan(ESTATE, [built], {URL_DN: lab_inventory(
        [legacy(folder=""), ours("qlvb-db-01")])})
    assert plan.actions[0].kind == REFUSED and "cannot tell" in plan.actions[0].reason


def test_the_two_provinces_qlvb_db_01_are_told_apart_by_the_site() -> None:
    dn, qn = vm_of("qlvbdn-db-01"), vm_of("qlvbqn-db-01")
    inv_dn = lab_inventory([legacy()])
    inv_qn = lab_inventory([legacy(dc=QN, folder="QLVB", ip="127.20.1.5",
                                   uuid=UUID.replace("1", "2"))])
    plan = provision_plan.plan(ESTATE, [dn, qn], {URL_DN: inv_dn, URL_QN: inv_qn})
    assert [(a.name, a.kind) for a in plan.actions] == [("qlvbdn-db-01", ADOPT),
                                                       ("qlvbqn-db-01", ADOPT)]
    assert plan.actions[0].target is not plan.actions[1].target


def test_destroy_never_destroys_an_adopted_vm() -> None:
    vm = vm_of("qlvbdn-db-01")
    dplan = plan_destroy(ESTATE, "qlvbdn", {URL_DN: lab_inventory([adopted(vm)])})
    assert not dplan.actions and dplan.adopted == ("qlvb-db-01 (DC-DaNang/Legacy/QLVB)",)
    with pytest.raises(PlanError, match="never destroys an adopted VM") as raised:
        dplan.check()
    assert raised.value.exit_code == EXIT_BAD_INPUT
