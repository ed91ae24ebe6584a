"""Drill planning as data: names, marks, snapshots, addresses, leftovers, rehearsal order."""

from __future__ import annotations

import ipaddress
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.actions.drill.plan import (
    AddressBook,
    choose_snapshots,
    data_vms,
    drill_mark,
    drill_tag,
    drillable,
    is_leftover,
    plan_drill,
    scratch_name,
    scratch_vms_in,
)
from orchestrator.actions.drill.rehearse import levels, select
from orchestrator.adapters.restic import Snapshot
from orchestrator.adapters.vsphere_facts import OWNER, SYSTEM, Inventory, VMFacts
from orchestrator.errors import PlanError
from orchestrator.estate import Estate, load_estate
from tests.helpers import REPO

DRILL = "drill-20261101T101500Z-3fa2c1"
T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def estate() -> Estate:
    return load_estate(REPO / "inventory")


def snap(ident: str, host: str, minutes: int) -> Snapshot:
    return Snapshot(id=ident * 8, short_id=ident * 8, time=T0 + timedelta(minutes=minutes),
                    hostname=host, username="root", paths=("/srv/qlvb",))


def test_scratch_names_carry_the_drill_tag_and_fit_a_host_name() -> None:
    assert drill_tag(DRILL) == "3fa2c1"
    assert scratch_name(DRILL, "qlvb-db-01") == "drill-3fa2c1-qlvb-db-01"
    assert drill_mark(DRILL) == f"drill:{DRILL}"
    with pytest.raises(PlanError, match="at most 63"):
        scratch_name(DRILL, "x" * 60)
    with pytest.raises(PlanError, match="not a drill id"):
        drill_tag("provision-20261101T101500Z")


def test_a_system_without_backup_or_data_cannot_be_drilled(estate: Estate) -> None:
    assert drillable(estate, "qlvb") == ""
    assert "no system 'nope'" in drillable(estate, "nope")
    assert [vm.name for vm in data_vms(estate, "qlvb")] == ["qlvb-db-01"]


def test_latest_takes_each_vms_newest_snapshot_and_an_id_names_one(estate: Estate) -> None:
    sources = data_vms(estate, "qlvb")
    snaps = [snap("a", "qlvb-db-01", 0), snap("b", "qlvb-db-01", 30), snap("c", "other", 60)]
    assert choose_snapshots("qlvb", sources, "latest", snaps)["qlvb-db-01"].id == "b" * 8
    assert choose_snapshots("qlvb", sources, "aaaaaaaa", snaps)["qlvb-db-01"].id == "a" * 8
    with pytest.raises(PlanError, match="no snapshot of qlvb-db-01"):
        choose_snapshots("qlvb", sources, "latest", [snap("c", "other", 0)])
    with pytest.raises(PlanError, match="holds no snapshot dddddddd"):
        choose_snapshots("qlvb", sources, "dddddddd", snaps)
    with pytest.raises(PlanError, match="'latest' or a snapshot id"):
        choose_snapshots("qlvb", sources, "yesterday", snaps)


def test_the_plan_puts_scratch_vms_on_the_secondary_drill_network(estate: Estate) -> None:
    chosen = {"qlvb-db-01": snap("b", "qlvb-db-01", 30)}
    plan = plan_drill(estate, "qlvb", DRILL, chosen, [ipaddress.IPv4Address("127.20.9.12")])
    (scratch,) = plan.scratch
    vm = scratch.vm
    assert (vm.name, vm.system, vm.site, vm.datacenter, vm.port_group, str(vm.ip)) == (
        "drill-3fa2c1-qlvb-db-01", f"drill:{DRILL}", "quangnam", "DC-QuangNam",
        "PG-QN-DRILL", "127.20.9.12")
    assert (vm.cpu, vm.memory_mb, vm.disks_gb) == (8, 16384, [40, 200])  # sized like prod
    assert (plan.tier, plan.rpo_seconds, plan.rto_seconds) == (1, 3600, 14400)
    assert [p.name for p in plan.probes] == ["database integrity", "documents present"]
    assert plan.as_dict()["scratch_vms"][0]["snapshot"] == "b" * 8


def test_the_address_book_never_hands_out_an_address_twice(tmp_path: Path) -> None:
    book = AddressBook(tmp_path)
    pool = [ipaddress.IPv4Address(f"127.20.9.{i}") for i in range(10, 15)]
    first = book.take("drill-a-000001", iter(pool), {"127.20.9.10"}, 2)
    second = book.take("drill-b-000002", iter(pool), set(), 2)
    assert [str(ip) for ip in first] == ["127.20.9.11", "127.20.9.12"]
    assert [str(ip) for ip in second] == ["127.20.9.13", "127.20.9.14"]
    book.release("drill-a-000001")
    # round the pool: the search goes on after the last address handed out
    assert [str(ip) for ip in book.take("drill-c-000003", iter(pool), set(), 2)] == [
        "127.20.9.10", "127.20.9.11"]
    with pytest.raises(PlanError, match="pool has 1 free"):
        book.take("drill-d-000004", iter(pool), set(), 2)


def test_leftovers_are_drills_that_ended_unkept_or_whose_process_is_gone() -> None:
    here = {"host": "control", "pid": os.getpid()}
    assert is_leftover(None, {}, None, "control")
    assert is_leftover("failed", here, {"kept": False}, "control")
    assert not is_leftover("passed", here, {"kept": True}, "control")
    assert not is_leftover("running", here, None, "control")
    assert is_leftover("running", {"host": "control", "pid": 2 ** 22 + 7}, None, "control")
    assert not is_leftover("running", {"host": "elsewhere", "pid": 1}, None, "control")


def test_scratch_vms_are_found_by_their_mark_and_owner() -> None:
    inv = Inventory(url="u", vms=[
        VMFacts("drill-3fa2c1-qlvb-db-01", attributes={OWNER: "danang", SYSTEM: f"drill:{DRILL}"}),
        VMFacts("qlvb-db-01", attributes={OWNER: "danang", SYSTEM: "qlvb"}),
        VMFacts("drill-ffffff-x", attributes={OWNER: "hue", SYSTEM: "drill:drill-x-ffffff"})])
    assert scratch_vms_in({"u": inv}, "danang") == {DRILL: ["drill-3fa2c1-qlvb-db-01"]}


def test_rehearsal_groups_follow_the_dependencies(estate: Estate) -> None:
    # qlvbqn (tier 1, adopted, backed up) depends on nothing: it goes first, beside sso
    assert select(estate, 1, False) == ["dvc", "lgsp", "qlvb", "qlvbqn", "sso", "video"]
    assert levels(estate, select(estate, 1, False)) == [["qlvbqn", "sso"], ["lgsp", "video"],
                                                        ["dvc", "qlvb"]]
    assert levels(estate, ["qlvb", "ioc"]) == [["ioc", "qlvb"]]
    with pytest.raises(PlanError, match="--tier N or --all"):
        select(estate, None, False)
