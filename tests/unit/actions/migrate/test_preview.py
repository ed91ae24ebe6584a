"""``migrate plan`` read from the world: the target site's vCenter (faked: facts by hand)
and the source's snapshots (faked), the move's plan out."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestrator.actions.migrate import preview as migrate_preview
from orchestrator.actions.migrate.preview import newest, preview
from orchestrator.actions.provision import vcenters as provision_vcenters
from orchestrator.actions.provision.model import CREATE
from orchestrator.adapters.restic import Snapshot
from orchestrator.errors import PlanError
from orchestrator.settings import Paths
from tests.unit.actions.provision.test_plan import ESTATE, URL, lab_inventory


def snap(ident: str, host: str, day: int) -> Snapshot:
    return Snapshot(id=ident * 64, short_id=ident * 8, time=datetime(2026, 3, day, tzinfo=UTC),
                    hostname=host, username="root", paths=("/srv/qlvbqn",))


def test_each_host_restores_from_its_newest_snapshot() -> None:
    older, newer, other = snap("a", "db-01", 1), snap("b", "db-01", 2), snap("c", "db-02", 1)
    assert newest([newer, other, older]) == {"db-01": newer, "db-02": other}


def test_the_preview_plans_the_targets_in_the_target_sites_vcenter(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[set[str]] = []

    @contextmanager
    def sessions(endpoints: Any, pool_size: int = 8) -> Iterator[dict[str, Any]]:
        yield {URL: object()}

    def facts(vcenters: Any, names: set[str], *args: Any) -> dict[str, Any]:
        read.append(names)
        return {URL: lab_inventory()}

    monkeypatch.setattr(provision_vcenters, "endpoints", lambda *a: [])
    monkeypatch.setattr(provision_vcenters, "read_facts", facts)
    monkeypatch.setattr(migrate_preview, "open_vcenters", sessions)
    monkeypatch.setattr(migrate_preview, "list_snapshots", lambda paths, code: [
        snap("a", "qlvbqn-db-01", 1), snap("b", "qlvbqn-db-01", 2)])
    move = preview(Paths(tmp_path, ESTATE), "qlvbqn", "danang")
    targets = [vm.name for vm in ESTATE.targets_of("qlvbqn")]
    assert read == [set(targets)]
    assert move.provision is not None
    assert [(a.name, a.kind) for a in move.provision.actions] == [(t, CREATE) for t in targets]
    assert [(p.source.name, p.snapshot and p.snapshot.short_id) for p in move.pairs] == [
        ("qlvbqn-db-01", "bbbbbbbb")]


def test_a_move_the_estate_does_not_declare_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PlanError) as refused:
        preview(Paths(tmp_path, ESTATE), "qlvb", "quangnam")
    assert refused.value.exit_code == 2
