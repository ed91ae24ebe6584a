"""The lab's vCenters from the estate: one vcsim per distinct vCenter URL, each modelling
its own sites only, with its own folder, port, credentials and certificate; and the lab
hypervisor, which follows them all."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrator.adapters.vsphere import Endpoint
from orchestrator.errors import LabError
from orchestrator.estate.model import SecretRef
from orchestrator.lab.config import LabConfig, lab_vcenter_of, lab_vcenters, vcsim_model
from orchestrator.lab.control import check_ca_bundles
from orchestrator.lab.hypervisor import Hypervisor
from orchestrator.settings import Paths
from tests.helpers import EstateCopy


def test_the_example_has_a_vcenter_per_former_province(estate_copy: EstateCopy) -> None:
    danang, quangnam = lab_vcenters(estate_copy.load())
    assert (danang.name, danang.sites, danang.port) == ("vcsim-danang", ("danang",), 8989)
    assert (quangnam.name, quangnam.sites, quangnam.port) == ("vcsim-quangnam",
                                                              ("quangnam",), 8990)
    assert danang.username != quangnam.username
    assert (danang.password, quangnam.password) == (
        SecretRef(vault="vcenter_danang_password"), SecretRef(vault="vcenter_quangnam_password"))
    assert (danang.ca_bundle, quangnam.ca_bundle) == ("lab/vcsim-danang/cert.pem",
                                                      "lab/vcsim-quangnam/cert.pem")
    assert quangnam.describe() == "https://127.0.0.1:8990/sdk (site quangnam)"
    assert lab_vcenter_of(estate_copy.load(), "quangnam") == quangnam


def test_each_vcsim_models_only_its_own_sites(estate_copy: EstateCopy, tmp_path: Path) -> None:
    estate = estate_copy.load()
    for vcenter in lab_vcenters(estate):
        model = vcsim_model(estate, LabConfig(), tmp_path, vcenter)
        (site,) = vcenter.sites
        assert [dc["name"] for dc in model["datacenters"]] == [estate.sites[site].datacenter]
        assert model["listen"] == f"127.0.0.1:{vcenter.port}"
        folder = tmp_path / vcenter.name
        assert model["tls"] == {"cert": str(folder / "cert.pem"), "key": str(folder / "key.pem")}
        assert model["credentials_file"] == str(folder / "credentials.json")
        assert model["ready_file"] == str(folder / "vcsim.ready")
    with pytest.raises(LabError, match="names 2 vCenters"):
        vcsim_model(estate, LabConfig(), tmp_path)


def test_sites_sharing_one_vcenter_get_one_vcsim_named_vcsim(estate_copy: EstateCopy) -> None:
    estate_copy.replace("sites/quangnam.yml", "127.0.0.1:8990", "127.0.0.1:8989")
    estate_copy.replace("sites/quangnam.yml", "administrator@quangnam.local",
                        "administrator@vsphere.local")
    estate_copy.replace("sites/quangnam.yml", "vcenter_quangnam_password",
                        "vcenter_danang_password")
    estate_copy.replace("sites/quangnam.yml", "lab/vcsim-quangnam/", "lab/vcsim/")
    estate_copy.replace("sites/danang.yml", "lab/vcsim-danang/", "lab/vcsim/")
    (only,) = lab_vcenters(estate_copy.load())
    assert (only.name, only.sites) == ("vcsim", ("danang", "quangnam"))
    assert only.describe() == "https://127.0.0.1:8989/sdk (sites danang, quangnam)"


@pytest.mark.parametrize(("old", "new", "message"), [
    ("https://127.0.0.1:8990/sdk", "https://127.0.0.1:8989/other",
     "site quangnam: https://127.0.0.1:8989/other and https://127.0.0.1:8989/sdk listen on "
     "the same address 127.0.0.1:8989: give each vCenter its own port"),
    ("https://127.0.0.1:8990/sdk", "https://10.0.0.5:8990/sdk",
     "site quangnam: https://10.0.0.5:8990/sdk: the lab listens on loopback only"),
    ("https://127.0.0.1:8990/sdk", "https://127.0.0.1:8989/sdk",
     "sites danang and quangnam name one vCenter (https://127.0.0.1:8989/sdk) with "
     "different user names, passwords or CA bundles"),
])
def test_a_vcenter_the_lab_cannot_simulate_is_named(estate_copy: EstateCopy, old: str,
                                                    new: str, message: str) -> None:
    estate_copy.replace("sites/quangnam.yml", old, new)
    with pytest.raises(LabError) as caught:
        lab_vcenters(estate_copy.load())
    assert message in str(caught.value)


def test_a_ca_bundle_elsewhere_than_the_lab_writes_it_is_refused(
        estate_copy: EstateCopy, tmp_path: Path) -> None:
    estate_copy.replace("sites/quangnam.yml", "lab/vcsim-quangnam/cert.pem",
                        "lab/vcsim/cert.pem")
    estate = estate_copy.load()
    paths = Paths(tmp_path / "state", estate)
    with pytest.raises(LabError) as caught:
        check_ca_bundles(paths, lab_vcenters(estate))
    assert str(caught.value) == (
        "site quangnam: vcenter.ca_bundle is lab/vcsim/cert.pem, but the lab's vCenter "
        f"https://127.0.0.1:8990/sdk serves its certificate from "
        f"{tmp_path / 'state' / 'lab' / 'vcsim-quangnam' / 'cert.pem'}: write ca_bundle: "
        "lab/vcsim-quangnam/cert.pem")
    check_ca_bundles(Paths(tmp_path / "state", estate_copy.load()),
                     lab_vcenters(estate_copy.load())[:1])  # Đà Nẵng's is where it should be


def test_an_endpoint_names_its_sites_and_never_its_password() -> None:
    one = Endpoint("https://127.0.0.1:8990/sdk", "u", "s3cret", sites=("quangnam",))
    both = Endpoint("https://127.0.0.1:8989/sdk", "u", "s3cret", sites=("danang", "quangnam"))
    assert one.label == "https://127.0.0.1:8990/sdk (site quangnam)"
    assert both.label == "https://127.0.0.1:8989/sdk (sites danang, quangnam)"
    assert Endpoint("https://h/sdk", "u", "p").label == "https://h/sdk"
    assert "s3cret" not in repr(one)


# ---------------------------------------------------------------- the hypervisor


A, B = "https://127.0.0.1:1/sdk", "https://127.0.0.1:2/sdk"


def update(*vms: tuple[str, str, bool]) -> Any:
    """An UpdateSet entering each (moref id, name, powered on) VM."""
    objects = [SimpleNamespace(
        obj=SimpleNamespace(_moId=moid), kind="enter",
        changeSet=[SimpleNamespace(name="name", op="assign", val=name),
                   SimpleNamespace(name="runtime.powerState", op="assign",
                                   val="poweredOn" if on else "poweredOff")])
        for moid, name, on in vms]
    return SimpleNamespace(filterSet=[SimpleNamespace(objectSet=objects)])


@pytest.fixture
def hypervisor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Hypervisor:
    hv = Hypervisor({"lab_dir": str(tmp_path), "known_hosts": str(tmp_path / "kh"),
                     "authorized_keys": [], "vcenters": [{"url": A}, {"url": B}]})
    calls: list[set[str]] = []
    monkeypatch.setattr(hv, "reconcile", lambda: calls.append(
        {vm.name for vm in hv.vms.values()}))
    hv.calls = calls  # type: ignore[attr-defined]
    return hv


def test_guests_are_reconciled_only_once_every_vcenter_was_read(hypervisor: Any) -> None:
    hypervisor.updated(A, update(("vm-1", "app-01", True)), full=True)
    assert hypervisor.calls == []  # B not read yet: its guests are not A's to judge
    hypervisor.updated(B, update(("vm-1", "replica-01", True)), full=True)
    assert hypervisor.calls == [{"app-01", "replica-01"}]  # same moref id, two vCenters


def test_a_restarted_vcenters_full_read_replaces_what_was_known_of_it(
        hypervisor: Any) -> None:
    hypervisor.updated(A, update(("vm-1", "app-01", True)), full=True)
    hypervisor.updated(B, update(("vm-1", "replica-01", True), ("vm-2", "old-01", False)),
                       full=True)
    hypervisor.updated(B, update(("vm-3", "new-01", True)), full=True)  # B came back empty
    assert hypervisor.calls[-1] == {"app-01", "new-01"}
    hypervisor.updated(B, update(("vm-4", "more-01", True)))  # a later change adds
    assert hypervisor.calls[-1] == {"app-01", "new-01", "more-01"}


def test_a_hypervisor_started_with_another_config_is_known_by_its_config(
        tmp_path: Path) -> None:
    """`lab up` restarts a running hypervisor started with another config than the one it
    would write now (other vCenters: one started before each site had its own; other keys,
    legacy VMs or data): what it runs with is read back from its config file."""
    from orchestrator.lab.control import _running_config

    assert _running_config(tmp_path) is None  # no config: unknown
    (tmp_path / "hypervisor.json").write_text("[not json")
    assert _running_config(tmp_path) is None
    (tmp_path / "hypervisor.json").write_text('["a list"]')
    assert _running_config(tmp_path) is None
    (tmp_path / "hypervisor.json").write_text(
        '{"vcenters": [{"url": "https://127.0.0.1:8989/sdk"}], "operator_keys": []}')
    assert _running_config(tmp_path) == {
        "vcenters": [{"url": "https://127.0.0.1:8989/sdk"}], "operator_keys": []}
