"""``discover``: the VMs that run in the estate's vCenters and that the estate does not
describe — what a merged province inherited — as data, grouped into candidate systems,
and drafts of their ``systems/<code>.yml`` files.

:func:`discover` is a pure function of the estate and the facts read from vCenter (one
PropertyCollector pass per vCenter, as ``plan`` reads them); :func:`draft` writes a
candidate as YAML text in the estate's schema with the facts filled in and what only a
person can know (tier, backup paths, probes) left as ``FILL IN`` placeholders that make
``estate validate`` fail until they are filled. Nothing here changes vCenter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.actions.provision.plan import locate
from orchestrator.actions.provision.vcenters import each_vcenter, vcenter_of
from orchestrator.adapters.vsphere import VCenter
from orchestrator.adapters.vsphere_cache import DeviceCache
from orchestrator.adapters.vsphere_facts import (
    ADOPTED,
    MARKS,
    Inventory,
    VMFacts,
    read_inventory,
)
from orchestrator.adapters.vsphere_specs import KB_PER_GB
from orchestrator.errors import EXIT_BAD_INPUT, HopnhatError
from orchestrator.estate.model import Estate

CODE_LIMIT = 16  # a system code: ^[a-z][a-z0-9]{1,15}$
ROLE_LIMIT = 16


class DiscoverError(HopnhatError):
    exit_code = EXIT_BAD_INPUT


@dataclass(frozen=True)
class FoundVM:
    """One VM the estate does not describe, with what vCenter says of it."""

    vcenter: str
    site: str | None  # the estate's site of its datacenter (None: a datacenter no site names)
    datacenter: str
    name: str
    folder: str
    uuid: str | None
    cluster: str | None
    datastores: tuple[str, ...]
    cpu: int
    memory_mb: int
    disks_gb: tuple[int, ...]
    port_groups: tuple[str | None, ...]
    network: str | None  # the estate's network of its first port group, when one matches
    ip: str | None
    hostname: str | None
    guest_os: str | None
    power_state: str
    tools: str | None
    attributes: Mapping[str, str]
    owner: str | None  # another estate that owns it (hopnhat's mark)

    def path(self) -> str:
        return "/".join(p for p in (self.datacenter, self.folder, self.name) if p)

    def as_dict(self) -> dict[str, Any]:
        return {"vcenter": self.vcenter, "site": self.site, "datacenter": self.datacenter,
                "name": self.name, "folder": self.folder, "uuid": self.uuid,
                "cluster": self.cluster, "datastores": list(self.datastores),
                "cpu": self.cpu, "memory_mb": self.memory_mb, "disks_gb": list(self.disks_gb),
                "port_groups": list(self.port_groups), "network": self.network,
                "ip": self.ip, "hostname": self.hostname, "guest_os": self.guest_os,
                "power_state": self.power_state, "tools": self.tools,
                "attributes": dict(self.attributes), "owner": self.owner}


@dataclass(frozen=True)
class Candidate:
    """VMs that look like one system (one name prefix in one folder of one site)."""

    code: str
    site: str
    folder: str
    prefix: str
    roles: dict[str, tuple[FoundVM, ...]] = field(default_factory=dict)

    @property
    def vms(self) -> list[FoundVM]:
        return [vm for members in self.roles.values() for vm in members]

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "site": self.site, "folder": self.folder,
                "prefix": self.prefix,
                "roles": {role: [vm.name for vm in vms] for role, vms in self.roles.items()},
                "file": f"systems/{self.code}.yml"}


@dataclass(frozen=True)
class Discovery:
    estate: str
    vms: tuple[FoundVM, ...]
    candidates: tuple[Candidate, ...]
    described: int  # VMs of these vCenters the estate already describes (or owns)
    unreachable: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"estate": self.estate, "described": self.described,
                "vms": [vm.as_dict() for vm in self.vms],
                "candidates": [c.as_dict() for c in self.candidates],
                "unreachable": list(self.unreachable)}


def read(estate: Estate, vcenters: Mapping[str, VCenter],
         device_cache: Path | None = None) -> tuple[dict[str, Inventory], dict[str, str]]:
    """Read each vCenter as ``plan`` does (a constant number of requests), with the device
    lists of every VM this estate does not own. Out: (URL → Inventory, URL → why it could
    not be read)."""
    def one(url: str, vc: VCenter) -> Inventory:
        return read_inventory(vc, lambda vm: vm.owner != estate.id,
                              cache=DeviceCache.load(device_cache, url))
    facts, failed = each_vcenter(vcenters, one)
    return facts, {url: str(exc) for url, exc in failed.items()}


def described_vms(estate: Estate, facts: Mapping[str, Inventory]) -> set[int]:
    """``id()`` of the VMs of ``facts`` that the estate describes: those this estate owns
    (built, adopted, a drill's scratch VMs) and those its existing declarations point at."""
    out = {id(vm) for inv in facts.values() for vm in inv.vms if vm.owner == estate.id}
    for vm in estate.vms:
        url = vcenter_of(estate, vm)
        if vm.existing is not None and url in facts:
            out.update(id(found) for found in locate(vm, facts[url])[0])
    return out


def discover(estate: Estate, facts: Mapping[str, Inventory],
             sites: Sequence[str] = ()) -> Discovery:
    """The VMs of ``facts`` (vCenter URL → Inventory) that the estate does not describe,
    in the datacenters of ``sites`` (every datacenter of those vCenters when empty), and
    the candidate systems they form."""
    known = described_vms(estate, facts)
    site_of = {(s.vcenter.url, s.datacenter): s.name for s in estate.sites.values()}
    wanted_dcs = {(estate.sites[s].vcenter.url, estate.sites[s].datacenter) for s in sites}
    found: list[FoundVM] = []
    described = 0
    for url, inv in sorted(facts.items()):
        for vm in inv.vms:
            dc = vm.datacenter or ""
            if wanted_dcs and (url, dc) not in wanted_dcs:
                continue
            if id(vm) in known:
                described += 1
                continue
            found.append(_found(estate, url, site_of.get((url, dc)), vm))
    found.sort(key=lambda f: (f.site or "~", f.datacenter, f.folder, f.name))
    return Discovery(estate.id, tuple(found), tuple(candidates(estate, found)), described)


def _found(estate: Estate, url: str, site: str | None, vm: VMFacts) -> FoundVM:
    groups = tuple(vm.port_groups or ())
    network = None
    if site is not None and groups:
        network = next((name for name, net in estate.sites[site].networks.items()
                        if net.port_group == groups[0]), None)
    owner = vm.owner if vm.owner != estate.id else None
    return FoundVM(
        vcenter=url, site=site, datacenter=vm.datacenter or "", name=vm.name, folder=vm.folder,
        uuid=vm.uuid, cluster=vm.cluster, datastores=vm.datastores, cpu=vm.cpu,
        memory_mb=vm.memory_mb,
        disks_gb=tuple(max(1, round(kb / KB_PER_GB)) for kb in vm.disks_kb or ()),
        port_groups=groups, network=network, ip=vm.ip, hostname=vm.hostname,
        guest_os=vm.guest_os, power_state=vm.power_state, tools=vm.tools,
        attributes={k: v for k, v in vm.attributes.items() if k not in MARKS or k == ADOPTED},
        owner=owner)


def _slug(text: str, limit: int) -> str:
    """Lower-case letters and digits only, starting with a letter, at most ``limit``."""
    cleaned = re.sub(r"[^a-z0-9]", "", text.lower())
    cleaned = cleaned.lstrip("0123456789")
    return cleaned[:limit]


def _prefix_and_role(name: str) -> tuple[str, str]:
    """``qlvb-db-01`` → (``qlvb``, ``db``); ``mail01`` → (``mail``, ``vm``)."""
    parts = [p for p in re.split(r"[-_.\s]+", name) if p]
    prefix = _slug(parts[0], CODE_LIMIT) if parts else ""
    role = ""
    for part in parts[1:]:
        slug = _slug(part, ROLE_LIMIT)
        if slug:
            role = slug
            break
    if not role and parts:
        role = "vm"
    return prefix or "sys", role or "vm"


def candidates(estate: Estate, found: Sequence[FoundVM]) -> list[Candidate]:
    """Group the adoptable VMs (at a site of the estate, owned by no other estate) by
    site, folder and name prefix; give each group a system code that no system of the
    estate and no other group has (the prefix, else the prefix and the site, else a
    number): two provinces' ``qlvb`` become ``qlvb`` and ``qlvbquangnam``."""
    groups: dict[tuple[str, str, str], dict[str, list[FoundVM]]] = {}
    for vm in found:
        if vm.site is None or vm.owner is not None:
            continue
        prefix, role = _prefix_and_role(vm.name)
        groups.setdefault((vm.site, vm.folder, prefix), {}).setdefault(role, []).append(vm)
    taken = set(estate.systems)
    out = []
    for (site, folder, prefix), roles in sorted(groups.items()):
        code = _code(prefix, site, taken)
        taken.add(code)
        out.append(Candidate(code, site, folder, prefix,
                             {role: tuple(vms) for role, vms in sorted(roles.items())}))
    return out


def _code(prefix: str, site: str, taken: set[str]) -> str:
    base = prefix if re.match(r"^[a-z][a-z0-9]{1,15}$", prefix) else f"sys{prefix}"[:CODE_LIMIT]
    if base not in taken:
        return base
    with_site = (base + _slug(site, CODE_LIMIT))[:CODE_LIMIT]
    if with_site not in taken:
        return with_site
    for n in range(2, 1000):
        numbered = f"{base[:CODE_LIMIT - len(str(n))]}{n}"
        if numbered not in taken:
            return numbered
    raise DiscoverError(f"no free system code for {prefix!r}")


# ---------------------------------------------------------------- drafts


def _q(value: object) -> str:
    """A YAML scalar that is exactly ``value``, whatever it holds (a JSON string is a
    YAML double-quoted scalar: quotes, newlines and control characters escaped)."""
    return json.dumps(value, ensure_ascii=False)


def _comment(text: str) -> str:
    """Text for a YAML comment: one line, no control characters."""
    return re.sub(r"[\x00-\x1f\x7f]", " ", text)


def draft_repository(estate: Estate) -> str | None:
    """The repository host a draft backs up to: the secondary site's (else the first)."""
    return next((h.name for h in estate.settings.repository_hosts
                 if estate.sites.get(h.site) and estate.sites[h.site].role == "secondary"),
                estate.settings.repository_hosts[0].name
                if estate.settings.repository_hosts else None)


def free_rest_ports(estate: Estate, host_name: str, count: int) -> list[int]:
    """``count`` ports of rest repository host ``host_name`` no system (nor its ssh or
    maintenance endpoint) uses yet, from the highest system port up (8101 when none)."""
    host = estate.repository_host(host_name)
    used = {s.backup.port for s in estate.systems.values()
            if s.backup is not None and s.backup.repository_host == host_name
            and s.backup.port is not None} | {host.port, host.maintenance_port}
    port = max((p for p in used if p is not None and p > 8100), default=8100)
    out: list[int] = []
    while len(out) < count:
        port += 1
        if port not in used:
            out.append(port)
    return out


def draft(estate: Estate, candidate: Candidate, when: str, port: int | None = None) -> str:
    """The draft ``systems/<code>.yml`` of ``candidate``: the facts filled in, a role per
    name role with its VMs under ``existing:``, and ``FILL IN`` placeholders (tier, backup
    paths, probes; a network or address vCenter did not tell) that ``estate validate``
    refuses until a person fills them."""
    site = estate.sites[candidate.site]
    where = "/".join(p for p in (site.datacenter, candidate.folder) if p)
    repo = draft_repository(estate)
    if repo is None or estate.repository_host(repo).protocol != "rest":
        port = None
    elif port is None:
        port = free_rest_ports(estate, repo, 1)[0]
    lines = [
        f"# Draft written by `hopnhat discover` on {when} from {_comment(site.vcenter.url)} "
        f"(site {candidate.site}, {_comment(where)}).",
        "# The VMs below already run: hopnhat adopts them (ownership marks only) and never",
        "# builds, moves or destroys them. Fill in every FILL IN (estate validate refuses the",
        "# file until then), check the facts, then `hopnhat plan` shows the adoption.",
        f"name: {_q(f'{candidate.prefix.upper()} ({where})')}",
        f"code: {candidate.code}",
        "tier:                      # FILL IN: its recovery tier (estate.yml tiers: "
        f"{', '.join(str(t) for t in sorted(estate.settings.tiers))})",
        "vms:",
    ]
    for role, vms in candidate.roles.items():
        first = vms[0]
        same = all((v.cpu, v.memory_mb, v.disks_gb) == (first.cpu, first.memory_mb,
                                                        first.disks_gb) for v in vms)
        lines.append(f"  - role: {role}")
        lines.append(f"    site: {candidate.site}")
        if first.network is not None:
            lines.append(f"    network: {first.network}")
        else:
            shown = _comment(str(first.port_groups[0])) if first.port_groups else "none"
            lines.append(f"    network:                 # FILL IN: the estate's network of "
                         f"port group {shown} (networks of {candidate.site}: "
                         f"{', '.join(site.networks)})")
        if same and first.cpu and first.memory_mb and first.disks_gb:
            lines += [f"    cpu: {first.cpu}                    # as discovered; hopnhat "
                      "shows drift from these and changes nothing",
                      f"    memory_mb: {first.memory_mb}",
                      f"    disks_gb: [{', '.join(str(d) for d in first.disks_gb)}]",
                      "    manage_hardware: false   # true: hopnhat may change CPU, memory, "
                      "disks, network to match"]
        lines.append("    data: true                 # false if it holds no data to back up")
        lines.append("    existing:")
        for vm in vms:
            parts = [f"vm: {_q(vm.name)}"]
            if vm.folder:
                parts.append(f"folder: {_q(vm.folder)}")
            if vm.uuid:
                parts.append(f"uuid: {vm.uuid}")
            note = f"{vm.guest_os or 'guest OS unknown'}, {vm.power_state}"
            if vm.ip:
                parts.append(f"address: {vm.ip}")
                lines.append(f"      - {{{', '.join(parts)}}}   # {_comment(note)}")
            else:
                lines.append(f"      - {{{', '.join(parts)}, address: }}   # FILL IN: "
                             f"vCenter reports no guest IP ({_comment(note)})")
    lines += [
        "backup:",
        f"  repository_host: {repo or '                # FILL IN: a repository host'}",
        *([f"  port: {port}                  # its own rest-server on {repo} (free today)",
           "  quota_gb: 100               # the most its repository may hold; adjust"]
          if port is not None else []),
        f"  password: {{vault: restic_password_{candidate.code}}}   # add this key to the vault",
        "  paths:                     # FILL IN: what to back up, e.g. [/srv/data]",
        '  schedule: "*-*-* 01:00:00"  # a systemd calendar event; meet the tier\'s RPO',
        "drill:",
        "  probes:                    # FILL IN: checks that the restored data is usable,",
        "                             # e.g. - {name: db, command: \"sqlite3 /srv/x/app.db "
        "'PRAGMA integrity_check'\", expect_stdout: ok}",
    ]
    return "\n".join(lines) + "\n"


def write_drafts(estate: Estate, chosen: Sequence[Candidate], folder: Path,
                 when: str) -> list[Path]:
    """Write each candidate's draft as ``folder/<code>.yml``. Never overwrites: when any
    of the files exists, raises DiscoverError naming them and writes nothing."""
    targets = [(folder / f"{c.code}.yml", c) for c in chosen]
    there = [str(path) for path, _ in targets if path.exists() or path.is_symlink()]
    if there:
        raise DiscoverError(f"discover never overwrites a system file: {', '.join(there)} "
                            "already exist(s); nothing was written")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    # drafts written together propose distinct ports on a rest repository host
    repo = draft_repository(estate)
    rest = repo is not None and estate.repository_host(repo).protocol == "rest"
    ports = iter(free_rest_ports(estate, repo, len(targets)) if rest and repo else [])
    for path, candidate in targets:
        text = draft(estate, candidate, when, next(ports, None))
        with path.open("x", encoding="utf-8") as handle:  # exclusive: never overwrite
            handle.write(text)
        written.append(path)
    return written
