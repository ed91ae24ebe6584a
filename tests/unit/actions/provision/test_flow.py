"""apply and destroy as flows: the plan, the backup gate, the operator's confirmation, then
the change — with a fake vCenter (facts built by hand, a session that records each call)
and the real backup gate and ledger."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from orchestrator.actions.backup import status as backup_status
from orchestrator.actions.backup.gate import NOT_NEEDED, OVERRIDDEN, REFUSED, GateRequest
from orchestrator.actions.provision import flow
from orchestrator.actions.provision.destroy import DestroyPlan
from orchestrator.actions.provision.flow import Hooks, apply_flow, destroy_flow
from orchestrator.actions.provision.model import Plan
from orchestrator.adapters.vsphere_facts import Inventory
from orchestrator.errors import PlanError, ResticError, VSphereError
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths
from tests.unit.actions.provision.test_plan import ESTATE, URL, lab_inventory, ours

OVERRIDE = GateRequest(override_reason="the change window is now")


class FakeVCenter:
    """A vCenter session that records every call; it refuses every task."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self.calls: list[str] = []

    def ensure_fields(self, names: Sequence[str], known: dict[str, int]) -> dict[str, int]:
        self.calls.append("ensure_fields")
        return dict(known)

    def _refuse(self, call: str, name: str) -> None:
        self.calls.append(f"{call} {name}")
        raise VSphereError(f"{name}: the fake vCenter refuses {call}")

    def reconfigure_vm(self, ref: Any, name: str, spec: Any) -> None:
        self._refuse("reconfigure", name)

    def power_on_vm(self, ref: Any, name: str) -> None:
        self._refuse("power on", name)

    def power_off_vm(self, ref: Any, name: str) -> None:
        self._refuse("power off", name)

    def destroy_vm(self, ref: Any, name: str) -> None:
        self._refuse("destroy", name)


def vcenter_with(monkeypatch: pytest.MonkeyPatch, inventory: Inventory) -> FakeVCenter:
    """Every vCenter the flow connects to is ``inventory``'s fake session."""
    fake = FakeVCenter(inventory)

    @contextmanager
    def sessions(endpoints: Any, pool_size: int = 8) -> Iterator[dict[str, Any]]:
        del endpoints, pool_size
        yield {URL: fake}

    monkeypatch.setattr(flow, "endpoints", lambda *args, **kwargs: [])
    monkeypatch.setattr(flow, "open_vcenters", sessions)
    monkeypatch.setattr(flow, "read_facts", lambda *args, **kwargs: {URL: inventory})
    return fake


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "state", ESTATE)


def runs(paths: Paths) -> list[tuple[str, str]]:
    """(kind, status) of every run in the ledger, oldest first."""
    with Ledger(paths.ledger) as ledger:
        return [(run.kind, run.status) for run in reversed(ledger.runs())]


def refuse(plan: Any) -> bool:
    del plan
    return False


def test_refused_at_the_confirmation_apply_changes_nothing_and_records_only_the_gate(
        monkeypatch: pytest.MonkeyPatch, paths: Paths) -> None:
    fake = vcenter_with(monkeypatch, lab_inventory([
        ours("qlvb-app-01"), ours("qlvb-app-02"), ours("qlvb-db-01", cpu=2)]))
    asked: list[Plan] = []

    def confirm(plan: Plan) -> bool:
        asked.append(plan)
        return False

    done = apply_flow(paths, confirm=confirm, systems=["qlvb"], gate=OVERRIDE)
    assert done.cancelled and done.result is None
    assert [a.name for a in asked[0].pending] == ["qlvb-db-01"]
    assert done.gate is not None and done.gate.status == OVERRIDDEN
    assert fake.calls == []
    assert runs(paths) == [("backup-gate", OVERRIDDEN)]  # as before: no provision run


