"""``hopnhat backup run | status``, the backup gate of apply and destroy, and the README's
break-glass restore, against the lab: real sshd guests, the real repository host, restic.

One system, video (tier 1, RPO 1 h; no other module keeps it: test_provision only needs it
absent, so the backup estate of tests/integration/backup_estate.py destroys it after its last
test), is provisioned with ``hopnhat apply`` and configured once, together with the backup
fault and security tests' systems; every command runs as an operator types it. Staleness
needs no waiting: a copy of the estate gives tier 1 an RPO of 0 s, so any snapshot is older
than that.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator import process
from orchestrator.adapters import ssh, vsphere
from orchestrator.adapters.vault import read_vault, write_vault
from orchestrator.adapters.vsphere_facts import read_inventory
from orchestrator.errors import SSHError
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths
from tests.helpers import (
    HOPNHAT,
    LabHandle,
    as_json,
    estate_copy,
    hopnhat,
    ledger_dump,
    readme_block,
    replace_in,
)
from tests.integration.backup_estate import VIDEO

pytestmark = pytest.mark.lab

BIN = HOPNHAT.parent
SYSTEM, HOST = "video", "video-mcu-01"
REPOSITORY = "video@repo-qnam-01"


def edited_estate(lab: LabHandle, tmp_path: Path, *edits: tuple[str, str, str]
                  ) -> dict[str, str]:
    """The lab's estate copied (:func:`estate_copy`) with each ``(file, old, new)``
    replaced once; the environment to run hopnhat on it against the same lab and state."""
    def edit(dest: Path) -> None:
        for rel, old, new in edits:
            replace_in(dest / rel, old, new)

    env = estate_copy(lab, tmp_path, edit)
    if NO_RPO in edits:
        time.sleep(1.1)  # every snapshot taken before this copy is older than the RPO
    return env


# tier 1: any snapshot taken before the estate's copy is stale (an RPO is longer than 0s)
NO_RPO = ("estate.yml", "1: {rpo: 1h", "1: {rpo: 1s")


def cpu(lab: Any) -> int:
    with vsphere.open_vcenter(lab.endpoint()) as vc:
        found = read_inventory(vc).vms_named(HOST)
    assert len(found) == 1
    return found[0].cpu


def remote(paths: Paths, command: str) -> ssh.RemoteResult:
    vm = next(vm for vm in paths.estate.vms if vm.name == HOST)
    target = ssh.Target(HOST, str(vm.ip), 22, "root", paths.private_key, paths.known_hosts)
    client = ssh.connect(target)
    try:
        return ssh.execute(client, target, command, timeout=60)
    finally:
        client.close()


@pytest.fixture(scope="module")
def configured(lab: Any, backup_estate: Any) -> Any:
    """video provisioned with ``hopnhat apply`` and configured, in the same apply and
    configure as the other systems of the backup estate (tests/integration/backup_estate.py),
    which destroys it (gate overridden) after its last test; its VM answers SSH and holds
    the lab's data."""
    assert VIDEO == SYSTEM
    paths: Paths = lab.paths
    vm = next(vm for vm in paths.estate.vms if vm.name == HOST)
    assert ssh.wait_for_port(str(vm.ip), 22, 1.0)
    assert (paths.lab / "guests" / HOST / ".seeded").exists()
    return lab


