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
from orchestrator.estate.model import (
    VM,
    EstateFile,
    ExistingVM,
    RepositoryHost,
    Site,
    System,
    VMRole,
)


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
    repository_hosts = settings.repository_hosts if settings is not None else []
    book = _AddressBook(sites, problems, repository_hosts)
    book.claim_reserved(repository_hosts)
    # pinned addresses and those of existing VMs first, so the pool never hands them out
    book.claim_pinned(systems, files)
    vms: list[VM] = []
    for code in sorted(systems):
        system = systems[code]
        rel = files[f"system:{code}"]
        for i, role in enumerate(system.vms):
            if _role_ok(role, sites):
                vms += book.place(code, system, rel, f"vms[{i}]", role, 0)
    # migrations' target VMs last, so that declaring a move never shifts an address the
    # estate's running VMs already have
    targets = _migration_targets(book, systems, files, vms)
    book.report_unserved(files)
    return vms, targets


def _migration_targets(book: _AddressBook, systems: dict[str, System], files: dict[str, str],
                       vms: list[VM]) -> list[VM]:
    """The VMs the systems' migrations build, numbered after the role's own ``vms``; with
    ``data``, each names the VM it takes its data from."""
    targets: list[VM] = []
    for code in sorted(systems):
        system = systems[code]
        if system.migration is None:
            continue
        rel = files[f"system:{code}"]
        for i, role in enumerate(system.migration.vms):
            if not _role_ok(role, book.sites):
                continue
            own = [vm for vm in vms if vm.system == code and vm.role == role.role]
            sources = {n: vm.name for n, vm in enumerate(own, 1)} if role.data else None
            targets += book.place(code, system, rel, f"migration.vms[{i}]", role, len(own),
                                  sources)
    return targets


Pool = tuple[str, str]  # (site, network): a network's pool of addresses


class _AddressBook:
    """One derivation's book: who holds each address, what each pool has left, the VM names
    taken, and how many VMs each pool could not serve."""

    def __init__(self, sites: dict[str, Site], problems: Problems,
                 repository_hosts: list[RepositoryHost]) -> None:
        self.sites = sites
        self.problems = problems
        self.owners: dict[ipaddress.IPv4Address, str] = {}
        self.free: dict[Pool, Iterator[ipaddress.IPv4Address]] = {}
        self.wanted: dict[Pool, int] = defaultdict(int)
        self.unserved: dict[Pool, int] = defaultdict(int)
        # a repository host is an inventory host too: a VM may not take its name
        self.names: dict[str, str] = {h.name: "a repository host in estate.yml"
                                      for h in repository_hosts}

    def claim(self, ip: ipaddress.IPv4Address, who: str, rel: str, key: str) -> None:
        """``ip`` is ``who``'s (a problem at ``rel``'s ``key`` if it is someone's already)."""
        if ip in self.owners:
            self.problems.add(rel, key,
                              f"address {ip} is used twice: by {self.owners[ip]} and {who}")
        else:
            self.owners[ip] = who

    def claim_reserved(self, repository_hosts: list[RepositoryHost]) -> None:
        """The repository hosts' addresses and the networks' gateways."""
        for i, host in enumerate(repository_hosts):
            self.claim(host.address, f"repository host {host.name}", "estate.yml",
                       f"repository_hosts[{i}].address")
        for site in self.sites.values():
            for net in site.networks.values():
                self.owners.setdefault(net.gateway,
                                       f"the gateway of {site.name}/{net.port_group}")

    def claim_pinned(self, systems: dict[str, System], files: dict[str, str]) -> None:
        """The addresses roles pin (``ips``) and those of the existing VMs they adopt."""
        for code in sorted(systems):
            rel = files[f"system:{code}"]
            for i, role in enumerate(systems[code].vms):
                if role.ips is not None and _role_ok(role, self.sites):
                    for j, ip in enumerate(role.ips):
                        self.claim(ip, vm_name(code, role.role, j + 1), rel,
                                   f"vms[{i}].ips[{j}]")
                for j, declared in enumerate(role.existing or ()):
                    self.claim(declared.address, f"{vm_name(code, role.role, j + 1)} "
                               f"(existing VM {declared.vm})", rel,
                               f"vms[{i}].existing[{j}].address")

    def place(self, code: str, system: System, rel: str, at: str, role: VMRole, after: int,
              source: dict[int, str] | None = None) -> list[VM]:
        """The VMs of ``role`` (numbered from ``after`` + 1), each with its address."""
        out: list[VM] = []
        site = self.sites[role.site]
        net = site.networks[role.network]
        pool = (site.name, role.network)
        if pool not in self.free:
            self.free[pool] = net.pool.addresses()  # lazily: a /16 pool is 65k addresses
        for n in range(1, role.count + 1):
            name = vm_name(code, role.role, after + n)
            if not self._take_name(name, rel, at):
                continue
            existing: ExistingVM | None = \
                role.existing[n - 1] if role.existing is not None else None
            ip = self._address(pool, role, n, existing, name)
            if ip is None:
                continue
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

    def _take_name(self, name: str, rel: str, at: str) -> bool:
        """Whether ``name`` was free (now a VM of ``rel``'s); a problem if something else
        holds it."""
        if name in self.names:
            # within one file only a repeated role does that: cross_check reports it
            if self.names[name] != f"a VM of {rel}":
                self.problems.add(rel, f"{at}.role", f"VM name {name!r} is also {self.names[name]}")
            return False
        self.names[name] = f"a VM of {rel}"
        return True

    def _address(self, pool: Pool, role: VMRole, n: int, existing: ExistingVM | None,
                 name: str) -> ipaddress.IPv4Address | None:
        """The address of ``role``'s ``n``-th VM: the existing VM's, the pinned one, else the
        pool's next free one (None when the pool has none left)."""
        if existing is not None:
            return existing.address
        if role.ips is not None:
            return role.ips[n - 1]
        self.wanted[pool] += 1
        # skip pinned addresses, gateways, repository hosts, and what an overlapping pool of
        # another network already handed out
        found = next((a for a in self.free[pool] if a not in self.owners), None)
        if found is None:
            self.unserved[pool] += 1
            return None
        self.owners[found] = name
        return found

    def report_unserved(self, files: dict[str, str]) -> None:
        """A problem for each pool too small for the VMs that wanted an address from it."""
        for (site_name, network), short in self.unserved.items():
            pool = self.sites[site_name].networks[network].pool
            self.problems.add(files[f"site:{site_name}"], f"networks.{network}.pool",
                              f"pool {pool.start}-{pool.end} is too small: "
                              f"{self.wanted[(site_name, network)]} VM(s) need an address "
                              f"from it, {short} get none")
