"""The device cache: a shortcut that is only ever used at the version it was read at."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from orchestrator.adapters.vsphere_cache import DeviceCache, cached_devices, config_version
from orchestrator.adapters.vsphere_xml import Device

URL, OTHER = "https://vc-a/sdk", "https://vc-b/sdk"
DISK = Device("disk", 2000, 1000, 0, 41943040)
NIC = Device("nic", 4000, 100, 7, port_group="PG-DN-SRV")
SCSI = Device("scsi", 1000)


def test_a_version_comes_from_change_version_and_modified_and_none_without_either() -> None:
    assert config_version("v7", "2026-12-03T00:49:37.1Z") == "v7|2026-12-03T00:49:37.1Z"
    assert config_version(None, "2026-12-03T00:49:37.1Z") == "2026-12-03T00:49:37.1Z"
    assert config_version("", None) is None


def test_devices_read_at_a_version_come_back_at_that_version_only(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "devices.json"
    cache = DeviceCache.load(path, URL)
    cache.put("VirtualMachine:vm-1", "t1", [DISK, SCSI, NIC])
    cache.save(["VirtualMachine:vm-1"])
    again = DeviceCache.load(path, URL)
    assert again.get("VirtualMachine:vm-1", "t1") == [DISK, NIC]  # controllers not kept
    assert again.get("VirtualMachine:vm-1", "t2") is None
    assert again.get("VirtualMachine:vm-1", None) is None
    assert again.get("VirtualMachine:vm-2", "t1") is None
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_vm_without_a_version_is_never_cached(tmp_path: Path) -> None:
    cache = DeviceCache.load(tmp_path / "d.json", URL)
    cache.put("VirtualMachine:vm-1", "t1", [DISK])
    cache.put("VirtualMachine:vm-1", None, [DISK])
    cache.save(["VirtualMachine:vm-1"])
    assert DeviceCache.load(tmp_path / "d.json", URL).entries == {}


def test_vms_that_are_gone_are_dropped_and_other_vcenters_kept(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    other = DeviceCache.load(path, OTHER)
    other.put("VirtualMachine:vm-9", "t9", [NIC])
    other.save(["VirtualMachine:vm-9"])
    cache = DeviceCache.load(path, URL)
    cache.put("VirtualMachine:vm-1", "t1", [DISK])
    cache.put("VirtualMachine:vm-2", "t2", [DISK])
    cache.save(["VirtualMachine:vm-2"])
    assert set(DeviceCache.load(path, URL).entries) == {"VirtualMachine:vm-2"}
    assert DeviceCache.load(path, OTHER).get("VirtualMachine:vm-9", "t9") == [NIC]


def test_an_unreadable_or_foreign_file_means_a_full_read(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    for text in ("not json", json.dumps({"format": 99, "vcenters": {}}),
                 json.dumps({"format": 1, "vcenters": {URL: {"VirtualMachine:vm-1":
                                                             ["t1", [["disk"]]]}}})):
        path.write_text(text)
        assert DeviceCache.load(path, URL).entries == {}
    assert DeviceCache.load(tmp_path / "missing.json", URL).entries == {}


def test_a_cache_that_cannot_be_written_is_no_error(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = DeviceCache.load(blocker / "d.json", URL)  # its folder cannot be made
    cache.put("VirtualMachine:vm-1", "t1", [DISK])
    with caplog.at_level(logging.WARNING, logger="hopnhat.vsphere"):
        cache.save(["VirtualMachine:vm-1"])  # logged, not raised
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert f"could not write the device cache {blocker / 'd.json'}" in record.getMessage()
    assert cache.get("VirtualMachine:vm-1", "t1") == [DISK]  # this run still uses it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing half-written


def test_cached_devices_splits_hits_from_what_must_be_read(tmp_path: Path) -> None:
    cache = DeviceCache(None, URL, {"VirtualMachine:vm-1": ("t1", [DISK]),
                                    "VirtualMachine:vm-2": ("t2", [DISK])})
    found, missing = cached_devices(cache, {"VirtualMachine:vm-1": "t1",
                                            "VirtualMachine:vm-2": "t3",
                                            "VirtualMachine:vm-3": None})
    assert found == {"VirtualMachine:vm-1": [DISK]}
    assert missing == ["VirtualMachine:vm-2", "VirtualMachine:vm-3"]
    assert cache.hits == 1


def test_two_vcenters_read_at_once_both_keep_their_section(tmp_path: Path) -> None:
    """Both loaded before either saved (a thread per vCenter): neither save drops the
    other's section."""
    path = tmp_path / "d.json"
    first, second = DeviceCache.load(path, URL), DeviceCache.load(path, OTHER)
    first.put("VirtualMachine:vm-1", "t1", [DISK])
    second.put("VirtualMachine:vm-9", "t9", [NIC])
    first.save(["VirtualMachine:vm-1"])
    second.save(["VirtualMachine:vm-9"])
    assert DeviceCache.load(path, URL).get("VirtualMachine:vm-1", "t1") == [DISK]
    assert DeviceCache.load(path, OTHER).get("VirtualMachine:vm-9", "t9") == [NIC]
