"""Files that cannot be read, are not YAML, or do not hold a mapping: each is reported with
its file (and line, when there is one), once, and never stops the other files' checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import EstateError
from orchestrator.estate import load_estate
from tests.helpers import EstateCopy


def test_a_folder_named_like_a_yaml_file_is_reported_unreadable(estate_copy: EstateCopy) -> None:
    estate_copy.path("sites/hue.yml").mkdir()
    estate_copy.assert_only_problems(("sites/hue.yml", "", "not a regular file (a folder)"))


def test_a_file_that_is_not_utf8_text_is_reported_unreadable(estate_copy: EstateCopy) -> None:
    estate_copy.path("systems/crm.yml").write_bytes(b"name: \xff\xfe CRM\ncode: crm\n")
    estate_copy.assert_only_problems(("systems/crm.yml", "", "cannot read the file: it is not "
                                      "UTF-8 text (invalid start byte at byte 6)"))


@pytest.mark.parametrize(("text", "where"), [
    pytest.param("name: CRM\n\tcode: crm\n", "line 2, column 1", id="tab-indent"),
    pytest.param("name: CRM\ncode: crm\nvms: [{role: app\n", "line 4, column 1",
                 id="unclosed-flow"),
])
def test_a_file_that_is_not_yaml_is_reported_with_its_line(
        estate_copy: EstateCopy, text: str, where: str) -> None:
    estate_copy.path("systems/crm.yml").write_text(text, encoding="utf-8")
    estate_copy.assert_only_problems(("systems/crm.yml", "", f"not valid YAML ({where})"))


def test_a_key_written_twice_is_reported_with_its_line(estate_copy: EstateCopy) -> None:
    estate_copy.replace("systems/sso.yml", "tier: 2\n", "tier: 2\ntier: 3\n")
    estate_copy.assert_only_problems(
        ("systems/sso.yml", "", "not valid YAML (line 5, column 1): key 'tier' is written twice"))


def test_a_key_that_is_a_list_is_reported_not_crashed(estate_copy: EstateCopy) -> None:
    estate_copy.replace("systems/sso.yml", "tier: 2\n", "tier: 2\n? [a, b]\n: 1\n")
    estate_copy.assert_only_problems(("systems/sso.yml", "", "a list cannot be a key"))


def test_yaml_merge_keys_are_not_mistaken_for_keys_written_twice(estate_copy: EstateCopy) -> None:
    estate_copy.replace(
        "systems/qlvb.yml",
        "  - {role: app, count: 2, site: danang, cpu: 4, memory_mb: 8192, disks_gb: [40], "
        "network: srv, cluster: CL-DN-01}\n",
        "  - &app {role: app, count: 2, site: danang, cpu: 4, memory_mb: 8192, disks_gb: [40], "
        "network: srv, cluster: CL-DN-01}\n"
        "  - {<<: *app, role: web, count: 1}\n")
    estate = estate_copy.load()
    assert [vm.name for vm in estate.vms_of("qlvb")] == [
        "qlvb-app-01", "qlvb-app-02", "qlvb-web-01", "qlvb-db-01"]


@pytest.mark.parametrize(("text", "found"), [
    pytest.param("- name: CRM\n  code: crm\n", "list", id="list"),
    pytest.param("just words\n", "str", id="text"),
    pytest.param("", "nothing", id="empty"),
])
def test_a_file_that_does_not_hold_a_mapping_is_reported(
        estate_copy: EstateCopy, text: str, found: str) -> None:
    estate_copy.path("systems/crm.yml").write_text(text, encoding="utf-8")
    estate_copy.assert_only_problems(
        ("systems/crm.yml", "", f"the file must hold a mapping of keys (found {found})"))


def test_a_missing_estate_yml_is_reported(estate_copy: EstateCopy) -> None:
    estate_copy.path("estate.yml").unlink()
    estate_copy.assert_only_problems(
        ("estate.yml", "", "missing: the estate directory needs an estate.yml"))


def test_an_unreadable_estate_yml_does_not_hide_the_other_files_problems(
        estate_copy: EstateCopy) -> None:
    estate_copy.path("estate.yml").write_bytes(b"id: \xff\n")
    estate_copy.edit("systems/sso.yml", lambda data: data["vms"][0].update(site="hue"))
    estate_copy.assert_only_problems(
        ("estate.yml", "", "cannot read the file"),
        ("systems/sso.yml", "vms[0].site", "unknown site 'hue'"),
    )


def test_a_missing_estate_folder_is_reported(tmp_path: Path) -> None:
    with pytest.raises(EstateError) as caught:
        load_estate(tmp_path / "nowhere")
    assert caught.value.problems == [
        (str(tmp_path / "nowhere"), "", "the estate directory does not exist")]


def test_files_other_than_yaml_are_ignored(estate_copy: EstateCopy) -> None:
    estate_copy.path("systems/README.md").write_text("# notes\n", encoding="utf-8")
    estate_copy.path("systems/sso.yml.orig").write_text("not: [yaml\n", encoding="utf-8")
    assert len(estate_copy.load().systems) == 10
