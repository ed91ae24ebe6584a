"""Faults of the configured backup estate, against the lab: the real backup job that
``hopnhat configure`` installed on a real host, backing up over SFTP to a real repository host
in the secondary DC — and what its status file says when the link, the disk, a lock or the
password goes wrong, and that nothing already backed up is lost.

The systems are ``flt`` and ``full`` of the session's backup estate
(:mod:`tests.integration.backup_estate`, shared with test_backup_security): ``flt`` backs up
to a repository host of its own, which the tests stop and start again; ``full``'s repository
host has a storage of ``FULL_CAPACITY_MB``. Both keep every snapshot (no retention), so that
"earlier snapshots intact" is exact. Variants of the job's config (a short lock wait, a
retention) are copies of the configured file next to it, changed in one key and run by the
same job.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.actions.repositories import open_repository
from orchestrator.adapters import ssh
from orchestrator.adapters.restic import Repository, Restic
from orchestrator.adapters.restic_argv import make_environment, sftp_option
from orchestrator.hostjob.space import NO_SPACE_BELOW
from orchestrator.lab import guests, link
from orchestrator.lab.guests import guest_srv
from tests.helpers import wait_for
from tests.integration.backup_estate import (
    FLT,
    FLT_REPO,
    FULL,
    FULL_CAPACITY_MB,
    FULL_REPO,
    ConfiguredEstate,
    process_state,
)

pytestmark = pytest.mark.lab

JOB = "/usr/local/lib/hopnhat/backup_job.py"
MIB = 1024 * 1024
#: the lock wait of the job's short-wait config variants (the configured one is 10 minutes)
LOCK_WAIT = 6


@pytest.fixture(scope="module")
def faults(backup_estate: ConfiguredEstate) -> Iterator[ConfiguredEstate]:
    """The backup estate, flt and full each with a first snapshot: what must never be lost
    (the estate itself ends after test_backup_security, which shares it)."""
    for code in (FLT, FULL):
        first, status, log = run_job(backup_estate, code)
        assert (first, status["result"]) == (0, "ok"), log
    try:
        yield backup_estate
    finally:
        backup_estate.resume_all()


# --- the job on the host -----------------------------------------------------------------------


class RunningCommand:
    """A command started on a host over SSH that runs while the test acts."""

    def __init__(self, fl: ConfiguredEstate, host: str, command: str) -> None:
        self.client = ssh.connect(fl.target(host))
        transport = self.client.get_transport()
        assert transport is not None
        self.channel: paramiko.Channel = transport.open_session(timeout=30)
        self.channel.settimeout(600)
        self.channel.exec_command(command)

    def finish(self) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) once the command has ended."""
        try:
            out = self.channel.makefile("r").read().decode(errors="replace")
            err = self.channel.makefile_stderr("r").read().decode(errors="replace")
            return self.channel.recv_exit_status(), out, err
        finally:
            self.client.close()


def config_path(code: str, variant: str | None = None) -> str:
    return f"/etc/hopnhat/backup-{code}{f'.{variant}' if variant else ''}.json"


def job_command(code: str, variant: str | None = None) -> str:
    return f"python3 {JOB} --config {config_path(code, variant)}"


def config_variant(fl: ConfiguredEstate, code: str, variant: str, **changes: Any) -> None:
    """A copy of the job's configured config with ``changes``, beside it (same status file)."""
    config = json.loads(fl.sh(fl.vm(code), f"cat {config_path(code)}").stdout)
    config.update(changes)
    done = fl.sh(fl.vm(code), f"umask 027 && cat > {config_path(code, variant)}",
                 stdin=json.dumps(config))
    assert done.returncode == 0, done.stderr


def run_job(fl: ConfiguredEstate, code: str, variant: str | None = None
            ) -> tuple[int, dict[str, Any], str]:
    """The job run by hand on the system's host: (exit code, the status JSON it printed, its
    log on stderr — what the journal would hold)."""
    done = fl.sh(fl.vm(code), job_command(code, variant))
    assert done.stdout.strip(), done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def status_file(fl: ConfiguredEstate, code: str) -> dict[str, Any]:
    return dict(json.loads(fl.sh(fl.vm(code), f"cat /var/lib/hopnhat/backup-{code}.json").stdout))


def textfile_results(fl: ConfiguredEstate, code: str) -> dict[str, float]:
    text = fl.sh(fl.vm(code), f"cat /var/lib/hopnhat/textfile/hopnhat_backup_{code}.prom").stdout
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return {s.labels["result"]: s.value for s in families["hopnhat_backup_result"].samples}


