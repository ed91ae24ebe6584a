"""A compromised backup client, against the lab's rest repository host (issue 19).

The client is ``video-mcu-01`` of the session's backup estate (:mod:`backup_estate`): root on
it, with everything that host holds — the system's password file, its location file with
its rest-server credentials, the CA. From there, as an attacker would: ``restic forget
--prune`` (with a restic of the attacker's choosing: the current one, which gives up at
once where Debian's 0.14 retries for a minute), raw HTTP deletes and overwrites of every
kind of file, reading another system's repository, the maintenance endpoint. Only adding
works (and deleting a lock, which restic needs). Then the control side: every snapshot is
intact and ``check --read-data`` clean, a planted future snapshot is flagged by ``verify``,
``maintain`` keeps every real snapshot and records what it prunes, and a system past its
quota fails with "quota" while another backs up beside it.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from orchestrator import process
from orchestrator.actions.repositories import open_repository
from orchestrator.actions.snapshot_log import record_removed
from orchestrator.adapters import ssh
from orchestrator.adapters.restic import Restic
from orchestrator.adapters.restic_argv import base_argv, make_environment
from orchestrator.estate.endpoints import repository_folder
from orchestrator.estate.model import SecretRef
from orchestrator.estate.secrets import Secrets
from orchestrator.lab import gobuild
from orchestrator.ledger import Ledger
from tests.helpers import as_json, hopnhat, readme_block
from tests.integration.backup_estate import QTA, QUOTA_MB, VIDEO, ConfiguredEstate

HOST_RESTIC = "/root/restic-attacker"
LOCATION = f"/etc/hopnhat/restic-{VIDEO}.repository"
CLIENT = (f"RESTIC_PASSWORD_FILE=/etc/hopnhat/restic-{VIDEO}.password {HOST_RESTIC} "
          f"--no-cache --repository-file {LOCATION} --cacert /etc/hopnhat/restic-ca.pem")

#: run on the client with python3: every request of the attack, each answered by its status
ATTACK = r"""
import json, ssl, sys, urllib.request, urllib.error, base64, hashlib
from urllib.parse import urlsplit, unquote
loc = open(sys.argv[1]).read().strip().removeprefix("rest:")
url = urlsplit(loc)
auth = base64.b64encode(f"{unquote(url.username)}:{unquote(url.password)}".encode()).decode()
ctx = ssl.create_default_context(cafile="/etc/hopnhat/restic-ca.pem")
base = f"https://{url.hostname}:{url.port}"
def call(method, path, body=None, port=None, v2=False):
    where = f"https://{url.hostname}:{port}" if port else base
    req = urllib.request.Request(where + path, data=body, method=method)
    req.add_header("Authorization", "Basic " + auth)
    if v2:
        req.add_header("Accept", "application/vnd.x.restic.rest.v2")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""
repo = url.path.rstrip("/")
out = {}
for kind in ("snapshots", "index", "keys", "data"):
    status, listing = call("GET", f"{repo}/{kind}/", v2=True)
    names = [entry["name"] for entry in json.loads(listing or b"[]")]
    out[f"list {kind}"] = status
    if names:
        out[f"delete {kind}"] = call("DELETE", f"{repo}/{kind}/{names[0]}")[0]
        out[f"overwrite {kind}"] = call("POST", f"{repo}/{kind}/{names[0]}", b"ransom")[0]
out["delete config"] = call("DELETE", f"{repo}/config")[0]
body = b'{"time": "2026-01-01T00:00:00Z", "hostname": "attacker"}'
lock = hashlib.sha256(body).hexdigest()  # rest-server checks a file's name is its hash
out["add lock"] = call("POST", f"{repo}/locks/{lock}", body)[0]
out["delete lock"] = call("DELETE", f"{repo}/locks/{lock}")[0]
other = sys.argv[2]
out["other repository"] = call("GET", f"/{other}/config")[0]
out["other server"] = call("GET", f"/{other}/config", port=int(sys.argv[3]))[0]
out["maintenance endpoint"] = call("GET", f"/{url.username}/{url.username}/config",
                                   port=int(sys.argv[4]))[0]