@pytest.fixture(scope="module")
def backed_up(configured: Any) -> dict[str, Any]:
    """One ``backup run --system video --json``."""
    done = hopnhat(configured.env, "backup", "run", "--system", SYSTEM, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    doc: dict[str, Any] = as_json(done)
    doc["_output"] = done.stdout + done.stderr
    return doc


def test_backup_run_makes_a_snapshot_per_data_host_and_status_shows_it_fresh(
        configured: Any, backed_up: dict[str, Any]) -> None:
    assert (backed_up["status"], backed_up["exit_code"]) == ("ok", 0)
    [host] = backed_up["hosts"]
    assert (host["host"], host["system"], host["result"], host["source"]) == (
        HOST, SYSTEM, "ok", "job")
    assert re.fullmatch(r"[0-9a-f]{8}", host["snapshot_id"])
    assert host["files"] > 100 and host["bytes"] > 10 * 2**20 and host["duration_seconds"] > 0
    assert host["error"] is None
    # the restic the host's job ran, as the host itself says ("restic 0.14.0 compiled …")
    ran = remote(configured.paths, "restic version").stdout.split()[1]
    assert host["restic_version"] == ran
    with Ledger(configured.paths.ledger) as ledger:
        run = next(r for r in ledger.runs("backup") if r.id == backed_up["run"])
        events = ledger.events(run.id)
    assert run.status == "ok"
    assert [(e["subject"], e["kind"], e["snapshot_id"]) for e in events] == [
        (HOST, "ok", host["snapshot_id"])]

    status = hopnhat(configured.env, "backup", "status", "--system", SYSTEM, "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    [system] = as_json(status)["systems"]
    assert (system["system"], system["state"], system["rpo_seconds"]) == (SYSTEM, "fresh", 3600)
    assert system["repository"]["reachable"] and system["repository"]["snapshots"] >= 1
    [seen] = system["hosts"]
    assert (seen["freshness"], seen["latest_snapshot"]["id"]) == ("fresh", host["snapshot_id"])
    assert seen["last_run"]["result"] == "ok"
    assert (seen["last_run"]["bytes"], seen["last_run"]["files"]) == (host["bytes"],
                                                                      host["files"])
    assert seen["last_run"]["restic_version"] == ran
    people = hopnhat(configured.env, "backup", "status", "--system", SYSTEM)
    assert people.returncode == 0 and "restic" in people.stdout and ran in people.stdout

    secret = read_vault(configured.paths.vault_file, configured.paths.vault_password_file)[
        "restic_password_video"]
    assert secret not in backed_up["_output"] + status.stdout + status.stderr
    assert secret not in ledger_dump(configured.paths.ledger)


def test_backup_run_streams_each_hosts_output_and_reports_it(configured: Any) -> None:
    done = hopnhat(configured.env, "-v", "backup", "run", "--host", HOST)
    assert done.returncode == 0, done.stdout + done.stderr
    # the job's own lines, as they came, prefixed with the host
    assert f"{HOST}: hopnhat-backup: INFO {SYSTEM}: snapshot" in done.stderr
    assert f"✓ {HOST} ok: snapshot" in done.stderr
    assert "backup ok: 1 host(s), 1 ok" in done.stdout


def test_the_job_keeps_restics_version_for_its_next_runs(configured: Any,
                                                         backed_up: dict[str, Any]) -> None:
    """The job asks ``restic version`` once per restic binary and keeps the answer beside
    its status file; the cache names the binary that answered."""
    cache = json.loads(remote(configured.paths, "cat /var/lib/hopnhat/restic-version.json")
                       .stdout)
    said = remote(configured.paths, "restic version").stdout.split()[1]  # "restic 0.14.0 …"
    assert ".".join(map(str, cache["version"])) == said
    binary = remote(configured.paths, "command -v restic").stdout.strip()
    assert cache["binary"][0] == binary
    assert cache["binary"][1] == int(remote(configured.paths, f"stat -c %s {binary}").stdout)


def test_the_job_is_started_only_on_a_host_whose_key_hopnhat_knows(
        configured: Any, tmp_path: Path) -> None:
    """backup run starts the job with OpenSSH's ssh: the host key is checked against
    hopnhat's known_hosts, strictly, and an unknown or changed key starts nothing."""
    paths = configured.paths
    vm = next(vm for vm in paths.estate.vms if vm.name == HOST)
    known = ssh.Target(HOST, str(vm.ip), 22, "root", paths.private_key, paths.known_hosts)
    marker = f"/tmp/hopnhat-key-test-{os.getpid()}"
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    other = tmp_path / "other_known_hosts"
    foreign = next(line.split()[1:] for line in paths.known_hosts.read_text().splitlines()
                   if line.split()[0] != str(vm.ip))  # another host's key
    other.write_text(f"{vm.ip} {' '.join(foreign)}\n")
    for known_hosts in (empty, other):
        stranger = ssh.Target(HOST, str(vm.ip), 22, "root", paths.private_key, known_hosts)
        with pytest.raises(SSHError, match="Host key verification failed"):
            ssh.run_streaming(stranger, f"touch {marker}")
        assert known_hosts.read_text() == ("" if known_hosts == empty else other.read_text())
    assert remote(paths, f"test -e {marker} || echo absent").stdout == "absent\n"
    lines: list[str] = []
    done = ssh.run_streaming(known, "echo one; echo two; exit 3", on_line=lines.append)
    assert (done.returncode, lines) == (3, ["one", "two"])


def test_status_shows_an_unreachable_system_while_the_others_still_show(
        configured: Any, backed_up: dict[str, Any], tmp_path: Path) -> None:
    """A copy of the estate adds system ghost: its VM was never made and its repository
    host answers on no address."""
    lab = configured
    repo_octet = str(lab.estate.repository_host("repo-qnam-01").address).split(".")[1]
    vm_octet = str(next(vm.ip for vm in lab.estate.vms)).split(".")[1]
    env = edited_estate(lab, tmp_path, ("estate.yml", "repository_hosts:\n", (
        "repository_hosts:\n"
        f"  - {{name: repo-gone-01, site: quangnam, address: 127.{repo_octet}.2.99, "
        "storage_path: /srv/restic, capacity_gb: 10}\n")))
    root = Path(env["HOPNHAT_ESTATE"])
    (root / "systems" / "ghost.yml").write_text(
        "name: Ghost\ncode: ghost\ntier: 3\nvms:\n"
        f"  - {{role: app, site: danang, cpu: 1, memory_mb: 1024, disks_gb: [10], network: srv,"
        f" data: true, ips: [127.{vm_octet}.1.250]}}\n"
        "backup: {repository_host: repo-gone-01, password: {vault: restic_password_ghost}, "
        "paths: [/srv/ghost], schedule: daily}\n")
    secrets = read_vault(root / "secrets.vault.yml", lab.paths.vault_password_file)
    write_vault(root / "secrets.vault.yml", lab.paths.vault_password_file,
                {**secrets, "restic_password_ghost": "not-used-anywhere"})

    done = hopnhat(env, "backup", "status", "--system", SYSTEM, "--system", "ghost", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    doc = as_json(done)
    systems = {s["system"]: s for s in doc["systems"]}
    assert systems[SYSTEM]["state"] == "fresh"
    assert systems[SYSTEM]["hosts"][0]["latest_snapshot"]["id"]
    ghost = systems["ghost"]
    assert ghost["state"] == "unreachable"
    assert ghost["repository"]["reachable"] is False
    assert "ghost@repo-gone-01" in ghost["repository"]["error"]
    assert ghost["hosts"][0]["reachable"] is False
    assert "ghost-app-01" in ghost["hosts"][0]["error"]
    assert doc["state"] == "unreachable" and doc["exit_code"] == 1
    people = hopnhat(env, "backup", "status", "--system", SYSTEM, "--system", "ghost")
    assert people.returncode == 1 and "Traceback" not in people.stderr
    assert "repository ghost@repo-gone-01 of ghost could not be read" in people.stdout

    # a run where one host answers and one does not is partial (exit 3)
    run = hopnhat(env, "backup", "run", "--system", SYSTEM, "--system", "ghost", "--json")
    assert run.returncode == 3, run.stdout + run.stderr
    results = {h["host"]: h for h in as_json(run)["hosts"]}
    assert results[HOST]["result"] == "ok"
    lost = results["ghost-app-01"]
    assert (lost["result"], lost["stage"], lost["error"]["class"]) == ("failed", "connect",
                                                                      "SSHError")
    assert "cannot connect" in lost["error"]["message"]


def test_a_system_older_than_its_rpo_is_stale_and_exits_1(
        configured: Any, backed_up: dict[str, Any], tmp_path: Path) -> None:
    env = edited_estate(configured, tmp_path, NO_RPO)
    done = hopnhat(env, "backup", "status", "--system", SYSTEM, "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    [system] = as_json(done)["systems"]
    assert (system["state"], system["rpo_seconds"]) == ("stale", 1)
    [host] = system["hosts"]
    assert host["freshness"] == "stale" and host["latest_snapshot"]["age_seconds"] > 0
    assert host["last_run"]["result"] == "ok"  # the run was fine: the data is just too old


def test_the_gate_refuses_to_change_a_data_vm_without_a_fresh_snapshot(
        configured: Any, backed_up: dict[str, Any], tmp_path: Path) -> None:
    lab = configured
    before = cpu(lab)
    env = edited_estate(lab, tmp_path, NO_RPO, ("systems/video.yml", "cpu: 8", "cpu: 10"))
    done = hopnhat(env, "apply", "--system", SYSTEM, "--yes")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the backup gate refuses this apply" in done.stderr
    assert (f"system video, repository {REPOSITORY}: {HOST}'s latest snapshot"
            in done.stderr)
    assert "older than the RPO 1s" in done.stderr and "Nothing was changed" in done.stderr
    assert "Traceback" not in done.stderr
    assert cpu(lab) == before  # no vCenter task

    gone = hopnhat(env, "destroy", "--system", SYSTEM, "--yes")
    assert gone.returncode == 1 and "the backup gate refuses this destroy" in gone.stderr
    assert cpu(lab) == before  # still there
    with Ledger(lab.paths.ledger) as ledger:
        refused = [r for r in ledger.runs("backup-gate") if r.status == "refused"]
    assert {r.params["command"] for r in refused} >= {"apply", "destroy"}


def test_no_backup_gate_needs_a_reason_and_the_ledger_records_who_and_why(
        configured: Any, backed_up: dict[str, Any], tmp_path: Path) -> None:
    lab = configured
    env = edited_estate(lab, tmp_path, NO_RPO, ("systems/video.yml", "cpu: 8", "cpu: 10"))
    bare = hopnhat(env, "apply", "--system", SYSTEM, "--yes", "--no-backup-gate")
    assert bare.returncode == 2 and "--no-backup-gate needs --reason" in bare.stderr
    reason = "CR-2026-117: MCU needs 10 vCPU before the province-wide conference"
    done = hopnhat({**env, "HOPNHAT_OPERATOR": "tran.thi.b"}, "apply", "--system", SYSTEM,
                   "--yes", "--json", "--no-backup-gate", "--reason", reason)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = as_json(done)
    gate = doc["backup_gate"]
    assert (gate["status"], gate["operator"], gate["reason"]) == ("overridden", "tran.thi.b",
                                                                  reason)
    assert cpu(lab) == 10
    with Ledger(lab.paths.ledger) as ledger:
        run = next(r for r in ledger.runs("backup-gate") if r.id == gate["run"])
        events = ledger.events(run.id)
        provision = next(r for r in ledger.runs("provision") if r.id == doc["result"]["run"])
    assert (run.status, run.operator, run.params["reason"]) == ("overridden", "tran.thi.b",
                                                                reason)
    assert [(e["subject"], e["kind"], e["reason"]) for e in events] == [
        (HOST, "not checked", reason)]
    assert provision.params["backup_gate"] == run.id


def test_backup_first_backs_the_system_up_then_makes_the_change(
        configured: Any, backed_up: dict[str, Any], tmp_path: Path) -> None:
    lab = configured
    env = edited_estate(lab, tmp_path, NO_RPO, ("systems/video.yml", "cpu: 8", "cpu: 12"))
    done = hopnhat(env, "apply", "--system", SYSTEM, "--yes", "--json", "--backup-first")
    assert done.returncode == 0, done.stdout + done.stderr
    gate = as_json(done)["backup_gate"]
    assert gate["status"] == "passed" and gate["backup_run"]
    [check] = gate["checks"]
    assert (check["host"], check["verdict"]) == (HOST, "backed up now")
    assert cpu(lab) == 12
    with Ledger(lab.paths.ledger) as ledger:
        backup = next(r for r in ledger.runs("backup") if r.id == gate["backup_run"])
        events = ledger.events(backup.id)
    assert backup.status == "ok" and backup.params["trigger"] == "apply --backup-first"
    [made] = [e for e in events if e["subject"] == HOST]
    assert made["snapshot_id"] == check["snapshot_id"]
    # the new snapshot is the latest in the repository
    status = as_json(hopnhat(lab.env, "backup", "status", "--system", SYSTEM, "--json"))
    assert status["systems"][0]["hosts"][0]["latest_snapshot"]["id"] == check["snapshot_id"]


def test_the_readmes_break_glass_restore_works_with_restic_alone(
        configured: Any, backed_up: dict[str, Any], tmp_path: Path) -> None:
    """The README's lines, run by bash exactly as written, with the variables the README
    asks the engineer to set; ansible-vault from the project's virtualenv."""
    lab = configured
    paths: Paths = lab.paths
    repository_host = paths.estate.repository_host("repo-qnam-01")
    backup = paths.estate.systems[SYSTEM].backup
    assert backup is not None
    work = tmp_path / "break-glass"
    env = {"PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
           "HOME": str(tmp_path), "CODE": SYSTEM, "HOST": HOST,
           "REPO_ADDRESS": str(repository_host.address), "SYSTEM_PORT": str(backup.port),
           "CA": str(paths.tls_ca(repository_host.tls_ca)),
           "VAULT": str(paths.vault_file), "VAULT_PASSWORD_FILE": str(paths.vault_password_file),
           "WORK": str(work)}
    block = readme_block("break-glass")
    assert "ansible-vault view" in block and "--repository-file" in block
    done = process.run(["bash", "-euo", "pipefail", "-c", block], env=env, inherit_env=False,
                       timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    status = as_json(hopnhat(lab.env, "backup", "status", "--system", SYSTEM, "--json"))
    latest = status["systems"][0]["hosts"][0]["latest_snapshot"]["id"]
    assert latest in done.stdout  # the snapshots listing
    assert not {"password", "repository", "vault"} & {p.name for p in work.iterdir()}
    restored = work / "restore" / "srv" / SYSTEM / "app.db"
    assert restored.is_file()
    # the restored database is the one on the host when the latest snapshot was taken
    original = remote(paths, f"sha256sum /srv/{SYSTEM}/app.db").stdout.split()[0]
    assert process.run(["sha256sum", str(restored)]).stdout.split()[0] == original
    secrets = read_vault(paths.vault_file, paths.vault_password_file)
    for key in ("restic_password_video", "rest_password_video"):
        assert secrets[key] not in done.stdout + done.stderr
