"""``hopnhat drill`` against the lab: scratch VMs cloned at the secondary site by the
provisioning code, configured by ansible-runner, real ``restic restore --verify`` over SFTP
from the repository host, probes on the restored copy, teardown, evidence.

The module backs up sso, lgsp and qlvb once (their data VMs only: provisioned, configured,
``hopnhat backup run``) and destroys those VMs at its end, so test_provision (which uses the
same systems later) finds the site as it would without this module. The nightly drills'
service (``drill nightly``, run as the drill timer's ExecStart) drills sso of that backup.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import shlex
import signal
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from orchestrator import process
from orchestrator.actions.configure import ConfigurePlan, configure
from orchestrator.actions.drill.plan import MARK_PREFIX
from orchestrator.actions.drill.remote import list_snapshots
from orchestrator.actions.drill.run import run_drill
from orchestrator.actions.provision import apply as provision_apply
from orchestrator.actions.provision import plan as provision_plan
from orchestrator.actions.provision import vcenters as provision_vcenters
from orchestrator.adapters import vsphere
from orchestrator.adapters.vsphere_facts import SYSTEM, Inventory, VMFacts, read_inventory
from orchestrator.lab import data, guests, link, vcsim
from orchestrator.lab.processes import ProcessTable
from orchestrator.lab.repository import repository_dir
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths
from tests.helpers import (
    HOPNHAT,
    as_json,
    destroy_systems,
    estate_copy,
    guest_seeded,
    hopnhat,
    promtool_says,
    replace_in,
    wait_for,
)

pytestmark = pytest.mark.lab

SYSTEMS = ("sso", "lgsp", "qlvb")


def inventory(lab: Any, site: str = "danang") -> Inventory:
    """What the vCenter of ``site`` holds (each site has its own vCenter)."""
    with vsphere.open_vcenter(lab.endpoint(site)) as vc:
        return read_inventory(vc)


def scratch_left(lab: Any) -> list[str]:
    """Scratch VMs in either vCenter, and guests of scratch VMs the lab still runs or
    keeps."""
    in_vcenter = [v.name for site in lab.estate.sites for v in inventory(lab, site).vms
                  if (v.attributes.get(SYSTEM) or "").startswith(MARK_PREFIX)
                  or v.name.startswith("drill-")]
    root = lab.paths.lab / "guests"
    on_disk = [p.name for p in root.iterdir() if p.name.startswith("drill-")]
    return in_vcenter + on_disk


def no_scratch_left(lab: Any) -> None:
    wait_for("the scratch VMs and their guests to go", lambda: not scratch_left(lab), 60,
             interval=0.1)


def production_state(lab: Any) -> dict[str, Any]:
    """What a drill must never change: each system's snapshots and repository files, its
    data VMs as vCenter reports them, and their data on disk."""
    paths: Paths = lab.paths
    host = paths.estate.repository_host("repo-qnam-01")
    state: dict[str, Any] = {}
    vms = {v.name: v for v in inventory(lab).vms}
    for code in SYSTEMS:
        repo = repository_dir(paths.lab, host.name, host.storage_path, code,
                              rest=host.protocol == "rest")
        files = {str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
                 for p in sorted(repo.rglob("*")) if p.is_file()}
        vm = next(v for v in paths.estate.vms_of(code) if v.data)
        found: VMFacts = vms[vm.name]
        state[code] = {
            "snapshots": [(s.id, s.time) for s in list_snapshots(paths, code)],
            "repository": files,
            "vm": (found.power_state, found.cpu, found.memory_mb, found.ip, found.host,
                   dict(found.attributes)),
            "data": data.manifest_digest(guests.guest_srv(paths.lab, vm.name) / code)}
    return state


@pytest.fixture(scope="module")
def backed_up(lab: Any) -> Iterator[Paths]:
    """sso, lgsp and qlvb: data VMs provisioned and configured, one backup each."""
    paths: Paths = lab.paths
    estate = paths.estate
    vms = [vm for code in SYSTEMS for vm in estate.vms_of(code) if vm.data]
    with Ledger(paths.ledger) as ledger:
        settings = estate.settings.provisioning
        try:
            endpoints = provision_vcenters.endpoints(paths, {vm.site for vm in vms})
            with vsphere.open_vcenters(endpoints) as vcs:
                facts = provision_vcenters.read_facts(vcs, {vm.name for vm in vms})
                the_plan = provision_plan.plan(estate, vms, facts)
                provision_plan.check(the_plan)
                applied = provision_apply.apply(
                    the_plan, facts, vcs, ledger=ledger, concurrency=settings.concurrency,
                    clones_per_host=settings.clones_per_host,
                    clones_per_datastore=settings.clones_per_datastore, guest_ip_timeout=120)
            assert applied.status == "ok", applied.as_dict()
            for vm in vms:
                wait_for(f"data on {vm.name}", guest_seeded(paths.lab, vm.name), 120,
                         interval=0.1)
            hosts = (*(vm.name for vm in vms), "repo-qnam-01")
            done = configure(paths, ConfigurePlan(estate.id, SYSTEMS, ",".join(hosts), hosts,
                                                  False, False, 10), ledger=ledger)
            assert done.exit_code == 0, done.run.failures
            backup = hopnhat(lab.env, "backup", "run", *(a for c in SYSTEMS for a in
                                                          ("--system", c)), timeout=600)
            assert backup.returncode == 0, backup.stdout + backup.stderr
            yield paths
        finally:
            destroy_systems(paths, ledger, SYSTEMS, vms)


@dataclass
class QlvbDrill:
    summary: dict[str, Any]
    evidence: dict[str, Any]
    stdout: str
    before: dict[str, Any]
    after: dict[str, Any]
    tasks: dict[str, dict[str, int]]  # site → the vCenter tasks its vCenter ran in the drill


def vcenter_tasks(lab: Any, site: str) -> dict[str, int]:
    """The tasks the vCenter of ``site`` ran since its counts were last reset."""
    rec = lab.vcsim(site)
    counts = vcsim.method_counts(rec.address, rec.details["cafile"])
    return {name: n for name, n in counts.items() if name.endswith("_Task")}


@pytest.fixture(scope="module")
def qlvb_drill(lab: Any, backed_up: Paths) -> QlvbDrill:
    before = production_state(lab)
    for site in lab.estate.sites:
        rec = lab.vcsim(site)
        vcsim.reset_method_counts(rec.address, rec.details["cafile"])
    done = hopnhat(lab.env, "drill", "run", "--system", "qlvb", "--json", timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tasks = {site: vcenter_tasks(lab, site) for site in lab.estate.sites}
    summary = json.loads(done.stdout)
    evidence = json.loads(Path(summary["evidence"]).read_text())
    no_scratch_left(lab)
    return QlvbDrill(summary, evidence, done.stdout, before, production_state(lab), tasks)


def test_a_qlvb_drill_passes_and_its_rpo_and_rto_agree_with_the_step_timings(
        qlvb_drill: QlvbDrill, backed_up: Paths) -> None:
    doc = qlvb_drill.evidence
    assert doc["verdict"] == "passed" and doc["reasons"] == []
    assert (doc["system"]["code"], doc["system"]["tier"]) == ("qlvb", 1)
    steps = {s["name"]: s for s in doc["steps"]}
    assert list(steps) == ["plan", "provision", "configure", "restore", "check", "probes",
                           "teardown"]
    assert all(s["ok"] for s in doc["steps"])
    # the steps follow one another from the drill's start; RTO ends where the probes end
    ordered = doc["steps"]
    assert ordered[0]["start"] < 0.5
    for earlier, later in itertools.pairwise(ordered):
        assert 0 <= later["start"] - earlier["end"] < 0.5
    rto = doc["achieved"]["rto_seconds"]
    assert abs(rto - steps["probes"]["end"]) < 0.1
    assert abs(rto - sum(s["seconds"] for s in ordered[:-1])) < 1.0
    started = doc["started_at"].replace("Z", "+00:00")
    snapshot_time = doc["snapshots"][0]["time"]
    rpo = (datetime.fromisoformat(started) - datetime.fromisoformat(snapshot_time))
    assert abs(doc["achieved"]["rpo_seconds"] - rpo.total_seconds()) < 0.01
    assert doc["within_targets"] == {"rpo": True, "rto": True}
    assert doc["targets"] == {"rpo_seconds": 3600.0, "rto_seconds": 14400.0}
    # what was checked: counts and sizes equal, sampled hashes equal, the probes' outputs
    (check,) = doc["checks"]
    assert check["ok"] and check["snapshot"] == check["restored"]
    assert check["snapshot"]["files"] > 100 and len(check["samples"]) == 12
    assert [(p["name"], p["rc"], p["stdout"].strip()) for p in doc["probes"]] == [
        ("database integrity", 0, "ok"), ("documents present", 0, "")]
    assert doc["restic_version"].startswith("0.") and doc["operator"]
    (vm,) = doc["scratch_vms"]
    assert vm["name"].startswith("drill-") and vm["name"].endswith("-qlvb-db-01")
    assert vm["datacenter"] == "DC-QuangNam" and vm["port_group"] == "PG-QN-DRILL"
    # the evidence's SHA-256: of the file, in the ledger, in the .sha256 file
    raw = Path(qlvb_drill.summary["evidence"]).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == qlvb_drill.summary["sha256"]
    with Ledger(backed_up.ledger) as ledger:
        run = next(r for r in ledger.runs("drill") if r.id == doc["drill_id"])
    assert run.status == "passed" and run.summary is not None
    assert run.summary["sha256"] == qlvb_drill.summary["sha256"]
    history = hopnhat({**os.environ, "HOPNHAT_ESTATE": str(backed_up.estate.root),
                       "HOPNHAT_STATE": str(backed_up.state)}, "drill", "history", "--json")
    assert doc["drill_id"] in {r["drill_id"] for r in json.loads(history.stdout)}


def test_a_drill_changes_nothing_in_production(qlvb_drill: QlvbDrill) -> None:
    assert qlvb_drill.before == qlvb_drill.after


def test_a_drills_scratch_vm_is_made_in_the_secondary_sites_vcenter(
        lab: Any, qlvb_drill: QlvbDrill, backed_up: Paths) -> None:
    """Quảng Nam's vCenter (the secondary site's own) cloned, powered and destroyed the
    scratch VM; Đà Nẵng's vCenter, where production runs, ran no task at all."""
    (vm,) = qlvb_drill.evidence["scratch_vms"]
    assert vm["site"] == "quangnam"
    assert qlvb_drill.tasks["danang"] == {}
    made = qlvb_drill.tasks["quangnam"]
    assert made.get("CloneVM_Task") == 1 and made.get("Destroy_Task") == 1, made
    # the ledger says which vCenter made it
    url = lab.estate.sites["quangnam"].vcenter.url
    assert url != lab.estate.sites["danang"].vcenter.url
    with Ledger(backed_up.ledger) as ledger:
        made_in = [e.get("vcenter") for run in ledger.runs("provision", limit=20)
                   if run.params.get("drill") == qlvb_drill.evidence["drill_id"]
                   for e in ledger.events(run.id) if e["subject"] == vm["name"]]
        assert made_in == [url]


