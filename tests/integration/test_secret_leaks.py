"""No secret ever in an error: a recognisable password is planted in every place a secret
lives — each value of the vault (vCenter passwords, restic repository passwords, rest
credentials), the vault password file, and the operator's own environment (RESTIC_PASSWORD,
a cloud key) — and every command's failure paths that can be reached cheaply are run: an
estate whose vCenters, hosts and repository hosts do not answer, a vCenter that refuses the
password, a wrong vault password, a vault whose decrypted text is not YAML. Then the
password is looked for in what they printed, in every file of the state folder (the
ledger's bytes and its dump, ansible-runner's artifacts, evidence), and in the command
line and environment of every process the commands started (sampled from /proc while
they ran): it is nowhere.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orchestrator.adapters.vault import write_private, write_vault
from orchestrator.estate import load_estate
from orchestrator.estate.endpoints import rest_secret_keys
from orchestrator.lab.processes import parent_pid
from orchestrator.lab.secrets import secret_refs
from orchestrator.settings import Paths
from tests.helpers import HOPNHAT, LabHandle, copy_estate, free_ports, ledger_dump, replace_in

pytestmark = pytest.mark.lab

PLANTED = f"PLANTED-{uuid.uuid4().hex}"
#: loopback addresses where no lab listens (a lab's octets stay below 254 - 20)
NOWHERE = ("127.252.", "127.253.")


@dataclass
class Seen:
    """What the processes a command started showed in /proc while it ran."""

    cmdlines: dict[int, bytes] = field(default_factory=dict)
    environs: dict[int, bytes] = field(default_factory=dict)


def _sample(root: int, seen: Seen, stop: threading.Event) -> None:
    """Read the cmdline and environ of every descendant of ``root`` until ``stop``. A
    descendant that still shows ``root``'s own command line is hopnhat itself between fork
    and exec (its environment is the operator's, planted on purpose): its environ is not
    a child's."""
    own = Path(f"/proc/{root}/cmdline").read_bytes()
    while not stop.is_set():
        parents: dict[int, int | None] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                parents[int(entry.name)] = parent_pid(int(entry.name))
        for pid in parents:
            ancestor, hops = parents.get(pid), 0
            while ancestor not in (None, 0, 1, root) and hops < 64:
                ancestor, hops = parents.get(ancestor), hops + 1
            if ancestor != root:
                continue
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                environ = Path(f"/proc/{pid}/environ").read_bytes()
                if cmdline == own and cmdline == Path(f"/proc/{pid}/cmdline").read_bytes():
                    continue
                seen.cmdlines[pid] = seen.cmdlines.get(pid, b"") + cmdline
                seen.environs[pid] = seen.environs.get(pid, b"") + environ
        stop.wait(0.01)


@dataclass
class Ran:
    args: tuple[str, ...]
    code: int
    out: str
    err: str
    seen: Seen


def run_watched(env: dict[str, str], *args: str, timeout: float = 120) -> Ran:
    """``hopnhat args``, its descendants' /proc sampled while it runs."""
    proc = subprocess.Popen([str(HOPNHAT), *args], env={**env, "COLUMNS": "200"},
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen, stop = Seen(), threading.Event()
    sampler = threading.Thread(target=_sample, args=(proc.pid, seen, stop), daemon=True)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        stop.set()
        sampler.join(timeout=10)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Ran(tuple(args), proc.returncode, out, err, seen)


@dataclass
class Planted:
    paths: Paths
    env: dict[str, str]
    vault_text: str

    def vault(self, plain: str | None = None, password: str | None = None) -> None:
        """Write the vault (``plain`` as its decrypted text, else the planted secrets)."""
        write_private(self.paths.vault_password_file,
                      f"{password or PLANTED + '-vault-password'}\n".encode())
        if plain is None:
            write_vault(self.paths.vault_file, self.paths.vault_password_file, self.secrets)
            return
        from ansible.parsing.vault import VaultLib, VaultSecret

        secret = VaultSecret(f"{PLANTED}-vault-password".encode())
        write_private(self.paths.vault_file,
                      bytes(VaultLib([("default", secret)]).encrypt(plain.encode())))

    @property
    def secrets(self) -> dict[str, str]:
        estate = self.paths.estate
        keys = {ref.vault for ref in secret_refs(
            [estate.settings, list(estate.sites.values()), list(estate.systems.values())])}
        return {key: f"{PLANTED}-{key}" for key in keys | set(rest_secret_keys(estate))}


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Planted]:
    """An estate (the example's) whose vCenters, hosts and repository hosts do not answer,
    with the password planted everywhere; its own state folder."""
    base = tmp_path_factory.mktemp("leaks")
    estate_dir = copy_estate(base / "inventory", ports=free_ports(2), primary=NOWHERE[0],
                             secondary=NOWHERE[1])
    # configure waits for hosts to accept SSH: a second, not two minutes
    replace_in(estate_dir / "estate.yml", "connect_wait: 2m", "connect_wait: 1s")
    paths = Paths(base / "state", load_estate(estate_dir))
    env = {**os.environ, "HOPNHAT_ESTATE": str(estate_dir), "HOPNHAT_STATE": str(paths.state),
           # what an operator's shell may hold: no child of hopnhat is to see it
           "RESTIC_PASSWORD": PLANTED, "AWS_SECRET_ACCESS_KEY": PLANTED}
    env.pop("HOPNHAT_VAULT_PASSWORD_FILE", None)
    found = Planted(paths, env, "")
    found.vault()
    yield found
    shutil.rmtree(base, ignore_errors=True)


def hits(text: str | bytes) -> bool:
    if isinstance(text, bytes):
        return PLANTED.encode() in text
    return PLANTED in text


def assert_nowhere(ran: Ran, *, own_env_planted: bool = True) -> None:
    where = f"hopnhat {' '.join(ran.args)} (exit {ran.code})"
    assert "Traceback" not in ran.err, f"{where}: a traceback:\n{ran.err}"
    assert not hits(ran.out) and not hits(ran.err), f"{where} printed the secret:\n" \
        f"{ran.out}\n{ran.err}"
    leaked = [pid for pid, line in ran.seen.cmdlines.items() if hits(line)]
    assert not leaked, f"{where}: in the command line of {[ran.seen.cmdlines[p] for p in leaked]}"
    leaked = [pid for pid, env in ran.seen.environs.items() if hits(env)]
    assert not leaked, f"{where}: in the environment of " \
        f"{[ran.seen.cmdlines.get(p, b'?')[:200] for p in leaked]}"


def assert_state_clean(paths: Paths) -> None:
    found = []
    for path in paths.state.rglob("*"):
        if path.is_file() and not path.is_symlink() and path != paths.vault_password_file \
                and path != paths.vault_file and hits(path.read_bytes()):
            found.append(str(path.relative_to(paths.state)))
    assert not found, f"the secret is in {found}"
    if paths.ledger.exists():
        assert not hits(ledger_dump(paths.ledger))


FAILING = [
    ("estate", "validate"),
    ("plan",),
    ("apply", "--yes"),
    ("destroy", "--system", "qlvb", "--yes"),
    ("configure",),
    ("backup", "run", "--system", "qlvb"),
    ("backup", "status"),
    ("verify", "--system", "qlvb"),
    ("maintain",),
    ("vault", "pull", "--system", "qlvb"),
    ("drill", "run", "--system", "qlvb"),
    ("discover",),
]


@pytest.mark.parametrize("args", FAILING, ids=[" ".join(a) for a in FAILING])
def test_a_command_that_cannot_reach_anything_shows_no_secret(
        planted: Planted, args: tuple[str, ...]) -> None:
    ran = run_watched(planted.env, *args)
    assert_nowhere(ran)
    assert_state_clean(planted.paths)


def test_a_wrong_vault_password_shows_no_secret(planted: Planted) -> None:
    planted.vault(password=f"{PLANTED}-wrong-password")
    try:
        # written with the wrong one: reading it with the right one fails the same way
        write_private(planted.paths.vault_password_file, f"{PLANTED}-vault-password\n".encode())
        ran = run_watched(planted.env, "plan")
        assert ran.code == 2 and "cannot decrypt the vault file" in ran.err, ran.err
        assert_nowhere(ran)
        for args in (("configure",), ("backup", "run", "--system", "qlvb"), ("verify",),
                     ("maintain",)):
            assert_nowhere(run_watched(planted.env, *args))
    finally:
        planted.vault()


def test_a_vault_that_is_not_yaml_is_named_by_file_and_line_without_its_text(
        planted: Planted) -> None:
    lines = [f"{key}: '{value}'" for key, value in sorted(planted.secrets.items())]
    lines[2] = f"vcenter_danang_password: {PLANTED}: broken"
    planted.vault("\n".join(lines) + "\n")
    try:
        named = re.compile(rf"{re.escape(str(planted.paths.vault_file))}: the decrypted "
                           r"vault is not valid YAML \(line 3\)")
        for args in (("plan",), ("verify",)):
            ran = run_watched(planted.env, *args)
            assert (ran.code, ran.out, bool(named.search(ran.err))) == (2, "", True), ran.err
            assert_nowhere(ran)
        # a drill records the failed step (and its evidence) before it ends
        ran = run_watched(planted.env, "drill", "run", "--system", "qlvb")
        assert ran.code != 0 and named.search(ran.out + ran.err), ran.out + ran.err
        assert_nowhere(ran)
        assert_state_clean(planted.paths)
        # configure leaves the vault to Ansible on the hosts' behalf (none answers here)
        assert_nowhere(run_watched(planted.env, "configure"))
    finally:
        planted.vault()


def test_a_vcenter_that_refuses_the_password_shows_no_secret(
        lab: LabHandle, planted: Planted, tmp_path: Path) -> None:
    """The lab's vCenter, asked with the planted password (not its own)."""
    estate_dir = tmp_path / "inventory"
    shutil.copytree(planted.paths.estate.root, estate_dir)
    site = estate_dir / "sites" / "danang.yml"
    lab_url = re.search(r"url: (\S+)", (lab.estate_dir / "sites" / "danang.yml").read_text())
    ours = re.search(r"url: \S+", site.read_text())
    assert lab_url and ours
    replace_in(site, ours.group(0), f"url: {lab_url.group(1)}")
    replace_in(site, "ca_bundle: lab/", f"ca_bundle: {lab.state_dir}/lab/")
    env = {**planted.env, "HOPNHAT_ESTATE": str(estate_dir)}
    ran = run_watched(env, "plan")
    assert ran.code != 0
    assert_nowhere(ran)
    assert_state_clean(planted.paths)
