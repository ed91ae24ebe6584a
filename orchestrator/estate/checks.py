"""Cross-file checks of the estate: references, duplicates, cycles, addresses.

Each check appends to :class:`Problems`; none stops at the first problem.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from ipaddress import IPv4Address

from orchestrator.estate.model import Backup, EstateFile, Network, Site, System, VMRole
from orchestrator.estate.recovery import drill_problems
from orchestrator.quoting import terminal


class Problems:
    """Collected ``(file, key path, message)`` triples, in the order found."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, str]] = []

    def add(self, file: str, key: str, message: str) -> None:
        """One problem; each part made safe to print (file names, keys and values come
        from the estate: control characters written visibly, long ones cut)."""
        self.items.append((terminal(file, 200), terminal(key, 200), terminal(message, 600)))

    def __bool__(self) -> bool:
        return bool(self.items)


def cross_check(
    settings: EstateFile | None,
    sites: dict[str, Site],
    systems: dict[str, System],
    files: dict[str, str],
    problems: Problems,
    *,
    invalid_sites: Collection[str] = (),
    invalid_systems: Collection[str] = (),
) -> None:
    """Check what no single file can check on its own.

    ``settings`` is None when estate.yml is missing or invalid (already reported): the
    checks that need it are skipped. ``invalid_sites`` and ``invalid_systems`` name what
    files that failed validation declare: references to them are not reported as unknown.
    """
    _check_sites(sites, files, problems, complete=not invalid_sites)
    if settings is not None:
        _check_repository_hosts(settings, sites, problems, invalid_sites)
    for code, system in systems.items():
        _check_system(settings, sites, systems, system, files[f"system:{code}"], problems,
                      invalid_sites, invalid_systems)
    if settings is not None:
        _check_vault(settings, systems, problems, invalid_systems)
        _check_nightly_drills(settings, problems)
    _check_cycles(systems, files, problems)
    _check_rest_ports(systems, files, problems)
    _check_existing(sites, systems, files, problems)


def _check_existing(sites: dict[str, Site], systems: dict[str, System], files: dict[str, str],
                    problems: Problems) -> None:
    """One existing VM declared twice (by UUID, or by name in the same folder of the same
    datacenter) would be adopted by two systems."""
    seen: dict[tuple[str, ...], str] = {}
    for code in sorted(systems):
        rel = files[f"system:{code}"]
        for i, role in enumerate(systems[code].vms):
            site = sites.get(role.site)
            if site is None:
                continue
            for j, existing in enumerate(role.existing or ()):
                where = f"{rel} vms[{i}].existing[{j}]"
                keys: list[tuple[str, ...]] = [("name", site.vcenter.url, site.datacenter,
                                                existing.folder or "", existing.vm)]
                if existing.uuid:
                    keys.insert(0, ("uuid", site.vcenter.url, existing.uuid))
                for key in keys:
                    if key in seen:
                        problems.add(rel, f"vms[{i}].existing[{j}]", f"VM "
                                     f"{existing.describe(site.datacenter)} is also declared "
                                     f"by {seen[key]}: one VM belongs to one system")
                        break
                    seen[key] = where


def _check_sites(sites: dict[str, Site], files: dict[str, str], problems: Problems,
                 complete: bool = True) -> None:
    roles = Counter(site.role for site in sites.values())
    if sites and complete and roles["primary"] != 1:
        problems.add("sites/", "", f"exactly one site must have role primary "
                     f"(found {roles['primary']})")
    if sites and complete and roles["secondary"] < 1:
        problems.add("sites/", "", "at least one site must have role secondary")
    datacenters: dict[tuple[str, str], str] = {}
    for site in sites.values():
        rel = files[f"site:{site.name}"]
        key = (site.vcenter.url, site.datacenter)
        if key in datacenters:
            problems.add(rel, "datacenter", f"datacenter {site.datacenter!r} on this vCenter "
                         f"is also site {datacenters[key]!r}")
        datacenters[key] = site.name
        _check_site(site, rel, problems)


