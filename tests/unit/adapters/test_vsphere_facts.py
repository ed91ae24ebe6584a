"""The inventory's lookups, without vCenter."""

from __future__ import annotations

from orchestrator.adapters.vsphere_facts import Inventory, VMFacts


def test_vms_are_found_by_name_after_the_list_is_replaced_or_grows() -> None:
    inv = Inventory(url="https://vc/sdk", vms=[VMFacts("a"), VMFacts("b"), VMFacts("b")])
    assert [v.name for v in inv.vms_named("a")] == ["a"]
    assert len(inv.vms_named("b")) == 2 and inv.vms_named("c") == []
    inv.vms = [VMFacts("a", cpu=2)]  # as add_devices and add_clone_marks replace it
    assert [v.cpu for v in inv.vms_named("a")] == [2] and inv.vms_named("b") == []
    inv.vms.append(VMFacts("b", cpu=3))
    assert [v.cpu for v in inv.vms_named("b")] == [3]