def test_a_drill_from_a_snapshot_with_a_corrupted_pack_fails_at_restore_verification(
        lab: Any, backed_up: Paths) -> None:
    host = backed_up.estate.repository_host("repo-qnam-01")
    repo = repository_dir(backed_up.lab, host.name, host.storage_path, "qlvb",
                          rest=host.protocol == "rest")
    pack = max((p for p in (repo / "data").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)
    original = pack.read_bytes()
    middle = len(original) // 2
    try:
        pack.write_bytes(original[:middle] + bytes(b ^ 0xFF for b in original[middle:
                                                                           middle + 64])
                         + original[middle + 64:])
        with Ledger(backed_up.ledger) as ledger:
            result = run_drill(backed_up, "qlvb", ledger=ledger)
    finally:
        pack.write_bytes(original)
    assert result.verdict == "failed" and result.failed_step == "restore", result.reasons
    assert "restore --verify" in result.reasons[0]
    assert [s.name for s in result.steps][-2:] == ["restore", "teardown"]
    no_scratch_left(lab)


def test_a_failing_probe_fails_the_drill_and_its_scratch_vms_are_gone(
        lab: Any, backed_up: Paths, tmp_path: Path) -> None:
    env = estate_copy(lab, tmp_path, lambda root: replace_in(
        root / "systems" / "sso.yml", "expect_stdout: ok", "expect_stdout: corrupted"))
    done = hopnhat(env, "drill", "run", "--system", "sso", "--json", timeout=600)
    assert done.returncode == 1, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert (summary["verdict"], summary["failed_step"]) == ("failed", "probes")
    assert "probe 'database integrity' gave exit 0 and 'ok', expected exit 0 and " \
           "'corrupted'" in summary["reasons"][0]
    assert summary["rto_seconds"] is None
    no_scratch_left(lab)


def restores_in(lab: Any, guest: str) -> list[int]:
    """PIDs of the ``restic restore --verify`` processes running inside lab guest ``guest``."""
    rec = ProcessTable(lab.paths.lab).running(guests.record_name(guest))
    if rec is None:
        return []
    namespace = os.readlink(f"/proc/{rec.pid}/ns/mnt")
    found = []
    for entry in os.listdir("/proc"):
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            same = os.readlink(f"/proc/{entry}/ns/mnt") == namespace
        except OSError:
            continue
        if same and b"restore" in argv and b"--verify" in argv and argv[0].endswith(b"restic"):
            found.append(int(entry))
    return found


def restore_held(lab: Any, ledger: Ledger, proc: Any, log: Path) -> tuple[str, list[int]]:
    """Once the drill run by ``proc`` restores: its drill id and the PIDs of the restic
    restoring on its scratch VM, held there (SIGSTOP) so that what the test does next
    surely lands mid-restore (fails when the drill ends first)."""
    def restoring() -> tuple[str, str] | None:
        for run in ledger.runs("drill", limit=5):
            if run.params.get("pid") != proc.pid:
                continue
            events = ledger.events(run.id)
            if any(e.get("step") == "restore" and e.get("phase") == "started"
                   for e in events):
                plan = next(e for e in events if e["kind"] == "plan")
                return run.id, plan["scratch_vms"][0]["name"]
        assert proc.poll() is None, log.read_text()
        return None
    drill_id, scratch = wait_for("the drill to start its restore", restoring, 300,
                                 interval=0.1)
    held = wait_for("restic restore on the scratch VM", lambda: restores_in(lab, scratch),
                    120, interval=0.1)
    for pid in held:
        os.kill(pid, signal.SIGSTOP)
    return drill_id, held


def killed_if_running(proc: Any) -> None:
    """Kill ``proc`` when it still runs (the test failed half-way), and reap it."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def finished_steps(ledger: Ledger, drill_id: str) -> list[tuple[str, bool | None]]:
    """(step, ok) of each step of the drill as it finished, in order."""
    return [(e["step"], e.get("ok")) for e in ledger.events(drill_id)
            if e["kind"] == "step" and e["phase"] == "finished"]


def test_sigint_mid_drill_tears_down_and_the_ledger_says_aborted(
        lab: Any, backed_up: Paths, tmp_path: Path) -> None:
    """The drill's restore is held (its restic SIGSTOPped inside the scratch VM) so that the
    SIGINT surely lands mid-restore; it is let go once the drill has given it up."""
    log = tmp_path / "drill.log"
    proc = process.spawn([str(HOPNHAT), "drill", "run", "--system", "lgsp"], env=lab.env,
                         log=log)
    with Ledger(backed_up.ledger) as ledger:
        try:
            drill_id, held = restore_held(lab, ledger, proc, log)
            os.kill(proc.pid, signal.SIGINT)
            wait_for("the drill to give the restore up", lambda: any(
                e.get("step") == "restore" and e.get("phase") == "finished"
                for e in ledger.events(drill_id)), 120, interval=0.1)
            for pid in held:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            code = proc.wait(timeout=120)
        finally:
            killed_if_running(proc)
        output = log.read_text()
        assert code == 130, output
        assert "Traceback" not in output
        run = next(r for r in ledger.runs("drill") if r.id == drill_id)
        assert run.status == "aborted" and run.summary is not None
        assert run.summary["reasons"] == ["stopped by the operator"]
        steps = finished_steps(ledger, drill_id)
        assert ("restore", False) in steps and steps[-1] == ("teardown", True)
        no_scratch_left(lab)


def test_a_link_cut_mid_restore_fails_the_drill_tears_down_and_says_why(
        lab: Any, backed_up: Paths, tmp_path: Path) -> None:
    """The link to the secondary site drops packets while the scratch VM restores (its
    restic held with SIGSTOP so the cut surely lands mid-restore): the drill must notice
    within its SSH keep-alive bound, fail at the restore, and still tear down."""
    log = tmp_path / "drill.log"
    interval, count = 2, 3  # the estate's SSH keep-alive (default 15 s x 4), kept short here
    env = estate_copy(lab, tmp_path, lambda d: replace_in(
        d / "estate.yml", "  user: root\n",
        f"  user: root\n  alive_interval: {interval}s\n  alive_count: {count}\n"))
    proc = process.spawn([str(HOPNHAT), "drill", "run", "--system", "lgsp", "--json"],
                         env=env, log=log)
    with Ledger(backed_up.ledger) as ledger:
        try:
            drill_id, held = restore_held(lab, ledger, proc, log)
            link.cut(lab.paths.lab, lab.estate)
            cut_at = time.monotonic()
            for pid in held:
                os.kill(pid, signal.SIGCONT)
            code = proc.wait(timeout=300)
            took = time.monotonic() - cut_at
        finally:
            link.restore(lab.paths.lab)
            killed_if_running(proc)
        output = log.read_text()
        assert code == 1, output
        assert "Traceback" not in output
        # hopnhat's SSH gives a silent host up after interval x count (+ the first interval idle)
        assert took < interval * (count + 1) + 30, f"the drill ended {took:.0f} s after the cut"
        run = next(r for r in ledger.runs("drill") if r.id == drill_id)
        assert run.status == "failed" and run.summary is not None
        assert any("the connection was lost" in reason for reason in run.summary["reasons"]), \
            run.summary
        steps = finished_steps(ledger, drill_id)
        assert ("restore", False) in steps and steps[-1] == ("teardown", True), steps
        no_scratch_left(lab)


def test_a_tier_1_rehearsal_respects_the_dependency_order(
        lab: Any, backed_up: Paths, tmp_path: Path) -> None:
    def only_qlvb_in_tier_1(root: Path) -> None:
        for code in ("dvc", "video", "qlvbqn"):
            replace_in(root / "systems" / f"{code}.yml", "tier: 1", "tier: 3")
    env = estate_copy(lab, tmp_path, only_qlvb_in_tier_1)
    done = hopnhat(env, "drill", "rehearse", "--tier", "1", "--parallel", "2", "--json",
                   timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["groups"] == [["sso"], ["lgsp"], ["qlvb"]]
    systems = {s["system"]: s for s in report["systems"]}
    assert {c: s["verdict"] for c, s in systems.items()} == dict.fromkeys(SYSTEMS, "passed")
    # from each drill's recorded step times: a dependant starts after its dependency ended
    windows = {}
    for code, s in systems.items():
        doc = json.loads((backed_up.state / "evidence" / s["drill_id"] / "evidence.json")
                         .read_text())
        assert doc["achieved"]["rto_seconds"] == pytest.approx(s["rto_seconds"], abs=0.01)
        begin = s["start"]
        windows[code] = (begin, begin + doc["steps"][-1]["end"])
    assert windows["sso"][1] <= windows["lgsp"][0]
    assert windows["lgsp"][1] <= windows["qlvb"][0]
    assert report["total_seconds"] >= windows["qlvb"][1]
    assert Path(report["html"]).is_file()
    raw = Path(report["evidence"]).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == report["sha256"]
    no_scratch_left(lab)


def test_the_html_report_renders_in_headless_chromium(
        qlvb_drill: QlvbDrill, backed_up: Paths, tmp_path: Path) -> None:
    drill_id = qlvb_drill.evidence["drill_id"]
    env = {**os.environ, "HOPNHAT_ESTATE": str(backed_up.estate.root),
           "HOPNHAT_STATE": str(backed_up.state)}
    done = hopnhat(env, "drill", "report", drill_id, "--lang", "vi")
    assert done.returncode == 0, done.stderr
    page = Path(done.stdout.strip())
    assert page.is_file()
    chromium = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "report.png"
    taken = process.run([*chromium, f"--screenshot={shot}", "--window-size=1280,2000",
                         page.as_uri()], timeout=120)
    assert shot.is_file(), taken.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    dom = process.run([*chromium, "--dump-dom", page.as_uri()], timeout=120)
    assert dom.ok, dom.stderr[-2000:]
    text = dom.stdout
    for expected in ("Báo cáo diễn tập khôi phục", "ĐẠT", "Mục tiêu RTO", "RPO đạt được",
                     "khôi phục --verify", "PRAGMA integrity_check",
                     qlvb_drill.summary["sha256"], qlvb_drill.evidence["snapshots"][0]["id"],
                     qlvb_drill.evidence["restic_version"]):
        assert expected in text, expected
    assert text.count("<svg") == 2
    # times in the estate's time zone with the offset (the lab's estate: Asia/Ho_Chi_Minh),
    # none in UTC with a Z; the system named once in the title
    assert re.search(r"<td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+07:00</td>", text)
    assert not re.search(r"\d\d:\d\d:\d\d(\.\d+)?Z", text)
    assert "(QLVB) (QLVB)" not in text and text.count("(QLVB)</h1>") == 1


# --- the nightly drills' service (hopnhat drill nightly, as the drill timer starts it) ------

#: the cheapest system to drill: one small data VM, no database engine
NIGHTLY_SYSTEM = "sso"


def only_sso_tonight(root: Path) -> None:
    """The estate's window opens this minute (its time zone) for 30 minutes, one scratch VM
    at a time, and sso's tier (2) is drilled every night — its turn by the spread over the
    nights would be another night, and the module's earlier drills of sso make it not
    overdue; every system but sso loses its backup (and its migration and drill, which
    restore it), so sso alone can be drilled."""
    zone = yaml.safe_load((root / "estate.yml").read_text()).get("timezone",
                                                                  "Asia/Ho_Chi_Minh")
    opens = datetime.now(ZoneInfo(zone)).strftime("%H:%M")
    replace_in(root / "estate.yml", '  start: "01:00"', f'  start: "{opens}"')
    replace_in(root / "estate.yml", "  length: 4h", "  length: 30m")
    replace_in(root / "estate.yml", "  max_scratch_vms: 2", "  max_scratch_vms: 1")
    replace_in(root / "estate.yml", "  every_night: [1]", "  every_night: [1, 2]")
    for path in (root / "systems").glob("*.yml"):
        system = yaml.safe_load(path.read_text())
        if system["code"] != NIGHTLY_SYSTEM and "backup" in system:
            del system["backup"]
            for restoring in ("migration", "drill"):  # each restores the backup
                system.pop(restoring, None)
            path.write_text(yaml.safe_dump(system, allow_unicode=True, sort_keys=False))


def test_the_drill_timers_service_drills_tonights_system_inside_the_window(
        lab: Any, backed_up: Paths, tmp_path: Path) -> None:
    """``schedule install --print`` renders the drill units; the command of the service's
    ExecStart runs as systemd would start it (this machine's PID 1 is not systemd: the same
    argv, run directly), the window opening this minute and sso alone drillable. It drills
    sso inside the window; the ledger, the evidence, the textfile (promtool has nothing to
    say) and the JUnit XML say so, and ``drill due`` no longer lists it."""
    env = estate_copy(lab, tmp_path, only_sso_tonight)
    plan = as_json(hopnhat(env, "drill", "nightly", "--dry-run", "--json"))
    assert plan["open"] and [t["system"] for t in plan["tonight"]] == [NIGHTLY_SYSTEM]
    printed = as_json(hopnhat(env, "schedule", "install", "--print", "--json",
                              "--unit-dir", str(tmp_path / "units"),
                              "--metrics-dir", str(tmp_path / "textfile"),
                              "--reports-dir", str(tmp_path / "reports")))
    units = printed["drill"]
    service = units["files"][str(tmp_path / "units" / f"{units['unit']}.service")]
    timer = units["files"][str(tmp_path / "units" / f"{units['unit']}.timer")]
    opens = plan["window_start"][11:16]
    assert f"OnCalendar=*-*-* {opens}:00 " in timer
    exec_start = next(line.removeprefix("ExecStart=") for line in service.splitlines()
                      if line.startswith("ExecStart="))
    argv = shlex.split(exec_start)
    assert argv[-6:-4] == ["drill", "nightly"]
    (tmp_path / "textfile").mkdir()
    done = process.run(argv, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with Ledger(backed_up.ledger) as ledger:
        night = ledger.runs("nightly", limit=1)[0]
        drills = [r for r in ledger.runs("drill", limit=5)
                  if r.params.get("nightly") == night.id]
    assert night.status == "passed" and night.summary is not None
    assert [(o["system"], o["status"]) for o in night.summary["outcomes"]] == [
        (NIGHTLY_SYSTEM, "passed")]
    (drill,) = drills
    assert drill.status == "passed" and drill.summary is not None
    assert Path(drill.summary["evidence"]).is_file()
    assert night.summary["outcomes"][0]["drill_id"] == drill.id
    text = (tmp_path / "textfile" / f"hopnhat_drill_{lab.estate.id}.prom").read_text()
    assert promtool_says(text) == ""
    assert f'hopnhat_drill_last_exit_code{{system="{NIGHTLY_SYSTEM}",tier="2"}} 0' in text
    assert f'hopnhat_drill_overdue{{system="{NIGHTLY_SYSTEM}",tier="2"}} 0' in text
    assert 'hopnhat_drill_nightly_exit_code{estate="' in text
    suite = ET.parse(tmp_path / "reports" / f"drill-{lab.estate.id}.xml").getroot()
    (case,) = suite.iter("testcase")
    assert case.get("classname") == f"hopnhat.drill.{NIGHTLY_SYSTEM}" and not list(
        c for c in case if c.tag in ("failure", "skipped"))
    due = json.loads(hopnhat(env, "drill", "due", "--json").stdout)
    assert [(r["system"], r["overdue"]) for r in due] == [(NIGHTLY_SYSTEM, False)]
    no_scratch_left(lab)


def test_a_drill_running_when_the_window_closes_is_stopped_and_torn_down(
        lab: Any, backed_up: Paths, tmp_path: Path) -> None:
    """The nightly drills in-process, their clock jumping past the window's end once sso's
    drill restores: the drill is stopped, its scratch VM torn down, and the night ends 3 with
    sso ``stopped: window closed`` (exit 130 in the textfile, skipped in the JUnit)."""
    from orchestrator.actions.drill import nightly as drill_nightly
    from orchestrator.estate import load_estate
    from orchestrator.reports.drill.nightly import render_nightly_metrics
    from orchestrator.reports.junit import render_drill_junit

    env = estate_copy(lab, tmp_path, only_sso_tonight)
    paths = Paths(backed_up.state, load_estate(Path(env["HOPNHAT_ESTATE"])))
    began = time.time()
    with Ledger(paths.ledger) as ledger:
        closed: list[float] = []

        def clock() -> float:
            """Real time until the drill's restore has begun, then 10 h later."""
            if not closed and any(
                    e.get("step") == "restore" and e.get("phase") == "started"
                    for run in ledger.runs("drill", limit=3) if run.started >= began
                    for e in ledger.events(run.id)):
                closed.append(time.time())
            return time.time() + (36000 if closed else 0)

        result = drill_nightly.nightly(paths, ledger=ledger, now=clock)
        (outcome,) = result.outcomes
        drill = next(r for r in ledger.runs("drill", limit=3) if r.id == outcome.drill_id)
        steps = finished_steps(ledger, drill.id)
    assert result.exit_code == 3 and closed
    assert (outcome.system, outcome.status) == (NIGHTLY_SYSTEM, "stopped")
    assert outcome.reason.startswith("window closed: stopped")
    assert drill.status == "aborted" and steps[-1] == ("teardown", True)
    no_scratch_left(lab)
    text = render_nightly_metrics(result)
    assert f'hopnhat_drill_last_exit_code{{system="{NIGHTLY_SYSTEM}",tier="2"}} 130' in text
    assert 'outcome="stopped"} 1' in text
    assert 'message="stopped: window closed: stopped' in render_drill_junit(result)
