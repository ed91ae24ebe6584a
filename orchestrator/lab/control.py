"""``lab up | status | down``: start, inspect and stop the lab's real parts.

Order of ``up``: secrets and keys (hopnhat's control key, and the operator key: the former
provinces' IT teams' own, the only key their legacy VMs accept) → one vcsim per vCenter of
the estate (built if needed; each its own port, certificate, credentials and folder
``lab/<name>/``; each holding lab.yml's VMs, legacy ones included) → repository host(s) with
a chrooted SFTP account per system → the hypervisor that follows every vCenter and turns
powered-on VMs into sshd guests. ``down`` stops everything recorded, by PID, hypervisor
first.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.adapters.ssh import ensure_keypair
from orchestrator.errors import LabError
from orchestrator.estate.secrets import Secrets
from orchestrator.lab import engines, gobuild, guests, link, repository, rest, vcsim
from orchestrator.lab.config import (
    LabConfig,
    LabVCenter,
    LabVM,
    lab_vcenters,
    legacy_vms,
    load_lab_config,
    vcsim_model,
)
from orchestrator.lab.processes import ProcessRecord, ProcessTable, is_alive
from orchestrator.lab.secrets import ensure_lab_secrets
from orchestrator.process import spawn
from orchestrator.resources import package_parent
from orchestrator.settings import Paths

STOP_ORDER = ("hypervisor", "guest", "vcsim")
#: How long `lab up` waits for the legacy VMs' guests once it started a part (seconds).
LEGACY_TIMEOUT = 60.0
#: The operator key's place under the lab's folder (see :func:`operator_key`).
OPERATOR_KEY = Path("operator") / "id_ed25519"


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


def operator_key(where: Paths | Path) -> Path:
    """The private operator key, ``<state>/lab/operator/id_ed25519`` (``where``: the
    estate's Paths, or the lab folder ``<state>/lab``): the former provinces' IT teams' own
    SSH key, the only one the lab's legacy guests accept (its public half beside it, with
    ``.pub``). ``lab up`` makes it; hopnhat itself never holds it — it is what an operator
    hands to ``hopnhat hosts trust`` to install hopnhat's key on a legacy VM."""
    lab_dir = where.lab if isinstance(where, Paths) else where
    return lab_dir / OPERATOR_KEY


def ensure_operator_key(paths: Paths) -> str:
    """Make the operator key pair once (private key 0600 in a 0700 folder); its public
    line."""
    private = operator_key(paths)
    public = ensure_keypair(private, f"province-it@{paths.estate.id}")
    private.parent.chmod(0o700)
    return public.read_text().strip()


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (mount and UTS namespaces, sshd on 127.x "
                       "addresses): run it as root, e.g. `sudo hopnhat lab up`")


def _backup_users(paths: Paths, host_name: str) -> dict[str, str]:
    """system code → public key of its account, for the systems backing up to ``host_name``."""
    out: dict[str, str] = {}
    if paths.estate.repository_host(host_name).protocol == "rest":
        return out  # its systems reach it through their rest-servers
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


def check_ca_bundles(paths: Paths, vcenters: list[LabVCenter]) -> None:
    """Each lab vCenter serves the certificate it made in its own folder
    (``lab/<name>/cert.pem``): a site's ``vcenter.ca_bundle`` must name that file (or be
    absent). Raises LabError naming the site, what it says and what it should say."""
    for vcenter in vcenters:
        if vcenter.ca_bundle is None:
            continue
        wanted = vcenter.folder(paths.lab) / "cert.pem"
        if paths.ca_bundle(vcenter.ca_bundle) != wanted:
            shown = wanted.relative_to(paths.state) if wanted.is_relative_to(paths.state) \
                else wanted
            raise LabError(f"site {', '.join(vcenter.sites)}: vcenter.ca_bundle is "
                           f"{vcenter.ca_bundle}, but the lab's vCenter {vcenter.url} serves "
                           f"its certificate from {wanted}: write ca_bundle: {shown}")


