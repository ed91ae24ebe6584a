"""``backup run | status`` and the backup gate: the job's command lines, how a run's result is
read, how freshness is judged, and what the gate lets through — pure parts and fakes; the
real hosts and repositories are in tests/integration/test_backup.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator.actions.backup import status as backup_status
from orchestrator.actions.backup.gate import (
    BACKED_UP,
    BACKUP_FAILED,
    FRESH,
    NO_SNAPSHOT,
    NOT_NEEDED,
    OVERRIDDEN,
    PASSED,
    STALE,
    UNREADABLE,
    GateRequest,
    gate,
    gate_request,
    gated_hosts,
    judge,
)
from orchestrator.actions.backup.run import (
    BackupClient,
    BackupRun,
    HostBackup,
    backup_clients,
    host_result,
    job_argv,
    job_command,
    job_summary,
    run_backups,
    select_clients,
    status_command,
)
from orchestrator.actions.backup.status import (
    HostState,
    LastRun,
    freshness,
    host_state,
    latest_by_host,
    parse_status_file,
    read_status,
    system_state,
)
from orchestrator.actions.provision.destroy import DestroyAction, DestroyPlan
from orchestrator.actions.provision.model import CREATE, RECONFIGURE, Plan, VMAction
from orchestrator.adapters.restic_results import Snapshot
from orchestrator.cli import app
from orchestrator.errors import EXIT_BAD_INPUT, PlanError, ResticError, SSHError
from orchestrator.estate import load_estate
from orchestrator.estate.inventory import build_inventory
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths
from tests.helpers import REPO

ESTATE = load_estate(REPO / "inventory")
NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
VIDEO = BackupClient("video-mcu-01", "video", 1, "127.10.1.30")


def snap(host: str, age: timedelta, ident: str = "a1b2c3d4e5f6") -> Snapshot:
    return Snapshot(id=ident * 5, short_id=ident[:8], time=NOW - age, hostname=host,
                    username="root", paths=("/srv",))


def status_doc(**changes: Any) -> dict[str, Any]:
    doc = {"system": "video", "tier": 1, "host": "video-mcu-01", "result": "ok",
           "exit_code": 0, "time": "2026-11-21T11:59:00Z", "started": "2026-11-21T11:58:58Z",
           "duration_seconds": 2.1, "snapshot_id": "a1b2c3d4", "bytes": 20971520,
           "files": 150, "data_added": 1024, "stage": None, "error": None, "warnings": []}
    return {**doc, **changes}


# --- the job's command lines --------------------------------------------------------------------


def test_the_job_runs_as_the_service_runs_it_with_progress() -> None:
    assert job_argv("video") == ("/usr/bin/python3", "-S", "/usr/local/lib/hopnhat/backup_job.py",
                                 "--config", "/etc/hopnhat/backup-video.json", "--progress")
    assert job_command("video") == ("/usr/bin/python3 -S /usr/local/lib/hopnhat/backup_job.py "
                                    "--config /etc/hopnhat/backup-video.json --progress 2>&1")
    assert status_command("video") == "env LC_ALL=C cat -- /var/lib/hopnhat/backup-video.json"


def test_no_secret_reaches_the_command_line() -> None:
    for code in ESTATE.systems:
        assert "password" not in job_command(code) and "RESTIC" not in job_command(code)


# --- which hosts ------------------------------------------------------------------------------


def test_backup_clients_are_the_inventorys(tmp_path: Path) -> None:
    inventory = build_inventory(Paths(tmp_path, ESTATE))
    assert [c.host for c in backup_clients(ESTATE)] == inventory["backup_clients"]["hosts"]


def test_selection_by_system_and_host() -> None:
    assert [c.host for c in select_clients(ESTATE, ["qlvb", "video"])] == [
        "qlvb-db-01", "video-mcu-01"]
    assert [c.host for c in select_clients(ESTATE, (), ["email-mail-01"])] == ["email-mail-01"]
    assert len(select_clients(ESTATE)) == len(backup_clients(ESTATE))


@pytest.mark.parametrize(("systems", "hosts", "message"), [
    (["nope"], [], "no system 'nope' in the estate"),
    ([], ["qlvb-app-01"], "'qlvb-app-01': not a backup client"),
    (["video"], ["email-mail-01"], "nothing to back up"),
])
def test_a_bad_selection_is_bad_input(systems: list[str], hosts: list[str],
                                      message: str) -> None:
    with pytest.raises(PlanError) as caught:
        select_clients(ESTATE, systems, hosts)
    assert caught.value.exit_code == EXIT_BAD_INPUT and message in str(caught.value)


# --- what a run returned ----------------------------------------------------------------------


def test_the_result_is_the_summary_the_job_printed_last() -> None:
    output = "hopnhat-backup: INFO video: snapshot …\nprogress 50.0% files 70 bytes 1\n" + \
        json.dumps(status_doc())
    result = host_result(VIDEO, 0, output)
    assert (result.result, result.source, result.snapshot_id, result.files, result.bytes) == (
        "ok", "job", "a1b2c3d4", 150, 20971520)
    assert result.duration_seconds == 2.1 and result.error_class is None


def test_a_refused_run_is_read_from_what_the_job_printed() -> None:
    refused = {"system": "video", "host": "video-mcu-01", "result": "refused", "exit_code": 1,
               "error": {"class": "AlreadyRunning", "message": "another backup run holds …"}}
    result = host_result(VIDEO, 1, json.dumps(refused))
    assert (result.result, result.source, result.error_class) == (
        "refused", "job", "AlreadyRunning")
    assert result.snapshot_id is None


def test_a_failed_run_keeps_its_stage_and_error() -> None:
    printed = status_doc(result="failed", snapshot_id=None, started="2026-11-21T11:59:30Z",
                         stage="backup", error={"class": "NoSpace", "message": "repository full"})
    result = host_result(VIDEO, 1, "progress 10.0% files 1 bytes 1\n" + json.dumps(printed))
    assert (result.result, result.source, result.stage, result.error_class,
            result.error_message, result.snapshot_id) == (
        "failed", "job", "backup", "NoSpace", "repository full", None)


def test_a_job_that_printed_no_result_failed_with_its_last_line() -> None:
    output = ("hopnhat-backup: ERROR /etc/hopnhat/backup-video.json: cannot read the config "
              "(No such file or directory)\n")
    result = host_result(VIDEO, 2, output)
    assert (result.result, result.source, result.error_class, result.exit_code) == (
        "failed", "hopnhat", "JobError", 2)
    assert "exit 2" in (result.error_message or "") and "cannot read the config" in (
        result.error_message or "")


def test_the_summary_is_the_last_json_line() -> None:
    assert job_summary('{"not": "it"}\nline\n{"result": "ok", "n": 1}\n') == {
        "result": "ok", "n": 1}
    assert job_summary("no json here\n{broken") is None


def _host(name: str, result: str) -> HostBackup:
    return HostBackup(name, "video", result, "job")


@pytest.mark.parametrize(("results", "status", "code"), [
    (["ok", "ok"], "ok", 0),
    (["ok", "partial"], "partial", 3),
    (["ok", "failed"], "partial", 3),
    (["failed", "refused"], "failed", 1),
    (["partial", "partial"], "failed", 1),
])
def test_the_exit_code_of_a_run(results: list[str], status: str, code: int) -> None:
    run = BackupRun("r", tuple(_host(f"h{i}", r) for i, r in enumerate(results)), 1.0)
    assert (run.status, run.exit_code) == (status, code)


def test_a_run_streams_lines_and_records_each_host(tmp_path: Path) -> None:
    paths = Paths(tmp_path, ESTATE)
    clients = select_clients(ESTATE, ["video", "email"])
    seen: list[tuple[str, str]] = []

    def fake(client: BackupClient, on_line: Callable[[str], None]) -> HostBackup:
        on_line(f"progress of {client.host}")
        return _host(client.host, "ok" if client.system == "video" else "failed")

    with Ledger(paths.ledger) as ledger:
        run = run_backups(paths, clients, ledger=ledger, parallel=2, runner=fake,
                          on_line=lambda h, line: seen.append((h, line)))
        assert sorted(seen) == [("email-mail-01", "progress of email-mail-01"),
                                ("video-mcu-01", "progress of video-mcu-01")]
        assert (run.status, run.exit_code) == ("partial", 3)
        recorded = ledger.runs("backup")[0]
        assert (recorded.id, recorded.status) == (run.run_id, "partial")
        assert recorded.params["hosts"] == ["email-mail-01", "video-mcu-01"]
        assert {(e["subject"], e["kind"]) for e in ledger.events(run.run_id)} == {
            ("email-mail-01", "failed"), ("video-mcu-01", "ok")}


# --- status -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("age", "rpo", "expected"), [
    (timedelta(minutes=59), HOUR, "fresh"),
    (HOUR, HOUR, "fresh"),
    (timedelta(minutes=61), HOUR, "stale"),
    (timedelta(seconds=1), timedelta(0), "stale"),
    (None, HOUR, "stale"),
])
def test_freshness_against_the_rpo(age: timedelta | None, rpo: timedelta,
                                   expected: str) -> None:
    assert freshness(None if age is None else NOW - age, NOW, rpo) == expected


def _state(freshness_: str, result: str | None = "ok", error: str | None = None) -> HostState:
    return HostState("h", freshness_, last_run=None if result is None else LastRun(result),
                     error=error)


@pytest.mark.parametrize(("repository_error", "hosts", "expected"), [
    (None, [_state("fresh")], "fresh"),
    (None, [_state("fresh", None)], "fresh"),  # never run here, yet a fresh snapshot
    (None, [_state("fresh"), _state("stale")], "stale"),
    (None, [_state("fresh", "partial")], "failed"),
    (None, [_state("stale", "failed")], "stale"),
    ("connection refused", [_state("unknown")], "unreachable"),
    ("connection refused", [_state("unknown", "failed")], "failed"),
    (None, [_state("fresh", None, error="cannot connect")], "unreachable"),
])
def test_a_systems_state(repository_error: str | None, hosts: list[HostState],
                         expected: str) -> None:
    assert system_state(repository_error, hosts) == expected


def test_each_host_is_judged_by_its_own_latest_snapshot() -> None:
    snaps = [snap("video-mcu-01", 3 * HOUR, "00000001"), snap("video-mcu-01", HOUR / 2,
                                                              "00000002"),
             snap("other", timedelta(0), "00000003")]
    latest = latest_by_host(snaps)
    assert latest["video-mcu-01"].short_id == "00000002"
    state = host_state("video-mcu-01", latest["video-mcu-01"], True, NOW, HOUR,
                       json.dumps(status_doc()), None)
    assert (state.freshness, state.snapshot_id, state.age_seconds) == ("fresh", "00000002",
                                                                       1800.0)
    assert state.last_run is not None and state.last_run.bytes == 20971520
    never = host_state("video-mcu-01", None, True, NOW, HOUR, None, None)
    assert never.freshness == "stale" and "no status file" in (never.note or "")


def test_status_shows_every_system_even_when_one_cannot_be_read(tmp_path: Path) -> None:
    paths = Paths(tmp_path, ESTATE)

    def snapshots(_: Paths, code: str) -> list[Snapshot]:
        if code == "email":
            raise ResticError("restic snapshots: repository email@repo-qnam-01: connection "
                              "refused")
        return [snap("video-mcu-01", timedelta(minutes=10))]

    def status_file(_: Paths, client: BackupClient) -> str | None:
        if client.system == "email":
            raise SSHError(f"{client.host} (127.10.1.20:22): cannot connect")
        return json.dumps(status_doc())

    report = read_status(paths, ["video", "email"], now=NOW, snapshots=snapshots,
                         status_file=status_file)
    doc = report.as_dict()
    assert [(s["system"], s["state"]) for s in doc["systems"]] == [
        ("email", "unreachable"), ("video", "fresh")]
    email, video = doc["systems"]
    assert email["repository"] == {"name": "email@repo-qnam-01", "reachable": False,
                                   "error": "restic snapshots: repository email@repo-qnam-01: "
                                            "connection refused", "snapshots": None}
    assert email["hosts"][0]["reachable"] is False
    assert "cannot connect" in email["hosts"][0]["error"]
    host = video["hosts"][0]
    assert (host["host"], host["freshness"]) == ("video-mcu-01", "fresh")
    assert host["latest_snapshot"]["age_seconds"] == 600.0
    assert host["last_run"]["result"] == "ok" and host["last_run"]["bytes"] == 20971520
    assert video["rpo_seconds"] == 3600 and video["tier"] == 1
    assert (doc["state"], doc["exit_code"]) == ("unreachable", 1)
    assert (report.state, report.exit_code) == ("unreachable", 1)


def test_status_of_fresh_systems_exits_0(tmp_path: Path) -> None:
    report = read_status(Paths(tmp_path, ESTATE), ["video"], now=NOW,
                         snapshots=lambda _, c: [snap("video-mcu-01", HOUR / 4)],
                         status_file=lambda _, c: json.dumps(status_doc()))
    assert (report.state, report.exit_code) == ("fresh", 0)


def test_status_shows_each_hosts_restic_version_from_its_status_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = read_status(Paths(tmp_path, ESTATE), ["video"], now=NOW,
                         snapshots=lambda _, c: [snap("video-mcu-01", HOUR / 4)],
                         status_file=lambda _, c: json.dumps(
                             status_doc(restic_version="0.18.1")))
    [host] = report.as_dict()["systems"][0]["hosts"]
    assert host["last_run"]["restic_version"] == "0.18.1"
    older = parse_status_file(json.dumps(status_doc()))  # a job from before the version
    assert older.restic_version is None
    monkeypatch.setattr(backup_status, "repository_snapshots",
                        lambda _, code: [snap("video-mcu-01", HOUR / 4)])
    monkeypatch.setattr(backup_status, "host_status_file",
                        lambda _, c: json.dumps(status_doc(restic_version="0.14.0")))
    people = _cli(tmp_path, "backup", "status", "--system", "video")
    assert people.exception is None or isinstance(people.exception, SystemExit), people.output
    assert "restic" in people.stdout and "0.14.0" in people.stdout


def test_status_of_an_unknown_system_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(PlanError) as caught:
        read_status(Paths(tmp_path, ESTATE), ["nope"])
    assert caught.value.exit_code == EXIT_BAD_INPUT


# --- the gate ---------------------------------------------------------------------------------


def _vm(name: str) -> Any:
    return next(vm for vm in ESTATE.vms if vm.name == name)


def provisioning_plan(*changes: tuple[str, str]) -> Plan:
    return Plan(ESTATE.id, tuple(VMAction(_vm(name), kind, "https://vc")
                                 for name, kind in changes))


def destroy_plan(system: str, *names: str) -> DestroyPlan:
    return DestroyPlan(ESTATE.id, system, tuple(
        DestroyAction(n, "https://vc", "DC", "CL", True, "", _vm(n).data) for n in names))


@pytest.mark.parametrize(("the_plan", "gated"), [
    (provisioning_plan(("video-mcu-01", CREATE), ("qlvb-db-01", CREATE)), []),
    (provisioning_plan(("qlvb-app-01", RECONFIGURE)), []),  # holds no data
    (provisioning_plan(("qlvb-db-01", RECONFIGURE), ("qlvb-app-01", RECONFIGURE)),
     [("qlvb", "qlvb-db-01")]),
    (destroy_plan("qlvb", "qlvb-app-01", "qlvb-db-01"), [("qlvb", "qlvb-db-01")]),
])
def test_what_the_gate_guards(the_plan: Plan | DestroyPlan,
                              gated: list[tuple[str, str]]) -> None:
    assert the_plan.gated_vms() == gated


@pytest.mark.parametrize(("ages", "rpo", "verdict"), [
    ([HOUR * 3, timedelta(minutes=30)], HOUR, FRESH),
    ([timedelta(minutes=61)], HOUR, STALE),
    ([timedelta(seconds=1)], timedelta(0), STALE),
    ([], HOUR, NO_SNAPSHOT),
])
def test_gate_verdicts(ages: list[timedelta], rpo: timedelta, verdict: str) -> None:
    snaps = [snap("video-mcu-01", age, f"{i:08d}") for i, age in enumerate(ages)]
    snaps.append(snap("another-host", timedelta(0), "ffffffff"))  # not this VM's
    check = judge("video", "video-mcu-01", "video@repo-qnam-01", rpo, snaps, NOW)
    assert check.verdict == verdict
    assert check.passed is (verdict == FRESH)


def test_a_snapshot_made_first_passes_when_the_repository_holds_it() -> None:
    snaps = [snap("video-mcu-01", timedelta(seconds=3), "abcdef12")]
    made = judge("video", "video-mcu-01", "r", timedelta(0), snaps, NOW, made="abcdef12")
    assert (made.verdict, made.passed) == (BACKED_UP, True)
    lost = judge("video", "video-mcu-01", "r", HOUR, snaps, NOW, made="99999999")
    assert (lost.verdict, lost.passed) == (BACKUP_FAILED, False)


@pytest.mark.parametrize(("backup_first", "no_gate", "reason", "expected"), [
    (False, False, None, GateRequest()),
    (True, False, None, GateRequest(backup_first=True)),
    (False, True, " vCenter migration, ticket 42 ", GateRequest(
        override_reason="vCenter migration, ticket 42")),
])
def test_gate_options(backup_first: bool, no_gate: bool, reason: str | None,
                      expected: GateRequest) -> None:
    assert gate_request(backup_first, no_gate, reason) == expected


@pytest.mark.parametrize(("backup_first", "no_gate", "reason", "message"), [
    (False, True, None, "--no-backup-gate needs --reason"),
    (False, True, "  ", "--no-backup-gate needs --reason"),
    (False, False, "why", "--reason goes with --no-backup-gate"),
    (True, True, "why", "contradict"),
])
def test_bad_gate_options_are_bad_input(backup_first: bool, no_gate: bool,
                                        reason: str | None, message: str) -> None:
    with pytest.raises(PlanError) as caught:
        gate_request(backup_first, no_gate, reason)
    assert caught.value.exit_code == EXIT_BAD_INPUT and message in str(caught.value)


def test_systems_without_a_backup_are_not_guarded() -> None:
    guarded, unguarded = gated_hosts(ESTATE, [("qlvb", "qlvb-db-01"), ("qlvb", "qlvb-db-01"),
                                              ("drill:x", "qlvb-db-01-drill")])
    assert guarded == {"qlvb": ["qlvb-db-01"]} and unguarded == ["qlvb-db-01-drill"]


def _no_reading(*_: Any, **__: Any) -> Any:
    raise AssertionError("the gate must not read or back up anything here")


def _gate(tmp_path: Path, vms: Sequence[tuple[str, str]], request: GateRequest | None = None,
          **fakes: Any) -> Any:
    paths = Paths(tmp_path, ESTATE)
    fakes.setdefault("snapshots", _no_reading)
    fakes.setdefault("backup", _no_reading)
    return gate(paths, vms, request, command="apply", now=lambda: NOW, **fakes)


def test_a_create_only_plan_needs_no_gate(tmp_path: Path) -> None:
    the_plan = provisioning_plan(("video-mcu-01", CREATE))
    decision = _gate(tmp_path, the_plan.gated_vms())
    assert decision.status == NOT_NEEDED and decision.run_id is None
    assert not (tmp_path / "ledger.sqlite").exists()


def test_a_fresh_snapshot_passes_and_is_recorded(tmp_path: Path) -> None:
    decision = _gate(tmp_path, [("video", "video-mcu-01")],
                     snapshots=lambda _, c: [snap("video-mcu-01", timedelta(minutes=20))])
    assert decision.status == PASSED
    assert decision.checks[0].describe() == (
        "system video, repository video@repo-qnam-01: video-mcu-01's latest snapshot a1b2c3d4 "
        "is 20m0s old (RPO 1h)")
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        run = ledger.runs("backup-gate")[0]
        assert (run.id, run.status) == (decision.run_id, "passed")
        assert [(e["subject"], e["kind"]) for e in ledger.events(run.id)] == [
            ("video-mcu-01", "fresh")]


@pytest.mark.parametrize(("snapshots", "words"), [
    (lambda _, c: [snap("video-mcu-01", timedelta(hours=2, minutes=3, seconds=4))],
     "video-mcu-01's latest snapshot a1b2c3d4 is 2h3m4s old, older than the RPO 1h"),
    (lambda _, c: [], "video-mcu-01 has no snapshot in the repository (RPO 1h)"),
    (lambda _, c: _raise(ResticError("restic snapshots: repository video@repo-qnam-01: "
                                     "connection refused")),
     "video-mcu-01: the repository could not be read: restic snapshots: repository "
     "video@repo-qnam-01: connection refused (RPO 1h)"),
])
def test_without_a_fresh_snapshot_the_gate_refuses_naming_what_is_missing(
        tmp_path: Path, snapshots: Any, words: str) -> None:
    with pytest.raises(PlanError) as caught:
        _gate(tmp_path, [("video", "video-mcu-01")], snapshots=snapshots)
    message = str(caught.value)
    assert caught.value.exit_code == 1
    assert "the backup gate refuses this apply" in message and "Nothing was changed" in message
    assert f"system video, repository video@repo-qnam-01: {words}" in message
    assert "hopnhat backup run --system video" in message and "--backup-first" in message
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        run = ledger.runs("backup-gate")[0]
    assert run.status == "refused" and run.id in message


def _raise(error: Exception) -> Any:
    raise error


def test_an_override_reads_nothing_and_records_who_and_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOPNHAT_OPERATOR", "nguyen.van.a")
    decision = _gate(tmp_path, [("video", "video-mcu-01"), ("qlvb", "qlvb-db-01")],
                     GateRequest(override_reason="repository host being replaced, CR-7"))
    assert (decision.status, decision.operator, decision.reason) == (
        OVERRIDDEN, "nguyen.van.a", "repository host being replaced, CR-7")
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        run = ledger.runs("backup-gate")[0]
        assert (run.status, run.operator) == ("overridden", "nguyen.van.a")
        assert run.params["reason"] == "repository host being replaced, CR-7"
        events = ledger.events(run.id)
        assert {e["subject"] for e in events} == {"video-mcu-01", "qlvb-db-01"}
        assert all(e["operator"] == "nguyen.van.a" and e["reason"].startswith("repository")
                   for e in events)


def _backup_result(ok: bool, ident: str = "abcdef12") -> Callable[..., BackupRun]:
    def backup(paths: Paths, clients: Sequence[BackupClient], **kwargs: Any) -> BackupRun:
        assert [c.host for c in clients] == ["video-mcu-01"]
        assert kwargs["params"]["trigger"] == "apply --backup-first"
        result = HostBackup("video-mcu-01", "video", "ok" if ok else "failed", "job",
                            snapshot_id=ident if ok else None,
                            error_class=None if ok else "NoSpace",
                            error_message=None if ok else "repository full")
        return BackupRun("backup-1", (result,), 1.0)
    return backup


def test_backup_first_passes_with_the_snapshot_it_made(tmp_path: Path) -> None:
    decision = _gate(tmp_path, [("video", "video-mcu-01")], GateRequest(backup_first=True),
                     backup=_backup_result(True), snapshots=lambda _, c: [
                         snap("video-mcu-01", timedelta(days=3), "00000001"),
                         snap("video-mcu-01", timedelta(seconds=2), "abcdef12")])
    assert (decision.status, decision.backup_run) == (PASSED, "backup-1")
    assert decision.checks[0].verdict == BACKED_UP


def test_backup_first_that_fails_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PlanError) as caught:
        _gate(tmp_path, [("video", "video-mcu-01")], GateRequest(backup_first=True),
              backup=_backup_result(False), snapshots=lambda _, c: [])
    assert "the backup made first failed: failed: repository full" in str(caught.value)


def test_an_unreadable_repository_is_unreadable_not_missing(tmp_path: Path) -> None:
    with pytest.raises(PlanError):
        _gate(tmp_path, [("video", "video-mcu-01")],
              snapshots=lambda _, c: _raise(OSError("boom")))
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        events = ledger.events(ledger.runs("backup-gate")[0].id)
    assert [e["kind"] for e in events] == [UNREADABLE]


# --- the commands -----------------------------------------------------------------------------


def _cli(tmp_path: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["--estate", str(REPO / "inventory"), "--state",
                                    str(tmp_path), *args])


@pytest.mark.parametrize("args", [
    ("apply", "--system", "video", "--no-backup-gate"),
    ("destroy", "--system", "video", "--no-backup-gate", "--reason", ""),
    ("apply", "--backup-first", "--no-backup-gate", "--reason", "x"),
])
def test_gate_options_are_checked_before_vcenter_is_reached(tmp_path: Path,
                                                             args: tuple[str, ...]) -> None:
    result = _cli(tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert "Connecting" not in result.output and "Traceback" not in result.output


def test_backup_run_of_an_unknown_system_is_bad_input(tmp_path: Path) -> None:
    result = _cli(tmp_path, "backup", "run", "--system", "nope")
    assert result.exit_code == 2 and "no system 'nope'" in result.output


def test_backup_status_json_and_exit_code(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup_status, "repository_snapshots",
                        lambda _, code: [snap("video-mcu-01", timedelta(hours=5))])
    monkeypatch.setattr(backup_status, "host_status_file", lambda _, c: None)
    result = _cli(tmp_path, "backup", "status", "--system", "video", "--json")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"estate", "checked_at", "state", "exit_code", "counts", "systems",
                        "not_backed_up"}
    assert doc["systems"][0]["state"] == "stale"
    assert doc["systems"][0]["hosts"][0]["freshness"] == "stale"
    people = _cli(tmp_path, "backup", "status", "--system", "video")
    assert people.exit_code == 1 and "stale" in people.stdout and "video-mcu-01" in people.stdout
