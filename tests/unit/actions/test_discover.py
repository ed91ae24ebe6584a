"""``discover`` as a function of the estate and vCenter's facts; drafts and their writing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from orchestrator.actions import discover
from orchestrator.adapters.vsphere_facts import OWNER, SYSTEM
from orchestrator.errors import EstateError
from orchestrator.estate import load_estate
from tests.helpers import EXAMPLE_ESTATE
from tests.unit.actions.provision.test_adopt import QN, URL_DN, URL_QN, UUID, legacy
from tests.unit.actions.provision.test_plan import ESTATE, lab_inventory, ours


def facts() -> dict[str, object]:
    dn = lab_inventory([
        legacy(),  # declared by qlvbdn: described
        legacy(name="portal-web-01", folder="Legacy/Portal", uuid=UUID.replace("5", "7"),
               ip="127.10.1.6", hostname="portal-web-01", guest_os="Debian GNU/Linux 12",
               attributes={"Owner": "So TT&TT"}),
        ours("qlvb-app-01"),  # built by this estate: described
    ])
    qn = lab_inventory([
        legacy(dc=QN, folder="QLVB", uuid=UUID.replace("1", "2"), ip="127.20.1.5"),
        legacy(dc=QN, name="motcua-app-01", folder="MotCua", uuid=UUID.replace("1", "3"),
               attributes={OWNER: "quangnam-vnpt", SYSTEM: "motcua"}),
        legacy(dc=QN, name="qlvb-app-01", folder="QLVB\nx", uuid=UUID.replace("1", "4"),
               ip=None),
    ])
    return {URL_DN: dn, URL_QN: qn}


def test_discover_lists_what_the_estate_does_not_describe() -> None:
    estate = ESTATE.model_copy(update={"systems": {k: v for k, v in ESTATE.systems.items()
                                                   if k != "qlvbqn"},
                                       "vms": [v for v in ESTATE.vms if v.system != "qlvbqn"]})
    found = discover.discover(estate, facts())  # type: ignore[arg-type]
    names = [(vm.site, vm.folder, vm.name) for vm in found.vms]
    assert names == [("danang", "Legacy/Portal", "portal-web-01"),
                     ("quangnam", "MotCua", "motcua-app-01"),
                     ("quangnam", "QLVB", "qlvb-db-01"),
                     ("quangnam", "QLVB\nx", "qlvb-app-01")]
    assert found.described == 2
    motcua = found.vms[1]
    assert motcua.owner == "quangnam-vnpt"
    portal = found.vms[0]
    assert (portal.network, portal.ip, portal.disks_gb) == ("srv", "127.10.1.6", (40, 100))
    assert portal.attributes == {"Owner": "So TT&TT"}
    codes = {c.code: (c.site, c.folder, list(c.roles)) for c in found.candidates}
    # qlvb is taken by the consolidated QLVB: Quảng Nam's gets the site in its code
    assert codes == {"portal": ("danang", "Legacy/Portal", ["web"]),
                     "qlvbquangnam": ("quangnam", "QLVB", ["db"]),
                     "qlvb2": ("quangnam", "QLVB\nx", ["app"])}


def test_a_draft_fails_validation_until_a_person_fills_it(tmp_path: Path) -> None:
    estate_dir = tmp_path / "estate"
    shutil.copytree(EXAMPLE_ESTATE, estate_dir)
    (estate_dir / "systems" / "qlvbqn.yml").unlink()
    estate = load_estate(estate_dir)
    found = discover.discover(estate, facts())  # type: ignore[arg-type]
    written = discover.write_drafts(estate, found.candidates, estate_dir / "systems", "now")
    assert sorted(p.name for p in written) == ["portal.yml", "qlvb2.yml",
                                               "qlvbquangnam.yml"]
    with pytest.raises(EstateError) as refused:
        load_estate(estate_dir)
    keys = {(f, k) for f, k, _ in refused.value.problems}
    assert {("systems/portal.yml", "tier"), ("systems/portal.yml", "backup.paths"),
            ("systems/portal.yml", "drill.probes")} <= keys
    # the one without a guest IP needs its address too; its odd folder is quoted
    odd = (estate_dir / "systems" / "qlvb2.yml").read_text()
    assert '"QLVB\\nx"' in odd
    assert ("systems/qlvb2.yml", "vms[0].existing[0].address") in keys
    # filled in, it is valid and the plan would adopt it
    doc = yaml.safe_load((estate_dir / "systems" / "portal.yml").read_text())
    doc.update(tier=2, backup={**doc["backup"], "paths": ["/srv/portal"]},
               drill={"probes": []})
    (estate_dir / "systems" / "portal.yml").write_text(yaml.safe_dump(doc))
    for name in ("qlvbquangnam.yml", "qlvb2.yml"):
        (estate_dir / "systems" / name).unlink()
    filled = load_estate(estate_dir)
    vm = next(v for v in filled.vms if v.system == "portal")
    assert vm.existing is not None and vm.existing.folder == "Legacy/Portal"
    assert str(vm.ip) == "127.10.1.6"


def test_drafts_never_overwrite(tmp_path: Path) -> None:
    found = discover.discover(ESTATE, facts())  # type: ignore[arg-type]
    (tmp_path / "portal.yml").write_text("mine\n")
    with pytest.raises(discover.DiscoverError, match="never overwrites"):
        discover.write_drafts(ESTATE, found.candidates, tmp_path, "now")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["portal.yml"]
    assert (tmp_path / "portal.yml").read_text() == "mine\n"