def restic_processes(namespace: str, *words: str) -> list[int]:
    """PIDs of the restic processes in mount namespace ``namespace`` (a guest's) whose argv
    holds every one of ``words`` — not counting a child that restic has just forked to run
    its ssh: until it execs, that child carries restic's name and argv."""
    found: dict[int, int] = {}  # PID -> parent PID
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if Path(f"/proc/{entry}/comm").read_text().strip() != "restic":
                continue
            if os.readlink(f"/proc/{entry}/ns/mnt") != namespace:
                continue
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if all(word.encode() in argv for word in words):
            found[int(entry)] = int(stat[stat.rindex(")") + 2:].split()[1])
    return sorted(pid for pid, parent in found.items() if parent not in found)


def lock_files(fl: ConfiguredEstate, code: str) -> set[str]:
    """The repository's lock files, by name (restic writes each under a temporary name and
    renames it: a lock counts once it has its ID as name)."""
    try:
        names = os.listdir(fl.locks_dir(code))
    except OSError:
        return set()
    return {name for name in names if re.fullmatch(r"[0-9a-f]{64}", name)}


def restic_with_lock(fl: ConfiguredEstate, code: str, vm: str, before: set[str],
                     *words: str) -> int:
    """The PID of the one restic process on ``vm`` with ``words`` in its argv, once the
    repository holds a lock that is not one of ``before`` (its locks before that process
    was started)."""
    namespace = fl.namespace(vm)
    pids = wait_for(f"restic {' '.join(words)} on {vm}",
                    lambda: restic_processes(namespace, *words), 60, interval=0.005)
    assert len(pids) == 1, pids
    wait_for(f"its lock in {code}'s repository", lambda: lock_files(fl, code) - before, 60,
             interval=0.005)
    return int(pids[0])


def repository(fl: ConfiguredEstate, code: str) -> contextlib.AbstractContextManager[Repository]:
    """System ``code``'s repository from the control host (its own key, pinned host key)."""
    return open_repository(fl.paths, code)


def snapshot_ids(fl: ConfiguredEstate, code: str) -> list[str]:
    with repository(fl, code) as repo:
        return [s.short_id for s in Restic(repo, timeout=300).snapshots()]


def lock_pids(fl: ConfiguredEstate, code: str) -> list[tuple[int, str]]:
    with repository(fl, code) as repo:
        return sorted((lock.pid, lock.hostname) for lock in Restic(repo, timeout=300).locks())


def check_read_data(fl: ConfiguredEstate, code: str) -> tuple[str, ...]:
    """``restic check --read-data`` from the control host (raises RepositoryDamaged)."""
    with repository(fl, code) as repo:
        return Restic(repo, timeout=600).check(read_data_subset="all").lines


def add_incoming(fl: ConfiguredEstate, code: str, name: str, size_mb: int) -> Path:
    """A new incompressible file in the system's data: the next backup has ``size_mb`` MiB
    to read, chunk and send."""
    path = guest_srv(fl.session.paths.lab, fl.vm(code)) / code / "incoming" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(os.urandom(size_mb * MIB))
    return path


# --- the faults --------------------------------------------------------------------------------


def test_a_wrong_password_is_a_clear_failed_status(faults: ConfiguredEstate) -> None:
    vm, password_file = faults.vm(FLT), f"/etc/hopnhat/restic-{FLT}.password"
    before = snapshot_ids(faults, FLT)
    original = faults.sh(vm, f"cat {password_file}").stdout
    assert original.strip()
    try:
        faults.sh(vm, f"cat > {password_file}", stdin="not-the-password\n")
        code, status, log = run_job(faults, FLT)
        assert (code, status["result"], status["stage"]) == (1, "failed", "backup")
        assert status["error"]["class"] == "WrongPassword"
        assert "wrong password or no key found" in status["error"]["message"]
        assert f"password file {password_file}" in status["error"]["message"]
        assert status == status_file(faults, FLT)
        assert textfile_results(faults, FLT) == {"ok": 0.0, "partial": 0.0, "failed": 1.0}
        assert "WrongPassword" in log
        for text in (json.dumps(status), log):
            assert original.strip() not in text and "not-the-password" not in text
    finally:
        faults.sh(vm, f"cat > {password_file}", stdin=original)
    assert snapshot_ids(faults, FLT) == before
    code, status, _ = run_job(faults, FLT)
    assert (code, status["result"]) == (0, "ok")


