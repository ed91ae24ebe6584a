"""Retiring a system against the lab, as an operator types it: Quảng Nam's QLVB (``qlvbqn``),
moved to Đà Nẵng by ``test_migrate``, has its adopted source VM retired — refused during the
parallel run without a reason, then the final backup, the full read-data check, the kept
snapshots, the manifest, the catalogue and the evidence, and only then the VM destroyed.
Then its records: found in the catalogue, brought back byte for byte, refused when the
repository was tampered with, and verify flags a final snapshot that disappeared.

Runs right after ``test_migrate`` on the session's lab (its name keeps it there: before
``test_provision``, whose last test restarts Đà Nẵng's vCenter, which loses the migration's
target VM); the cutover is made again here, idempotently, so the module also runs alone.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import subprocess
import urllib.error
import urllib.request
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from orchestrator import process
from orchestrator.actions.archive import catalogue
from orchestrator.actions.repositories import open_repository
from orchestrator.adapters.restic import Restic
from orchestrator.estate import load_estate
from orchestrator.estate.endpoints import repository_folder
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths
from tests.helpers import HOPNHAT, LabHandle, as_json, free_port, hopnhat, wait_for
from tests.integration.test_merger_day_one import HOST, QN, vcenter_vms
from tests.integration.test_migrate import MOVE, TARGET, TIMER, adopted, move_env, on

pytestmark = pytest.mark.lab
__all__ = ["adopted", "move_env"]  # the fixtures this module shares with test_migrate

REASON = "Sở TT&TT: hết hạn chạy song song sớm theo quyết định 118"


def repository(lab: LabHandle, env: dict[str, str]) -> Paths:
    return Paths(lab.state_dir, load_estate(Path(env["HOPNHAT_ESTATE"])))


@pytest.fixture(scope="module")
def cut_over(adopted: LabHandle, move_env: dict[str, str]) -> dict[str, str]:
    """qlvbqn cut over to Đà Nẵng (as test_migrate leaves it)."""
    status = as_json(hopnhat(move_env, "migrate", "status", "--no-drift", "--json"))
    [now] = [m for m in status["migrations"] if m["system"] == QN]
    if now["state"] == "cut over":
        return move_env
    for step in ("run", "cutover"):
        done = hopnhat(move_env, "migrate", step, *MOVE, "--json", timeout=900)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return move_env


@pytest.fixture(scope="module")
def retired(adopted: LabHandle, cut_over: dict[str, str]) -> dict[str, Any]:
    """The retirement's result (run once for the module)."""
    env = cut_over
    refused = hopnhat(env, "retire", "--system", QN, "--yes")
    assert refused.returncode == 2 and "parallel run lasts until" in refused.stderr
    done = hopnhat(env, "retire", "--system", QN, "--reason", REASON, "--yes", "--json",
                   "--keep", "15y", timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc: dict[str, Any] = as_json(done)
    return doc


def test_retire_is_refused_or_planned_without_changing_anything(
        adopted: LabHandle, cut_over: dict[str, str]) -> None:
    env = cut_over
    for args, says in [(("--system", "qlvbx"), "no system 'qlvbx'"),
                       (("--system", QN, "--keep", "5 years"), "--keep '5 years'"),
                       (("--system", QN, "--plan"), "parallel run lasts until")]:
        done = hopnhat(env, "retire", *args)
        assert done.returncode == 2 and says in done.stderr, done.stderr
    doc = as_json(hopnhat(env, "retire", "--system", QN, "--plan", "--reason", REASON,
                          "--json"))["plan"]
    assert doc["vms"] == [HOST] and doc["adopted"] == [HOST] and doc["moved"] is True
    assert doc["targets"] == [TARGET] and doc["reason"] == REASON
    assert ("DC-QuangNam", "QLVB", "qlvb-db-01") in vcenter_vms(adopted)  # untouched


def test_retire_keeps_the_data_then_destroys_the_adopted_source(
        adopted: LabHandle, cut_over: dict[str, str], retired: dict[str, Any]) -> None:
    lab, env = adopted, cut_over
    assert retired["verdict"] == "passed", retired["reasons"]
    steps = [s["name"] for s in retired["steps"]]
    assert steps == ["final backup", "check", "retention", "manifest", "catalogue",
                     "evidence", "timers", "destroy"]
    assert "--read-data: no errors" in retired["steps"][1]["detail"]
    assert retired["check"]["read_data"] == "all"
    assert retired["destroyed"] == [HOST] and retired["timers_removed"] == [HOST]
    # the VM is gone from vCenter; the target lives on with its timer
    vms = vcenter_vms(lab)
    assert ("DC-QuangNam", "QLVB", "qlvb-db-01") not in vms
    assert on(lab, TARGET, f"test -e {TIMER}").returncode == 0
    # the final snapshot is tagged final and archived; every older one archived
    final = retired["finals"][HOST]
    paths = repository(lab, env)
    with open_repository(paths, QN) as repo:
        snapshots = [s for s in Restic(repo, timeout=300).snapshots() if s.hostname == HOST]
    assert {"final", "archived"} <= set(next(s for s in snapshots if s.id == final).tags)
    assert all("archived" in s.tags for s in snapshots) and len(snapshots) >= 2
    # the evidence: its hash in the ledger, the manifest's in it, every file's SHA-256
    evidence = Path(retired["evidence"])
    data = evidence.read_bytes()
    assert hashlib.sha256(data).hexdigest() == retired["evidence_sha256"]
    with Ledger(lab.paths.ledger) as ledger:
        recorded = [e["sha256"] for e in ledger.events(retired["run_id"])
                    if e["kind"] == "evidence"]
        fact = ledger.fact(catalogue.FACT, catalogue.fact_key(paths.estate.id, QN))
    assert recorded == [retired["evidence_sha256"]]
    doc = json.loads(data)
    text = gzip.decompress((evidence.parent / "manifest.jsonl.gz").read_bytes())
    assert hashlib.sha256(text).hexdigest() == doc["manifest"]["sha256"]
    lines = [json.loads(line) for line in text.splitlines()]
    files = [e for e in lines if e["type"] == "f"]
    assert files and all(len(e["sha256"]) == 64 and e["vm"] == HOST for e in files)
    sums = on(lab, TARGET, "cd / && sha256sum " + " ".join(
        e["path"].lstrip("/") for e in files[:20]))
    assert sums.returncode == 0, sums.stderr
    assert {"/" + line[66:]: line[:64] for line in sums.stdout.splitlines()} == {
        e["path"]: e["sha256"] for e in files[:20]}
    html = Path(retired["html"]).read_text()
    assert "Biên bản đóng hệ thống và lưu trữ dữ liệu" in html and REASON.replace(
        "&", "&amp;") in html
    # the catalogue: its hash as the ledger recorded
    assert fact["sha256"] == catalogue.sha256_of(Path(retired["catalogue"]["file"]))
    # the estate as it stands: the source is no longer planned, the target is the system's
    plan = as_json(hopnhat(env, "plan", "--system", QN, "--json"))
    names = {a["vm"] for a in plan["actions"]}
    assert HOST not in names and TARGET in names
    again = hopnhat(env, "retire", "--system", QN, "--reason", REASON, "--yes")
    assert again.returncode == 2 and "was retired" in again.stderr


def test_a_forget_with_the_old_policy_keeps_the_kept_snapshots(
        adopted: LabHandle, cut_over: dict[str, str], retired: dict[str, Any]) -> None:
    paths = repository(adopted, cut_over)
    with open_repository(paths, QN) as repo:
        restic = Restic(repo, timeout=300)
        before = {s.id for s in restic.snapshots() if s.hostname == HOST}
        assert len(before) >= 2  # keep-last 1 alone would remove some
        restic.forget({"last": 1}, prune=True, host=HOST)
        after = {s.id for s in restic.snapshots() if s.hostname == HOST}
    assert after == before and retired["finals"][HOST] in after


def test_find_answers_from_the_catalogue_and_get_brings_a_file_back_checked(
        adopted: LabHandle, cut_over: dict[str, str], retired: dict[str, Any],
        tmp_path: Path) -> None:
    lab, env = adopted, cut_over
    found = as_json(hopnhat(env, "archive", "find", "--system", QN, "/srv/qlvb", "--json",
                            "--limit", "5"))
    assert found["results"] and found["milliseconds"] < 5000
    first = found["results"][0]
    assert first["path"].startswith("/srv/qlvb/") and first["sha256"]
    name = first["path"].rsplit("/", 1)[-1]
    by_word = as_json(hopnhat(env, "archive", "find", "--all", name, "--json"))
    assert first["path"] in [r["path"] for r in by_word["results"]]
    none = hopnhat(env, "archive", "find", "--system", QN, "khongcogidauxyz")
    assert none.returncode == 0 and "nothing found" in none.stdout
    bad = hopnhat(env, "archive", "find", "--system", QN, "[abc")
    assert bad.returncode == 2 and "'['" in bad.stderr
    # get: byte for byte what the target (restored from the same data) holds
    to = tmp_path / "out"
    to.mkdir()
    done = hopnhat(env, "archive", "get", "--system", QN, first["path"], "--to", str(to),
                   "--json", timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    got = to / first["path"].lstrip("/")
    target_sum = on(lab, TARGET, f"sha256sum {first['path']}").stdout[:64]
    assert hashlib.sha256(got.read_bytes()).hexdigest() == first["sha256"] == target_sum
    for wrong, says in [("/etc/passwd", "no such file"), ("/srv/qlvb/../etc/passwd", "'..'"),
                        (first["path"], "already exists")]:
        refused = hopnhat(env, "archive", "get", "--system", QN, wrong, "--to", str(to))
        assert refused.returncode == 2 and says in refused.stderr, refused.stderr
    # a tampered repository: the file is refused and not left in --to
    repo_host = lab.paths.estate.settings.repository_hosts[0]
    data = f"{repository_folder(repo_host, QN)}/data"
    # every pack's bytes replaced (its size kept): whichever blob the file is, it is damaged
    corrupt = on(lab, repo_host.name, f"rm -rf /tmp/retire.saved && cp -a {data} "
                 f"/tmp/retire.saved && find {data} -type f | while read -r pack; do "
                 "head -c \"$(stat -c %s \"$pack\")\" /dev/urandom > \"$pack.new\" && "
                 "mv \"$pack.new\" \"$pack\"; done")
    assert corrupt.returncode == 0, corrupt.stderr
    again = tmp_path / "again"
    again.mkdir()
    try:
        tampered = hopnhat(env, "archive", "get", "--system", QN, first["path"], "--to",
                           str(again), "--json", timeout=300)
    finally:
        put_back = on(lab, repo_host.name, f"rm -rf {data} && cp -a /tmp/retire.saved {data}")
        assert put_back.returncode == 0, put_back.stderr
    assert tampered.returncode == 1, tampered.stdout[-2000:] + tampered.stderr[-2000:]
    [result] = as_json(tampered)["files"]
    assert result["result"] in ("failed", "refused")
    assert not any(again.rglob("*")) or not [p for p in again.rglob("*") if p.is_file()]
    # every retrieval is in the ledger: who, what, when
    with Ledger(lab.paths.ledger) as ledger:
        gets = [r for r in ledger.runs("archive-get", limit=10) if r.params["system"] == QN]
    assert len(gets) >= 2 and gets[0].params["paths"] == [first["path"]]
    assert gets[0].operator and gets[0].status == "failed" and gets[1].status == "passed"
    # a changed catalogue is refused until rebuilt
    file = Path(retired["catalogue"]["file"])
    with file.open("r+b") as f:
        f.seek(200)
        f.write(b"X")
    changed = hopnhat(env, "archive", "find", "--system", QN, "qlvb")
    assert changed.returncode == 2 and "was changed" in changed.stderr
    rebuilt = hopnhat(env, "archive", "index", "--system", QN, "--json", timeout=300)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert as_json(hopnhat(env, "archive", "find", "--system", QN, name, "--json"))["results"]


def test_verify_flags_a_final_snapshot_that_disappeared(
        adopted: LabHandle, cut_over: dict[str, str], retired: dict[str, Any]) -> None:
    lab, env = adopted, cut_over
    ok = hopnhat(env, "--json", "verify", "--system", QN, "--read-data-subset", "none",
                 timeout=600)
    checks = {c["name"]: c for c in as_json(ok)["repositories"][0]["checks"]}
    assert checks["final"]["status"] == "ok", checks["final"]
    repo_host = lab.paths.estate.settings.repository_hosts[0]
    snapshot = f"{repository_folder(repo_host, QN)}/snapshots/{retired['finals'][HOST]}"
    moved = on(lab, repo_host.name, f"mv {snapshot} /tmp/final.saved")
    assert moved.returncode == 0, moved.stderr
    try:
        gone = hopnhat(env, "--json", "verify", "--system", QN,
                       "--read-data-subset", "none", timeout=600)
    finally:
        back = on(lab, repo_host.name, f"mv /tmp/final.saved {snapshot}")
        assert back.returncode == 0, back.stderr
    assert gone.returncode == 1
    checks = {c["name"]: c for c in as_json(gone)["repositories"][0]["checks"]}
    assert checks["final"]["status"] == "failed"
    assert "final snapshot" in checks["final"]["message"] and HOST in checks["final"]["message"]


def status_of(url: str) -> int:
    """The HTTP status of a GET without credentials (0: nothing answers yet)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def test_the_page_finds_and_serves_a_record_in_chromium(
        adopted: LabHandle, cut_over: dict[str, str], retired: dict[str, Any],
        tmp_path: Path) -> None:
    lab, env = adopted, cut_over
    [first] = as_json(hopnhat(env, "archive", "find", "--system", QN, "/srv/qlvb/documents",
                              "--json", "--limit", "1"))["results"]
    port = free_port()
    server = subprocess.Popen([str(HOPNHAT), "archive", "serve", "--listen",
                               f"127.0.0.1:{port}"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    token_file = lab.state_dir / "archive" / "serve.token"
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for("the archive page", lambda: token_file.is_file()
                 and status_of(base + "/") == 401, timeout=60)
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        name = first["path"].rsplit("/", 1)[-1]
        url = f"{base}/?token={token}&q={name}&system={QN}"
        chromium = ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    "--user-data-dir=" + str(tmp_path / "chromium")]
        shot = tmp_path / "archive-page.png"
        taken = process.run([*chromium, f"--screenshot={shot}", "--window-size=1280,900",
                             url], timeout=120)
        assert shot.is_file() and shot.stat().st_size > 10_000, taken.stderr[-500:]
        dom = process.run([*chromium, "--dump-dom", url], timeout=120).stdout
        assert "Tra cứu hồ sơ lưu trữ" in dom and first["path"] in unescape(dom)
        [href] = re.findall(r'class="download" href="([^"]+)"', dom)[:1]
        # the download link, fetched as the browser would with the page's cookie
        request = urllib.request.Request(base + unescape(href),
                                         headers={"Cookie": f"hopnhat_archive={token}"})
        with urllib.request.urlopen(request, timeout=120) as answer:
            body = answer.read()
            disposition = answer.headers["Content-Disposition"]
        assert hashlib.sha256(body).hexdigest() == first["sha256"]
        assert disposition.startswith("attachment;")
        assert status_of(base + unescape(href)) == 401  # no token, no file
    finally:
        server.terminate()
        server.wait(timeout=30)
    with Ledger(lab.paths.ledger) as ledger:
        [last] = ledger.runs("archive-get", limit=1)
    assert last.params["paths"] == [first["path"]]
    assert last.params["via"].startswith("archive serve, for 127.0.0.1")
