"""The secondary data centre's repository host: a lab guest serving restic repositories over
SFTP, one chrooted account per system.

For system ``code`` the host has user ``restic-<code>``, chrooted (``ChrootDirectory %h``) into
``<storage>/<code>`` (root-owned, 0755), SFTP only (``ForceCommand internal-sftp``, no TTY, no
forwarding), owning ``<storage>/<code>/repo`` (0700); its public key sits in
``/etc/ssh/authorized/restic-<code>``, root-owned and outside the chroot. So restic reaches
system ``code``'s repository as ``sftp:restic-<code>@<ip>:/repo`` and sees nothing else.

Accounts live in the host's own /etc (its overlay), never in the real machine's: they are
created by :mod:`orchestrator.lab.guest_init`, before sshd starts or through ``nsenter`` into a
running host. Root logs in with hopnhat's key, as on any guest, so Ansible can manage it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path, PurePosixPath

from orchestrator.errors import LabError
from orchestrator.lab.guest_init import GuestSpec, account_name, check_public_key
from orchestrator.lab.guests import (
    INIT_ENV,
    guest_lock,
    guest_root,
    guest_view,
    record_name,
    start_guest,
)
from orchestrator.lab.processes import ProcessRecord, ProcessTable
from orchestrator.process import run
from orchestrator.resources import package_dir


def _check_storage(storage_path: str) -> str:
    path = PurePosixPath(storage_path)
    if (not path.is_absolute() or len(path.parts) < 3 or path.parts[1] != "srv"
            or ".." in path.parts or any(c in storage_path for c in ",: \n")):
        raise LabError(f"repository storage {storage_path!r} must be a plain path under /srv")
    return str(path)


def _check_systems(systems: dict[str, str]) -> dict[str, str]:
    for code in systems:
        account_name(code)  # raises on a code that cannot name an account
    return {code: check_public_key(key) for code, key in systems.items()}


def start_repository_host(lab_dir: Path, table: ProcessTable, name: str, hostname: str, ip: str,
                          storage_path: str, authorized_keys: list[str], known_hosts: Path,
                          systems: dict[str, str], capacity_mb: int | None = None,
                          port: int = 22) -> ProcessRecord:
    """Start (or reuse) repository host ``name`` on ``ip:port``: a guest whose
    ``storage_path`` (under /srv: its own /srv, or a tmpfs of ``capacity_mb`` MiB when set —
    the disk-full fault) holds one chrooted SFTP account per entry of ``systems`` (system
    code → that system's public key). Accounts are added to those the host already has.

    Returns the guest's ProcessRecord (``guest-<name>``). Raises LabError on bad input or
    when the host or an account cannot be set up.
    """
    storage = _check_storage(storage_path)
    wanted = _check_systems(systems)
    if capacity_mb is not None and capacity_mb <= 0:
        raise LabError(f"repository host {name}: capacity must be positive, not {capacity_mb}")
    before = table.running(record_name(name))
    rec = start_guest(lab_dir, table, name, hostname, ip, authorized_keys, known_hosts, port,
                      storage=storage, capacity_mb=capacity_mb, accounts=wanted)
    if before is not None and before.pid == rec.pid:
        # a reused host may predate some of these systems (a fresh one got them at boot)
        for code, key in sorted(wanted.items()):
            add_system_account(lab_dir, table, name, code, key)
    return rec


def add_system_account(lab_dir: Path, table: ProcessTable, host_name: str, code: str,
                       pubkey: str) -> None:
    """Give system ``code`` its chrooted SFTP account on repository host ``host_name``, or
    refresh its key (idempotent). Recorded in the host's guest.json, so it is there again
    after a restart (even on a tmpfs storage); applied at once inside a running host.
    Raises LabError when the host is unknown, not a repository host, or the setup fails.
    """
    account_name(code)
    key = check_public_key(pubkey)
    root = guest_root(lab_dir, host_name)
    with guest_lock(lab_dir, host_name):
        path = root / "guest.json"
        if not path.exists():
            raise LabError(f"no lab guest {host_name}")
        spec = GuestSpec.load(path)
        if spec.storage is None:
            raise LabError(f"guest {host_name} is not a repository host")
        if spec.accounts.get(code) != key:
            spec.accounts[code] = key
            spec.save()
        live = table.running(record_name(host_name))
        if live is None:
            return  # guest_init applies it at the next start
        done = run(["nsenter", "--target", str(live.pid), "--mount", "--uts", "--",
                    _guest_python(table, host_name), "-m", "orchestrator.lab.guest_init",
                    "--accounts", str(path)],
                   env=dict(INIT_ENV, PYTHONPATH=str(_guest_package(root))),
                   inherit_env=False, cwd="/", timeout=60)
        if not done.ok:
            raise LabError(f"repository host {host_name}: account for {code} not set up: "
                           f"{done.stderr.strip()}")


#: what ``guest_init --accounts`` imports (standard library besides these)
_GUEST_MODULES = ("__init__.py", "errors.py", "process.py", "lab/__init__.py",
                  "lab/guest_init.py", "lab/guest_engines.py", "lab/databases.py")


def _guest_package(root: Path) -> Path:
    """A copy of the few modules guest_init needs, in the guest's own folder: the checkout
    itself may lie where the running guest cannot see it (under /tmp or /root, which a guest
    has fresh). Returns the folder to put on PYTHONPATH."""
    source = package_dir()
    target = root / "pylib"
    for name in _GUEST_MODULES:
        dest = target / "orchestrator" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, dest)
    return target


def _guest_python(table: ProcessTable, host_name: str) -> str:
    """A Python the running guest can see (guest_init needs only the standard library): this
    one, unless it lives where the guest has a fresh folder of its own (a pyenv under /root),
    else the system's."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        if guest_view(table, host_name, os.path.realpath(candidate)).exists():
            return candidate
    raise LabError(f"repository host {host_name}: no Python to set up accounts with")


def repository_url(ip: str, code: str, port: int = 22) -> str:
    """restic's address of system ``code``'s repository on a repository host at ``ip``
    (the path is inside the account's chroot)."""
    user = account_name(code)
    if port == 22:
        return f"sftp:{user}@{ip}:/repo"
    return f"sftp://{user}@{ip}:{port}//repo"


def repository_dir(lab_dir: Path, host_name: str, storage_path: str, code: str, *,
                   rest: bool = False) -> Path:
    """Host-side folder of system ``code``'s repository on a host whose storage is on disk
    (not a tmpfs; reach that through guests.guest_view): ``<code>/repo`` under the storage
    of an SFTP host, ``<code>/<code>`` of a rest one (``rest``). For lab faults such as
    corruption."""
    storage = PurePosixPath(_check_storage(storage_path))
    return (guest_root(lab_dir, host_name) / "srv" / Path(*storage.parts[2:]) / code
            / (code if rest else "repo"))
