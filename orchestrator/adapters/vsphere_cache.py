"""The device lists of VMs already read, kept between runs and keyed by the VM's
configuration version, so that a plan re-reads only the VMs whose configuration changed.

A VM's device list (disks, NICs: a dozen devices, ~5 KB of SOAP each) is the heavy part of
reading vCenter: for 1,000 VMs it is two thirds of the bytes of a plan's read and most of its
parsing. vCenter gives every VM a configuration version that changes with every change of its
configuration (``config.changeVersion``; ``config.modified``, the time of the last change,
beside it — vcsim sets only the latter), so a device list read at a version stays true
while the version does. :func:`read_inventory` reads the versions with everything else in its
one big call, takes the device lists of unchanged VMs from here and reads the others in its
second call, as before.

The cache is a JSON file in the state folder (``<state>/cache/vcenter-devices.json``, 0600),
one section per vCenter URL, an entry per VM (``Type:moid`` → version and device records).
It holds no secret and no VM name. It is only ever a shortcut: a missing, unreadable or
foreign file means a full read; it is replaced atomically, so two runs at once cost at most a
full read the next time. A VM whose version is unknown is never cached.
"""

from __future__ import annotations

import fcntl
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from orchestrator.adapters.vsphere_xml import Device
from orchestrator.files import write_atomically

log = logging.getLogger("hopnhat.vsphere")

FORMAT = 1
KEPT = ("disk", "nic")  # what a plan compares; controllers and the rest are not kept
_FIELDS = ("kind", "key", "controller_key", "unit_number", "capacity_kb", "port_group",
           "portgroup_key")


def config_version(change_version: Any, modified: Any) -> str | None:
    """A VM's configuration version from ``config.changeVersion`` and ``config.modified``
    (either may be unset). None when neither is known: such a VM is always read."""
    parts = [str(v) for v in (change_version, modified) if v not in (None, "")]
    return "|".join(parts) if parts else None


def _device(record: Any) -> Device:
    if not isinstance(record, list) or len(record) != len(_FIELDS):
        raise ValueError("not a device record")
    return Device(*record)


def _record(device: Device) -> list[Any]:
    return [getattr(device, name) for name in _FIELDS]


class DeviceCache:
    """The cached device lists of one vCenter's VMs (see the module's text).

    ``DeviceCache.load(path, url)``; :meth:`get` a VM's devices at a version;
    :meth:`put` what was read; :meth:`save` with the keys of the VMs that still exist.
    ``path`` None: a cache that keeps nothing (every read is a full read).
    """

    def __init__(self, path: Path | None, url: str,
                 entries: dict[str, tuple[str, list[Device]]] | None = None,
                 others: dict[str, Any] | None = None) -> None:
        self.path = path
        self.url = url
        self.entries = entries or {}
        self._others = others or {}  # the sections of other vCenters, written back as read
        self.hits = 0

    @classmethod
    def load(cls, path: Path | None, url: str) -> DeviceCache:
        """The cache of vCenter ``url`` from ``path``; empty when the file is missing or
        cannot be read (logged at debug: the read is then simply a full one)."""
        if path is None:
            return cls(None, url)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(document, dict) or document.get("format") != FORMAT:
                raise ValueError("another format")
            sections = document.get("vcenters")
            if not isinstance(sections, dict):
                raise ValueError("no vcenters")
            entries: dict[str, tuple[str, list[Device]]] = {}
            for key, (version, records) in (sections.get(url) or {}).items():
                entries[str(key)] = (str(version), [_device(r) for r in records])
            others = {u: s for u, s in sections.items() if u != url}
            return cls(path, url, entries, others)
        except FileNotFoundError:
            return cls(path, url)
        except (OSError, ValueError, TypeError) as exc:
            log.debug("device cache %s not used (%s): reading every device list", path, exc)
            return cls(path, url)

    def _sections_now(self) -> dict[str, Any]:
        """The sections of the file as it is now ({} when it cannot be read)."""
        assert self.path is not None
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        sections = document.get("vcenters") if isinstance(document, dict) and \
            document.get("format") == FORMAT else None
        return sections if isinstance(sections, dict) else {}

    def get(self, key: str, version: str | None) -> list[Device] | None:
        """The device list of VM ``key`` if it was read at ``version``, else None."""
        if version is None:
            return None
        found = self.entries.get(key)
        if found is None or found[0] != version:
            return None
        self.hits += 1
        return found[1]

    def put(self, key: str, version: str | None, devices: Iterable[Device]) -> None:
        """Remember the disks and NICs of VM ``key`` read at ``version`` (not when it is
        None)."""
        if version is None:
            self.entries.pop(key, None)
        else:
            self.entries[key] = (version, [d for d in devices if d.kind in KEPT])

    def save(self, existing: Iterable[str]) -> None:
        """Write the cache, keeping only the VMs among ``existing`` (the keys read in this
        vCenter now). A failure to write is logged, never raised: the cache is a shortcut."""
        if self.path is None:
            return
        alive = set(existing)
        section = {key: [version, [_record(d) for d in devices]]
                   for key, (version, devices) in self.entries.items() if key in alive}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # vCenters are read at once (a thread each): under the lock, the other
            # vCenters' sections are taken from the file as it is now, not as it was
            with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                others = {**self._others, **self._sections_now()}
                others.pop(self.url, None)
                document = {"format": FORMAT, "vcenters": {**others, self.url: section}}
                write_atomically(self.path, json.dumps(document, separators=(",", ":")), 0o600)
        except OSError as exc:
            log.warning("could not write the device cache %s (%s); the next read is a "
                        "full one", self.path, exc)


def cached_devices(cache: DeviceCache, wanted: Mapping[str, str | None]
                   ) -> tuple[dict[str, list[Device]], list[str]]:
    """Split ``wanted`` (VM key → version) into the device lists the cache holds at those
    versions and the keys that must be read."""
    found: dict[str, list[Device]] = {}
    missing: list[str] = []
    for key, version in wanted.items():
        devices = cache.get(key, version)
        if devices is None:
            missing.append(key)
        else:
            found[key] = devices
    return found, missing