def test_the_repository_host_going_down_mid_backup_fails_clearly_and_loses_nothing(
        faults: ConfiguredEstate) -> None:
    before = snapshot_ids(faults, FLT)
    last_success = status_file(faults, FLT)["last_success"]
    add_incoming(faults, FLT, "scans-1.bin", 32)
    locked = lock_files(faults, FLT)
    job = RunningCommand(faults, faults.vm(FLT), job_command(FLT))
    interrupted: int | None = None
    try:
        interrupted = restic_with_lock(faults, FLT, faults.vm(FLT), locked, "backup")
        # paused while the host goes away, so the backup is surely mid-way when it does
        faults.pause(interrupted)
        guests.stop_guest(faults.hosts_table, FLT_REPO)
    finally:
        if interrupted is not None:
            faults.resume(interrupted)
        code, out, log = job.finish()
    status = json.loads(out)
    assert (code, status["result"], status["stage"]) == (1, "failed", "backup"), status
    assert status["error"]["class"] == "ConnectionLost"
    assert "connection to the repository host failed or was lost" in status["error"]["message"]
    assert f"{FLT}@{FLT_REPO}" in status["error"]["message"]
    assert status["snapshot_id"] is None and status["last_success"] == last_success
    assert status == status_file(faults, FLT)
    assert textfile_results(faults, FLT)["failed"] == 1.0
    assert "ConnectionLost" in log

    faults.start_repository_host(FLT_REPO, (FLT,), None)
    # the interrupted backup could not remove its lock; nothing of it became a snapshot
    assert lock_pids(faults, FLT) == [(interrupted, faults.vm(FLT))]
    assert snapshot_ids(faults, FLT) == before
    code, status, log = run_job(faults, FLT)
    assert (code, status["result"]) == (0, "ok"), log
    assert snapshot_ids(faults, FLT) == [*before, status["snapshot_id"]]
    # the run after a failed one clears the lock it left (stale: this host, process gone)
    assert status["warnings"] == [
        f"removed a stale lock of PID {interrupted} on {faults.vm(FLT)} (created "
        f"{status['warnings'][0].split('(created ')[1]}"], status["warnings"]
    assert lock_pids(faults, FLT) == []
    assert any("no errors were found" in line for line in check_read_data(faults, FLT))


def test_a_link_cut_mid_backup_is_connection_lost_within_the_keepalive_bound(
        faults: ConfiguredEstate) -> None:
    """The lab's link to the secondary site drops packets mid-transfer (nothing is refused):
    the job must notice through ssh's keep-alives, not hang, and lose nothing."""
    vm = faults.vm(FLT)
    drop_in = f"/etc/ssh/ssh_config.d/hopnhat-restic-{FLT}.conf"
    configured = faults.sh(vm, f"cat {drop_in}").stdout
    assert "ServerAliveInterval 15" in configured and "ServerAliveCountMax 4" in configured
    interval, count = 2, 2  # the bound this test waits for (an estate's default: 15 s x 4)
    short = configured.replace("ServerAliveInterval 15", f"ServerAliveInterval {interval}")
    short = short.replace("ServerAliveCountMax 4", f"ServerAliveCountMax {count}")
    lab_dir = faults.session.paths.lab
    before = snapshot_ids(faults, FLT)
    last_success = status_file(faults, FLT)["last_success"]
    add_incoming(faults, FLT, "scans-cut.bin", 32)
    locked = lock_files(faults, FLT)
    interrupted: int | None = None
    try:
        assert faults.sh(vm, f"cat > {drop_in}", stdin=short).returncode == 0
        job = RunningCommand(faults, vm, job_command(FLT))
        interrupted = restic_with_lock(faults, FLT, vm, locked, "backup")
        # paused while the link goes down, so the backup is surely mid-way when it does
        faults.pause(interrupted)
        link.cut(lab_dir, faults.paths.estate)
        cut_at = time.monotonic()
        faults.resume(interrupted)
        code, out, log = job.finish()
        took = time.monotonic() - cut_at
    finally:
        if interrupted is not None:
            faults.resume(interrupted)
        link.restore(lab_dir)
        faults.sh(vm, f"cat > {drop_in}", stdin=configured)
    status = json.loads(out)
    assert (code, status["result"], status["stage"]) == (1, "failed", "backup"), status
    assert status["error"]["class"] == "ConnectionLost", status
    assert "connection to the repository host failed or was lost" in status["error"]["message"]
    # ssh gives a silent link up after interval x count seconds; a few more for restic to end
    assert took < interval * count + 10, f"the job ended {took:.1f} s after the cut"
    assert status["snapshot_id"] is None and status["last_success"] == last_success
    assert "ConnectionLost" in log

    # the link is back: nothing of the cut backup became a snapshot, the next run succeeds
    assert snapshot_ids(faults, FLT) == before
    code, status, log = run_job(faults, FLT)
    assert (code, status["result"]) == (0, "ok"), log
    assert snapshot_ids(faults, FLT) == [*before, status["snapshot_id"]]
    assert any(f"removed a stale lock of PID {interrupted}" in w for w in status["warnings"]), \
        status["warnings"]
    assert lock_pids(faults, FLT) == []
    assert any("no errors were found" in line for line in check_read_data(faults, FLT))


