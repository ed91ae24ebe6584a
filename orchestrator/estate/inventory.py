"""The Ansible inventory, derived from the estate (never written by hand twice).

The output follows Ansible's dynamic-inventory protocol (``--list`` / ``--host``), so the
playbooks run with ansible-runner, plain ``ansible-playbook`` and AWX alike. It holds no
secret: restic passwords are read from the vault at configure time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.estate.databases import Database
from orchestrator.estate.endpoints import client_url, rest_systems
from orchestrator.estate.model import Backup, RepositoryHost
from orchestrator.quoting import shell, ssh_option
from orchestrator.settings import Paths

Inventory = dict[str, Any]


def repository_user(code: str) -> str:
    """The chrooted SFTP account of a system on its repository host."""
    return f"restic-{code}"


def ssh_common_args(known_hosts: Path) -> str:
    """The ssh options Ansible adds to every connection: hopnhat's known_hosts, checked
    strictly. Ansible splits this text as a shell would (shlex), and ssh splits an option's
    value at blanks and expands ``%`` tokens in it: the path is quoted for both, so a state
    folder with a space, or a path written to look like ``x -o ProxyCommand=…``, stays one
    file name."""
    option = ssh_option("UserKnownHostsFile", known_hosts)
    return f"-o {shell(option)} -o StrictHostKeyChecking=yes"


def _connection(paths: Paths, address: str, port: int) -> dict[str, Any]:
    return {
        "ansible_host": address,
        "ansible_port": port,
        "ansible_user": paths.estate.settings.ssh.user,
        "ansible_ssh_private_key_file": str(paths.private_key),
        "ansible_ssh_common_args": ssh_common_args(paths.known_hosts),
        "ansible_python_interpreter": "auto_silent",
    }


def system_vars(paths: Paths, code: str) -> dict[str, Any]:
    """Group variables of ``system_<code>``: what the backup roles need, no secrets (for a
    rest repository host, ``hopnhat_rest_ca``: the CA on the controller its clients check
    the host's certificate against)."""
    estate = paths.estate
    system = estate.systems[code]
    tier = estate.tier(system.tier)
    out: dict[str, Any] = {
        "hopnhat_system": code,
        "hopnhat_system_name": system.name,
        "hopnhat_tier": system.tier,
        "hopnhat_rpo_seconds": int(tier.rpo.total_seconds()),
        "hopnhat_rto_seconds": int(tier.rto.total_seconds()),
    }
    backup = system.backup
    if backup is not None:
        host = estate.repository_host(backup.repository_host)
        if host.protocol == "rest":
            out["hopnhat_rest_ca"] = str(paths.tls_ca(host.tls_ca))
        out["hopnhat_backup"] = {
            "paths": list(backup.paths),
            "exclude": list(backup.exclude),
            "pre_commands": list(backup.pre_commands),
            "databases": [_database_vars(d) for d in backup.databases],
            "password_vault_key": backup.password.vault,
            "schedule": backup.schedule,
            "randomized_delay_seconds": int(backup.randomized_delay.total_seconds()),
            "retention": backup.retention.model_dump(),
            "repository": _repository_vars(host, code, backup),
            "copy": None if backup.copy_to is None else {
                "protocol": "sftp",
                "host": backup.copy_to.repository_host,
                "address": str(estate.repository_host(backup.copy_to.repository_host).address),
                "port": estate.repository_host(backup.copy_to.repository_host).port,
                "user": repository_user(code),
                "path": "/repo",
            },
        }
    return out


def _database_vars(database: Database) -> dict[str, Any]:
    """One ``backup.databases`` entry as the host job's config takes it (its user resolved)."""
    return {"name": database.name, "engine": database.engine, "database": database.database,
            "all": database.whole_cluster, "tables": list(database.tables),
            "newest": None if database.newest is None else database.newest.model_dump(),
            "run_as": database.user}


def _repository_vars(host: RepositoryHost, code: str, backup: Backup) -> dict[str, Any]:
    """How a client reaches system ``code``'s repository on ``host``: its SFTP account, or
    (rest) its own server's port, user and the vault key of its password — no secret."""
    if host.protocol == "rest":
        assert backup.port is not None
        return {"protocol": "rest", "host": host.name, "address": str(host.address),
                "port": backup.port, "user": code, "path": f"/{code}/",
                "url": client_url(host, code, backup.port),
                "password_vault_key": backup.rest_secret(code)}
    return {"protocol": "sftp", "host": host.name, "address": str(host.address),
            "port": host.port, "user": repository_user(code), "path": "/repo"}


def build_inventory(paths: Paths) -> Inventory:
    """The ``--list`` answer: groups by site, system, tier and role, plus hostvars."""
    estate = paths.estate
    groups: dict[str, dict[str, Any]] = {}
    hostvars: dict[str, dict[str, Any]] = {}

    def member(group: str, host: str) -> None:
        groups.setdefault(group, {"hosts": []})["hosts"].append(host)

    for vm in estate.vms:
        hostvars[vm.name] = {
            **_connection(paths, str(vm.ip), 22),
            "hopnhat_site": vm.site,
            "hopnhat_role": vm.role,
            "hopnhat_data": vm.data,
            # an adopted host keeps the name its province gave it: hopnhat never renames it
            **({"hopnhat_adopted": True, "base_manage_hostname": False} if vm.adopted else {}),
        }
        member(f"site_{vm.site}", vm.name)
        member(f"system_{vm.system}", vm.name)
        member(f"tier_{vm.tier}", vm.name)
        member(f"role_{vm.system}_{vm.role}", vm.name)
        if vm.data and estate.systems[vm.system].backup is not None:
            member("backup_clients", vm.name)
    for code in estate.systems:
        groups.setdefault(f"system_{code}", {"hosts": []})["vars"] = system_vars(paths, code)
    groups["repository_hosts"] = {"hosts": []}
    for host in estate.settings.repository_hosts:
        hostvars[host.name] = {
            **_connection(paths, str(host.address), host.port),
            "hopnhat_site": host.site,
            "hopnhat_storage_path": host.storage_path,
            "hopnhat_repository_protocol": host.protocol,
            **_rest_host_vars(paths, host),
            # SFTP accounts (a rest host serves its systems through rest-servers)
            "hopnhat_repository_accounts": [] if host.protocol == "rest" else sorted(
                repository_user(code) for code, s in estate.systems.items()
                if s.backup is not None and host.name in (
                    s.backup.repository_host,
                    s.backup.copy_to.repository_host if s.backup.copy_to else None)
            ),
        }
        member("repository_hosts", host.name)
        member(f"site_{host.site}", host.name)
    groups.setdefault("backup_clients", {"hosts": []})
    top = sorted(groups)
    out: Inventory = {name: groups[name] for name in top}
    out["all"] = {"children": ["ungrouped", *top],
                  "vars": {"hopnhat_estate": estate.id, **restic_vars(paths)}}
    out["_meta"] = {"hostvars": hostvars}
    return out


def _rest_host_vars(paths: Paths, host: RepositoryHost) -> dict[str, Any]:
    """A rest repository host's servers: each system's port and quota (bytes; 0 for none),
    the maintenance port and user, and where the controller keeps its certificate and key
    (``<tls_ca's folder>/<host>.pem`` and ``.key``)."""
    if host.protocol != "rest":
        return {}
    ca = paths.tls_ca(host.tls_ca)
    assert ca is not None
    systems = {}
    for code, port in rest_systems(paths.estate, host.name).items():
        backup = paths.estate.systems[code].backup
        assert backup is not None
        systems[code] = {"port": port, "password_vault_key": backup.rest_secret(code),
                         "metrics_vault_key": host.metrics_secret,
                         "quota_bytes": 0 if backup.quota_gb is None
                         else int(backup.quota_gb * 1024 ** 3)}
    return {"hopnhat_rest_systems": systems,
            "hopnhat_rest_maintenance": {"port": host.maintenance_port,
                                         "user": host.maintenance_user,
                                         "password_vault_key": host.maintenance_secret},
            "hopnhat_rest_tls_cert": str(ca.parent / f"{host.name}.pem"),
            "hopnhat_rest_tls_key": str(ca.parent / f"{host.name}.key")}


def restic_vars(paths: Paths) -> dict[str, Any]:
    """Which restic the backup clients run (``hopnhat_restic_binary``, the path on a host),
    the keep-alive bound of its SFTP connections and, when the estate pins a binary, where
    it is on the controller and its SHA-256 (the restic_client role ships and checks it)."""
    restic = paths.estate.settings.restic
    interval, count = paths.estate.settings.ssh.alive
    out: dict[str, Any] = {
        "hopnhat_restic_binary": restic.host_binary,
        # restic's SFTP connections give a silent repository host up within the same bound
        # as hopnhat's own sessions (ssh.alive_interval × ssh.alive_count)
        "restic_client_server_alive_interval": interval,
        "restic_client_server_alive_count_max": count,
    }
    if restic.binary is not None:
        out["hopnhat_restic_source"] = paths.restic_binary
        out["hopnhat_restic_sha256"] = restic.sha256
    return out


def host_vars(paths: Paths, host: str) -> dict[str, Any]:
    """The ``--host H`` answer: that host's variables (empty if unknown, as Ansible expects)."""
    return dict(build_inventory(paths)["_meta"]["hostvars"].get(host, {}))
