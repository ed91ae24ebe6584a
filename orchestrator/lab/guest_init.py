"""The in-namespace entry point of a lab guest: gives one sshd its own world, then becomes it.

``start_guest`` runs ``unshare --mount --uts --propagation private <python> -m
orchestrator.lab.guest_init <guest.json>``; this module then, inside those fresh namespaces:

- sets the guest's hostname;
- lays a writable overlay over /etc, /root, /var, /opt and /usr/local whose upper layers live
  under the guest's root on the lab disk (so what Ansible writes there stays in this guest and
  survives a restart, like a VM's disk);
- bind-mounts the guest's own /srv, mounts private tmpfs on /run and /tmp (and, for a repository
  host with a capacity, on its storage);
- writes root's authorized_keys inside its own /root/.ssh (or, for a legacy guest, adds the
  keys it lacks to what its disk already holds), creates the repository accounts;
- (a legacy guest) takes the hostname its disk says (/etc/hostname) from its second boot on;
- gives it its own engine folders and starts the database engines its spec lists, seeded
  once (:mod:`orchestrator.lab.guest_engines`);
- and ``execve``s ``sshd -D -e -f <config>``, so the PID the lab recorded is sshd itself.

``python -m orchestrator.lab.guest_init --accounts <guest.json>``, run through ``nsenter``
into a live guest, (re)applies the repository accounts of guest.json inside that guest.

Both modes refuse to run unless they are in a mount namespace other than their parent's: every
mount and ``useradd`` here would otherwise change the real machine.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import socket
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from orchestrator.errors import CommandError, LabError
from orchestrator.lab import guest_engines
from orchestrator.process import run

#: The directories each guest gets a private, persistent overlay of.
OVERLAID = ("/etc", "/root", "/var", "/opt", "/usr/local")
#: Of those, the ones that start empty (as on a freshly installed VM) instead of showing the
#: lab machine's own files.
FRESH = ("/root",)

#: sshd and the programs run here see only this environment: nothing of the lab's own
#: environment (which may hold a restic password) leaks into a guest.
GUEST_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}

#: A hostname a guest takes from its own /etc/hostname (as guests.py accepts one).
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
#: A repository account is ``restic-<code>``; the code goes into a user name and a path.
ACCOUNT_CODE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,23}$")
ACCOUNT_PREFIX = "restic-"
#: Root-owned folder (outside every chroot) holding each account's authorized key.
AUTHORIZED_DIR = "/etc/ssh/authorized"

_TMP = "/tmp"  # noqa: S108 - the guest's own /tmp mount point, not a temporary file


@dataclass
class GuestSpec:
    """Everything guest_init needs, as ``start_guest`` writes it to ``<guest root>/guest.json``.

    ``storage``/``capacity_mb``/``accounts`` are set for a repository host only;
    ``known_hosts`` is the file its host key line was written into, "" for a legacy guest
    (whose key the lab does not pin); ``legacy``: a legacy VM's guest, whose disk says who
    it is, as a VM's does: root's authorized_keys keeps what it holds (keys installed since,
    as by ``hosts trust``, survive a restart) and gets those of ``authorized_keys`` it lacks,
    and from its second boot on its hostname is its own /etc/hostname (as set there since)
    rather than ``hostname``. ``engines``: the database engines it runs and seeds
    (:class:`orchestrator.lab.guest_engines.EngineSpec` as dicts).
    """

    name: str
    hostname: str
    ip: str
    port: int
    root: str
    config: str
    sshd: str
    known_hosts: str
    authorized_keys: list[str]
    overlays: list[str] = field(default_factory=lambda: list(OVERLAID))
    storage: str | None = None
    capacity_mb: int | None = None
    accounts: dict[str, str] = field(default_factory=dict)
    legacy: bool = False
    engines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def path(self) -> Path:
        """Where this spec is stored: ``<guest root>/guest.json``."""
        return Path(self.root) / "guest.json"

    def save(self) -> None:
        """Write the spec atomically (a reader never sees half a file)."""
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        tmp.replace(self.path)

    @classmethod
    def load(cls, path: Path) -> GuestSpec:
        """Read a spec; raises LabError when the file is missing or malformed."""
        try:
            data: Any = json.loads(path.read_text())
            spec = cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise LabError(f"{path}: not a readable guest spec ({exc})") from exc
        if not isinstance(spec.authorized_keys, list) or not isinstance(spec.accounts, dict):
            raise LabError(f"{path}: not a readable guest spec")
        return spec


def account_name(code: str) -> str:
    """The SFTP account of system ``code`` on a repository host; LabError on a bad code."""
    if not ACCOUNT_CODE.match(code):
        raise LabError(f"system code {code!r} cannot name a repository account")
    return f"{ACCOUNT_PREFIX}{code}"


def check_public_key(key: str) -> str:
    """Return ``key`` stripped if it is one OpenSSH public key line; LabError otherwise."""
    key = key.strip()
    parts = key.split()
    if "\n" in key or "\r" in key or len(parts) < 2 or not (
        parts[0].startswith(("ssh-", "ecdsa-", "sk-"))
    ):
        raise LabError("not an OpenSSH public key line")
    return key


# --- mounts -------------------------------------------------------------------------------


def _mount(*args: str) -> None:
    # -n: no userspace mount table (/run/mount/utab), which a moved /run tmpfs would lack
    run(["mount", "-n", *args], env=GUEST_ENV, inherit_env=False, check=True, timeout=30)


def _require_own_namespace() -> None:
    """Refuse to touch anything unless our mount namespace is not our parent's.

    The parent is the lab process (which started unshare or nsenter): being in its namespace
    means the mounts below would land on the real machine.
    """
    ours = os.readlink("/proc/self/ns/mnt")
    parents = os.readlink(f"/proc/{os.getppid()}/ns/mnt")
    if ours == parents:
        raise LabError("guest_init must run in the guest's own mount namespace")


def _require_same(seen: Path, expected: Path) -> None:
    a, b = seen.stat(), expected.stat()
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino):
        raise LabError(f"{seen} is not the guest's own {expected}")


def _require_overlay(target: str) -> None:
    """LabError unless ``target`` is an overlay mount in this namespace."""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[1] == target and fields[2] == "overlay":
            return
    raise LabError(f"{target} is not overlaid in this guest")


def _overlay(root: Path, target: str) -> None:
    """Overlay ``target`` with upper/work dirs under ``root/overlay/<slug>``."""
    if not Path(target).is_dir():
        return  # nothing to overlay on this machine (e.g. no /opt)
    layer = root / "overlay" / target.strip("/").replace("/", "_")
    upper, work = layer / "upper", layer / "work"
    upper.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    lower = target
    if target in FRESH:
        # a new VM's home is empty: the lab machine's own /root (shell start-up files, a
        # pyenv that every SSH command would pay for) must not show through
        empty = layer / "empty"
        empty.mkdir(mode=0o700, exist_ok=True)
        lower = str(empty)
    _mount("-t", "overlay", "overlay", "-o",
           f"lowerdir={lower},upperdir={upper},workdir={work}", target)


def _private_tmpfs(root: Path, target: str, options: str) -> None:
    """Mount a fresh tmpfs on ``target`` without hiding the guest root from sshd.

    The tmpfs is mounted on a staging dir first; when the guest root lies under ``target``
    (a lab under /tmp, as in tests) it is bind-mounted back at the same path inside the new
    tmpfs before the tmpfs is moved over ``target``, so the config and host key paths stay
    valid.
    """
    stage = root / ".stage"
    stage.mkdir(exist_ok=True)
    _mount("-t", "tmpfs", "-o", options, "tmpfs", str(stage))
    if root.is_relative_to(target):
        keep = stage / root.relative_to(target)
        keep.mkdir(parents=True, exist_ok=True)
        _mount("--bind", str(root), str(keep))
    _mount("--move", str(stage), target)


def _storage(spec: GuestSpec) -> None:
    """Create the repository storage; a tmpfs of ``capacity_mb`` when set (disk-full fault)."""
    if spec.storage is None:
        return
    storage = Path(spec.storage)
    storage.mkdir(parents=True, exist_ok=True)
    if spec.capacity_mb is not None:
        # mode=0755: sshd refuses a chroot whose parents are group/world-writable (tmpfs: 1777)
        _mount("-t", "tmpfs", "-o", f"size={spec.capacity_mb}m,mode=0755", "tmpfs", str(storage))


# --- identity and keys ----------------------------------------------------------------------


def _write_file(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    tmp.replace(path)


def _identity(spec: GuestSpec) -> None:
    """/etc/hostname and an /etc/hosts line, in the guest's own /etc, like a customized VM."""
    _write_file(Path("/etc/hostname"), spec.hostname + "\n", 0o644)
    hosts = Path("/etc/hosts")
    text = hosts.read_text() if hosts.exists() else ""
    if not any(spec.hostname in line.split()[1:] for line in text.splitlines()
               if line.strip() and not line.startswith("#")):
        if text and not text.endswith("\n"):
            text += "\n"
        _write_file(hosts, text + f"{spec.ip}\t{spec.hostname}\n", 0o644)


