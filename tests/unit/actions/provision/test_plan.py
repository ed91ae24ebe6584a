"""The provisioning plan as a specification: facts in → plan lines (or refusals) out.

Facts are built by hand (no vCenter): a vCenter with the example estate's datacenters,
clusters, hosts, datastores, port groups and templates, plus whatever VMs a case needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orchestrator.actions.provision import model as provision_model
from orchestrator.actions.provision import plan as provision_plan
from orchestrator.actions.provision.destroy import plan_destroy
from orchestrator.actions.provision.model import (
    CREATE,
    FOREIGN,
    NO_OP,
    POWER_ON,
    RECONFIGURE,
    REFUSED,
    RESUME,
    STEP_CLONE,
    STEP_CUSTOMIZE,
    STEP_FINISH,
    STEP_MARK,
    STEP_POWER_ON,
    STEP_RECONFIGURE,
    STEP_WAIT_IP,
    Change,
    Plan,
)
from orchestrator.actions.provision.vcenters import select
from orchestrator.adapters.vsphere_facts import (
    OWNER,
    PROVISIONED,
    SYSTEM,
    TIER,
    ClusterFacts,
    DatacenterFacts,
    DatastoreFacts,
    HostFacts,
    Inventory,
    NetworkFacts,
    VMFacts,
)
from orchestrator.errors import EXIT_BAD_INPUT, PlanError, VSphereError
from orchestrator.estate import Estate, load_estate
from orchestrator.estate.model import VM
from tests.helpers import EXAMPLE_ESTATE

ESTATE = load_estate(EXAMPLE_ESTATE)
URL = ESTATE.sites["danang"].vcenter.url
GB = 1024 * 1024  # KB
GIB = 1024 ** 3  # bytes
DC = "DC-DaNang"


def vm_of(name: str) -> VM:
    return next(vm for vm in ESTATE.vms if vm.name == name)


def lab_inventory(vms: Sequence[VMFacts] = (), *, memory_mb: int = 1024 * 1024, threads: int = 128,
                  free_gb: float = 3600, capacity_gb: float = 4000,
                  template: bool = True) -> Inventory:
    """A vCenter like the lab's: both datacenters, 4 hosts per cluster, empty of VMs."""
    inv = Inventory(url=URL)
    for site in ESTATE.sites.values():
        dc = site.datacenter
        inv.datacenters[dc] = DatacenterFacts(dc)
        for cluster in site.clusters:
            hosts = tuple(f"{cluster.lower()}-esx{n:02d}" for n in range(1, 5))
            inv.clusters[(dc, cluster)] = ClusterFacts(cluster, dc, threads, memory_mb, hosts)
            for host in hosts:
                inv.hosts[(dc, host)] = HostFacts(host, dc, cluster, threads // 4,
                                                  memory_mb // 4, tuple(site.datastores))
        for store in site.datastores:
            inv.datastores[(dc, store)] = DatastoreFacts(store, dc, int(capacity_gb * GIB),
                                                         int(free_gb * GIB))
        for net in site.networks.values():
            inv.networks[(dc, net.port_group)] = NetworkFacts(net.port_group, dc)
        if template:
            for name in site.templates:
                inv.templates[(dc, name)] = VMFacts(
                    name, dc, site.clusters[0], datastores=(site.datastores[0],), template=True,
                    cpu=2, memory_mb=2048, disks_kb=(20 * GB,), port_groups=("PG-DN-SRV",))
    inv.vms = list(vms)
    inv.fields = {OWNER: 0, SYSTEM: 1, TIER: 2, PROVISIONED: 3}
    return inv


def ours(name: str, **changes: Any) -> VMFacts:
    """An existing VM that this estate provisioned, exactly as the estate wants it."""
    vm = vm_of(name)
    assert vm.cpu is not None and vm.memory_mb is not None and vm.disks_gb is not None, name
    facts = VMFacts(
        name=vm.name, datacenter=vm.datacenter, cluster=vm.cluster, host="x",
        datastores=(vm.datastore,), cpu=vm.cpu, memory_mb=vm.memory_mb,
        power_state="poweredOn", ip=str(vm.ip), hostname=vm.name,
        attributes={OWNER: ESTATE.id, SYSTEM: vm.system, TIER: str(vm.tier),
                    PROVISIONED: "provision-1"},
        disks_kb=tuple(d * GB for d in vm.disks_gb), port_groups=(vm.port_group,))
    return replace(facts, **changes)


def foreign(name: str, **changes: Any) -> VMFacts:
    facts = VMFacts(name=name, datacenter=DC, cluster="CL-DN-01", cpu=1, memory_mb=1024,
                    disks_kb=(10 * GB,), port_groups=("PG-DN-SRV",))
    return replace(facts, **changes)


def plan_for(names: list[str], inv: Inventory, estate: Estate = ESTATE) -> Plan:
    vms = [vm for vm in estate.vms if vm.name in names]
    return provision_plan.plan(estate, vms, {URL: inv})


def action(plan: Plan, name: str) -> provision_model.VMAction:
    return next(a for a in plan.actions if a.name == name)


# ---------------------------------------------------------------- one line per VM

CASES: list[tuple[str, list[VMFacts], str, list[Change], str]] = [
    # (case, VMs in vCenter, action on qlvb-app-01, changes, reason fragment)
    ("empty site", [], CREATE, [], ""),
    ("as the estate says", [ours("qlvb-app-01")], NO_OP, [],
     "matches the estate (4 vCPU, 8192 MB, disks 40 GB, PG-DN-SRV, powered on)"),
    ("fewer CPUs", [ours("qlvb-app-01", cpu=2)], RECONFIGURE, [Change("cpu", "2", "4")], ""),
    ("more memory", [ours("qlvb-app-01", memory_mb=16384)], RECONFIGURE,
     [Change("memory", "16384 MB", "8192 MB")], ""),
    ("smaller disk", [ours("qlvb-app-01", disks_kb=(20 * GB,))], RECONFIGURE,
     [Change("disk 1", "20 GB", "40 GB")], ""),
    ("other port group", [ours("qlvb-app-01", port_groups=("PG-DN-DB",))], RECONFIGURE,
     [Change("network", "PG-DN-DB", "PG-DN-SRV")], ""),
    ("no NIC", [ours("qlvb-app-01", port_groups=())], RECONFIGURE,
     [Change("network", "none", "PG-DN-SRV")], ""),
    ("wrong tier mark", [ours("qlvb-app-01", attributes={
        OWNER: "danang", SYSTEM: "qlvb", TIER: "3", PROVISIONED: "x"})], RECONFIGURE,
     [Change("mark tier", "3", "1")], ""),
    ("powered off", [ours("qlvb-app-01", power_state="poweredOff")], POWER_ON,
     [Change("power", "poweredOff", "poweredOn")], ""),
    ("larger disk", [ours("qlvb-app-01", disks_kb=(80 * GB,))], REFUSED, [],
     "disk 1 is 80 GB and the estate says 40 GB: hopnhat never shrinks a disk"),
    ("extra disk", [ours("qlvb-app-01", disks_kb=(40 * GB, 10 * GB))], REFUSED, [],
     "it has 2 disks and the estate lists 1: hopnhat never removes a disk"),
    ("unmarked VM of that name", [foreign("qlvb-app-01")], FOREIGN, [],
     "without hopnhat's mark: not ours, left alone"),
    ("another estate's VM", [foreign("qlvb-app-01", attributes={OWNER: "hue"})], FOREIGN, [],
     "owned by estate 'hue'"),
    ("two VMs of that name", [ours("qlvb-app-01"), foreign("qlvb-app-01")], REFUSED, [],
     "2 VMs are named qlvb-app-01"),
    ("ours in another datacenter", [ours("qlvb-app-01", datacenter="DC-QuangNam")], REFUSED,
     [], "hopnhat does not move VMs"),
]


@pytest.mark.parametrize(("case", "vms", "kind", "changes", "reason"), CASES,
                         ids=[c[0] for c in CASES])
def test_each_vm_gets_one_action_from_the_facts(case: str, vms: list[VMFacts], kind: str,
                                                changes: list[Change], reason: str) -> None:
    the_plan = plan_for(["qlvb-app-01"], lab_inventory(vms))
    got = action(the_plan, "qlvb-app-01")
    assert got.kind == kind, case
    assert list(got.changes) == changes
    assert reason in got.reason


def test_a_create_runs_every_step_and_counts_what_it_adds() -> None:
    got = action(plan_for(["qlvb-db-01"], lab_inventory()), "qlvb-db-01")
    assert got.kind == CREATE
    assert got.steps == (STEP_CLONE, STEP_MARK, STEP_RECONFIGURE, STEP_CUSTOMIZE,
                         STEP_POWER_ON, STEP_WAIT_IP, STEP_FINISH)
    assert (got.add_cpu, got.add_memory_mb, got.add_disk_gb) == (8, 16384, 240)
    assert got.describe() == ("from tpl-debian12 in CL-DN-01/DS-DN-SSD-01: 8 vCPU, 16384 MB, "
                              "disks 40+200 GB, PG-DN-DB, 127.10.2.11")


def test_a_missing_disk_is_added_and_counted() -> None:
    got = action(plan_for(["qlvb-db-01"], lab_inventory([ours("qlvb-db-01", disks_kb=(
        40 * GB,))])), "qlvb-db-01")
    assert got.kind == RECONFIGURE
    assert list(got.changes) == [Change("disk 2", "none", "200 GB")]
    assert got.add_disk_gb == 200
    assert got.steps == (STEP_RECONFIGURE,)


def test_a_powered_off_vm_with_changes_is_reconfigured_then_powered_on() -> None:
    got = action(plan_for(["qlvb-app-01"], lab_inventory([ours(
        "qlvb-app-01", cpu=2, power_state="poweredOff")])), "qlvb-app-01")
    assert got.kind == RECONFIGURE
    assert got.steps == (STEP_RECONFIGURE, STEP_POWER_ON, STEP_WAIT_IP)


RESUMES = [
    # (case, the half-made VM, steps left)
    ("cloned and marked only", dict(cpu=2, memory_mb=2048, disks_kb=(20 * GB,), ip=None,
                                    power_state="poweredOff"),
     (STEP_MARK, STEP_RECONFIGURE, STEP_CUSTOMIZE, STEP_POWER_ON, STEP_WAIT_IP, STEP_FINISH)),
    ("customized, not powered on", dict(ip=None, power_state="poweredOff",
                                        pending_customization=True),
     (STEP_MARK, STEP_POWER_ON, STEP_WAIT_IP, STEP_FINISH)),
    ("powered on, IP never seen", dict(ip=None),
     (STEP_MARK, STEP_WAIT_IP, STEP_FINISH)),
]


@pytest.mark.parametrize(("case", "state", "steps"), RESUMES, ids=[r[0] for r in RESUMES])
def test_a_vm_left_half_made_is_finished(case: str, state: dict[str, Any],
                                         steps: tuple[str, ...]) -> None:
    half = ours("qlvb-app-01", attributes={OWNER: ESTATE.id, SYSTEM: "qlvb", TIER: "1"},
                **state)
    got = action(plan_for(["qlvb-app-01"], lab_inventory([half])), "qlvb-app-01")
    assert got.kind == RESUME, case
    assert got.steps == steps
    assert "half-made" in got.reason


def test_a_clone_cut_off_before_its_marks_is_still_ours() -> None:
    clone = foreign("qlvb-app-01", cpu=2, memory_mb=2048, disks_kb=(20 * GB,),
                    clone_mark=ESTATE.id)
    got = action(plan_for(["qlvb-app-01"], lab_inventory([clone])), "qlvb-app-01")
    assert got.kind == RESUME
    assert got.steps[0] == STEP_MARK
    assert Change("cpu", "2", "4") in got.changes


def test_a_template_with_a_wanted_name_is_foreign() -> None:
    inv = lab_inventory()
    inv.templates[(DC, "qlvb-app-01")] = VMFacts("qlvb-app-01", DC, template=True)
    assert action(plan_for(["qlvb-app-01"], inv), "qlvb-app-01").kind == FOREIGN


# ---------------------------------------------------------------- refusals and checks


def test_a_foreign_vm_refuses_the_plan_before_any_task() -> None:
    the_plan = plan_for(["qlvb-app-01", "qlvb-app-02"],
                        lab_inventory([foreign("qlvb-app-01")]))
    with pytest.raises(PlanError, match="qlvb-app-01: a VM named qlvb-app-01 exists"):
        provision_plan.check(the_plan)


def test_an_ip_held_by_another_vm_refuses_the_plan() -> None:
    squatter = foreign("legacy-01", ip="127.10.1.16", power_state="poweredOn")
    the_plan = plan_for(["qlvb-app-01"], lab_inventory([squatter]))
    assert the_plan.refusals == ("qlvb-app-01: IP 127.10.1.16 is in use by VM legacy-01 "
                                 "(DC-DaNang, not hopnhat's)",)


def test_memory_overflow_names_the_cluster_and_the_shortfall() -> None:
    # 1,048,576 MB, 10 % headroom → 943,718.4 usable; 940,000 in use + 32,768 planned
    hog = foreign("big-01", cluster="CL-DN-01", memory_mb=940_000)
    the_plan = plan_for(["qlvb-app-01", "qlvb-app-02", "qlvb-db-01"], lab_inventory([hog]))
    with pytest.raises(PlanError) as caught:
        provision_plan.check(the_plan)
    message = str(caught.value)
    assert "cluster DC-DaNang/CL-DN-01: memory MB short by 29,050" in message
    assert "940,000 in use + 32,768 planned > 943,718 usable" in message
    assert "vCPU" not in message


def test_cpu_overflow_counts_vcpus_against_hardware_threads_less_headroom() -> None:
    the_plan = plan_for(["qlvb-db-01"], lab_inventory(threads=8))  # 7.2 usable, 8 wanted
    (cpu,) = [c for c in the_plan.capacity if c.resource == "vCPU"]
    assert (cpu.capacity, cpu.in_use, cpu.planned) == (8, 0, 8)
    assert cpu.usable == pytest.approx(7.2)
    assert not cpu.ok
    assert any("cluster DC-DaNang/CL-DN-01: vCPU short by 1" in r for r in the_plan.refusals)


def test_datastore_overflow_names_the_datastore_qualified_by_datacenter() -> None:
    # 4000 GB with 10 % kept free: 3600 usable; 3500 in use + 40 + 40 + 240 planned
    the_plan = plan_for(["qlvb-app-01", "qlvb-app-02", "qlvb-db-01"],
                        lab_inventory(free_gb=500))
    refusal = [r for r in the_plan.refusals if r.startswith("datastore")]
    assert refusal == ["datastore DC-DaNang/DS-DN-SSD-01: disk GB short by 220: 3,500 in use "
                       "+ 320 planned > 3,600 usable (4,000 less the headroom)"]


def test_headroom_comes_from_the_estate(tmp_path: Path) -> None:
    estate = ESTATE.model_copy(update={"settings": ESTATE.settings.model_copy(update={
        "provisioning": ESTATE.settings.provisioning.model_copy(
            update={"capacity_headroom_pct": 50.0})})})
    the_plan = plan_for(["qlvb-app-01"], lab_inventory(), estate)
    memory = next(c for c in the_plan.capacity if c.resource == "memory MB")
    assert memory.usable == 1024 * 1024 * 0.5


def test_a_vm_larger_than_every_host_is_refused() -> None:
    the_plan = plan_for(["qlvb-db-01"], lab_inventory(memory_mb=4 * 8192))  # hosts of 8 GB
    assert "qlvb-db-01: 16384 MB exceed every host of CL-DN-01 (largest: 8192 MB)" \
        in the_plan.refusals


def test_shrinking_the_vm_frees_capacity_rather_than_needing_it() -> None:
    # the cluster is already over its usable 14.4 vCPU (8 + 12 in use): going down is fine
    the_plan = plan_for(["qlvb-app-01"], lab_inventory(
        [ours("qlvb-app-01", cpu=8), foreign("big-01", cpu=12)], threads=16))
    assert action(the_plan, "qlvb-app-01").add_cpu == -4
    assert not the_plan.refusals


def test_no_refusal_and_no_change_when_all_matches() -> None:
    names = ["qlvb-app-01", "qlvb-app-02", "qlvb-db-01"]
    the_plan = plan_for(names, lab_inventory([ours(n) for n in names]))
    provision_plan.check(the_plan)
    assert not the_plan.has_changes
    assert the_plan.totals()["no-op"] == 3


# ---------------------------------------------------------------- what vCenter lacks


@pytest.mark.parametrize(("remove", "message"), [
    ("templates", "DC-DaNang: no template 'tpl-debian12' (templates there: none)"),
    ("clusters", "DC-DaNang: no cluster 'CL-DN-01' (clusters there: none)"),
    ("datastores", "DC-DaNang: no datastore 'DS-DN-SSD-01' (datastores there: none)"),
    ("networks", "DC-DaNang: no port group 'PG-DN-SRV' (port groups there: none)"),
    ("datacenters", "no datacenter 'DC-DaNang' (datacenters: DC-QuangNam)"),
])
def test_what_vcenter_lacks_is_named(remove: str, message: str) -> None:
    inv = lab_inventory()
    table = getattr(inv, remove)
    for key in [k for k in table if (k if isinstance(k, str) else k[0]) == DC]:
        del table[key]
    with pytest.raises(VSphereError, match="wanted by qlvb-app-01") as caught:
        plan_for(["qlvb-app-01"], inv)
    assert message in str(caught.value)


def test_an_existing_vm_needs_no_template() -> None:
    the_plan = plan_for(["qlvb-app-01"], lab_inventory([ours("qlvb-app-01")], template=False))
    assert action(the_plan, "qlvb-app-01").kind == NO_OP


# ---------------------------------------------------------------- selection and output


def test_unknown_system_or_site_is_bad_input() -> None:
    with pytest.raises(PlanError) as caught:
        select(ESTATE, ["nope"], ["moon"])
    assert caught.value.exit_code == EXIT_BAD_INPUT
    assert "no system 'nope'" in str(caught.value) and "no site 'moon'" in str(caught.value)


def test_selection_by_system_and_site() -> None:
    assert [vm.name for vm in select(ESTATE, ["qlvb"])] == [
        "qlvb-app-01", "qlvb-app-02", "qlvb-db-01"]
    # the only VM at the secondary site is the one it adopts, Quảng Nam's legacy QLVB
    assert [vm.name for vm in select(ESTATE, [], ["quangnam"])] == ["qlvbqn-db-01"]
    assert "qlvbqn-db-01" not in [vm.name for vm in select(ESTATE, [], ["danang"])]
    assert len(select(ESTATE)) == len(ESTATE.vms)


def test_the_plan_as_json_has_lines_totals_and_capacity() -> None:
    doc = plan_for(["qlvb-app-01", "qlvb-app-02"], lab_inventory([ours("qlvb-app-02")])
                   ).as_dict()
    assert doc["changes"] is True
    assert [(a["vm"], a["action"]) for a in doc["actions"]] == [
        ("qlvb-app-01", "create"), ("qlvb-app-02", "no-op")]
    assert doc["totals"]["create"] == 1 and doc["totals"]["add_memory_mb"] == 8192
    assert {c["resource"] for c in doc["capacity"]} == {"vCPU", "memory MB", "disk GB"}


def test_data_bearing_changes_are_what_the_backup_gate_sees() -> None:
    the_plan = plan_for(["qlvb-db-01", "qlvb-app-01"], lab_inventory(
        [ours("qlvb-db-01", cpu=4), ours("qlvb-app-01", cpu=2)]))
    assert [a.name for a in the_plan.data_bearing()] == ["qlvb-db-01"]


# ---------------------------------------------------------------- destroy


def test_destroy_takes_only_the_systems_vms_this_estate_owns() -> None:
    inv = lab_inventory([
        ours("qlvb-app-01"), ours("qlvb-app-02", power_state="poweredOff"),
        foreign("qlvb-db-01"),  # same name, not ours
        ours("sso-idp-01"),  # ours, another system
        foreign("old-qlvb-01", attributes={OWNER: ESTATE.id, SYSTEM: "qlvb"}),  # ours, renamed
        foreign("qlvb-app-09", attributes={OWNER: "hue", SYSTEM: "qlvb"}),  # another estate
    ])
    dplan = plan_destroy(ESTATE, "qlvb", {URL: inv})
    assert [(a.name, a.steps) for a in dplan.actions] == [
        ("old-qlvb-01", ("destroy",)), ("qlvb-app-01", ("power off", "destroy")),
        ("qlvb-app-02", ("destroy",))]
    assert dplan.left_alone == ("qlvb-db-01 (DC-DaNang, no hopnhat mark)",)
    assert [a.name for a in dplan.data_bearing()] == ["old-qlvb-01"]  # unknown: assume data


# ---------------------------------------------------------------- two vCenters


def two_site_estate(estate_copy: Any) -> Estate:
    """The example with system gis: one VM in Đà Nẵng (its vCenter), one in Quảng Nam's."""
    estate_copy.write("systems/gis.yml", {
        "name": "GIS", "code": "gis", "tier": 3, "vms": [
            {"role": "app", "site": "danang", "cpu": 1, "memory_mb": 1024,
             "disks_gb": [20], "network": "srv"},
            {"role": "replica", "site": "quangnam", "cpu": 1, "memory_mb": 1024,
             "disks_gb": [20], "network": "srv", "data": True}]})
    return estate_copy.load()  # type: ignore[no-any-return]


def test_each_site_is_planned_against_its_own_vcenter(estate_copy: Any) -> None:
    estate = two_site_estate(estate_copy)
    danang, quangnam = (estate.sites[s].vcenter.url for s in ("danang", "quangnam"))
    assert danang != quangnam
    vms = estate.vms_of("gis")
    facts = {url: replace(lab_inventory(), url=url) for url in (danang, quangnam)}
    plan = provision_plan.plan(estate, vms, facts)
    assert [(a.name, a.vcenter, a.kind) for a in plan.actions] == [
        ("gis-app-01", danang, CREATE), ("gis-replica-01", quangnam, CREATE)]
    with pytest.raises(KeyError):  # a vCenter not read is never taken for an empty one
        provision_plan.plan(estate, vms, {danang: facts[danang]})


def test_a_vcenter_not_read_leaves_its_vms_out_and_is_named(estate_copy: Any) -> None:
    estate = two_site_estate(estate_copy)
    danang, quangnam = (estate.sites[s].vcenter.url for s in ("danang", "quangnam"))
    error = VSphereError(f"{quangnam} (site quangnam): cannot reach vCenter (Connection "
                         "refused)")
    plan = provision_plan.plan_reachable(estate, estate.vms_of("gis"), {danang: lab_inventory()},
                                    {quangnam: error})
    assert [(a.name, a.kind) for a in plan.actions] == [("gis-app-01", CREATE)]
    (gone,) = plan.unreachable
    assert (gone.url, gone.sites, gone.error, gone.vms) == (
        quangnam, ("quangnam",), str(error), ("gis-replica-01",))
    assert plan.as_dict()["unreachable"] == [{
        "vcenter": quangnam, "sites": ["quangnam"], "error": str(error),
        "vms": ["gis-replica-01"]}]
    with pytest.raises(VSphereError) as caught:
        provision_plan.check(plan)
    assert str(caught.value) == (
        "1 vCenter(s) could not be read; the plan holds only the other sites' VMs:\n"
        f"  - {error} — 1 VM(s) of site quangnam not planned (gis-replica-01)")
    # refusals as well: both in one message, the refusal first
    refused = replace(plan, refusals=("gis-app-01: a VM named gis-app-01 exists",))
    with pytest.raises(PlanError) as both:
        provision_plan.check(refused)
    assert "the plan is refused (1 problem(s))" in str(both.value)
    assert f"and 1 vCenter(s) could not be read:\n  - {error}" in str(both.value)


def test_every_vcenter_read_means_nothing_unreachable(estate_copy: Any) -> None:
    estate = two_site_estate(estate_copy)
    urls = {estate.sites[s].vcenter.url for s in estate.sites}
    plan = provision_plan.plan_reachable(estate, estate.vms_of("gis"),
                                    {url: replace(lab_inventory(), url=url) for url in urls}, {})
    assert plan.unreachable == () and len(plan.actions) == 2
    provision_plan.check(plan)
