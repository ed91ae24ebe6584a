"""A system moved between the data centres against the lab, as an operator types it:
Quảng Nam's adopted QLVB (``qlvbqn``, on the secondary site) moves to Đà Nẵng (primary) by
restore — plan, run, sync after changes at the source, a cutover whose probe fails (the
source is put back), a cutover that passes (the target's schedule, the source's parallel
run), the handover record checked, rendered and refused once changed.

Runs after ``test_merger_day_one`` on the session's lab (which adopts, trusts and configures
``qlvbqn``); each precondition is made here again, idempotently, so the module also runs
alone.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from orchestrator import process
from orchestrator.adapters import ssh
from orchestrator.adapters.vsphere_facts import PARALLEL_RUN_UNTIL, SYSTEM
from orchestrator.estate.endpoints import repository_folder
from orchestrator.lab import gobuild
from orchestrator.ledger import Ledger
from tests.helpers import HOPNHAT, LabHandle, as_json, estate_copy, hopnhat, replace_in
from tests.integration.test_merger_day_one import HOST, QN, operator_key, vcenter_vms

pytestmark = pytest.mark.lab

TARGET = "qlvbqn-db-02"
MOVE = ("--system", QN, "--to", "danang")
TIMER = "/etc/systemd/system/hopnhat-backup-qlvbqn.timer"
FLAG = "/srv/qlvb-readonly"


def on(lab: LabHandle, name: str, command: str) -> ssh.RemoteResult:
    """``command`` as root on a VM of the estate (or a migration's) or a repository host."""
    hosts = {v.name: (str(v.ip), 22) for v in [*lab.paths.estate.vms, *lab.paths.estate.targets]}
    hosts |= {h.name: (str(h.address), h.port)
              for h in lab.paths.estate.settings.repository_hosts}
    address, port = hosts[name]
    target = ssh.Target(host=name, address=address, port=port,
                        user=lab.paths.estate.settings.ssh.user,
                        key_file=lab.paths.private_key, known_hosts=lab.paths.known_hosts)
    client = ssh.connect(target)
    try:
        return ssh.execute(client, target, command, timeout=120)
    finally:
        client.close()


def tree_sums(lab: LabHandle, name: str) -> dict[str, str]:
    done = on(lab, name, "cd /srv/qlvb && find . -type f -print0 | sort -z | "
                         "xargs -0 sha256sum")
    assert done.returncode == 0, done.stderr
    return {line[66:]: line[:64] for line in done.stdout.splitlines()}


@pytest.fixture(scope="module")
def adopted(lab: LabHandle) -> LabHandle:
    """qlvbqn adopted, its host trusted and configured (already so after the merger tests:
    configure runs only when the host has no backup job yet)."""
    steps = [("apply", "--system", QN, "--yes"),
             ("hosts", "trust", "--host", HOST, "--yes", "--login-key", str(operator_key(lab)))]
    for args in steps:
        done = hopnhat(lab.env, *args, timeout=600)
        assert done.returncode == 0, f"{args}: {done.stdout[-1500:]}{done.stderr[-1500:]}"
    if on(lab, HOST, "test -s /etc/hopnhat/backup-qlvbqn.json").returncode != 0:
        done = hopnhat(lab.env, "configure", "--system", QN, timeout=600)
        assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
    return lab


def short_alive(root: Path) -> None:
    """A short SSH keep-alive bound (2 s × 3: hopnhat's sessions and restic's SFTP
    connections on the target, which configure writes): a silent host is noticed in seconds."""
    replace_in(root / "estate.yml", "  known_hosts_file: known_hosts",
               "  known_hosts_file: known_hosts\n  alive_interval: 2s\n  alive_count: 3")


@pytest.fixture(scope="module")
def move_env(adopted: LabHandle, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The estate pinned to the lab's newer restic (0.18.1: ``restore --delete``, which the
    run ships to the target), with a short keep-alive bound. Debian's 0.14.0 (no
    ``--delete``: hopnhat deletes from the listing) runs the sync after changes."""
    binary = gobuild.restic_binary(adopted.state_dir / "lab")
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()

    def pinned(root: Path) -> None:
        short_alive(root)
        with (root / "estate.yml").open("a") as estate_yml:
            estate_yml.write(f"\nrestic:\n  binary: {binary}\n  sha256: {digest}\n")
    return estate_copy(adopted, tmp_path_factory.mktemp("move"), pinned)


@pytest.fixture(scope="module")
def debian_restic_env(adopted: LabHandle,
                      tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The estate as the example has it (Debian's restic 0.14.0), short keep-alive bound."""
    return estate_copy(adopted, tmp_path_factory.mktemp("move014"), short_alive)


