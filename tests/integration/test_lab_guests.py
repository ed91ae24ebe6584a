"""The lab's guests and repository host, with real sshd, real OpenSSH/paramiko clients and
real restic: each guest is its own machine, reached only with pinned host keys, and each
system's repository account sees its own repository and nothing else."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

from orchestrator.lab import data
from orchestrator.lab.guests import (
    destroy_guest,
    guest_root,
    guest_srv,
    guest_view,
    host_key,
    set_known_host,
    start_guest,
    stop_guest,
)
from orchestrator.lab.processes import ProcessTable, is_alive, start_ticks
from orchestrator.lab.repository import (
    add_system_account,
    repository_dir,
    repository_url,
    start_repository_host,
)
from orchestrator.process import Completed, run

pytestmark = pytest.mark.lab

GUEST_A, GUEST_B, GUEST_C, GUEST_D = ("127.10.250.11", "127.10.250.12", "127.10.250.13",
                                      "127.10.250.14")
GUEST_LEGACY = "127.10.250.15"
REPO_IP, FULL_REPO_IP = "127.20.250.10", "127.20.250.11"
STORAGE = "/srv/restic"
#: the programs a guest and a repository host run on (Debian packages the Makefile installs)
PROGRAMS = ("/usr/sbin/sshd", "restic", "unshare", "nsenter", "ssh")


@dataclass
class Lab:
    dir: Path
    table: ProcessTable
    known_hosts: Path
    keys: dict[str, Path]  # "hopnhat", "a", "b", "c" → private key file

    def pub(self, who: str) -> str:
        return self.keys[who].with_suffix(".pub").read_text().strip()


def _keygen(path: Path) -> Path:
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True)
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    # what the lab needs missing fails every test here (as the session lab does): never a skip
    if os.geteuid() != 0:
        pytest.fail("the lab's guests need root (namespaces, sshd); run `make test` as root")
    missing = [p for p in PROGRAMS if shutil.which(p) is None and not Path(p).exists()]
    if missing:
        pytest.fail(f"the lab's guests need {', '.join(missing)}: run `make deps`")
    root = tmp_path_factory.mktemp("lab")
    keys_dir = root / "keys"
    keys_dir.mkdir()
    keys = {who: _keygen(keys_dir / f"id_{who}") for who in ("hopnhat", "a", "b", "c")}
    the_lab = Lab(root / "state", ProcessTable(root / "state"), root / "state" / "known_hosts",
                  keys)
    table = the_lab.table
    try:
        for name, ip in (("a", GUEST_A), ("b", GUEST_B)):
            start_guest(the_lab.dir, table, name, f"lab-{name}", ip, [the_lab.pub("hopnhat")],
                        the_lab.known_hosts)
        start_repository_host(the_lab.dir, table, "repo", "lab-repo", REPO_IP, STORAGE,
                              [the_lab.pub("hopnhat")], the_lab.known_hosts,
                              {"a": the_lab.pub("a"), "b": the_lab.pub("b")})
        yield the_lab
    finally:
        records = table.all()
        for rec in records:
            stop_guest(table, rec.name.removeprefix("guest-"))
        assert not table.all()
        assert not [r for r in records if is_alive(r)], "a lab process outlived the tests"


def _client(ip: str, known_hosts: Path, key: Path, user: str = "root",
            port: int = 22) -> paramiko.SSHClient:
    """A client that trusts only the lab's known_hosts and rejects any unknown host key."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(ip, port=port, username=user, key_filename=str(key), look_for_keys=False,
                   allow_agent=False, timeout=10, banner_timeout=10, auth_timeout=10)
    return client


def _sh(lab: Lab, ip: str, command: str, known_hosts: Path | None = None) -> tuple[int, str]:
    client = _client(ip, known_hosts or lab.known_hosts, lab.keys["hopnhat"])
    try:
        _in, out, _err = client.exec_command(command, timeout=30)
        text = out.read().decode()
        return out.channel.recv_exit_status(), text
    finally:
        client.close()