def _check_site(site: Site, rel: str, problems: Problems) -> None:
    """One site on its own: nothing listed twice, its networks and its drill network."""
    for label, names in (("clusters", site.clusters), ("datastores", site.datastores),
                         ("templates", site.templates)):
        for name, count in Counter(names).items():
            if count > 1:
                problems.add(rel, label, f"{name!r} is listed {count} times")
    for key_name, net in site.networks.items():
        _check_network(net, f"networks.{key_name}", rel, problems)
    nets = list(site.networks.items())
    for i, (name, net) in enumerate(nets):
        for other, other_net in nets[:i]:
            if net.subnet.overlaps(other_net.subnet):
                problems.add(rel, f"networks.{name}.subnet", f"{net.subnet} overlaps "
                             f"network {other!r} ({other_net.subnet}): one address would "
                             "be on two networks")
    if site.drill_network is not None and site.drill_network not in site.networks:
        problems.add(rel, "drill_network", f"unknown network {site.drill_network!r} "
                     f"(this site has: {', '.join(sorted(site.networks))})")


def _check_network(net: Network, at: str, rel: str, problems: Problems) -> None:
    """The gateway and the pool inside the subnet, the gateway outside the pool."""
    if net.gateway not in net.subnet:
        problems.add(rel, f"{at}.gateway", f"gateway {net.gateway} is outside the "
                     f"subnet {net.subnet}")
    for end in ("start", "end"):
        ip = getattr(net.pool, end)
        if ip not in net.subnet:
            problems.add(rel, f"{at}.pool", f"pool {end} {ip} is outside the subnet "
                         f"{net.subnet}")
    if net.gateway in net.pool:
        problems.add(rel, f"{at}.pool", f"the pool holds the gateway {net.gateway}")


def _check_repository_hosts(settings: EstateFile, sites: dict[str, Site],
                            problems: Problems, invalid_sites: Collection[str]) -> None:
    names: Counter[str] = Counter()
    for i, host in enumerate(settings.repository_hosts):
        at = f"repository_hosts[{i}]"
        names[host.name] += 1
        if names[host.name] == 2:
            problems.add("estate.yml", f"{at}.name", f"repository host {host.name!r} is "
                         "declared twice")
        if host.site not in sites and host.site not in invalid_sites:
            problems.add("estate.yml", f"{at}.site", f"unknown site {host.site!r}"
                         + _known(sites))


def _check_vault(settings: EstateFile, systems: dict[str, System], problems: Problems,
                 invalid_systems: Collection[str]) -> None:
    vault = settings.vault
    if vault is None:
        return
    hosts = {h.name: h for h in settings.repository_hosts}
    host = hosts.get(vault.repository_host)
    if host is None:
        problems.add("estate.yml", "vault.repository_host", f"unknown repository host "
                     f"{vault.repository_host!r}" + _known(hosts))
    elif host.role != "vault":
        problems.add("estate.yml", "vault.repository_host", f"repository host {host.name!r} "
                     "holds backup clients' repositories: the vault is a host of its own "
                     "(role: vault) that no client reaches")
    for i, code in enumerate(vault.systems or ()):
        if code in invalid_systems:
            continue
        if code not in systems:
            problems.add("estate.yml", f"vault.systems[{i}]", f"unknown system {code!r}"
                         + _known(systems))
        elif systems[code].backup is None:
            problems.add("estate.yml", f"vault.systems[{i}]", f"system {code!r} has no "
                         "backup to copy")
        elif systems[code].backup.copy_to is not None:  # type: ignore[union-attr]
            problems.add("estate.yml", f"vault.systems[{i}]", f"system {code!r} pushes its "
                         "own second copy (backup.copy): drop that to have the vault hold it")


def _check_nightly_drills(settings: EstateFile, problems: Problems) -> None:
    """``nightly_drills.every_night`` names tiers the estate has."""
    tiers = sorted(settings.tiers)
    for i, tier in enumerate(settings.nightly_drills.every_night):
        if tier not in settings.tiers:
            problems.add("estate.yml", f"nightly_drills.every_night[{i}]", f"no tier {tier} "
                         f"in the estate (tiers: {', '.join(map(str, tiers))})")


def _known(names: Iterable[str]) -> str:
    listed = sorted(names)
    return f" (known: {', '.join(listed)})" if listed else " (none is declared)"


