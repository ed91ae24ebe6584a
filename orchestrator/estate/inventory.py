"""The Ansible inventory, derived from the estate (never written by hand twice).

The output follows Ansible's dynamic-inventory protocol (``--list`` / ``--host``), so the
playbooks run with ansible-runner, plain ``ansible-playbook`` and AWX alike. It holds no
secret: restic passwords are read from the vault at configure time.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from orchestrator.estate.model import Estate
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
    option = 'UserKnownHostsFile="' + str(known_hosts).replace("%", "%%") + '"'
    return f"-o {shlex.quote(option)} -o StrictHostKeyChecking=yes"


def _connection(paths: Paths, address: str, port: int) -> dict[str, Any]:
    return {
        "ansible_host": address,
        "ansible_port": port,
        "ansible_user": paths.estate.settings.ssh.user,
        "ansible_ssh_private_key_file": str(paths.private_key),
        "ansible_ssh_common_args": ssh_common_args(paths.known_hosts),
        "ansible_python_interpreter": "auto_silent",
    }


def system_vars(estate: Estate, code: str) -> dict[str, Any]:
    """Group variables of ``system_<code>``: what the backup roles need, no secrets."""
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
        out["hopnhat_backup"] = {
            "paths": list(backup.paths),
            "exclude": list(backup.exclude),
            "pre_commands": list(backup.pre_commands),
            "password_vault_key": backup.password.vault,
            "schedule": backup.schedule,
            "randomized_delay_seconds": int(backup.randomized_delay.total_seconds()),
            "retention": backup.retention.model_dump(),
            "repository": {
                "host": host.name,
                "address": str(host.address),
                "port": host.port,
                "user": repository_user(code),
                "path": "/repo",
            },
            "copy": None if backup.copy_to is None else {
                "host": backup.copy_to.repository_host,
                "address": str(estate.repository_host(backup.copy_to.repository_host).address),
                "port": estate.repository_host(backup.copy_to.repository_host).port,
                "user": repository_user(code),
                "path": "/repo",
            },
        }
    return out


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
        groups.setdefault(f"system_{code}", {"hosts": []})["vars"] = system_vars(estate, code)
    groups["repository_hosts"] = {"hosts": []}
    for host in estate.settings.repository_hosts:
        hostvars[host.name] = {
            **_connection(paths, str(host.address), host.port),
            "hopnhat_site": host.site,
            "hopnhat_storage_path": host.storage_path,
            "hopnhat_repository_accounts": sorted(
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