def _ssh_argv(lab: Lab, key: str, user: str, ip: str) -> list[str]:
    return ["ssh", "-F", "/dev/null", "-i", str(lab.keys[key]), "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={lab.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
            f"{user}@{ip}"]


def _restic(lab: Lab, tmp: Path, key: str, code: str, *args: str,
            ip: str = REPO_IP) -> Completed:
    password = tmp / "restic-password"
    if not password.exists():
        password.write_text("lab-only-password\n")
        password.chmod(0o600)
    sftp_command = " ".join([*_ssh_argv(lab, key, f"restic-{code}", ip), "-s", "sftp"])
    env = {"RESTIC_PASSWORD_FILE": str(password), "RESTIC_CACHE_DIR": str(tmp / "cache")}
    return run(["restic", "-r", repository_url(ip, code), "-o", f"sftp.command={sftp_command}",
                *args], env=env, timeout=300)


def _namespace_members(namespace: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/mnt") == namespace:
                found.append(int(entry))
        except OSError:
            continue
    return found


# --- guests ---------------------------------------------------------------------------------


def test_each_guest_has_its_own_hostname(lab: Lab) -> None:
    assert _sh(lab, GUEST_A, "hostname") == (0, "lab-a\n")
    assert _sh(lab, GUEST_B, "hostname") == (0, "lab-b\n")
    assert _sh(lab, GUEST_A, "cat /etc/hostname")[1] == "lab-a\n"


def test_what_one_guest_writes_stays_in_that_guest(lab: Lab) -> None:
    rc, _ = _sh(lab, GUEST_A, "echo only-a > /srv/lab-marker"
                " && mkdir -p /etc/systemd/system"
                " && echo '[Timer]' > /etc/systemd/system/hopnhat-lab-test.timer"
                " && echo 'echo hi' > /usr/local/bin/hopnhat-lab-test")
    assert rc == 0
    assert _sh(lab, GUEST_A, "cat /srv/lab-marker") == (0, "only-a\n")
    assert _sh(lab, GUEST_B, "test -e /srv/lab-marker")[0] == 1
    assert _sh(lab, GUEST_B, "test -e /etc/systemd/system/hopnhat-lab-test.timer")[0] == 1
    assert _sh(lab, GUEST_B, "test -e /usr/local/bin/hopnhat-lab-test")[0] == 1
    # the host sees guest a's /srv in the guest's folder, and nothing in its own /etc or /srv
    assert (guest_srv(lab.dir, "a") / "lab-marker").read_text() == "only-a\n"
    assert not (guest_srv(lab.dir, "b") / "lab-marker").exists()
    assert not Path("/srv/lab-marker").exists()
    assert not Path("/etc/systemd/system/hopnhat-lab-test.timer").exists()
    assert not Path("/usr/local/bin/hopnhat-lab-test").exists()
    assert guest_view(lab.table, "a", "/etc/systemd/system/hopnhat-lab-test.timer").exists()


def test_known_hosts_holds_one_pinned_line_per_guest(lab: Lab) -> None:
    lines = lab.known_hosts.read_text().splitlines()
    hosts = [line.split()[0] for line in lines]
    assert sorted(hosts) == sorted([GUEST_A, GUEST_B, REPO_IP])
    assert all(line.split()[1] == "ssh-ed25519" for line in lines)
    assert oct(lab.known_hosts.stat().st_mode & 0o777) == "0o600"


def test_a_wrong_or_missing_known_hosts_line_is_refused(lab: Lab, tmp_path: Path) -> None:
    lines = dict(line.split(" ", 1) for line in lab.known_hosts.read_text().splitlines())
    wrong = tmp_path / "known_hosts_wrong"
    wrong.write_text(f"{GUEST_A} {lines[GUEST_B]}\n")  # b's key under a's address
    with pytest.raises(paramiko.BadHostKeyException):
        _client(GUEST_A, wrong, lab.keys["hopnhat"])
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        _client(GUEST_A, empty, lab.keys["hopnhat"])
    # OpenSSH with StrictHostKeyChecking=yes refuses it too
    argv = _ssh_argv(lab, "hopnhat", "root", GUEST_A)
    argv[argv.index(f"UserKnownHostsFile={lab.known_hosts}")] = f"UserKnownHostsFile={wrong}"
    refused = run([*argv, "true"], timeout=30)
    assert refused.returncode == 255
    assert "HOST IDENTIFICATION HAS CHANGED" in refused.stderr
    assert run([*_ssh_argv(lab, "hopnhat", "root", GUEST_A), "true"], timeout=30).ok


def test_a_guest_off_port_22_is_pinned_as_ip_and_port(lab: Lab) -> None:
    start_guest(lab.dir, lab.table, "d", "lab-d", GUEST_D, [lab.pub("hopnhat")],
                lab.known_hosts, port=2222)
    try:
        lines = lab.known_hosts.read_text().splitlines()
        assert any(line.startswith(f"[{GUEST_D}]:2222 ssh-ed25519 ") for line in lines)
        client = _client(GUEST_D, lab.known_hosts, lab.keys["hopnhat"], port=2222)
        try:
            _in, out, _err = client.exec_command("hostname", timeout=30)
            assert out.read() == b"lab-d\n"
        finally:
            client.close()
    finally:
        destroy_guest(lab.dir, lab.table, "d")
    assert f"[{GUEST_D}]:2222" not in lab.known_hosts.read_text()


def test_starting_a_live_guest_again_returns_its_record(lab: Lab) -> None:
    before = lab.table.running("guest-a")
    again = start_guest(lab.dir, lab.table, "a", "lab-a", GUEST_A, [lab.pub("hopnhat")],
                        lab.known_hosts)
    assert before is not None and again == before


def test_stop_leaves_no_process_and_a_restart_keeps_disk_and_host_key(lab: Lab) -> None:
    rec = start_guest(lab.dir, lab.table, "c", "lab-c", GUEST_C, [lab.pub("hopnhat")],
                      lab.known_hosts)
    key_line = next(line for line in lab.known_hosts.read_text().splitlines()
                    if line.startswith(f"{GUEST_C} "))
    assert _sh(lab, GUEST_C, "echo kept > /etc/hopnhat-lab-kept && touch /srv/kept")[0] == 0
    # an open session with a running command: a powered-off VM keeps nothing running
    session = _client(GUEST_C, lab.known_hosts, lab.keys["hopnhat"])
    session.exec_command("sleep 600")
    namespace = rec.details["mntns"]
    members = {pid: start_ticks(pid) for pid in _namespace_members(namespace)}
    assert rec.pid in members and len(members) > 2  # sshd, its session, sleep…
    try:
        assert stop_guest(lab.table, "c") is True
    finally:
        session.close()
    assert lab.table.get("guest-c") is None
    assert not is_alive(rec)
    survivors = [pid for pid, ticks in members.items() if start_ticks(pid) == ticks]
    assert survivors == []
    assert _namespace_members(namespace) == []
    assert stop_guest(lab.table, "c") is False

    again = start_guest(lab.dir, lab.table, "c", "lab-c", GUEST_C, [lab.pub("hopnhat")],
                        lab.known_hosts)
    assert again.pid != rec.pid
    assert key_line in lab.known_hosts.read_text().splitlines()  # same host key
    assert _sh(lab, GUEST_C, "cat /etc/hopnhat-lab-kept; ls /srv") == (0, "kept\nkept\n")

    destroy_guest(lab.dir, lab.table, "c")
    assert not guest_root(lab.dir, "c").exists()
    assert not any(line.startswith(f"{GUEST_C} ")
                   for line in lab.known_hosts.read_text().splitlines())
    assert not is_alive(again)


# --- the repository host ------------------------------------------------------------------


def test_restic_backs_up_and_restores_through_the_chroot(lab: Lab, tmp_path: Path) -> None:
    source = guest_srv(lab.dir, "a") / "app-data"
    summary = data.generate(source, "itest", 6, 80)
    init = _restic(lab, tmp_path, "a", "a", "init")
    assert init.ok, init.stderr
    # the repository lands in the account's chroot: <storage>/a/repo on the host
    assert (repository_dir(lab.dir, "repo", STORAGE, "a") / "config").is_file()
    backup = _restic(lab, tmp_path, "a", "a", "backup", "--json", str(source))
    assert backup.ok, backup.stderr
    assert '"message_type":"summary"' in backup.stdout
    target = tmp_path / "restored"
    restore = _restic(lab, tmp_path, "a", "a", "restore", "latest", "--target", str(target))
    assert restore.ok, restore.stderr
    restored = target / source.relative_to("/")
    assert data.manifest_digest(restored) == summary.manifest_sha256


def test_one_systems_key_cannot_reach_another_systems_repository(lab: Lab,
                                                                 tmp_path: Path) -> None:
    # system b leaves a file in its own repository
    b = _client(REPO_IP, lab.known_hosts, lab.keys["b"], user="restic-b")
    try:
        sftp_b = b.open_sftp()
        with sftp_b.open("/repo/marker-b", "w") as handle:
            handle.write("b's\n")
        assert "marker-b" in sftp_b.listdir("/repo")
    finally:
        b.close()
    a = _client(REPO_IP, lab.known_hosts, lab.keys["a"], user="restic-a")
    try:
        sftp_a = a.open_sftp()
        assert sftp_a.listdir("/") == ["repo"]  # the chroot: nothing else is visible
        assert sftp_a.listdir("/..") == ["repo"]
        assert "marker-b" not in sftp_a.listdir("/repo")
        for path in ("/b/repo/marker-b", "/../b/repo/marker-b", "/srv/restic/b/repo/marker-b",
                     "/repo/marker-b"):
            with pytest.raises(FileNotFoundError):
                sftp_a.stat(path)
        with pytest.raises(OSError):
            sftp_a.open("/../b/repo/written-by-a", "w")
        with pytest.raises(PermissionError):
            sftp_a.open("/written-by-a", "w")  # the chroot itself is root's
    finally:
        a.close()
    assert not (repository_dir(lab.dir, "repo", STORAGE, "b") / "written-by-a").exists()
    # a's key is no key for b's account, for root, or for a shell
    for user in ("restic-b", "root"):
        with pytest.raises(paramiko.AuthenticationException):
            _client(REPO_IP, lab.known_hosts, lab.keys["a"], user=user)
    shell = run([*_ssh_argv(lab, "a", "restic-a", REPO_IP), "cat /etc/passwd"], timeout=30)
    assert shell.returncode != 0
    assert "root:" not in shell.stdout
    listed = _restic(lab, tmp_path, "a", "b", "snapshots")
    assert not listed.ok
    # restic relays ssh's "Permission denied" only sometimes (a race); its own line is stable
    assert "unable to start the sftp session" in listed.stderr


def test_repository_accounts_live_in_the_hosts_own_etc(lab: Lab) -> None:
    add_system_account(lab.dir, lab.table, "repo", "c", lab.pub("c"))
    add_system_account(lab.dir, lab.table, "repo", "c", lab.pub("c"))  # idempotent
    passwd = guest_view(lab.table, "repo", "/etc/passwd").read_text()
    assert [line.split(":")[0] for line in passwd.splitlines()].count("restic-c") == 1
    assert "restic-" not in Path("/etc/passwd").read_text()
    c = _client(REPO_IP, lab.known_hosts, lab.keys["c"], user="restic-c")
    try:
        assert c.open_sftp().listdir("/") == ["repo"]
    finally:
        c.close()
    # root (hopnhat's key) manages the host like any guest
    assert _sh(lab, REPO_IP, "hostname; stat -c '%U %a' /srv/restic/c /srv/restic/c/repo") == (
        0, "lab-repo\nroot 755\nrestic-c 700\n")


def test_a_repository_host_with_a_capacity_runs_out_of_disk(lab: Lab) -> None:
    start_repository_host(lab.dir, lab.table, "full", "lab-full", FULL_REPO_IP, STORAGE,
                          [lab.pub("hopnhat")], lab.known_hosts, {"a": lab.pub("a")},
                          capacity_mb=4)
    try:
        assert _sh(lab, FULL_REPO_IP, "df -k --output=fstype,size /srv/restic | tail -1")[1] \
            .split() == ["tmpfs", "4096"]
        client = _client(FULL_REPO_IP, lab.known_hosts, lab.keys["a"], user="restic-a")
        try:
            sftp = client.open_sftp()
            block = b"\0" * 65536
            # SFTP (v3) has no "disk full" status: the client sees a bare failure (restic
            # prints SSH_FX_FAILURE, after ~50 s of retries); the free space tells why
            with pytest.raises(OSError, match="Failure"), sftp.open("/repo/filler", "w") as f:
                for _ in range(6 * 16):  # 6 MiB into 4 MiB
                    f.write(block)
            assert os.statvfs(guest_view(lab.table, "full", STORAGE)).f_bavail < 16
        finally:
            client.close()
    finally:
        stop_guest(lab.table, "full")


def test_a_legacy_guest_pins_no_key_and_keeps_the_keys_added_to_its_disk(
        lab: Lab, tmp_path: Path) -> None:
    """A legacy VM's guest (no known_hosts, legacy): nothing is written to known_hosts;
    only the key it was started with opens it (here "a", the province team's); a key
    installed since (as `hosts trust` does) and a hostname set on its disk survive a
    restart; and its destroy leaves a known_hosts line hopnhat wrote for it."""
    before = lab.known_hosts.read_text()
    start_guest(lab.dir, lab.table, "legacy", "lab-legacy", GUEST_LEGACY, [lab.pub("a")], None,
                legacy=True)
    try:
        assert lab.known_hosts.read_text() == before
        pinned = tmp_path / "known_hosts"
        pinned.write_text(f"{GUEST_LEGACY} {host_key(lab.dir, 'legacy')}\n")
        with pytest.raises(paramiko.AuthenticationException):
            _client(GUEST_LEGACY, pinned, lab.keys["hopnhat"]).close()
        client = _client(GUEST_LEGACY, pinned, lab.keys["a"])
        try:
            _in, out, _err = client.exec_command(
                f"echo '{lab.pub('hopnhat')}' >> /root/.ssh/authorized_keys"
                " && echo lab-renamed > /etc/hostname", timeout=30)
            assert out.channel.recv_exit_status() == 0
        finally:
            client.close()
        stop_guest(lab.table, "legacy")  # powered off and on again
        start_guest(lab.dir, lab.table, "legacy", "lab-legacy", GUEST_LEGACY, [lab.pub("a")],
                    None, legacy=True)
        for who in ("hopnhat", "a"):
            _client(GUEST_LEGACY, pinned, lab.keys[who]).close()
        assert _sh(lab, GUEST_LEGACY, "hostname", pinned) == (0, "lab-renamed\n")
        set_known_host(lab.known_hosts, GUEST_LEGACY, host_key(lab.dir, "legacy"))
    finally:
        destroy_guest(lab.dir, lab.table, "legacy")
    try:
        assert f"{GUEST_LEGACY} ssh-ed25519 " in lab.known_hosts.read_text()
    finally:
        set_known_host(lab.known_hosts, GUEST_LEGACY, None)