print(json.dumps(out))
"""


def snapshot_ids(estate: ConfiguredEstate, code: str) -> set[str]:
    with open_repository(estate.paths, code) as repo:
        return {s.id for s in Restic(repo, binary=estate.paths.restic_binary).snapshots()}


def client_sh(estate: ConfiguredEstate, command: str, stdin: str | None = None) -> Any:
    return estate.sh(estate.vm(VIDEO), command, stdin=stdin, timeout=600)


@pytest.fixture(scope="module")
def attacked(backup_estate: ConfiguredEstate) -> Iterator[ConfiguredEstate]:
    """video backed up, and the current restic put on its host (the attacker's)."""
    done = hopnhat(backup_estate.env, "backup", "run", "--system", VIDEO, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    target = backup_estate.target(backup_estate.vm(VIDEO))
    client = ssh.connect(target)
    try:
        sftp = client.open_sftp()
        sftp.put(str(gobuild.restic_binary(backup_estate.session.paths.lab)), HOST_RESTIC)
        sftp.chmod(HOST_RESTIC, 0o755)
    finally:
        client.close()
    yield backup_estate


def test_a_compromised_client_can_add_and_nothing_else(attacked: ConfiguredEstate) -> None:
    estate = attacked
    before = snapshot_ids(estate, VIDEO)
    assert before
    host = estate.paths.estate.repository_host(estate.paths.estate.systems[VIDEO].backup.repository_host)  # type: ignore[union-attr]  # noqa: E501
    qta_port = estate.paths.estate.systems[QTA].backup.port  # type: ignore[union-attr]

    # restic 0.18 reports each refused removal ("unable to remove snapshot/…: Forbidden")
    # and exits 0: what counts is that nothing went (below)
    forget = client_sh(estate, f"{CLIENT} forget --prune latest")
    assert "unable to remove" in forget.stderr and "forbidden" in forget.stderr.lower(), \
        forget.stderr[-800:]
    assert snapshot_ids(estate, VIDEO) >= before

    done = client_sh(estate, shlex.join(["python3", "-", LOCATION, QTA, str(qta_port),
                                         str(host.maintenance_port)]), stdin=ATTACK)
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    for kind in ("snapshots", "index", "keys", "data"):
        assert answers[f"list {kind}"] == 200, answers  # it may read its own repository
        assert answers[f"delete {kind}"] == 403, answers
        assert answers[f"overwrite {kind}"] == 403, answers
    assert answers["delete config"] == 403, answers
    assert (answers["add lock"], answers["delete lock"]) == (200, 200), answers
    assert answers["other repository"] in (401, 403, 404), answers  # private repositories
    assert answers["other server"] == 401, answers  # qta's server knows no video user
    assert answers["maintenance endpoint"] == 401, answers

    # every snapshot still there, and the whole repository reads back clean
    assert snapshot_ids(estate, VIDEO) >= before
    with open_repository(estate.paths, VIDEO) as repo:
        Restic(repo, binary=estate.paths.restic_binary, timeout=900).check("all")

    # what the host holds: its own credentials, never the maintenance endpoint's
    secrets = Secrets(estate.paths)
    maintenance = secrets.get(SecretRef(vault=host.maintenance_secret))
    found = client_sh(estate, "grep -rlF -f /dev/stdin /etc /root /var/lib /usr/local "
                      "2>/dev/null; true", stdin=maintenance + "\n")
    assert found.stdout.strip() == "", found.stdout
    listed = client_sh(estate, "ls /etc/hopnhat /etc/hopnhat/ssh 2>&1; true").stdout
    assert f"restic-{VIDEO}.repository" in listed and f"restic-{VIDEO}" not in \
        listed.replace(f"restic-{VIDEO}.repository", "").replace(f"restic-{VIDEO}.password", "")


def test_a_planted_future_snapshot_is_flagged_and_maintenance_keeps_every_real_one(
        attacked: ConfiguredEstate) -> None:
    estate = attacked
    real = snapshot_ids(estate, VIDEO)
    # what the retention removes of the real snapshots alone (two backups of one hour: one)
    dry = hopnhat(estate.env, "maintain", "--system", VIDEO, "--dry-run", "--json", timeout=900)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    due = set(as_json(dry)["repositories"][0]["removed"])
    assert due < real  # the newest is always kept
    # the attacker adds: snapshots dated far ahead (to push real ones out of keep-last
    # rules) — and, to see maintenance prune by its policy, an old one
    for when in ("2031-01-01 00:00:00", "2031-01-02 00:00:00", "2020-01-01 00:00:00"):
        # the same paths as the real backups: restic's retention groups by host and paths,
        # and planted snapshots mean to share the real ones' group
        planted = client_sh(estate, f"{CLIENT} backup --time {shlex.quote(when)} "
                            f"--tag planted /srv/{VIDEO}")
        assert planted.returncode == 0, planted.stderr[-500:]
    after_plant = snapshot_ids(estate, VIDEO)
    planted_ids = after_plant - real
    assert len(planted_ids) == 3
    try:
        _judge_the_planted(estate, real, due, planted_ids)
    finally:
        # the modules after this one find video's repository as it was: the planted
        # snapshots go, through the control host's endpoint, recorded as removed
        left = snapshot_ids(estate, VIDEO) & planted_ids
        if left:
            with open_repository(estate.paths, VIDEO) as repo, \
                    Ledger(estate.paths.ledger) as ledger:
                record_removed(ledger, VIDEO, repo.name.split("@")[1], left,
                               "test: planted snapshots removed", "test")
                argv = (estate.paths.restic_binary, *base_argv(repo)[1:], "forget", *left)
                env = make_environment(repo, path="/usr/bin:/bin", home=str(estate.paths.state),
                                       tmpdir=str(estate.paths.state / "tmp"))
                done = process.run(argv, env=env, inherit_env=False, timeout=300)
                assert done.ok, done.stderr


def _judge_the_planted(estate: ConfiguredEstate, real: set[str], due: set[str],
                       planted_ids: set[str]) -> None:
    verify = hopnhat(estate.env, "verify", "--system", VIDEO, "--json", timeout=900)
    assert verify.returncode == 1, verify.stdout + verify.stderr
    doc = as_json(verify)
    checks = {c["name"]: c for r in doc["repositories"] for c in r["checks"]}
    assert checks["future"]["status"] == "failed", checks["future"]
    assert "2031" in checks["future"]["message"]

    done = hopnhat(estate.env, "maintain", "--system", VIDEO, "--json", timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    result = as_json(done)
    removed = set(result["repositories"][0]["removed"])
    left = snapshot_ids(estate, VIDEO)
    # the planted future pushed no real snapshot out: the policy removed what it removes
    # without them, and the planted 2020 one
    assert real - due <= left, "a future-dated snapshot pushed a real one out"
    old = {i for i in planted_ids if i not in left}
    assert len(old) == 1 and removed == due | old, (removed, due, old)
    assert planted_ids - old <= left  # the future ones stay, evidence for a person

    # the ledger says what it removed: verify's vanished check finds nothing unexplained
    verify = hopnhat(estate.env, "verify", "--system", VIDEO, "--json", timeout=900)
    checks = {c["name"]: c for r in as_json(verify)["repositories"] for c in r["checks"]}
    assert checks["vanished"]["status"] == "ok", checks["vanished"]


def test_past_its_quota_a_system_fails_with_quota_while_another_backs_up(
        attacked: ConfiguredEstate) -> None:
    estate = attacked

    def run(code: str) -> Any:
        return hopnhat(estate.env, "backup", "run", "--system", code, "--json", timeout=900)

    with ThreadPoolExecutor(2) as pool:
        quota, video = pool.map(run, (QTA, VIDEO))
    assert video.returncode == 0, video.stdout + video.stderr
    assert quota.returncode != 0, quota.stdout
    host = as_json(quota)["hosts"][0]
    assert host["result"] == "failed", host
    assert "quota" in json.dumps(host).lower(), host

    # verify shows each system's use against its quota, as its server counts it
    done = hopnhat(estate.env, "verify", "--system", QTA, "--system", VIDEO, "--json",
                   timeout=900)
    reports = {r["system"]: r for r in as_json(done)["repositories"]}
    assert reports[QTA]["quota_bytes"] == QUOTA_MB * 1024 ** 2
    assert 0 < reports[QTA]["used_bytes"] <= reports[QTA]["quota_bytes"]
    video_backup = estate.paths.estate.systems[VIDEO].backup
    assert video_backup is not None and video_backup.quota_gb is not None
    video_quota = video_backup.quota_gb
    assert reports[VIDEO]["quota_bytes"] == int(video_quota * 1024 ** 3)
    assert reports[VIDEO]["used_bytes"] > 1024 ** 2  # its data is in it


def _tree(root: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every file under ``root``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_vault_keeps_what_the_repository_loses_and_restores_it_byte_identical(
        attacked: ConfiguredEstate, tmp_path: Path) -> None:
    """Pulled by the control host, never pushed: the client holds nothing of the vault; a
    second pull copies nothing; verify judges the system against the vault; the main
    repository deleted (moved aside on its host, put back after, for the modules after
    this one), a pull fails naming it and the vault keeps every snapshot; the README's
    break-glass from the vault restores the latest snapshot byte for byte."""
    estate = attacked
    paths = estate.paths
    vault_host = paths.estate.repository_host("vault-danang-01")
    main_host = paths.estate.repository_host(
        paths.estate.systems[VIDEO].backup.repository_host)  # type: ignore[union-attr]
    secrets = Secrets(paths)

    # the client holds no credential of either host's control endpoint, nor the vault's
    # address
    wanted = [secrets.get(SecretRef(vault=h.maintenance_secret)) for h in (vault_host,
                                                                           main_host)]
    found = client_sh(estate, "grep -rlF -f /dev/stdin /etc /root /var/lib /usr/local /srv "
                      "2>/dev/null; true", stdin="\n".join([*wanted, str(vault_host.address)])
                      + "\n")
    assert found.stdout.strip() == "", found.stdout

    first = hopnhat(estate.env, "vault", "pull", "--system", VIDEO, "--json", timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    pulled = as_json(first)["systems"][0]
    source = snapshot_ids(estate, VIDEO)
    assert pulled["status"] == "ok" and pulled["created"], pulled
    assert set(pulled["copied"]) == source and pulled["held"] == len(source)
    again = as_json(hopnhat(estate.env, "vault", "pull", "--system", VIDEO, "--json",
                            timeout=900))["systems"][0]
    assert (again["copied"], again["held"], again["created"]) == ([], len(source), False)

    verified = hopnhat(estate.env, "verify", "--system", VIDEO, "--read-data-subset", "none",
                       "--json", timeout=900)
    checks = {c["name"]: c for r in as_json(verified)["repositories"] for c in r["checks"]}
    assert checks["copy"]["status"] == "ok", checks["copy"]
    assert "vault-danang-01" in checks["copy"]["message"], checks["copy"]
    # read from the system's own server's metrics: the locks it deleted (the attack's and
    # restic's own), and nothing else
    assert checks["deletions"]["status"] == "ok", checks["deletions"]
    assert checks["deletions"]["details"]["deleted"].get("locks", 0) >= 1, checks["deletions"]

    # what break-glass must bring back: the latest snapshot, restored from the repository
    with open_repository(paths, VIDEO) as repo:
        restic = Restic(repo, binary=paths.restic_binary, timeout=900)
        latest = max((s for s in restic.snapshots() if s.hostname == estate.vm(VIDEO)),
                     key=lambda s: s.time)
        restic.restore(latest.id, tmp_path / "expected")
    expected = _tree(tmp_path / "expected")
    assert expected

    folder = repository_folder(main_host, VIDEO)
    moved = estate.sh(main_host.name, f"mv {shlex.quote(folder)} {shlex.quote(folder)}.gone")
    assert moved.returncode == 0, moved.stderr
    try:
        lost = hopnhat(estate.env, "vault", "pull", "--system", VIDEO, "--json", timeout=900)
        assert lost.returncode == 1, lost.stdout + lost.stderr
        failed = as_json(lost)["systems"][0]
        assert failed["status"] == "failed" and failed["error"], failed
        with open_repository(paths, VIDEO, vault=True) as repo:
            kept = Restic(repo, binary=paths.restic_binary, timeout=900).snapshots()
        assert {s.original for s in kept} == source  # the vault lost nothing

        work = tmp_path / "break-glass"
        env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
               "HOME": str(tmp_path), "CODE": VIDEO, "HOST": estate.vm(VIDEO),
               "VAULT_ADDRESS": str(vault_host.address),
               "VAULT_PORT": str(vault_host.maintenance_port),
               "VAULT_KEY": vault_host.maintenance_secret,
               "CA": str(paths.tls_ca(vault_host.tls_ca)), "VAULT": str(paths.vault_file),
               "VAULT_PASSWORD_FILE": str(paths.vault_password_file), "WORK": str(work)}
        done = process.run(["bash", "-euo", "pipefail", "-c", readme_block("break-glass-vault")],
                           env=env, inherit_env=False, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        # listed by the vault's snapshots (a copy has an ID of its own, its source's as
        # original)
        assert next(s.short_id for s in kept if s.original == latest.id) in done.stdout
        assert _tree(work / "restore") == expected
        assert not {"password", "repository", "vault"} & {p.name for p in work.iterdir()}
        for secret in wanted:
            assert secret not in done.stdout + done.stderr
    finally:
        back = estate.sh(main_host.name, f"mv {shlex.quote(folder)}.gone {shlex.quote(folder)}")
        assert back.returncode == 0, back.stderr