def _own_hostname(root: Path, spec: GuestSpec) -> str:
    """The hostname to boot with: ``spec.hostname``, or for a legacy guest the one its own
    /etc/hostname holds (its /etc layer, written at its first boot or since)."""
    if not spec.legacy:
        return spec.hostname
    written = root / "overlay" / "etc" / "upper" / "hostname"
    try:
        name = written.read_text().strip()
    except OSError:
        return spec.hostname
    return name if _HOSTNAME.match(name) else spec.hostname


def _unlock_root() -> None:
    """With UsePAM no, sshd refuses even key logins to a locked account ('!' password)."""
    for line in Path("/etc/shadow").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "root" and len(fields) > 1 and fields[1].startswith("!"):
            run(["usermod", "-p", "*", "root"], env=GUEST_ENV, inherit_env=False, check=True)


def _root_keys(keys: list[str], keep: bool = False) -> None:
    """Root's authorized_keys: ``keys`` (``keep``: the lines it holds, then those of ``keys``
    it lacks)."""
    ssh_dir = Path("/root/.ssh")
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    os.chmod(ssh_dir, 0o700)  # StrictModes: sshd ignores keys in a group/world-writable dir
    target = ssh_dir / "authorized_keys"
    lines = target.read_text().splitlines() if keep and target.exists() else []
    held = {tuple(line.split()[:2]) for line in lines}
    lines += [check_public_key(k) for k in keys if tuple(k.split()[:2]) not in held]
    _write_file(target, "".join(line + "\n" for line in lines), 0o600)