def _check_system(settings: EstateFile | None, sites: dict[str, Site],
                  systems: dict[str, System], system: System, rel: str, problems: Problems,
                  invalid_sites: Collection[str], invalid_systems: Collection[str]) -> None:
    if settings is not None and system.tier not in settings.tiers:
        problems.add(rel, "tier", f"tier {system.tier} has no targets in estate.yml tiers"
                     + _known([str(t) for t in settings.tiers]))
    roles = Counter(vm.role for vm in system.vms)
    for role_name, count in roles.items():
        if count > 1:
            problems.add(rel, "vms", f"role {role_name!r} is declared {count} times")
    _check_roles(sites, system.vms, "vms", rel, problems, invalid_sites)
    if system.migration is not None:
        _check_migration(sites, system, rel, problems, invalid_sites)
    if settings is not None and system.backup is not None:
        _check_backup(settings, system.backup, rel, problems, system.code)
    dumps = None if system.backup is None else system.backup.databases
    for key, message in drill_problems(system.drill, dumps):
        problems.add(rel, key, message)
    for j, dep in enumerate(system.depends_on):
        if dep == system.code:
            problems.add(rel, f"depends_on[{j}]", "a system cannot depend on itself")
        elif dep not in systems and dep not in invalid_systems:
            problems.add(rel, f"depends_on[{j}]", f"unknown system {dep!r}" + _known(systems))


def _check_roles(sites: dict[str, Site], roles: Sequence[VMRole], key: str, rel: str,
                 problems: Problems, invalid_sites: Collection[str]) -> None:
    for i, role in enumerate(roles):
        at = f"{key}[{i}]"
        site = sites.get(role.site)
        if site is None:
            if role.site not in invalid_sites:
                problems.add(rel, f"{at}.site", f"unknown site {role.site!r}" + _known(sites))
            continue
        site_rel = f"site {site.name!r}"
        network = site.networks.get(role.network)
        if network is None:
            problems.add(rel, f"{at}.network", f"unknown network {role.network!r} in {site_rel}"
                         + _known(site.networks))
        for field, pool in (("cluster", site.clusters), ("datastore", site.datastores),
                            ("template", site.templates)):
            value = getattr(role, field)
            if value is not None and value not in pool:
                problems.add(rel, f"{at}.{field}", f"unknown {field} {value!r} in {site_rel}"
                             + _known(pool))
        if role.ips is not None:
            _check_pinned(role, role.ips, network, at, rel, problems)


def _check_pinned(role: VMRole, ips: Sequence[IPv4Address], network: Network | None, at: str,
                  rel: str, problems: Problems) -> None:
    """A role's pinned addresses (``ips``): one a VM, inside its network's subnet."""
    if len(ips) != role.count:
        problems.add(rel, f"{at}.ips", f"{len(ips)} address(es) for count {role.count}")
    if network is not None:
        for j, ip in enumerate(ips):
            if ip not in network.subnet:
                problems.add(rel, f"{at}.ips[{j}]", f"{ip} is outside the subnet "
                             f"{network.subnet} of network {role.network!r}")


def _check_migration(sites: dict[str, Site], system: System, rel: str, problems: Problems,
                     invalid_sites: Collection[str]) -> None:
    """A move by restore: to a known site, from a system with a backup, each data-bearing
    role received by a target role of the same name and count."""
    migration = system.migration
    assert migration is not None
    if migration.to not in sites:
        if migration.to not in invalid_sites:
            problems.add(rel, "migration.to", f"unknown site {migration.to!r}" + _known(sites))
        return
    if system.backup is None:
        problems.add(rel, "migration", "a migration restores the system's backup: the "
                     "system has no backup section")
    targets = Counter(role.role for role in migration.vms)
    for role_name, count in targets.items():
        if count > 1:
            problems.add(rel, "migration.vms", f"role {role_name!r} is declared {count} times")
    _check_roles(sites, migration.vms, "migration.vms", rel, problems, invalid_sites)
    _check_data_received(system, migration.vms, rel, problems)


def _check_data_received(system: System, targets: Sequence[VMRole], rel: str,
                         problems: Problems) -> None:
    """Each data-bearing role of ``system`` received by the target role of its name, one
    VM for each of its own."""
    by_role = {role.role: (i, role) for i, role in enumerate(targets)}
    for role in system.vms:
        if not role.data:
            continue
        found = by_role.get(role.role)
        if found is None:
            problems.add(rel, "migration.vms", f"no role {role.role!r}: the data of "
                         f"{system.code}'s {role.role} VMs must go somewhere")
            continue
        i, target = found
        if not target.data:
            problems.add(rel, f"migration.vms[{i}].data", f"role {role.role!r} receives "
                         "data: write data: true")
        if target.count != role.count:
            problems.add(rel, f"migration.vms[{i}].count", f"{target.count} VM(s) to "
                         f"receive the data of {role.count} {role.role} VM(s)")