def test_a_full_repository_disk_is_no_space_and_loses_nothing(faults: ConfiguredEstate) -> None:
    before = snapshot_ids(faults, FULL)
    add_incoming(faults, FULL, "scans.bin", FULL_CAPACITY_MB + 8)
    started = time.monotonic()
    code, status, log = run_job(faults, FULL)
    took = time.monotonic() - started
    assert (code, status["result"], status["stage"]) == (1, "failed", "backup"), status
    assert status["error"]["class"] == "NoSpace"
    message = status["error"]["message"]
    # decided from the repository host's own free space, not only from restic's words
    # (over SFTP a full disk is a bare SSH_FX_FAILURE)
    found = re.search(rf"no space left on the repository's storage: the storage of "
                      rf"{FULL_REPO} has (\d+\.\d) MiB free of {FULL_CAPACITY_MB}\.0 MiB", message)
    assert found, message
    space = status["repository_space"]
    assert space["repository"] == FULL_REPO
    assert space["total_bytes"] == FULL_CAPACITY_MB * MIB
    assert space["free_bytes"] < NO_SPACE_BELOW  # less than two more packs
    # stopped at restic's first retries of the failed writes, not after its minute of them
    assert took < 30, took
    assert float(found[1]) == round(space["free_bytes"] / MIB, 1)
    assert "NoSpace" in log and status == status_file(faults, FULL)
    # nothing lost: the earlier snapshots are all there and every byte of them reads back
    assert snapshot_ids(faults, FULL) == before
    assert any("no errors were found" in line for line in check_read_data(faults, FULL))


def test_a_live_lock_is_waited_for_then_named_with_its_holder_and_age(
        faults: ConfiguredEstate) -> None:
    vm = faults.vm(FLT)
    config_variant(faults, FLT, "short-wait", lock_wait_seconds=LOCK_WAIT)
    before = snapshot_ids(faults, FLT)
    # an operator's check of the repository, paused while it holds its exclusive lock
    locked = lock_files(faults, FLT)
    check = operators_check(faults)
    holder: int | None = None
    try:
        holder = restic_with_lock(faults, FLT, vm, locked, "check")
        faults.pause(holder)
        assert process_state(holder) == "T"
        assert lock_pids(faults, FLT) == [(holder, vm)]
        started = time.monotonic()
        code, status, log = run_job(faults, FLT, "short-wait")
        took = time.monotonic() - started
        assert (code, status["result"], status["stage"]) == (1, "failed", "backup"), status
        assert status["error"]["class"] == "RepositoryLocked"
        message = status["error"]["message"]
        assert f"is locked exclusively by PID {holder} on {vm} by root" in message
        age = re.search(r", created \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \((?:(\d+)m)?(\d+)s ago\)",
                        message)
        assert age, message
        assert 0 < int(age[1] or 0) * 60 + int(age[2]) < 600
        waited = re.search(r"; still locked after waiting (\d+) s$", message)
        assert waited and int(waited[1]) >= LOCK_WAIT, message
        assert LOCK_WAIT <= took < LOCK_WAIT + 60 and status["duration_seconds"] >= LOCK_WAIT
        # the live holder's lock is left alone
        assert lock_pids(faults, FLT) == [(holder, vm)]
        assert "RepositoryLocked" in log
    finally:
        if holder is not None:
            faults.resume(holder)
        done, _, errors = check.finish()
    assert done == 0, errors  # the check, let go, finishes and takes its lock away
    assert lock_pids(faults, FLT) == []
    code, status, _ = run_job(faults, FLT, "short-wait")
    assert (code, status["result"]) == (0, "ok")
    assert snapshot_ids(faults, FLT) == [*before, status["snapshot_id"]]


