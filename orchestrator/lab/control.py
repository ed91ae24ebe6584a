"""``lab up | status | down``: start, inspect and stop the lab's real parts.

Order of ``up``: secrets and keys → vcsim (built if needed) → repository host(s) with a
chrooted SFTP account per system → the hypervisor that turns powered-on VMs into sshd
guests. ``down`` stops everything recorded, by PID, hypervisor first.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.adapters.ssh import ensure_keypair
from orchestrator.errors import LabError
from orchestrator.estate.secrets import Secrets
from orchestrator.lab import guests, repository, vcsim
from orchestrator.lab.config import LabConfig, load_lab_config, vcenter_endpoint, vcsim_model
from orchestrator.lab.processes import ProcessRecord, ProcessTable, is_alive
from orchestrator.lab.secrets import ensure_lab_secrets
from orchestrator.process import spawn
from orchestrator.settings import Paths

STOP_ORDER = ("hypervisor", "guest", "vcsim")


@dataclass(frozen=True)
class Part:
    """One running (or dead) part of the lab, for ``lab status``."""

    name: str
    kind: str
    address: str
    pid: int
    alive: bool

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "address": self.address,
                "pid": self.pid, "alive": self.alive}


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (mount and UTS namespaces, sshd on 127.x "
                       "addresses): run it as root, e.g. `sudo hopnhat lab up`")


def _backup_users(paths: Paths, host_name: str) -> dict[str, str]:
    """system code → public key of its account, for the systems backing up to ``host_name``."""
    out = {}
    for code, system in paths.estate.systems.items():
        backup = system.backup
        if backup is None:
            continue
        targets = {backup.repository_host}
        if backup.copy_to is not None:
            targets.add(backup.copy_to.repository_host)
        if host_name in targets:
            public = ensure_keypair(paths.repository_key(code), f"restic-{code}@{paths.estate.id}")
            out[code] = public.read_text().strip()
    return out


def _hypervisor_config(paths: Paths, config: LabConfig, url: str, control_pub: str) -> Path:
    estate = paths.estate
    data = {
        vm.name: {"code": vm.system, "seed": f"{estate.id}/{vm.name}",
                  "size_mb": config.data.size_mb, "files": config.data.files,
                  "change_rate": config.data.change_rate}
        for vm in estate.vms if vm.data and estate.systems[vm.system].backup is not None
    }
    doc = {
        "url": url, "ca_bundle": str(paths.lab / "vcsim" / "cert.pem"),
        "credentials_file": str(paths.lab / "vcsim" / "credentials.json"),
        "lab_dir": str(paths.lab), "known_hosts": str(paths.known_hosts),
        "authorized_keys": [control_pub], "data": data,
        "unmanaged": [host.name for host in estate.settings.repository_hosts],
    }
    target = paths.lab / "hypervisor.json"
    target.write_text(json.dumps(doc, indent=2))
    return target


def up(paths: Paths, delays: dict[str, int] | None = None) -> list[Part]:
    """Start whatever part of the lab is not running; harmless when all are."""
    require_root()
    estate = paths.estate
    table = ProcessTable(paths.lab)
    paths.lab.mkdir(parents=True, exist_ok=True)
    ensure_lab_secrets(paths)
    control_pub = ensure_keypair(paths.private_key, f"hopnhat@{estate.id}").read_text().strip()
    paths.known_hosts.parent.mkdir(parents=True, exist_ok=True)
    paths.known_hosts.touch(mode=0o644, exist_ok=True)

    config = load_lab_config(estate)
    url, _, _ = vcenter_endpoint(estate)
    model = vcsim_model(estate, config, paths.lab)
    if delays:
        model["delays"]["methods"].update(delays)
    site = next(iter(estate.sites.values()))
    password = Secrets(paths).get(site.vcenter.password)
    vcsim.write_credentials(Path(model["credentials_file"]), site.vcenter.username, password)
    vcsim.build(paths.lab)
    vcsim.start(paths.lab, model, table)

    for host in estate.settings.repository_hosts:
        repository.start_repository_host(
            paths.lab, table, host.name, host.name, str(host.address), host.storage_path,
            [control_pub], paths.known_hosts, _backup_users(paths, host.name),
            capacity_mb=config.repository_capacity_mb.get(host.name))

    if table.running("hypervisor") is None:
        cfg = _hypervisor_config(paths, config, url, control_pub)
        proc = spawn([sys.executable, "-m", "orchestrator.lab.hypervisor", str(cfg)],
                     log=paths.lab / "hypervisor.log", cwd=_package_root())
        table.record("hypervisor", "hypervisor", proc.pid)
    return status(paths.lab)


def _package_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _kind(record: ProcessRecord) -> str:
    return "repository" if record.details.get("role") == "repository" else record.kind


def status(lab_dir: Path) -> list[Part]:
    """Every recorded part with its address, PID and whether it still runs."""
    table = ProcessTable(lab_dir)
    parts = [Part(r.name, _kind(r), r.address, r.pid, is_alive(r)) for r in table.all()]
    order = {kind: i for i, kind in enumerate(("vcsim", "repository", "hypervisor", "guest"))}
    return sorted(parts, key=lambda p: (order.get(p.kind, 9), p.name))


def down(lab_dir: Path) -> list[str]:
    """Stop every recorded process, by PID — the hypervisor first, so it starts nothing
    new; a guest with whatever runs inside it. Returns the names stopped. Needs no estate,
    so a broken estate never keeps the lab running."""
    table = ProcessTable(lab_dir)
    stopped = []
    for record in sorted(table.all(), key=lambda r: STOP_ORDER.index(r.kind)
                         if r.kind in STOP_ORDER else len(STOP_ORDER)):
        if record.kind == "guest":
            done = guests.stop_guest(table, record.name.removeprefix("guest-"))
        else:
            done = table.stop(record.name)
        if done:
            stopped.append(record.name)
    return stopped