def test_plan_shows_the_move_and_changes_nothing(
        adopted: LabHandle, tmp_path: Path, move_env: dict[str, str]) -> None:
    lab = adopted
    doc = as_json(hopnhat(move_env, "migrate", "plan", *MOVE, "--json"))
    assert [t["name"] for t in doc["targets"]] == [TARGET]
    assert doc["targets"][0]["receives"] == HOST and doc["from_sites"] == ["quangnam"]
    assert [a["action"] for a in doc["provision"]["actions"]] == ["create"]
    assert [s["name"] for s in doc["staying"]] == [HOST]
    assert not any(key[2] == TARGET for key in vcenter_vms(lab))
    wrong = hopnhat(move_env, "migrate", "plan", "--system", QN, "--to", "quangnam")
    assert wrong.returncode == 2 and "migration.to is 'danang'" in wrong.stderr
    assert hopnhat(move_env, "migrate", "run", "--system", "qlvb", "--to", "danang"
                   ).returncode == 2  # no migration declared
    assert hopnhat(move_env, "migrate", "sync", *MOVE).returncode == 2  # nothing copied yet
    old = hopnhat(move_env, "migrate", "run", *MOVE, "--snapshot", "zz")
    assert old.returncode == 2 and "--snapshot" in old.stderr

    # a target site without room: refused at the plan, naming the datastore; nothing built
    def too_big(root: Path) -> None:
        replace_in(root / "systems" / "qlvbqn.yml", "disks_gb: [40, 200], network: db",
                   "disks_gb: [40, 60000], network: db")
    env = estate_copy(lab, tmp_path, too_big)
    full = hopnhat(env, "migrate", "run", *MOVE, "--json", timeout=600)
    assert full.returncode == 1, full.stderr[-2000:]
    refused = as_json(full)
    assert refused["failed_step"] == "plan" and "disk GB short" in " ".join(refused["reasons"])
    assert "DS-DN-SSD-01" in " ".join(refused["reasons"])
    assert not any(key[2] == TARGET for key in vcenter_vms(lab))