def operators_check(fl: ConfiguredEstate) -> RunningCommand:
    """``restic check --read-data`` of flt's repository run by hand on flt's host, with the
    job's password file and ssh config (it takes the repository's exclusive lock)."""
    return RunningCommand(
        fl, fl.vm(FLT), f"RESTIC_PASSWORD_FILE=/etc/hopnhat/restic-{FLT}.password restic -r "
        f"sftp:restic-{FLT}@{FLT_REPO}:/repo --no-cache check --read-data")


def _held_backup_from_the_control_host(repo: Repository) -> subprocess.Popen[bytes]:
    """``restic backup --stdin`` from the control host, holding its lock while it waits for
    data on a pipe that never gets any."""
    assert repo.sftp_command is not None
    env = make_environment(repo, path=os.environ.get("PATH", "/usr/bin:/bin"),
                           home=os.environ.get("HOME", "/root"), tmpdir="/tmp")
    return subprocess.Popen(  # argv list, no shell; the password only as a file's path
        ["restic", "-r", repo.url, "-o", sftp_option(repo.sftp_command), "backup", "--stdin",
         "--stdin-filename", "held.bin"],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_dead_processs_lock_is_removed_only_when_restic_would_call_it_stale(
        faults: ConfiguredEstate) -> None:
    vm, here = faults.vm(FLT), socket.gethostname()
    assert status_file(faults, FLT)["result"] == "ok"  # no failed run of the job to clear
    # 1. a restic backup on the host (not the job's), killed mid-way: its lock stays, its
    #    process is gone. It reads stdin, which never gets data: it is surely mid-way.
    locked = lock_files(faults, FLT)
    held = RunningCommand(faults, vm, f"RESTIC_PASSWORD_FILE=/etc/hopnhat/restic-{FLT}.password"
                          f" restic -r sftp:restic-{FLT}@{FLT_REPO}:/repo --no-cache backup "
                          "--stdin --stdin-filename held.bin")
    killed = restic_with_lock(faults, FLT, vm, locked, "backup")
    os.kill(killed, signal.SIGKILL)
    assert held.finish()[0] != 0
    # 2. the same from another host (the control host)
    with repository(faults, FLT) as repo:
        locked = lock_files(faults, FLT)
        other = _held_backup_from_the_control_host(repo)
        try:
            wait_for("the control host's lock", lambda: lock_files(faults, FLT) - locked, 60,
                     interval=0.01)
        finally:
            other.kill()
            other.wait()
    assert lock_pids(faults, FLT) == sorted([(killed, vm), (other.pid, here)])

    # the job, with a retention: its backup shares the repository with both locks, but its
    # forget --prune needs the repository to itself. This host's dead lock is stale by
    # restic's rule (same host, process gone): removed. The other host's is restic's to call
    # stale only after 30 minutes: forget waits for it, then names it.
    config_variant(faults, FLT, "retention-short-wait", retention={"daily": 7},
                   lock_wait_seconds=LOCK_WAIT)
    code, status, log = run_job(faults, FLT, "retention-short-wait")
    assert (code, status["result"], status["stage"]) == (3, "partial", "forget"), status
    assert status["snapshot_id"] and status["error"]["class"] == "RepositoryLocked"
    message = status["error"]["message"]
    assert f"locked by PID {other.pid} on {here} by root" in message
    assert re.search(r"; still locked after waiting \d+ s$", message), message
    assert any(f"removed a stale lock of PID {killed} on {vm}" in warning
               for warning in status["warnings"]), status["warnings"]
    assert lock_pids(faults, FLT) == [(other.pid, here)]
    assert "RepositoryLocked" in log

    # on the control host the other lock is stale by the same rule, and goes there
    with repository(faults, FLT) as repo:
        report = Restic(repo, timeout=300).remove_stale_locks()
    assert [lock.pid for lock in report.removed] == [other.pid]
    code, status, _ = run_job(faults, FLT, "retention-short-wait")
    assert (code, status["result"], status["warnings"]) == (0, "ok", [])
    assert lock_pids(faults, FLT) == []
    assert snapshot_ids(faults, FLT)[-1] == status["snapshot_id"]
    assert any("no errors were found" in line for line in check_read_data(faults, FLT))