def _check_backup(settings: EstateFile, backup: Backup, rel: str, problems: Problems,
                  code: str) -> None:
    repo_names = [h.name for h in settings.repository_hosts if h.role != "vault"]
    vaults = [h.name for h in settings.repository_hosts if h.role == "vault"]
    if backup.repository_host in vaults:
        problems.add(rel, "backup.repository_host", f"{backup.repository_host!r} is the "
                     "vault, which no backup client reaches: back up to a repository host "
                     "(the control host copies into the vault)")
    elif backup.repository_host not in repo_names:
        problems.add(rel, "backup.repository_host", f"unknown repository host "
                     f"{backup.repository_host!r}" + _known(repo_names))
    else:
        _check_rest_backup(settings, backup, rel, problems, code)
    copy = backup.copy_to
    if copy is not None:
        if copy.repository_host in vaults:
            problems.add(rel, "backup.copy.repository_host", f"{copy.repository_host!r} is "
                         "the vault, which no backup client reaches: the control host pulls "
                         "copies into it (hopnhat vault pull)")
        elif copy.repository_host not in repo_names:
            problems.add(rel, "backup.copy.repository_host", f"unknown repository host "
                         f"{copy.repository_host!r}" + _known(repo_names))
        elif copy.repository_host == backup.repository_host:
            problems.add(rel, "backup.copy.repository_host", "the second copy must go to "
                         "another repository host than the first")


#: the name of a rest repository host's maintenance server: no system may take it
MAINTENANCE = "maintenance"


def _check_rest_backup(settings: EstateFile, backup: Backup, rel: str,
                       problems: Problems, code: str) -> None:
    host = next(h for h in settings.repository_hosts if h.name == backup.repository_host)
    if host.protocol != "rest":
        for key, value in (("port", backup.port), ("quota_gb", backup.quota_gb),
                           ("rest_password", backup.rest_password)):
            if value is not None:
                problems.add(rel, f"backup.{key}", f"repository host {host.name!r} serves "
                             f"SFTP: backup.{key} is for a rest repository host")
        return
    if code == MAINTENANCE:
        problems.add(rel, "code", f"{MAINTENANCE!r} names the maintenance server of a rest "
                     "repository host: give this system another code")
    if backup.copy_to is not None:
        problems.add(rel, "backup.copy", f"repository host {host.name!r} serves REST, whose "
                     "clients only add: a second copy is pulled by the control host into "
                     "the estate's vault (vault: in estate.yml), never pushed by a client")
    if backup.port is None:
        problems.add(rel, "backup.port", f"repository host {host.name!r} serves REST: give "
                     "this system's own port on it (backup.port)")
    elif backup.port in (host.port, host.maintenance_port):
        problems.add(rel, "backup.port", f"port {backup.port} of {host.name!r} is its "
                     + ("ssh port" if backup.port == host.port else "maintenance port"))


def _check_rest_ports(systems: dict[str, System], files: dict[str, str],
                      problems: Problems) -> None:
    """Two systems on one rest repository host cannot share a port."""
    seen: dict[tuple[str, int], str] = {}
    for code in sorted(systems):
        backup = systems[code].backup
        if backup is None or backup.port is None:
            continue
        key = (backup.repository_host, backup.port)
        if key in seen:
            problems.add(files.get(f"system:{code}", f"systems/{code}.yml"), "backup.port",
                         f"port {backup.port} of {backup.repository_host!r} is system "
                         f"{seen[key]!r}'s")
        else:
            seen[key] = code


def _check_cycles(systems: dict[str, System], files: dict[str, str], problems: Problems) -> None:
    """Report each dependency cycle once, naming its systems in order."""
    state: dict[str, int] = {}  # 1 visiting, 2 done
    reported: set[frozenset[str]] = set()

    def visit(code: str, trail: list[str]) -> None:
        state[code] = 1
        trail.append(code)
        for dep in systems[code].depends_on:
            if dep not in systems or dep == code:
                continue
            if state.get(dep) == 1:
                cycle = trail[trail.index(dep):]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    problems.add(files[f"system:{cycle[0]}"], "depends_on", "dependency cycle: "
                                 + " → ".join([*cycle, cycle[0]]))
            elif dep not in state:
                visit(dep, trail)
        trail.pop()
        state[code] = 2

    for code in sorted(systems):
        if code not in state:
            visit(code, [])
