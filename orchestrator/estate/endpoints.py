"""Where a system's repository is, as each side reaches it (pure: no I/O, no secret kept).

A repository host with ``protocol: rest`` serves each system from the system's own
append-only rest-server on ``backup.port`` (user ``<code>``, repository ``/<code>/``: on disk
``<storage>/<code>/<code>``), and every system from one server without append-only on
``maintenance_port`` that only the control host's user opens (repository
``/<code>/<code>/``: the same folder). Credentials go into a location file restic reads
(``--repository-file``), never into argv; the URLs here without them are for messages.
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote

import bcrypt

from orchestrator.estate.model import Estate, RepositoryHost

#: on a backup client (and a drill's scratch VM): the files the restic_client role writes
CLIENT_LOCATION_FILE = "/etc/hopnhat/restic-{code}.repository"
CLIENT_CACERT = "/etc/hopnhat/restic-ca.pem"


def _https(host: RepositoryHost, port: int) -> str:
    return f"https://{host.address}:{port}"


def client_url(host: RepositoryHost, code: str, port: int) -> str:
    """System ``code``'s repository on its own append-only server, without credentials."""
    return f"rest:{_https(host, port)}/{code}/"


def client_location(host: RepositoryHost, code: str, port: int, password: str) -> str:
    """:func:`client_url` with the system's credentials, for its location file."""
    return f"rest:https://{code}:{quote(password, safe='')}@{host.address}:{port}/{code}/"


def maintenance_url(host: RepositoryHost, code: str) -> str:
    """System ``code``'s repository on ``host``'s maintenance endpoint, without
    credentials."""
    assert host.maintenance_port is not None
    return f"rest:{_https(host, host.maintenance_port)}/{code}/{code}/"


def maintenance_location(host: RepositoryHost, code: str, password: str) -> str:
    """:func:`maintenance_url` with the control host's credentials."""
    assert host.maintenance_port is not None
    return (f"rest:https://{host.maintenance_user}:{quote(password, safe='')}@"
            f"{host.address}:{host.maintenance_port}/{code}/{code}/")


def repository_folder(host: RepositoryHost, code: str) -> str:
    """Where system ``code``'s repository lies on repository host ``host``:
    ``<storage>/<code>/<code>`` on a rest host (its server's ``--path`` is
    ``<storage>/<code>``), ``<storage>/<code>/repo`` on an SFTP one (inside the chroot)."""
    return f"{host.storage_path}/{code}/{code if host.protocol == 'rest' else 'repo'}"


def rest_systems(estate: Estate, host_name: str) -> dict[str, int]:
    """System code → its port, for every system whose backup goes to rest host
    ``host_name``."""
    return {code: s.backup.port for code, s in sorted(estate.systems.items())
            if s.backup is not None and s.backup.repository_host == host_name
            and s.backup.port is not None}


def rest_secret_keys(estate: Estate) -> list[str]:
    """The vault keys the rest repository hosts imply: each host's maintenance password, the
    password of its system servers' metrics user (not the vault's: it has none), and each
    system's password on its own server (``backup.rest_password``, or its default)."""
    keys = {host.maintenance_secret for host in estate.settings.repository_hosts
            if host.protocol == "rest"}
    keys |= {host.metrics_secret for host in estate.settings.repository_hosts
             if host.protocol == "rest" and host.role == "repository"}
    rest = {h.name for h in estate.settings.repository_hosts if h.protocol == "rest"}
    for code, system in estate.systems.items():
        if system.backup is not None and system.backup.repository_host in rest:
            keys.add(system.backup.rest_secret(code))
    return sorted(keys)


def htpasswd_line(user: str, password: str) -> str:
    """``user:$2b$…`` with a salt derived from both: the same line for the same password
    (a file rewritten unchanged restarts nothing), another for another password."""
    digest = hashlib.sha256(f"hopnhat-htpasswd\0{user}\0{password}".encode()).digest()
    alphabet = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    salt = bytes(alphabet[b % 64] for b in digest[:21]) + b"."  # 22 chars, last one's low bits 0
    hashed = bcrypt.hashpw(password.encode(), b"$2b$10$" + salt)
    return f"{user}:{hashed.decode()}"