def test_a_refusing_backup_gate_stops_apply_before_anyone_is_asked(
        monkeypatch: pytest.MonkeyPatch, paths: Paths) -> None:
    fake = vcenter_with(monkeypatch, lab_inventory([ours("qlvb-db-01", cpu=2)]))

    def unreadable(paths: Paths, code: str) -> list[Any]:
        raise ResticError(f"repository of {code} cannot be read")

    monkeypatch.setattr(backup_status, "repository_snapshots", unreadable)
    asked: list[Plan] = []

    def confirm(plan: Plan) -> bool:
        asked.append(plan)
        return True

    with pytest.raises(PlanError, match="the backup gate refuses this apply"):
        apply_flow(paths, confirm=confirm, systems=["qlvb"], sites=["danang"])
    assert asked == []
    assert fake.calls == []
    assert runs(paths) == [("backup-gate", REFUSED)]


def test_a_confirmed_plan_is_applied_and_its_run_recorded(
        monkeypatch: pytest.MonkeyPatch, paths: Paths) -> None:
    fake = vcenter_with(monkeypatch, lab_inventory([
        ours("qlvb-app-01", power_state="poweredOff"), ours("qlvb-app-02"),
        ours("qlvb-db-01")]))
    heard: list[str] = []
    hooks: Hooks[Plan] = Hooks(planned=lambda plan: heard.append("planned"),
                               gated=lambda gate: heard.append(f"gate {gate.status}"))

    def confirm(plan: Plan) -> bool:
        heard.append("asked")
        return True

    done = apply_flow(paths, confirm=confirm, systems=["qlvb"], hooks=hooks)
    assert heard == ["planned", f"gate {NOT_NEEDED}", "asked"]
    assert fake.calls == ["ensure_fields", "power on qlvb-app-01"]
    assert done.result is not None and done.result.status == "failed"
    assert runs(paths) == [("provision", "failed")]


def test_a_plan_without_changes_asks_no_one_and_touches_nothing(
        monkeypatch: pytest.MonkeyPatch, paths: Paths) -> None:
    fake = vcenter_with(monkeypatch, lab_inventory([
        ours("qlvb-app-01"), ours("qlvb-app-02"), ours("qlvb-db-01")]))
    done = apply_flow(paths, confirm=refuse, systems=["qlvb"])
    assert not done.cancelled and done.result is not None
    assert done.result.status == "no changes"
    assert fake.calls == []
    assert runs(paths) == [("provision", "no changes")]


def test_refused_at_the_confirmation_destroy_destroys_nothing(
        monkeypatch: pytest.MonkeyPatch, paths: Paths) -> None:
    fake = vcenter_with(monkeypatch, lab_inventory([
        ours("qlvb-app-01"), ours("qlvb-app-02"), ours("qlvb-db-01")]))
    asked: list[DestroyPlan] = []

    def confirm(plan: DestroyPlan) -> bool:
        asked.append(plan)
        return False

    done = destroy_flow(paths, "qlvb", confirm=confirm, gate=OVERRIDE)
    assert done.cancelled and done.result is None
    assert sorted(a.name for a in asked[0].actions) == ["qlvb-app-01", "qlvb-app-02",
                                                        "qlvb-db-01"]
    assert fake.calls == []
    assert runs(paths) == [("backup-gate", OVERRIDDEN)]


def test_a_confirmed_destroy_runs_and_is_recorded(
        monkeypatch: pytest.MonkeyPatch, paths: Paths) -> None:
    fake = vcenter_with(monkeypatch, lab_inventory([ours("qlvb-app-01")]))  # holds no data
    done = destroy_flow(paths, "qlvb", confirm=lambda plan: True)
    assert done.gate is not None and done.gate.status == NOT_NEEDED
    assert fake.calls == ["power off qlvb-app-01"]
    assert done.result is not None and done.result.status == "failed"
    assert runs(paths) == [("destroy", "failed")]


def test_with_nothing_of_the_system_destroy_asks_no_one_and_records_nothing(
        monkeypatch: pytest.MonkeyPatch, paths: Paths) -> None:
    fake = vcenter_with(monkeypatch, lab_inventory([]))
    done = destroy_flow(paths, "qlvb", confirm=refuse)
    assert not done.cancelled and done.gate is None and done.result is None
    assert done.plan.actions == ()
    assert fake.calls == []
    assert runs(paths) == []
