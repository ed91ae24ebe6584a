"""Derive the estate's VMs: names, placement and IP addresses.

Addresses: an existing VM (one hopnhat adopts) keeps its own (``existing[].address``); a
role may pin its VMs' addresses (``ips``); the others take, in a fixed order
(system code, role as written, VM number), the first free addresses of their network's
pool. Pinned addresses, gateways and repository hosts are never handed out. Pin addresses
of a running estate when a new system would otherwise shift them.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterator

from orchestrator.estate.checks import Problems
from orchestrator.estate.model import VM, EstateFile, ExistingVM, Site, System, VMRole


def vm_name(code: str, role: str, index: int) -> str:
    """``qlvb``, ``db``, 1 → ``qlvb-db-01``."""
    return f"{code}-{role}-{index:02d}"


def _role_ok(role: VMRole, sites: dict[str, Site]) -> bool:
    site = sites.get(role.site)
    return site is not None and role.network in site.networks and (
        role.ips is None or len(role.ips) == role.count
    )


def derive_vms(settings: EstateFile | None, sites: dict[str, Site],
               systems: dict[str, System], files: dict[str, str],
               problems: Problems) -> tuple[list[VM], list[VM]]:
    """Every VM the estate wants, with an address each, and the VMs its migrations build;
    problems for duplicates, addresses used twice and pools too small. Roles with broken
    references are skipped (already reported by the cross-checks), and so are repository
    hosts when ``settings`` (an invalid estate.yml, already reported) is None."""
    owners: dict[ipaddress.IPv4Address, str] = {}
    repository_hosts = settings.repository_hosts if settings is not None else []

    def claim(ip: ipaddress.IPv4Address, who: str, rel: str, key: str) -> None:
        if ip in owners:
            problems.add(rel, key, f"address {ip} is used twice: by {owners[ip]} and {who}")
        else:
            owners[ip] = who

    for i, host in enumerate(repository_hosts):
        claim(host.address, f"repository host {host.name}", "estate.yml",
              f"repository_hosts[{i}].address")
    for site in sites.values():
        for net in site.networks.values():
            owners.setdefault(net.gateway, f"the gateway of {site.name}/{net.port_group}")

    # pinned addresses and those of existing VMs first, so the pool never hands them out
    for code in sorted(systems):
        system = systems[code]
        rel = files[f"system:{code}"]
        for i, role in enumerate(system.vms):
            if role.ips is not None and _role_ok(role, sites):
                for j, ip in enumerate(role.ips):
                    claim(ip, vm_name(code, role.role, j + 1), rel, f"vms[{i}].ips[{j}]")
            for j, declared in enumerate(role.existing or ()):
                claim(declared.address, f"{vm_name(code, role.role, j + 1)} (existing VM "
                      f"{declared.vm})", rel, f"vms[{i}].existing[{j}].address")

    free: dict[tuple[str, str], Iterator[ipaddress.IPv4Address]] = {}
    wanted: dict[tuple[str, str], int] = defaultdict(int)
    unserved: dict[tuple[str, str], int] = defaultdict(int)
    # a repository host is an inventory host too: a VM may not take its name
    names: dict[str, str] = {h.name: "a repository host in estate.yml" for h in repository_hosts}

    def place(code: str, system: System, rel: str, at: str, role: VMRole, after: int,
              source: dict[int, str] | None = None) -> list[VM]:
        """The VMs of ``role`` (numbered from ``after`` + 1), each with its address."""
        out: list[VM] = []
        site = sites[role.site]
        net = site.networks[role.network]
        pool_key = (site.name, role.network)
        if pool_key not in free:
            free[pool_key] = net.pool.addresses()  # lazily: a /16 pool is 65k addresses
        for n in range(1, role.count + 1):
            name = vm_name(code, role.role, after + n)
            if name in names:
                # within one file only a repeated role does that: cross_check reports it
                if names[name] != f"a VM of {rel}":
                    problems.add(rel, f"{at}.role", f"VM name {name!r} is also {names[name]}")
                continue
            names[name] = f"a VM of {rel}"
            existing: ExistingVM | None = \
                role.existing[n - 1] if role.existing is not None else None
            if existing is not None:
                ip = existing.address
            elif role.ips is not None:
                ip = role.ips[n - 1]
            else:
                wanted[pool_key] += 1
                # skip pinned addresses, gateways, repository hosts, and what an
                # overlapping pool of another network already handed out
                found = next((a for a in free[pool_key] if a not in owners), None)
                if found is None:
                    unserved[pool_key] += 1
                    continue
                ip = found
                owners[ip] = name
            out.append(VM(
                name=name, system=code, role=role.role, index=after + n, tier=system.tier,
                site=site.name, datacenter=site.datacenter,
                cluster=role.cluster or site.clusters[0],
                datastore=role.datastore or site.datastores[0],
                template=role.template or site.templates[0],
                network=role.network, port_group=net.port_group, ip=ip,
                prefix_length=net.subnet.prefixlen, gateway=net.gateway, dns=list(net.dns),
                cpu=role.cpu, memory_mb=role.memory_mb,
                disks_gb=None if role.disks_gb is None else list(role.disks_gb),
                data=role.data, existing=existing,
                manage_hardware=existing is None or role.manage_hardware,
                source=(source or {}).get(n)))
        return out

    vms: list[VM] = []
    for code in sorted(systems):
        system = systems[code]
        rel = files[f"system:{code}"]
        for i, role in enumerate(system.vms):
            if _role_ok(role, sites):
                vms += place(code, system, rel, f"vms[{i}]", role, 0)
    # migrations' target VMs last, so that declaring a move never shifts an address the
    # estate's running VMs already have
    targets: list[VM] = []
    for code in sorted(systems):
        system = systems[code]
        if system.migration is None:
            continue
        rel = files[f"system:{code}"]
        for i, role in enumerate(system.migration.vms):
            if not _role_ok(role, sites):
                continue
            own = [vm for vm in vms if vm.system == code and vm.role == role.role]
            sources = {n: vm.name for n, vm in enumerate(own, 1)} if role.data else None
            targets += place(code, system, rel, f"migration.vms[{i}]", role, len(own),
                             sources)
    for (site_name, network), short in unserved.items():
        pool = sites[site_name].networks[network].pool
        problems.add(files[f"site:{site_name}"], f"networks.{network}.pool",
                     f"pool {pool.start}-{pool.end} is too small: {wanted[(site_name, network)]} "
                     f"VM(s) need an address from it, {short} get none")
    return vms, targets
