"""A system's restic repository, opened from the control host.

``backup status``, the backup gate, ``verify``, ``maintain``, ``retire`` and drills reach
repositories from the control host: on a rest repository host through its maintenance
endpoint with the control host's own credentials (the CA pinned), on an SFTP one with the
system's own account (its key in the state folder, host keys pinned in hopnhat's
known_hosts). The repository password (and a rest location with credentials) live in
private files only as long as the work.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orchestrator.adapters.restic import Repository, ssh_command
from orchestrator.adapters.vault import write_private
from orchestrator.errors import EstateError
from orchestrator.estate.endpoints import maintenance_location, maintenance_url
from orchestrator.estate.inventory import repository_user
from orchestrator.estate.model import SecretRef
from orchestrator.estate.secrets import Secrets
from orchestrator.settings import Paths

REPOSITORY_PATH = "/repo"  # inside the system's chroot on the repository host


def repository_location(paths: Paths, code: str, *, second_copy: bool = False,
                        vault: bool = False) -> tuple[str, str, int]:
    """(repository host name, address, port) of system ``code``'s repository (or its copy,
    or its copy in the estate's vault). Raises EstateError when the system has no backup
    (or no second copy, or the vault does not hold it)."""
    estate = paths.estate
    system = estate.systems.get(code)
    backup = system.backup if system is not None else None
    if backup is None or (second_copy and backup.copy_to is None):
        what = "a second copy" if second_copy else "a backup"
        raise EstateError([(estate.file_of("system", code), "backup", f"system {code!r} has no "
                            f"{what} configured")])
    if vault:
        if code not in estate.vault_systems():
            raise EstateError([("estate.yml", "vault", f"the estate's vault does not hold "
                                f"system {code!r}")])
        assert estate.settings.vault is not None
        name = estate.settings.vault.repository_host
    elif second_copy and backup.copy_to:
        name = backup.copy_to.repository_host
    else:
        name = backup.repository_host
    host = estate.repository_host(name)
    return host.name, str(host.address), host.port


@contextmanager
def open_repository(paths: Paths, code: str, *, second_copy: bool = False,
                    vault: bool = False, secrets: Secrets | None = None
                    ) -> Iterator[Repository]:
    """System ``code``'s repository as the control host reaches it (``vault``: its copy in
    the estate's vault); the password file is removed when the block ends (also on
    error)."""
    estate = paths.estate
    host_name, address, port = repository_location(paths, code, second_copy=second_copy,
                                                   vault=vault)
    backup = estate.systems[code].backup
    assert backup is not None
    password = (secrets or Secrets(paths)).get(backup.password)
    scratch = paths.state / "tmp"
    scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, name = tempfile.mkstemp(prefix=f"restic-{code}.", dir=scratch)
    os.close(fd)
    password_file = Path(name)
    location_file = password_file.with_name(password_file.name + ".location")
    try:
        write_private(password_file, password.encode())
        host = estate.repository_host(host_name)
        if host.protocol == "rest":
            # the control host's own endpoint: it may prune and tag (clients only add)
            secret = (secrets or Secrets(paths)).get(SecretRef(vault=host.maintenance_secret))
            write_private(location_file, maintenance_location(host, code, secret).encode())
            yield Repository(
                url=maintenance_url(host, code), password_file=password_file,
                location_file=location_file, cacert=paths.tls_ca(host.tls_ca),
                cache_dir=paths.state / "cache" / "restic", name=f"{code}@{host_name}")
            return
        user = repository_user(code)
        yield Repository(
            url=f"sftp:{user}@{address}:{REPOSITORY_PATH}",
            password_file=password_file,
            sftp_command=ssh_command(f"{user}@{address}", paths.repository_key(code),
                                     paths.known_hosts, port=port),
            cache_dir=paths.state / "cache" / "restic",
            name=f"{code}@{host_name}",
        )
    finally:
        password_file.unlink(missing_ok=True)
        location_file.unlink(missing_ok=True)