def _hypervisor_config(paths: Paths, config: LabConfig, vcenters: list[LabVCenter],
                       control_pub: str, operator_pub: str,
                       legacy: dict[str, LabVM]) -> dict[str, Any]:
    """The hypervisor's config (``lab/hypervisor.json``), as JSON reads it back."""
    estate = paths.estate
    sizes = {"size_mb": config.data.size_mb, "files": config.data.files,
             "change_rate": config.data.change_rate}
    data = {
        vm.name: {"code": vm.system, "seed": f"{estate.id}/{vm.name}", **sizes}
        for vm in estate.vms if vm.data and estate.systems[vm.system].backup is not None
    }
    doc = {
        "vcenters": [{"url": vc.url, "ca_bundle": str(vc.folder(paths.lab) / "cert.pem"),
                      "credentials_file": str(vc.folder(paths.lab) / "credentials.json")}
                     for vc in vcenters],
        "lab_dir": str(paths.lab), "known_hosts": str(paths.known_hosts),
        "authorized_keys": [control_pub], "operator_keys": [operator_pub], "data": data,
        # the engines a data VM's guest runs: those of its system's backup.databases
        "databases": engines.guest_engines(estate, config.data.db_rows),
        # a legacy guest's data is seeded once, like hopnhat's data VMs, under its guest key
        "legacy": {key: {"publish_fingerprint": vm.publish_fingerprint, "data": None
                         if vm.data is None else {"code": vm.data,
                                                  "seed": f"{estate.id}/legacy/{key}", **sizes}}
                   for key, vm in legacy.items()},
        "unmanaged": [host.name for host in estate.settings.repository_hosts],
    }
    parsed: dict[str, Any] = json.loads(json.dumps(doc))
    return parsed


def up(paths: Paths, delays: dict[str, int] | None = None) -> list[Part]:
    """Start whatever part of the lab is not running; harmless when all are."""
    require_root()
    estate = paths.estate
    table = ProcessTable(paths.lab)
    paths.lab.mkdir(parents=True, exist_ok=True)
    ensure_lab_secrets(paths)
    control_pub = ensure_keypair(paths.private_key, f"hopnhat@{estate.id}").read_text().strip()
    operator_pub = ensure_operator_key(paths)
    paths.known_hosts.parent.mkdir(parents=True, exist_ok=True)
    paths.known_hosts.touch(mode=0o644, exist_ok=True)

    config = load_lab_config(estate)
    vcenters = lab_vcenters(estate)
    legacy = legacy_vms(estate, config)
    check_ca_bundles(paths, vcenters)
    secrets = Secrets(paths)
    gobuild.build_all(paths.lab)
    _stop_stale_vcsims(table, vcenters)
    # the datacenters whose vCenter starts now (seeded afresh with lab.yml's legacy VMs):
    # their legacy guests are awaited; a vCenter that runs on keeps what was done to it (a
    # legacy VM retired since is gone for good), unless the hypervisor starts too
    fresh: set[str] = set()
    for vcenter in vcenters:
        if table.running(vcenter.name) is None:
            fresh |= {estate.sites[site].datacenter for site in vcenter.sites}
        model = vcsim_model(estate, config, paths.lab, vcenter)
        if delays:
            model["delays"]["methods"].update(delays)
        vcsim.write_credentials(Path(model["credentials_file"]), vcenter.username,
                                secrets.get(vcenter.password))
        try:
            vcsim.start(paths.lab, model, table, name=vcenter.name)
        except LabError as exc:
            raise LabError(f"vCenter {vcenter.describe()}: {exc}") from exc

    for host in estate.settings.repository_hosts:
        guest = repository.start_repository_host(
            paths.lab, table, host.name, host.name, str(host.address), host.storage_path,
            [control_pub], paths.known_hosts, _backup_users(paths, host.name),
            capacity_mb=config.repository_capacity_mb.get(host.name))
        rest.start_rest_servers(paths, table, host, guest, secrets)

    hypervisor = _hypervisor_config(paths, config, vcenters, control_pub, operator_pub, legacy)
    if table.running("hypervisor") is not None and \
            not _same(_running_config(paths.lab), hypervisor, RESTART_ON):
        # it follows other vCenters than the estate's now, or lab.yml's legacy VMs changed
        table.stop("hypervisor")
    if table.running("hypervisor") is None:
        cfg = paths.lab / "hypervisor.json"
        cfg.write_text(json.dumps(hypervisor, indent=2))
        proc = spawn([sys.executable, "-m", "orchestrator.lab.hypervisor", str(cfg)],
                     log=paths.lab / "hypervisor.log", cwd=package_parent())
        table.record("hypervisor", "hypervisor", proc.pid)
        fresh |= {site.datacenter for site in estate.sites.values()}
    if fresh:
        _wait_for_legacy_guests(paths.lab, table, {
            key: vm for key, vm in legacy.items() if vm.datacenter in fresh})
    return status(paths.lab)