def _ensure_dir(path: Path, uid: int, gid: int, mode: int) -> None:
    path.mkdir(exist_ok=True)
    os.chown(path, uid, gid)
    os.chmod(path, mode)


def apply_accounts(spec: GuestSpec) -> None:
    """Create or refresh every SFTP account of ``spec.accounts`` in this guest (idempotent).

    For system ``code``: user ``restic-<code>`` (no password, not locked, nologin shell) whose
    home is the chroot ``<storage>/<code>`` (root-owned, 0755) holding ``repo/`` (the user's,
    0700); its key in ``/etc/ssh/authorized/restic-<code>`` (root-owned, outside the chroot).
    Raises LabError/CommandError on failure.
    """
    if not spec.accounts:
        return
    if spec.storage is None:
        raise LabError(f"guest {spec.name} has accounts but no storage")
    storage = Path(spec.storage)
    storage.mkdir(parents=True, exist_ok=True)
    # sshd checks every component of a chroot path: root-owned, not group/world-writable
    for part in [storage, *storage.parents]:
        st = part.stat()
        if st.st_uid != 0 or st.st_mode & 0o022:
            if part == storage:
                os.chown(storage, 0, 0)
                os.chmod(storage, 0o755)  # noqa: S103 - what sshd demands of a chroot path
            else:
                raise LabError(f"{part} must be root-owned and not group/world-writable")
    auth_dir = Path(AUTHORIZED_DIR)
    auth_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(auth_dir, 0o755)  # noqa: S103 - root-owned, readable keys like /etc/ssh
    for code, key in sorted(spec.accounts.items()):
        user = account_name(code)
        chroot = storage / code
        _ensure_dir(chroot, 0, 0, 0o755)
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            # '*' (not '!'): a locked account cannot log in even with a key when UsePAM is off
            run(["useradd", "--no-create-home", "--home-dir", str(chroot), "--shell",
                 "/usr/sbin/nologin", "--password", "*", "--comment",
                 f"restic repository of {code}", user],
                env=GUEST_ENV, inherit_env=False, check=True)
            entry = pwd.getpwnam(user)
        if entry.pw_dir != str(chroot):
            run(["usermod", "--home", str(chroot), user],
                env=GUEST_ENV, inherit_env=False, check=True)
        _ensure_dir(chroot / "repo", entry.pw_uid, entry.pw_gid, 0o700)
        # 'restrict': no forwarding, pty or rc even if the sshd_config were loosened
        _write_file(auth_dir / user, f"restrict {check_public_key(key)}\n", 0o644)


