"""Security of the configured backup estate, against the lab: what one system's hosts can do
to another system's repository on the shared repository host, and where the repository
password is never to be found — with the keys, ssh configs and password files that
``hopnhat configure`` put on real hosts, and the backup job it installed running.

The systems are ``seca`` and ``secb`` of the session's backup estate
(:mod:`tests.integration.backup_estate`, shared with test_backup_faults): both back up to the
SFTP repository host repo-sec-01 of that estate; it gave them, as ``lab up`` would, their vault
passwords, keys and SFTP accounts, as it does for any system. The other helpers are the
fault module's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.adapters.vault import read_vault
from orchestrator.lab.guests import guest_view
from tests.helpers import ledger_dump
from tests.integration.backup_estate import A, B, ConfiguredEstate, process_state
from tests.integration.test_backup_faults import (
    RunningCommand,
    config_variant,
    job_command,
    lock_files,
    restic_with_lock,
    run_job,
    snapshot_ids,
)

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def estate(backup_estate: ConfiguredEstate) -> Iterator[ConfiguredEstate]:
    """The backup estate, secb with a snapshot: something worth protecting (the estate
    itself ends after this module's last test)."""
    code, status, log = run_job(backup_estate, B)
    assert (code, status["result"]) == (0, "ok"), log
    try:
        yield backup_estate
    finally:
        backup_estate.resume_all()


def passwords(estate: ConfiguredEstate) -> dict[str, str]:
    secrets = read_vault(estate.paths.vault_file, estate.paths.vault_password_file)
    return {code: secrets[f"restic_password_{code}"] for code in (A, B)}


def ssh_settings(estate: ConfiguredEstate, code: str) -> dict[str, str]:
    """The settings of ``code``'s ssh config block on its host (lower-cased keys)."""
    text = estate.sh(estate.vm(code), f"cat /etc/ssh/ssh_config.d/hopnhat-restic-{code}.conf")
    assert text.returncode == 0, text.stderr
    found: dict[str, str] = {}
    for line in text.stdout.splitlines():
        words = line.split()
        if len(words) == 2 and not words[0].startswith("#"):
            found.setdefault(words[0].lower(), words[1])
    return found


def repository_files(estate: ConfiguredEstate, code: str) -> dict[str, str]:
    """SHA-256 of every file of ``code``'s repository, seen on the repository host."""
    host = estate.paths.estate.repository_host(
        estate.paths.estate.systems[code].backup.repository_host)  # type: ignore[union-attr]
    root = guest_view(estate.hosts_table, host.name,
                      f"{host.storage_path}/{code}/repo")
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def test_one_systems_key_cannot_list_read_or_delete_another_systems_repository(
        estate: ConfiguredEstate) -> None:
    host = estate.vm(A)
    repository_host = estate.paths.estate.systems[A].backup.repository_host  # type: ignore[union-attr]
    config = ssh_settings(estate, A)
    b_before = repository_files(estate, B)
    b_snapshots = snapshot_ids(estate, B)
    assert "config" in b_before and b_snapshots

    # A's own account, as A's host reaches it (its ssh config block): its repository only
    own = estate.sh(host, f"sftp -q -b - restic-{A}@{repository_host}",
                    stdin="ls -1 /\nls -1 /repo\n")
    assert own.returncode == 0, own.stderr
    listed = [line.strip() for line in own.stdout.splitlines() if not line.startswith("sftp>")]
    assert listed[0] == "/repo" and {"/repo/config", "/repo/data", "/repo/keys"} <= set(listed)
    assert not any(B in line for line in listed)

    # from inside A's account, every way to B's files: none is there to list, read or delete
    reach = [f"/../{B}/repo/config", f"../{B}/repo/config", f"/srv/restic/{B}/repo/config"]
    batch = "".join(f"-ls -l {shlex.quote(path)}\n-get {shlex.quote(path)} /tmp/stolen\n"
                    f"-rm {shlex.quote(path)}\n-rename {shlex.quote(path)} /repo/taken\n"
                    for path in reach) + f"-rmdir /../{B}/repo/data\n"
    tried = estate.sh(host, f"sftp -q -b - restic-{A}@{repository_host}", stdin=batch)
    refusals = [line for line in tried.stderr.splitlines() if line.strip()]
    assert len(refusals) >= 4 * len(reach) + 1, tried.stderr
    assert all("not found" in line.lower() or "no such file" in line.lower()
               for line in refusals), tried.stderr
    assert estate.sh(host, "test -e /tmp/stolen").returncode == 1

    # restic with A's password through A's account, pointed at B's repository's path
    restic_env = f"RESTIC_PASSWORD_FILE=/etc/hopnhat/restic-{A}.password"
    escaped = estate.sh(host, f"{restic_env} restic --no-cache -r "
                        f"sftp:restic-{A}@{repository_host}:/../{B}/repo snapshots")
    assert escaped.returncode != 0 and "unable to open config file" in escaped.stderr

    # A's key (and A's known host key) offered to B's account: refused before any SFTP
    as_b = (f"-F /dev/null -i {config['identityfile']} -o IdentitiesOnly=yes "
            f"-o UserKnownHostsFile={config['userknownhostsfile']} "
            f"-o StrictHostKeyChecking=yes -o BatchMode=yes")
    refused = estate.sh(host, f"sftp -b - {as_b} -P {config['port']} "
                        f"restic-{B}@{config['hostname']}",
                        stdin="ls -l /repo\nget /repo/config /tmp/stolen\nrm /repo/config\n")
    assert refused.returncode != 0
    assert "Permission denied (publickey)" in refused.stderr, refused.stderr
    with_restic = estate.sh(host, f"{restic_env} restic --no-cache -r "
                            f"sftp:restic-{B}@{config['hostname']}:/repo -o 'sftp.command=ssh "
                            f"{as_b} -p {config['port']} restic-{B}@{config['hostname']} "
                            f"-s sftp' snapshots")
    assert with_restic.returncode != 0
    # refused by ssh before any SFTP: restic passes on ssh's "Permission denied", unless it
    # saw the end of the session and stopped ssh before ssh said it (seen under load)
    assert "Permission denied (publickey)" in with_restic.stderr or \
        "unable to start the sftp session, error: EOF" in with_restic.stderr, \
        with_restic.stderr
    assert "config" not in with_restic.stdout
    # and A's host has no way configured to B's account at all
    unconfigured = estate.sh(host, f"ssh -o BatchMode=yes restic-{B}@{repository_host} true")
    assert unconfigured.returncode == 255

    # B's repository: every file as it was, every snapshot there
    assert repository_files(estate, B) == b_before
    assert snapshot_ids(estate, B) == b_snapshots


def _cmdlines_and_environments(namespace: str) -> dict[int, tuple[bytes, bytes]]:
    """(cmdline, environ) of every process in mount namespace ``namespace`` (a guest's)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{entry}/ns/mnt") == namespace:
                found[int(entry)] = (Path(f"/proc/{entry}/cmdline").read_bytes(),
                                     Path(f"/proc/{entry}/environ").read_bytes())
    return found


def test_the_password_is_not_in_the_argv_or_environment_of_a_running_backup(
        estate: ConfiguredEstate) -> None:
    host, secret = estate.vm(A), passwords(estate)[A].encode()
    locked = lock_files(estate, A)
    job = RunningCommand(estate, host, job_command(A))
    restic: int | None = None
    try:
        restic = restic_with_lock(estate, A, host, locked, "backup")
        estate.pause(restic)  # held mid-backup (its lock taken, ssh to the repository up)
        assert process_state(restic) == "T"
        seen = _cmdlines_and_environments(estate.namespace(host))
    finally:
        if restic is not None:
            estate.resume(restic)
        code, out, err = job.finish()
    assert (code, json.loads(out)["result"]) == (0, "ok"), err

    argv = seen[restic][0].split(b"\0")
    assert b"backup" in argv and f"sftp:restic-{A}@".encode() in b" ".join(argv)
    environment = dict(item.split(b"=", 1) for item in seen[restic][1].split(b"\0") if item)
    assert environment[b"RESTIC_PASSWORD_FILE"] == f"/etc/hopnhat/restic-{A}.password".encode()
    assert b"RESTIC_PASSWORD" not in environment
    programs = {Path(cmdline.split(b"\0")[0].decode()).name for cmdline, _ in seen.values()}
    assert {"restic", "ssh", "python3"} <= programs, programs  # the job, restic, its link
    for pid, (cmdline, environ) in seen.items():
        assert secret not in cmdline, (pid, cmdline)
        assert secret not in environ, pid


def test_the_password_is_in_no_status_file_log_run_artifact_or_ledger(
        estate: ConfiguredEstate) -> None:
    secrets = passwords(estate)
    host = estate.vm(A)
    # what the job writes when it succeeds, and when it fails
    ok = estate.sh(host, job_command(A))
    assert ok.returncode == 0, ok.stderr
    config_variant(estate, A, "elsewhere", repository={
        "name": "nowhere", "url": f"sftp:restic-{A}@nowhere.invalid:/repo"})
    failed = estate.sh(host, job_command(A, "elsewhere"))
    assert failed.returncode == 1 and json.loads(failed.stdout)["result"] == "failed"
    files = estate.sh(host, f"cat /var/lib/hopnhat/backup-{A}.json "
                      f"/var/lib/hopnhat/textfile/hopnhat_backup_{A}.prom "
                      f"/etc/hopnhat/backup-{A}.json /etc/systemd/system/hopnhat-backup-{A}.*")
    assert files.returncode == 0 and '"result": "failed"' in files.stdout
    written = [ok.stdout, ok.stderr, failed.stdout, failed.stderr, files.stdout]
    # what the control host kept: ansible-runner's artifacts of every run, and the ledger
    kept = [path for path in (estate.paths.state / "runs").rglob("*") if path.is_file()]
    written.append(ledger_dump(estate.paths.ledger))
    assert len(kept) > 10
    for code, secret in secrets.items():
        for text in written:
            assert secret not in text, code
        for path in kept:
            assert secret.encode() not in path.read_bytes(), (code, path)