def _wait_for_legacy_guests(lab_dir: Path, table: ProcessTable, legacy: dict[str, LabVM],
                            timeout: float = LEGACY_TIMEOUT) -> None:
    """Wait until the guest of every legacy VM lab.yml powers on runs (its data seeded and
    its fingerprint published before it is recorded), so that `lab up` returns with the
    former provinces' VMs answering. Raises LabError naming those not running in time."""
    wanted = [key for key, vm in legacy.items() if vm.powered_on]
    deadline = time.monotonic() + timeout
    while missing := [k for k in wanted if table.running(guests.record_name(k)) is None]:
        if table.running("hypervisor") is None or time.monotonic() > deadline:
            raise LabError(f"the guests of legacy VMs {', '.join(missing)} did not start "
                           f"in {timeout:.0f} s: see {lab_dir / 'hypervisor.log'}")
        time.sleep(0.1)  # poll interval of the bounded wait above


def _stop_stale_vcsims(table: ProcessTable, vcenters: list[LabVCenter]) -> None:
    """Stop (by PID) each recorded simulator the estate no longer names — a lab started
    before its estate gave each site its own vCenter, or with other vCenters — so that the
    estate's own can take their ports."""
    wanted = {vc.name for vc in vcenters}
    for record in table.all():
        if record.kind == vcsim.PROCESS_KIND and record.name not in wanted:
            table.stop(record.name)


#: What a running hypervisor is restarted for when its config says otherwise.
RESTART_ON = ("vcenters", "operator_keys", "legacy", "databases")


def _same(running: dict[str, Any] | None, wanted: dict[str, Any], keys: tuple[str, ...]) -> bool:
    return running is not None and all(running.get(k) == wanted.get(k) for k in keys)


def _running_config(lab_dir: Path) -> dict[str, Any] | None:
    """The config the running hypervisor was started with (None: unreadable)."""
    try:
        doc = json.loads((lab_dir / "hypervisor.json").read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


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
    link_error: LabError | None = None
    try:  # a cut or slowed link must not outlive the lab
        link.restore(lab_dir)
    except LabError as exc:
        link_error = exc
    # kind by kind (the others last), the table read again each time: a guest that the
    # hypervisor recorded while it was being stopped is stopped too
    for kind in (*STOP_ORDER, None):
        for record in table.all():
            in_this_pass = record.kind == kind if kind else record.kind not in STOP_ORDER
            if not in_this_pass:
                continue
            if record.kind == "guest":
                done = guests.stop_guest(table, record.name.removeprefix("guest-"))
            else:
                done = table.stop(record.name)
            if done:
                stopped.append(record.name)
    if link_error is not None:
        raise LabError(f"the lab is stopped, but its link is not restored: {link_error}")
    return stopped