# --- entry points ---------------------------------------------------------------------------


def boot(spec: GuestSpec) -> NoReturn:
    """Build the guest's world in this (fresh) namespace and exec sshd. Never returns;
    raises LabError/CommandError/OSError before the exec when a step fails."""
    _require_own_namespace()
    root = Path(spec.root)
    spec.hostname = _own_hostname(root, spec)
    socket.sethostname(spec.hostname)
    for target in spec.overlays:
        _overlay(root, target)
    srv = root / "srv"
    srv.mkdir(mode=0o755, exist_ok=True)
    _mount("--bind", str(srv), "/srv")
    # everything below writes into /srv and /etc: make sure they are the guest's own first
    _require_same(Path("/srv"), srv)
    for target in spec.overlays:
        if Path(target).is_dir():
            _require_overlay(target)
    # sshd needs /run/sshd (privilege separation); a VM has its own /run and /tmp anyway
    _private_tmpfs(root, "/run", "mode=0755,size=64m")
    _private_tmpfs(root, _TMP, "mode=1777")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    Path("/run/lock").mkdir(exist_ok=True)
    os.chmod("/run/lock", 0o1777)  # noqa: S103 - sticky, as /run/lock is on any Debian
    _storage(spec)
    _identity(spec)
    _unlock_root()
    _root_keys(spec.authorized_keys, spec.legacy)
    apply_accounts(spec)
    os.chdir("/")
    # its own engine folders and settings (the lab machine's clusters never show), then its
    # engines: up and seeded before sshd answers, as a VM's services are before anyone logs in
    guest_engines.prepare(root, GUEST_ENV)
    guest_engines.boot(root, spec.engines, GUEST_ENV)
    # test the config first (it needs /run/sshd), so a mistake reads as sshd's own message
    test = run([spec.sshd, "-t", "-f", spec.config], env=GUEST_ENV, inherit_env=False, timeout=30)
    if not test.ok:
        raise LabError(f"sshd_config rejected: {test.stderr.strip()}")
    print(f"guest_init: {spec.name} ready, exec {spec.sshd}", file=sys.stderr, flush=True)
    # exec, not a subprocess: the PID the lab recorded must become sshd itself
    os.execve(spec.sshd, [spec.sshd, "-D", "-e", "-f", spec.config], GUEST_ENV)  # noqa: S606


def main(argv: list[str] | None = None) -> int:
    """``guest_init <guest.json>`` boots; ``guest_init --accounts <guest.json>`` applies the
    accounts inside a live guest. Returns 1 (message on stderr) when a step fails."""
    args = sys.argv[1:] if argv is None else argv
    try:
        if len(args) == 1:
            boot(GuestSpec.load(Path(args[0])))
        if len(args) == 2 and args[0] == "--accounts":
            spec = GuestSpec.load(Path(args[1]))
            _require_own_namespace()
            if socket.gethostname() != spec.hostname:
                raise LabError(f"not inside guest {spec.name} (hostname {socket.gethostname()})")
            _require_same(Path("/srv"), Path(spec.root) / "srv")
            _require_overlay("/etc")
            apply_accounts(spec)
            return 0
        print("usage: guest_init [--accounts] GUEST_JSON", file=sys.stderr)
        return 2
    except (LabError, CommandError, OSError) as exc:
        print(f"guest_init: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
