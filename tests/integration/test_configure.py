"""``hopnhat configure`` against the lab: ansible-runner runs playbooks/site.yml on real sshd
guests and the real repository host, and the backup job it installs makes real restic
snapshots over SFTP.

One configure of two systems (email, ioc: no other test module uses them) is shared by the
tests of this module; the VMs come from ``hopnhat apply``. Before it, a ``configure --check``
of the same systems meets hosts that were never configured.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import paramiko
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator import process
from orchestrator.actions.configure import ConfigureResult, configure, plan
from orchestrator.actions.repositories import open_repository
from orchestrator.adapters import ssh, vsphere
from orchestrator.adapters.restic import Restic
from orchestrator.adapters.vault import read_vault
from orchestrator.estate.endpoints import htpasswd_line
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths
from tests.helpers import (
    HOPNHAT,
    REPO,
    guest_seeded,
    ledger_dump,
    promtool_says,
    wait_for,
    wait_task,
)

pytestmark = pytest.mark.lab

BIN = HOPNHAT.parent
SYSTEMS = ("email", "ioc")
CLIENTS = ("email-mail-01", "ioc-app-01")
REPOSITORY_HOST = "repo-qnam-01"
HOSTS = (*CLIENTS, REPOSITORY_HOST)
JOB = "/usr/local/lib/hopnhat/backup_job.py"
#: what configure makes on the hosts (and writes inside): none of it on a host it never
#: configured; and the rest repository host's account for its rest-servers
MADE = ("/etc/hopnhat", "/var/lib/hopnhat", "/var/cache/hopnhat", "/usr/local/lib/hopnhat",
        "/usr/local/bin/hopnhat-rest-server", "/etc/systemd/system/hopnhat-rest@.service",
        *(f"/etc/systemd/system/hopnhat-backup-{code}.{unit}" for code in SYSTEMS
          for unit in ("service", "timer")))
REST_ACCOUNT = "hopnhat-rest"
#: where a check must write nothing, on any host
WATCHED = ("/etc", "/usr/local", "/srv")
#: on the repository host, while a check runs: what it held of MADE and of its accounts
SET_ASIDE = "/root/hopnhat-set-aside"
MARK = "/tmp/hopnhat-check.mark"


@dataclass
class Configured:
    paths: Paths
    first: ConfigureResult
    secrets: dict[str, str] = field(repr=False)  # never in a failed test's report


def _target(paths: Paths, name: str) -> ssh.Target:
    if name == REPOSITORY_HOST:
        host = paths.estate.repository_host(name)
        address, port = str(host.address), host.port
    else:
        vm = next(vm for vm in paths.estate.vms if vm.name == name)
        address, port = str(vm.ip), 22
    return ssh.Target(host=name, address=address, port=port, user="root",
                      key_file=paths.private_key, known_hosts=paths.known_hosts)


def sh(paths: Paths, name: str, command: str, stdin: str | None = None,
       timeout: float = 120) -> ssh.RemoteResult:
    """``command`` on host ``name`` as root (host key checked against hopnhat's known_hosts)."""
    target = _target(paths, name)
    client = ssh.connect(target)
    try:
        return ssh.execute(client, target, command, timeout=timeout, stdin=stdin)
    finally:
        client.close()


def made_on(paths: Paths, name: str) -> list[str]:
    """What host ``name`` holds of configure's making: the rest-servers' account (and its
    group), and those of MADE's paths that exist."""
    found = sh(paths, name, f"getent passwd {REST_ACCOUNT} | cut -d: -f1; "
               f"getent group {REST_ACCOUNT} | cut -d: -f1; "
               f"for p in {shlex.join(MADE)}; do if [ -e \"$p\" ]; then echo \"$p\"; fi; done")
    assert found.returncode == 0, found.stderr
    return found.stdout.split()


def set_aside(paths: Paths, name: str) -> None:
    """Make host ``name`` as one configure never saw: MADE's paths moved into SET_ASIDE
    (a tar), the account files copied there whole, the rest-servers' account deleted.
    :func:`put_back` undoes it exactly."""
    done = sh(paths, name, f"""set -e
rm -rf {SET_ASIDE} && mkdir -m 0700 {SET_ASIDE}
cp -a /etc/passwd /etc/group /etc/shadow /etc/gshadow {SET_ASIDE}/
made=""; for p in {shlex.join(MADE)}; do if [ -e "$p" ]; then made="$made ${{p#/}}"; fi; done
tar -C / -cpf {SET_ASIDE}/made.tar -T /dev/null $made
rm -rf {shlex.join(MADE)}
if getent passwd {REST_ACCOUNT} >/dev/null; then userdel {REST_ACCOUNT}; fi
if getent group {REST_ACCOUNT} >/dev/null; then groupdel {REST_ACCOUNT}; fi
""")
    assert done.returncode == 0, done.stderr


def put_back(paths: Paths, name: str) -> None:
    done = sh(paths, name, f"""set -e
rm -rf {shlex.join(MADE)}
tar -C / -xpf {SET_ASIDE}/made.tar
cp -a {SET_ASIDE}/passwd {SET_ASIDE}/group {SET_ASIDE}/shadow {SET_ASIDE}/gshadow /etc/
rm -rf {SET_ASIDE}
""")
    assert done.returncode == 0, done.stderr


@dataclass
class Checked:
    """``hopnhat configure --check`` of the module's systems on hosts never configured: what
    it answered, and per host what it held of configure's making (:func:`made_on`) before
    and after the check, and what under WATCHED was written, made or had its owner or mode
    changed while the check ran."""

    paths: Paths
    done: process.Completed
    before: dict[str, list[str]]
    after: dict[str, list[str]]
    written: dict[str, list[str]]


@pytest.fixture(scope="module")
def applied(lab: Any) -> Iterator[Paths]:
    """The module's systems' VMs from ``hopnhat apply``, up with their sshd and data;
    destroyed at the end."""
    done = process.run([str(BIN / "hopnhat"), "apply", *(a for s in SYSTEMS for a in
                                                          ("--system", s)), "--yes"],
                       env=lab.env, timeout=300)
    assert done.ok, done.stderr
    paths: Paths = lab.paths
    for name in CLIENTS:
        # the hypervisor starts the guest once the VM is on, then lays down its data
        vm = next(vm for vm in paths.estate.vms if vm.name == name)
        wait_for(f"ssh on {name}", partial(ssh.wait_for_port, str(vm.ip), 22, 1.0), 120)
        wait_for(f"data on {name}", guest_seeded(paths.lab, name), 120)
    yield paths
    # the session's lab is shared: leave the site as this module found it (test_provision
    # plans and builds these systems itself)
    for system in SYSTEMS:
        gone = process.run([str(BIN / "hopnhat"), "destroy", "--system", system, "--yes",
                            "--no-backup-gate", "--reason", "test teardown"],
                           env=lab.env, timeout=300)
        assert gone.ok, gone.stderr


@pytest.fixture(scope="module")
def checked(applied: Paths, lab: Any) -> Checked:
    """The check, before the module's configure: the clients are fresh from apply; the rest
    repository host, which the session's other modules may have configured, has configure's
    making set aside while it runs (put back afterwards: the module's configure then finds
    the host as the session left it)."""
    paths = applied
    set_aside(paths, REPOSITORY_HOST)
    try:
        before = {name: made_on(paths, name) for name in HOSTS}
        for name in HOSTS:
            assert sh(paths, name, f"touch {MARK}").returncode == 0
        done = process.run([str(BIN / "hopnhat"), "configure", *(a for s in SYSTEMS for a in
                                                                  ("--system", s)),
                            "--check", "--json"], env=lab.env, timeout=600)
        written = {}
        for name in HOSTS:
            found = sh(paths, name, f"find {shlex.join(WATCHED)} -newer {MARK} -o -cnewer "
                       f"{MARK}; rm {MARK}")
            assert found.returncode == 0, found.stderr
            written[name] = found.stdout.splitlines()
        after = {name: made_on(paths, name) for name in HOSTS}
    finally:
        put_back(paths, REPOSITORY_HOST)
    return Checked(paths, done, before, after, written)


@pytest.fixture(scope="module")
def configured(checked: Checked) -> Configured:
    paths = checked.paths
    with Ledger(paths.ledger) as ledger:
        first = configure(paths, plan(paths.estate, SYSTEMS), ledger=ledger)
    return Configured(paths, first, read_vault(paths.vault_file, paths.vault_password_file))


def test_configure_check_on_hosts_never_configured_says_what_would_change_and_changes_nothing(
        checked: Checked) -> None:
    """An operator's dry run (as terraform plan) before the first configure: every host
    would change, no task fails — before, the repository host's check failed where a task
    gave a folder to the rest-servers' account that an earlier task only pretended to
    create — and no host holds anything of configure's making afterwards: not the account,
    not a folder, nothing written where hopnhat writes."""
    assert checked.before == {name: [] for name in HOSTS}, "the hosts were configured before"
    done = checked.done
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert (result["status"], result["plan"]["check"], result["failures"]) == ("ok", True, [])
    assert {name: stats["changed"] > 0 for name, stats in result["hosts"].items()} == {
        name: True for name in HOSTS}
    would = {n["host"]: n["message"] for n in result["notices"] if n["role"] == "backup_schedule"}
    assert set(would) == set(CLIENTS)
    assert all("would be installed (check mode)" in message for message in would.values())
    assert checked.after == checked.before
    assert checked.written == {name: [] for name in HOSTS}


def test_configure_converges_every_host_and_says_the_timers_are_not_enabled(
        configured: Configured) -> None:
    first = configured.first
    assert (first.verdict.status, first.exit_code) == ("ok", 0), first.run.failures
    assert set(first.run.hosts) == {*CLIENTS, REPOSITORY_HOST}
    # the lab's guests have no systemd: the units are installed and validated, and the run
    # says so for each backup client instead of passing silently
    not_enabled = {n.host: n.message for n in first.run.notices if n.role == "backup_schedule"}
    assert set(not_enabled) == set(CLIENTS)
    for name, message in not_enabled.items():
        code = name.split("-")[0]
        assert f"hopnhat-backup-{code}.timer" in message
        assert "NOT enabled" in message and "systemd is not PID 1" in message
    with Ledger(configured.paths.ledger) as ledger:
        run = next(r for r in ledger.runs("configure") if r.id == first.run_id)
        assert run.status == "ok"
        notices = {e["subject"] for e in ledger.events(run.id) if e["kind"] == "notice"}
        assert notices >= set(CLIENTS)


def test_the_rest_repository_host_holds_each_systems_server_files_and_repository(
        configured: Configured) -> None:
    """What the restic_repository role wrote on the rest repository host (systemd does not
    run the lab's: the lab runs the servers itself): per system an htpasswd with that
    system's user and the host's metrics user, each line checking its own password (the
    bcrypt lines hopnhat writes: the same salt for the same password), its settings
    (append-only, its port, its quota) and its folder, its repository initialised there by
    its client through its own server."""
    paths = configured.paths
    host = paths.estate.repository_host(REPOSITORY_HOST)
    storage = host.storage_path
    vault = read_vault(paths.vault_file, paths.vault_password_file)
    for code in SYSTEMS:
        backup = paths.estate.systems[code].backup
        assert backup is not None and backup.quota_gb is not None
        found = sh(paths, REPOSITORY_HOST,
                   f"cat /etc/hopnhat/rest-server/{code}.htpasswd"
                   f" && stat -c '%U %G %a' /etc/hopnhat/rest-server/{code}.htpasswd"
                   f" && cat /etc/hopnhat/rest-server/{code}.env"
                   f" && test -f {storage}/{code}/{code}/config && echo initialised")
        assert found.returncode == 0, found.stderr
        lines = found.stdout.splitlines()
        # the system's user, then metrics (the control host's, for verify's deletions
        # check): nobody else's
        assert lines[:2] == [htpasswd_line(code, vault[backup.rest_secret(code)]),
                             htpasswd_line("metrics", vault[host.metrics_secret])]
        assert lines[2] == "root hopnhat-rest 640"
        settings = dict(line.split("=", 1) for line in lines[3:] if "=" in line
                        and not line.startswith("#"))
        assert settings["REST_LISTEN"].endswith(f":{backup.port}")
        assert settings["REST_PATH"] == f"{storage}/{code}"
        assert settings["REST_OPTIONS"] == (f"--append-only --private-repos --max-size "
                                            f"{int(backup.quota_gb * 1024 ** 3)}")
        assert lines[-1] == "initialised"
    unit = sh(paths, REPOSITORY_HOST, "cat /etc/systemd/system/hopnhat-rest@.service").stdout
    assert "--tls" in unit and "User=hopnhat-rest" in unit


def test_the_backup_job_run_by_hand_makes_a_snapshot_and_writes_its_status(
        configured: Configured, tmp_path: Path) -> None:
    paths = configured.paths
    done = sh(paths, "email-mail-01", f"python3 {JOB} --config /etc/hopnhat/backup-email.json")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["result"] == "ok" and printed["snapshot_id"]

    status = json.loads(sh(paths, "email-mail-01", "cat /var/lib/hopnhat/backup-email.json")
                        .stdout)
    assert status == printed
    assert status["files"] > 0 and status["bytes"] > 0 and status["error"] is None
    textfile = sh(paths, "email-mail-01",
                  "cat /var/lib/hopnhat/textfile/hopnhat_backup_email.prom").stdout
    assert promtool_says(textfile) == ""
    families = {f.name: f for f in text_string_to_metric_families(textfile)}
    assert {s.labels["result"]: s.value for s in families["hopnhat_backup_result"].samples} == {
        "ok": 1.0, "partial": 0.0, "failed": 0.0}

    # the snapshot is in email's repository on the repository host, seen from the controller
    # through the host's maintenance endpoint
    with open_repository(paths, "email") as repo:
        snapshots = Restic(repo, binary=paths.restic_binary, timeout=120).snapshots()
    made = [s for s in snapshots if s.short_id == status["snapshot_id"]]
    assert len(made) == 1
    assert set(made[0].tags) == {"system=email", "tier=2", "host=email-mail-01"}
    assert made[0].hostname == "email-mail-01"
    secret = configured.secrets["restic_password_email"]
    for text in (done.stdout, done.stderr, json.dumps(status), textfile):
        assert secret not in text


def test_a_second_run_while_the_first_holds_the_lock_is_refused(configured: Configured) -> None:
    """The first run is held inside its pre-backup command (which runs under the lock) by a
    FIFO; the second is started only once the first has said so through another FIFO."""
    paths = configured.paths
    work = "/tmp/hopnhat-lock-test"
    config = json.loads(sh(paths, "ioc-app-01", "cat /etc/hopnhat/backup-ioc.json").stdout)
    config["pre_commands"] = [f"sh -c 'echo holding > {work}/started && cat {work}/go'"]
    config["status_file"] = f"{work}/status.json"
    config["textfile"] = f"{work}/status.prom"
    ready = sh(paths, "ioc-app-01", f"rm -rf {work} && mkdir {work} && mkfifo {work}/started "
               f"{work}/go && cat > {work}/config.json", stdin=json.dumps(config))
    assert ready.returncode == 0, ready.stderr

    target = _target(paths, "ioc-app-01")
    holder = ssh.connect(target)
    try:
        transport = holder.get_transport()
        assert transport is not None
        first: paramiko.Channel = transport.open_session(timeout=30)
        first.settimeout(120)
        first.exec_command(f"python3 {JOB} --config {work}/config.json")
        started = sh(paths, "ioc-app-01", f"cat {work}/started", timeout=60)
        assert started.stdout.strip() == "holding"  # the first run holds the lock now

        second = sh(paths, "ioc-app-01", f"python3 {JOB} --config {work}/config.json")
        assert second.returncode == 1
        refused = json.loads(second.stdout)
        assert refused["result"] == "refused"
        assert refused["error"]["class"] == "AlreadyRunning"
        assert "backup-ioc.lock" in refused["error"]["message"]
        assert "PID" in refused["error"]["message"]
        assert "refused" in second.stderr

        sh(paths, "ioc-app-01", f"echo go > {work}/go")
        output = first.makefile("r").read().decode()
        assert first.recv_exit_status() == 0
        assert json.loads(output)["result"] == "ok"
        # the refused run left the status alone: it is the first run's own
        status = json.loads(sh(paths, "ioc-app-01", f"cat {work}/status.json").stdout)
        assert (status["result"], status["snapshot_id"]) == ("ok", json.loads(output)[
            "snapshot_id"])
    finally:
        holder.close()
        sh(paths, "ioc-app-01", f"rm -rf {work}")


def test_the_password_file_is_root_only_and_the_password_is_nowhere_else(
        configured: Configured) -> None:
    paths = configured.paths
    secret = configured.secrets["restic_password_email"]
    mode = sh(paths, "email-mail-01", "stat -c '%U %G %a' /etc/hopnhat/restic-email.password")
    assert mode.stdout.strip() == "root root 600"
    assert sh(paths, "email-mail-01", "cat /etc/hopnhat/restic-email.password").stdout == \
        secret + "\n"
    # what the roles wrote on the host, read back and searched here (never grep for it there:
    # that would put it in a command line)
    written = sh(paths, "email-mail-01",
                 "cat /etc/systemd/system/hopnhat-backup-email.service "
                 "/etc/systemd/system/hopnhat-backup-email.timer /etc/hopnhat/backup-email.json "
                 "/etc/hopnhat/restic-ca.pem")
    assert written.returncode == 0 and "OnCalendar=" in written.stdout
    assert secret not in written.stdout
    # the rest-server credentials: in the location file only, root's alone
    rest_secret = configured.secrets["rest_password_email"]
    mode = sh(paths, "email-mail-01", "stat -c '%U %G %a' /etc/hopnhat/restic-email.repository")
    assert mode.stdout.strip() == "root root 600"
    assert rest_secret in sh(paths, "email-mail-01",
                             "cat /etc/hopnhat/restic-email.repository").stdout
    assert rest_secret not in written.stdout
    # nor in what the controller kept of the run: ansible-runner's artifacts, the ledger
    run_dir = paths.state / "runs" / configured.first.run_id
    kept = [p for p in run_dir.rglob("*") if p.is_file()]
    assert len(kept) > 10
    for path in kept:
        assert secret.encode() not in path.read_bytes(), path
        assert rest_secret.encode() not in path.read_bytes(), path
    assert secret not in ledger_dump(paths.ledger)
    assert rest_secret not in ledger_dump(paths.ledger)


def test_a_host_whose_key_hopnhat_does_not_know_is_refused_and_never_trusted(
        configured: Configured) -> None:
    """ansible-runner turns host-key checking off unless told; configure must refuse a host
    whose key is not in hopnhat's known_hosts instead of trusting it on first use."""
    paths = configured.paths
    vm = next(vm for vm in paths.estate.vms if vm.name == "ioc-app-01")
    original = paths.known_hosts.read_text()
    kept = [line for line in original.splitlines(keepends=True)
            if not line.startswith((f"{vm.ip} ", f"[{vm.ip}]:22 "))]
    assert len(kept) < len(original.splitlines()), "the host's key was not pinned"
    paths.known_hosts.write_text("".join(kept))
    try:
        with Ledger(paths.ledger) as ledger:
            result = configure(paths, plan(paths.estate, ("ioc",)), ledger=ledger)
        assert paths.known_hosts.read_text() == "".join(kept), "a host key was trusted"
    finally:
        paths.known_hosts.write_text(original)
    assert result.exit_code != 0
    assert result.run.hosts["ioc-app-01"].unreachable == 1, result.run.hosts
    [failure] = [f for f in result.run.failures if f.host == "ioc-app-01"]
    assert "Host key verification failed" in failure.message, failure


def test_plain_ansible_playbook_runs_the_site_playbook(configured: Configured) -> None:
    """The playbooks need nothing of hopnhat's Python: ansible-playbook with the inventory
    script and the vault password file, as an operator (or AWX) runs them (check mode)."""
    paths = configured.paths
    env = {**os.environ, "HOPNHAT_ESTATE": str(paths.estate.root),
           "HOPNHAT_STATE": str(paths.state), "ANSIBLE_NOCOLOR": "1"}
    env.pop("ANSIBLE_CONFIG", None)
    done = process.run([str(BIN / "ansible-playbook"), "-i", "playbooks/inventory.py",
                        "playbooks/site.yml", "--vault-password-file",
                        str(paths.vault_password_file), "--check", "--limit", "system_email"],
                       env=env, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "email-mail-01" in done.stdout
    assert configured.secrets["restic_password_email"] not in done.stdout + done.stderr


def test_a_second_configure_waits_for_a_host_whose_sshd_is_not_up_yet_and_changes_nothing(
        configured: Configured, lab: Any) -> None:
    """A VM that apply has just powered on has its IP before its sshd listens: configure
    waits for it (up to configuration.connect_wait) instead of calling it unreachable. Here
    one host is powered off, and powered on again only once configure says it is waiting
    for it. And configure is idempotent: this second full configure of the module's systems
    (one run for both promises: each costs ~30 s) changes nothing on any host. (Last in the
    module: the host is cycled.)"""
    from pyVmomi import vim

    paths = configured.paths
    name = "email-mail-01"
    ip = str(next(vm.ip for vm in paths.estate.vms if vm.name == name))
    with vsphere.session(lab.endpoint()) as si:
        content = si.RetrieveContent()
        assert content.viewManager is not None
        view = content.viewManager.CreateContainerView(content.rootFolder,
                                                       [vim.VirtualMachine], True)
        vm = next(v for v in view.view if v.name == name)
        view.Destroy()
        wait_task(vm.PowerOffVM_Task())
        wait_for(f"{name}'s sshd to stop", lambda: not ssh.wait_for_port(ip, 22, 0.0), 30)
        waited: list[tuple[tuple[str, ...], float]] = []

        def power_on_when_waited_for(hosts: tuple[str, ...], timeout: float) -> None:
            waited.append((hosts, timeout))
            wait_task(vm.PowerOnVM_Task())  # the guest's sshd starts after this returns

        with Ledger(paths.ledger) as ledger:
            result = configure(paths, plan(paths.estate, SYSTEMS), ledger=ledger,
                               connect_wait=90.0, on_wait=power_on_when_waited_for)
    assert waited == [((name,), 90.0)]  # the other hosts answered at once
    assert (result.verdict.status, result.exit_code) == ("ok", 0), result.run.failures
    assert result.run.hosts[name].unreachable == 0 and result.run.changed == 0
    assert {h: s.changed for h, s in result.run.hosts.items()} == {
        h: 0 for h in (*CLIENTS, REPOSITORY_HOST)}
    assert all(s.ok > 0 and s.failed == 0 for s in result.run.hosts.values())