def test_run_copies_the_system_with_a_complete_manifest(
        adopted: LabHandle, tmp_path: Path, move_env: dict[str, str]) -> None:
    lab = adopted
    done = hopnhat(move_env, "migrate", "run", *MOVE, "--json", timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = as_json(done)
    assert result["verdict"] == "passed" and result["manifest_ok"] is True
    [check] = result["checks"]
    # restic 0.18.1 restores each backup path's contents; hopnhat gives the path itself its
    # owner, mode and mtime, so that nothing in the listing differs
    assert check["vm"] == TARGET and check["differences"]["counts"] == {
        "missing": 0, "extra": 0, "different": 0}
    assert check["per_path"]["/srv/qlvb"]["files"] > 100
    assert all(p["ok"] for p in result["probes"]) and result["probes"]
    # every file's bytes equal at both ends (the source is unchanged since its backup)
    assert tree_sums(lab, TARGET) == tree_sums(lab, HOST)
    # the target is a restic client of the system, but not backing up yet
    assert on(lab, TARGET, f"test -e {TIMER}").returncode == 1
    assert on(lab, TARGET, "test -s /etc/hopnhat/restic-qlvbqn.password").returncode == 0
    found = {key[2]: vm for key, vm in vcenter_vms(lab).items()}
    assert found[TARGET].attributes[SYSTEM] == QN and found[TARGET].owner == lab.paths.estate.id
    assert found[TARGET].datacenter == "DC-DaNang"
    # evidence: canonical JSON whose hash the ledger holds, the manifest beside it
    evidence = Path(result["evidence"])
    data = evidence.read_bytes()
    assert hashlib.sha256(data).hexdigest() == result["evidence_sha256"]
    with Ledger(lab.paths.ledger) as ledger:
        events = ledger.events(result["run_id"])
    assert [e["sha256"] for e in events if e["kind"] == "evidence"] == [
        result["evidence_sha256"]]
    doc = json.loads(data)
    assert doc["restic_version"] == "0.18.1"
    assert on(lab, TARGET, "stat -c %a /srv/qlvb").stdout.strip() == \
        on(lab, HOST, "stat -c %a /srv/qlvb").stdout.strip()
    assert doc["to"]["site"] == "danang" and "Quảng Nam" in doc["from"]["unit"]
    assert doc["started_at"].endswith("Z") and doc["manifest"]["sha256"] == \
        result["manifest_sha256"]
    manifest = evidence.with_name("manifest.jsonl.gz")
    lines = process.run(["zcat", str(manifest)], timeout=30).stdout.splitlines()
    assert len(lines) == doc["manifest"]["entries"]
    some = next(json.loads(line) for line in lines if json.loads(line)["type"] == "f")
    assert some["sha256"] == tree_sums(lab, TARGET)["." + some["path"].removeprefix("/srv/qlvb")]
    # the HTML record, in Vietnamese, times at +07:00, rendered by a real browser
    page = Path(result["html"])
    shot = tmp_path / "record.png"
    chromium = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--user-data-dir=" + str(tmp_path / "chromium")]
    taken = process.run([*chromium, f"--screenshot={shot}", "--window-size=1280,2400",
                         page.as_uri()], timeout=120)
    assert taken.ok and shot.stat().st_size > 20_000, taken.stderr[-500:]
    dom = process.run([*chromium, "--dump-dom", page.as_uri()], timeout=120).stdout
    assert "Biên bản bàn giao dữ liệu điện tử" in dom and "ĐẦY ĐỦ" in dom
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+07:00", dom)
    assert result["manifest_sha256"] in dom
    assert "Đại diện bên nhận" in dom


def test_a_stopped_sync_then_a_sync_after_changes_makes_the_target_equal(
        adopted: LabHandle, debian_restic_env: dict[str, str]) -> None:
    lab = adopted
    env = debian_restic_env
    change = on(lab, HOST, "cd /srv/qlvb/documents && find . -type f | sort | head -2 | "
                           "cut -c3- > /tmp/picked && "
                           "echo new > added-by-sync.txt && "
                           "echo changed >> \"$(sed -n 1p /tmp/picked)\" && "
                           "rm -f -- \"$(sed -n 2p /tmp/picked)\" && cat /tmp/picked")
    assert change.returncode == 0, change.stderr
    changed, removed = change.stdout.split()
    drift = as_json(hopnhat(env, "migrate", "status", "--json"))
    [before] = [m for m in drift["migrations"] if m["system"] == QN]
    assert before["state"] == "copied"
    counts = before["drift"][0]["counts"]
    assert counts["added"] >= 1 and counts["changed"] >= 1 and counts["removed"] >= 1

    # Ctrl-C once the source is backed up: exit 130, the target kept, nothing recorded
    proc = subprocess.Popen([str(HOPNHAT), "migrate", "sync", *MOVE], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "✓ backup" in line:
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=300)[1]
    assert proc.returncode == 130, "".join(seen) + rest
    assert "the target VMs are kept" in rest
    status = as_json(hopnhat(env, "migrate", "status", "--no-drift", "--json"))
    [now] = [m for m in status["migrations"] if m["system"] == QN]
    assert now["last_run_verdict"] == "aborted" and now["state"] == "copied"

    # the next sync finishes the job: a delta on Debian's restic 0.14 (no --delete: hopnhat
    # deletes from the listing), the manifest equal, the changes named
    done = hopnhat(env, "migrate", "sync", *MOVE, "--json", timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = as_json(done)
    assert result["restic_version"] == "0.14.0"
    [check] = result["checks"]
    assert check["differences"]["ok"] is True and check["deleted_before_check"] >= 1
    since = check["changes"]
    assert "/srv/qlvb/documents/added-by-sync.txt" in since["added"]
    assert f"/srv/qlvb/documents/{changed}" in since["changed"]
    assert f"/srv/qlvb/documents/{removed}" in since["removed"]
    assert tree_sums(lab, TARGET) == tree_sums(lab, HOST)
    after = as_json(hopnhat(env, "migrate", "status", "--json"))
    [now] = [m for m in after["migrations"] if m["system"] == QN]
    assert now["state"] == "in sync" and now["last_manifest_ok"] is True


def test_a_source_that_does_not_answer_is_named_and_nothing_changes(
        adopted: LabHandle, tmp_path: Path) -> None:
    lab = adopted
    secondary = str(lab.paths.estate.sites["quangnam"].networks["srv"].gateway).rsplit(".", 1)[0]
    env = estate_copy(lab, tmp_path, lambda root: replace_in(
        root / "systems" / "qlvbqn.yml", f"address: {secondary}.5", f"address: {secondary}.249"))
    before = tree_sums(lab, TARGET)
    done = hopnhat(env, "migrate", "sync", *MOVE, "--json", timeout=600)
    assert done.returncode == 1, done.stderr[-2000:]
    result = as_json(done)
    assert result["failed_step"] == "backup" and HOST in " ".join(result["reasons"])
    assert tree_sums(lab, TARGET) == before


def test_a_corrupted_pack_fails_the_restore_and_says_so(
        adopted: LabHandle, debian_restic_env: dict[str, str]) -> None:
    lab = adopted
    repo_host = lab.paths.estate.settings.repository_hosts[0]
    data = f"{repository_folder(repo_host, QN)}/data"
    # every pack damaged in its first blob (the repository is put back afterwards): the
    # restore must read some of them (tree packs are in the target's cache, data packs not).
    # The snapshot is named, so that no backup (whose forget would trip first) runs; restic
    # 0.14 reads every file again (0.18 reads only what the target's files lack).
    status = as_json(hopnhat(debian_restic_env, "migrate", "status", "--no-drift", "--json"))
    [snapshot] = next(m for m in status["migrations"] if m["system"] == QN)["snapshots"].values()
    corrupt = on(lab, repo_host.name, f"rm -rf /tmp/data.saved && cp -a {data} /tmp/data.saved"
                                      f" && find {data} -type f | while read -r pack; do "
                                      "printf 'hopnhat-corrupt' | dd of=\"$pack\" bs=1 "
                                      "seek=64 conv=notrunc status=none; done")
    assert corrupt.returncode == 0, corrupt.stderr
    try:
        done = hopnhat(debian_restic_env, "migrate", "sync", *MOVE, "--snapshot", snapshot,
                       "--json", timeout=600)
    finally:
        put_back = on(lab, repo_host.name, f"rm -rf {data} && cp -a /tmp/data.saved {data}")
        assert put_back.returncode == 0, put_back.stderr
    assert done.returncode == 1, done.stderr[-2000:]
    result = as_json(done)
    assert result["failed_step"] == "restore", result["reasons"]
    assert "restic restore" in result["reasons"][0] and TARGET in result["reasons"][0]
    assert not result["cut_over"] and result["manifest_ok"] is None


def test_a_cutover_that_fails_puts_the_source_back(
        adopted: LabHandle, tmp_path: Path, move_env: dict[str, str]) -> None:
    lab = adopted

    def failing_probe(root: Path) -> None:
        replace_in(root / "systems" / "qlvbqn.yml", "    - name: documents present\n",
                   "    - name: never answers\n      command: \"false\"\n"
                   "    - name: documents present\n")
    env = estate_copy(lab, tmp_path, failing_probe)
    done = hopnhat(env, "migrate", "cutover", *MOVE, "--json", "--lang", "en", timeout=900)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    result = as_json(done)
    assert result["failed_step"] == "probes" and not result["cut_over"]
    assert "never answers" in " ".join(result["reasons"])
    assert on(lab, HOST, f"test -e {FLAG}").returncode == 1  # writes put back
    assert on(lab, TARGET, f"test -e {TIMER}").returncode == 1
    doc = json.loads(Path(result["evidence"]).read_text())
    assert doc["writes_stopped"] is True and doc["writes_restored"] is True
    source = vcenter_vms(lab)[("DC-QuangNam", "QLVB", "qlvb-db-01")]
    assert not source.attributes.get(PARALLEL_RUN_UNTIL)
    status = as_json(hopnhat(move_env, "migrate", "status", "--no-drift", "--json"))
    [now] = [m for m in status["migrations"] if m["system"] == QN]
    assert now["state"] == "in sync" and now["last_run_verdict"] == "failed"


def test_cutover_hands_over_and_the_record_is_checked(
        adopted: LabHandle, move_env: dict[str, str]) -> None:
    lab = adopted
    done = hopnhat(move_env, "migrate", "cutover", *MOVE, "--json", timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = as_json(done)
    assert result["cut_over"] is True
    assert abs(result["parallel_until"] - (time.time() + 365 * 86400)) < 3600
    assert on(lab, HOST, f"test -e {FLAG}").returncode == 0  # the source stays read-only
    assert on(lab, TARGET, f"test -e {TIMER}").returncode == 0  # the target's schedule
    status = as_json(hopnhat(move_env, "migrate", "status", "--json"))
    [now] = [m for m in status["migrations"] if m["system"] == QN]
    assert now["state"] == "cut over" and now["parallel_until"].startswith(
        time.strftime("%Y", time.gmtime(time.time() + 365 * 86400)))
    assert now["drift"][0]["counts"] == {"added": 0, "changed": 0, "removed": 0}
    again = hopnhat(move_env, "migrate", "sync", *MOVE)
    assert again.returncode == 2 and "cut over" in again.stderr
    # the record renders again in English; once changed, it is refused
    report = hopnhat(move_env, "migrate", "report", result["run_id"], "--lang", "en")
    assert report.returncode == 0, report.stderr
    html = Path(result["html"]).read_text()
    assert "Electronic data handover record" in html
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+07:00", html)
    evidence = Path(result["evidence"])
    evidence.write_bytes(evidence.read_bytes().replace(b'"passed"', b'"PASSED"', 1))
    tampered = hopnhat(move_env, "migrate", "report", result["run_id"])
    assert tampered.returncode == 2 and "was changed" in tampered.stderr
    assert hopnhat(move_env, "migrate", "report", "migrate-nope").returncode == 2
    # vCenter shows the source's parallel run too
    source = vcenter_vms(lab)[("DC-QuangNam", "QLVB", "qlvb-db-01")]
    assert source.attributes[PARALLEL_RUN_UNTIL] == time.strftime(
        "%Y-%m-%d", time.gmtime(result["parallel_until"]))
