"""The configured backup estate of test_backup, test_backup_faults and test_backup_security
(their fixture, made visible by tests/integration/conftest.py): the session estate's video
and four one-VM systems added to a copy of it, provisioned with one ``hopnhat apply`` and
configured with one ``configure`` (an ansible run takes 30-45 s on two cores even for one
host, and 5-10 s more per further host until both cores are busy: test_drill's three hosts
added to it made it as long as their own run, so they have theirs), and destroyed right after
the last test that uses them — not at the session's end — so that the modules after them
find the lab as they would without them.

- ``video`` (tier 1; its data seeded by the lab as for any VM of the example) is
  test_backup's;
- ``flt`` backs up to ``repo-flt-01``, a repository host of its own (stopped and started
  again by the fault tests: no other system's repository goes down with it);
- ``full`` backs up to ``repo-full-01``, whose storage is a tmpfs of ``FULL_CAPACITY_MB``;
- ``seca`` and ``secb`` back up to ``repo-sec-01``, an SFTP repository host they share (the
  session's serves REST); their vault passwords, keys and SFTP accounts are made as ``lab
  up`` makes them, as are flt's and full's;
- ``qta`` backs up to the session's rest repository host with a quota of ``QUOTA_MB``, less
  than its data: its server (added to that host as ``lab up`` adds one) refuses the rest.

The four have pinned addresses, so no other VM moves (video's address is the session's),
and keep every snapshot (no retention), so that "earlier snapshots intact" is exact. flt's
and full's repository hosts are lab guests in a lab folder of this fixture's own, so the
lab's hypervisor (which manages the VMs' guests) never touches them; they are stopped by PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator import process
from orchestrator.actions.configure import configure, plan
from orchestrator.adapters import ssh
from orchestrator.estate import load_estate
from orchestrator.estate.endpoints import repository_folder
from orchestrator.estate.secrets import Secrets
from orchestrator.lab import data, guests, rest
from orchestrator.lab.guests import guest_srv, guest_view, record_name
from orchestrator.lab.processes import ProcessTable, is_alive
from orchestrator.lab.repository import start_repository_host
from orchestrator.lab.secrets import ensure_lab_secrets
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths
from tests.helpers import HOPNHAT, guest_gone, guest_seeded, wait_for

BIN = HOPNHAT.parent
FLT, FULL = "flt", "full"
FLT_REPO, FULL_REPO, SEC_REPO = "repo-flt-01", "repo-full-01", "repo-sec-01"
A, B = "seca", "secb"
QTA = "qta"
QUOTA_MB = 8
QTA_PORT = 8190
VIDEO = "video"
STORAGE = "/srv/restic"
FULL_CAPACITY_MB = 40
KEEP_EVERYTHING = {"hourly": 0, "daily": 0, "weekly": 0, "monthly": 0, "yearly": 0}
#: MiB of synthetic data on the VM of each added system (video's is the lab's own)
DATA_MB = {FLT: 24, FULL: 6, A: 24, B: 24, QTA: 24}


def system_file(code: str, repository_host: str, ip: str) -> dict[str, Any]:
    """A one-VM system on the primary site, at a pinned address, backing up /srv/<code>."""
    return {
        "name": f"test system {code}", "code": code, "tier": 2,
        "vms": [{"role": "app", "count": 1, "site": "danang", "cpu": 1, "memory_mb": 1024,
                 "disks_gb": [20], "network": "srv", "ips": [ip], "data": True}],
        "backup": {"repository_host": repository_host,
                   "password": {"vault": f"restic_password_{code}"},
                   "paths": [f"/srv/{code}"], "schedule": "*-*-* 03:00:00",
                   "retention": KEEP_EVERYTHING},
    }


def copy_estate_with(source: Path, dest: Path, systems: dict[str, dict[str, Any]],
                     repository_hosts: dict[str, str]) -> Path:
    """The estate in ``source`` (its vault included) plus ``systems`` (code → system file)
    and ``repository_hosts`` (name → address, in the secondary site)."""
    shutil.copytree(source, dest)
    settings = yaml.safe_load((dest / "estate.yml").read_text())
    site = settings["repository_hosts"][0]["site"]
    for name, address in repository_hosts.items():
        settings["repository_hosts"].append({"name": name, "site": site, "address": address,
                                             "storage_path": STORAGE, "capacity_gb": 1})
    (dest / "estate.yml").write_text(yaml.safe_dump(settings, sort_keys=False))
    for code, system in systems.items():
        (dest / "systems" / f"{code}.yml").write_text(yaml.safe_dump(system, sort_keys=False))
    return dest


def octets(lab: Any) -> tuple[str, str]:
    """``127.X`` of the session's primary site and of its secondary site."""
    estate = lab.estate
    primary = str(estate.vms[0].ip).rsplit(".", 2)[0]
    secondary = str(estate.settings.repository_hosts[0].address).rsplit(".", 2)[0]
    return primary, secondary


def process_state(pid: int) -> str:
    """The state letter of ``pid`` (R, S, T…), or "gone"."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return raw[raw.rindex(")") + 2]


@dataclass
class ConfiguredEstate:
    """Systems added to a copy of the session's estate and configured: the copy's Paths, the
    environment for ``hopnhat`` with it, the session's lab, and the repository hosts this
    estate runs itself (in ``hosts_dir``, apart from the lab's table)."""

    session: Any
    paths: Paths
    env: dict[str, str]
    hosts_dir: Path
    control_pub: str
    paused: list[int] = field(default_factory=list)

    @property
    def hosts_table(self) -> ProcessTable:
        return ProcessTable(self.hosts_dir)

    def vm(self, code: str) -> str:
        return next(vm.name for vm in self.paths.estate.vms if vm.system == code)

    def target(self, name: str) -> ssh.Target:
        estate = self.paths.estate
        hosts = {h.name: h for h in estate.settings.repository_hosts}
        if name in hosts:
            address, port = str(hosts[name].address), hosts[name].port
        else:
            address, port = str(next(v.ip for v in estate.vms if v.name == name)), 22
        return ssh.Target(host=name, address=address, port=port, user="root",
                          key_file=self.paths.private_key, known_hosts=self.paths.known_hosts)

    def sh(self, name: str, command: str, stdin: str | None = None,
           timeout: float = 300) -> ssh.RemoteResult:
        """``command`` as root on host ``name`` (host key pinned in hopnhat's known_hosts)."""
        target = self.target(name)
        client = ssh.connect(target)
        try:
            return ssh.execute(client, target, command, timeout=timeout, stdin=stdin)
        finally:
            client.close()

    def start_repository_host(self, name: str, codes: tuple[str, ...],
                              capacity_mb: int | None) -> None:
        """Start (again) repository host ``name`` with the SFTP accounts of systems
        ``codes``, as ``lab up`` starts the estate's."""
        host = self.paths.estate.repository_host(name)
        keys = {code: self.paths.repository_key(code).with_suffix(".pub").read_text().strip()
                for code in codes}
        start_repository_host(self.hosts_dir, self.hosts_table, name, name, str(host.address),
                              STORAGE, [self.control_pub], self.paths.known_hosts,
                              keys, capacity_mb=capacity_mb)

    def namespace(self, vm: str) -> str:
        """The mount namespace of VM ``vm``'s guest (the processes that run "on" it)."""
        rec = ProcessTable(self.session.paths.lab).running(record_name(vm))
        assert rec is not None, f"guest {vm} is not running"
        return str(rec.details["mntns"])

    def locks_dir(self, code: str) -> Path:
        """The locks folder of system ``code``'s repository, as its repository host sees it
        (a host of this estate's own, or the session's)."""
        backup = self.paths.estate.systems[code].backup
        assert backup is not None
        host = self.paths.estate.repository_host(backup.repository_host)
        own = self.hosts_table.running(record_name(host.name)) is not None
        table = self.hosts_table if own else ProcessTable(self.session.paths.lab)
        return guest_view(table, host.name, f"{repository_folder(host, code)}/locks")

    def pause(self, pid: int) -> None:
        """SIGSTOP ``pid`` and return once it is stopped (remembered, to be let go at the
        end whatever happens)."""
        self.paused.append(pid)
        os.kill(pid, signal.SIGSTOP)
        wait_for(f"process {pid} stopped", lambda: process_state(pid) in ("T", "gone"), 30,
                 interval=0.01)

    def resume(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        with contextlib.suppress(ValueError):
            self.paused.remove(pid)

    def resume_all(self) -> None:
        """Let go every process a test paused and left paused (it failed midway)."""
        for pid in list(self.paused):
            self.resume(pid)


def provision_and_configure(fl: ConfiguredEstate, sizes_mb: dict[str, int], seed: str,
                            seeded: tuple[str, ...] = ()) -> None:
    """``hopnhat apply`` of the systems of ``sizes_mb`` (code → MiB of data, generated once
    its VM answers SSH) and of ``seeded`` (whose data the lab's hypervisor lays down, as for
    the example's VMs), then one ``configure`` of them all."""
    codes = [*sizes_mb, *seeded]
    done = process.run([str(BIN / "hopnhat"), "apply", *(a for c in codes for a in
                                                         ("--system", c)), "--yes"],
                       env=fl.env, timeout=300)
    assert done.ok, done.stderr
    lab_dir = fl.session.paths.lab
    for code in codes:
        vm = next(v for v in fl.paths.estate.vms if v.system == code)
        wait_for(f"ssh on {vm.name}", partial(ssh.wait_for_port, str(vm.ip), 22, 1.0), 120)
        if code in sizes_mb:
            data.generate(guest_srv(lab_dir, vm.name) / code, seed=f"{seed}/{code}",
                          size_mb=sizes_mb[code], files=120)
        else:
            wait_for(f"data on {vm.name}", guest_seeded(lab_dir, vm.name), 120)
    with Ledger(fl.paths.ledger) as ledger:
        result = configure(fl.paths, plan(fl.paths.estate, tuple(codes)), ledger=ledger)
    assert result.exit_code == 0, result.run.failures


#: what :func:`pytest_runtest_teardown` in conftest.py calls after the estate's last test
TEARDOWN = pytest.StashKey[Callable[[], None]]()


@pytest.fixture(scope="session")
def backup_estate(lab: Any, tmp_path_factory: pytest.TempPathFactory,
                  request: pytest.FixtureRequest) -> Iterator[ConfiguredEstate]:
    base = tmp_path_factory.mktemp("backup-estate")
    primary, secondary = octets(lab)
    shared = lab.estate.settings.repository_hosts[0].name
    quota = system_file(QTA, shared, f"{primary}.1.245")
    quota["backup"].update({"port": QTA_PORT, "quota_gb": QUOTA_MB / 1024})
    estate_dir = copy_estate_with(
        lab.estate_dir, base / "inventory",
        {FLT: system_file(FLT, FLT_REPO, f"{primary}.1.241"),
         FULL: system_file(FULL, FULL_REPO, f"{primary}.1.242"),
         A: system_file(A, SEC_REPO, f"{primary}.1.243"),
         B: system_file(B, SEC_REPO, f"{primary}.1.244"), QTA: quota},
        {FLT_REPO: f"{secondary}.2.18", FULL_REPO: f"{secondary}.2.19",
         SEC_REPO: f"{secondary}.2.17"})
    paths = Paths(lab.state_dir, load_estate(estate_dir))
    assert [vm.ip for vm in paths.estate.vms_of(VIDEO)] == \
        [vm.ip for vm in lab.estate.vms_of(VIDEO)], "an added system moved video's address"
    ensure_lab_secrets(paths)  # the added systems' passwords, in the copied vault
    for code in (FLT, FULL, A, B):
        ssh.ensure_keypair(paths.repository_key(code), f"restic-{code}@{paths.estate.id}")
    env = {**os.environ, "HOPNHAT_ESTATE": str(estate_dir), "HOPNHAT_STATE": str(lab.state_dir)}
    fl = ConfiguredEstate(lab, paths, env, base / "hosts",
                          paths.private_key.with_suffix(".pub").read_text().strip())
    fl.hosts_dir.mkdir()
    torn_down = False

    def teardown() -> None:
        nonlocal torn_down
        if torn_down:
            return
        torn_down = True
        fl.resume_all()
        destroyed = [process.run([str(BIN / "hopnhat"), "destroy", "--system", code, "--yes",
                                  "--no-backup-gate", "--reason",
                                  "end of the backup, backup fault and security tests"],
                                 env=env, timeout=300) for code in (VIDEO, *DATA_MB)]
        for name in (FLT_REPO, FULL_REPO, SEC_REPO):
            guests.destroy_guest(fl.hosts_dir, fl.hosts_table, name)
        lab_table = ProcessTable(lab.paths.lab)
        lab_table.stop(rest.process_name(shared, QTA))
        left = [r.name for r in fl.hosts_table.all() if is_alive(r)]
        assert not left, f"repository hosts left running: {left}"
        assert all(done.ok for done in destroyed), [d.stderr for d in destroyed]
        for code in (VIDEO, *DATA_MB):
            vm = fl.vm(code)
            wait_for(f"guest {vm} to go", guest_gone(lab.paths.lab, vm))

    request.session.stash[TEARDOWN] = teardown
    try:
        fl.start_repository_host(FLT_REPO, (FLT,), None)
        fl.start_repository_host(FULL_REPO, (FULL,), FULL_CAPACITY_MB)
        fl.start_repository_host(SEC_REPO, (A, B), None)
        # qta's server on the session's rest repository host, as `lab up` adds it
        lab_table = ProcessTable(lab.paths.lab)
        guest = lab_table.running(record_name(shared))
        assert guest is not None, f"the session's repository host {shared} is not running"
        rest.start_rest_servers(paths, lab_table, paths.estate.repository_host(shared), guest,
                                Secrets(paths))
        provision_and_configure(fl, DATA_MB, "backup-estate", seeded=(VIDEO,))
        yield fl
    finally:
        teardown()
