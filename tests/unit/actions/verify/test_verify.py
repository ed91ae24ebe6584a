"""hopnhat verify's judgements as data: freshness against the RPO, anomalies against the
median, the read-data rotation, the second copy, locks, check's phases — and the reports
(JUnit XML, Prometheus textfile) parsed back by the tools that read them."""

from __future__ import annotations

import json
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from orchestrator.actions import schedule
from orchestrator.actions.verify import checks as verify_checks
from orchestrator.actions.verify.checks import (
    Check,
    check_phases,
    host_states,
    judge_anomaly,
    judge_check_run,
    judge_copy,
    judge_freshness,
    judge_locks,
    next_position,
    parse_subset_option,
    restic_subset,
)
from orchestrator.actions.verify.run import RepositoryReport, Target, VerifyResult, plan
from orchestrator.adapters.healthchecks import event_url, ping_url, url_host
from orchestrator.adapters.restic import LockInfo, Snapshot
from orchestrator.adapters.restic_argv import Repository as ResticRepository
from orchestrator.adapters.restic_argv import make_backup_argv, make_snapshots_argv, make_stats_argv
from orchestrator.adapters.restic_results import parse_snapshots
from orchestrator.adapters.systemd import other_init
from orchestrator.cli.app import app
from orchestrator.ledger import Ledger
from orchestrator.reports.junit import render_junit
from orchestrator.reports.metrics import render_could_not_run, render_metrics
from orchestrator.verdicts import (
    ANOMALY,
    CHECKS,
    COPY,
    DELETIONS,
    ERROR,
    FAILED,
    FINAL,
    FOREIGN,
    FRESHNESS,
    FUTURE,
    LOCKS,
    OK,
    READ_DATA,
    SKIPPED,
    STRUCTURE,
    VANISHED,
)

NOW = datetime(2026, 11, 21, 3, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)
WHERE = "qlvb@repo-qnam-01"


def snap(ident: str, host: str, age: timedelta, paths: tuple[str, ...] = ("/srv/qlvb",),
         original: str | None = None) -> Snapshot:
    return Snapshot(id=ident * 8, short_id=(ident * 8)[:8], time=NOW - age,
                    hostname=host, username="root", paths=paths,
                    tags=("system=qlvb", "tier=1", f"host={host}"), original=original)


# --- the read-data rotation -----------------------------------------------------------------


def test_the_rotation_reads_every_subset_once_in_t_nights_then_starts_again() -> None:
    last = None
    nights = []
    for _ in range(2 * 7):
        last = next_position(last, 7)
        nights.append(last)
    assert nights == [1, 2, 3, 4, 5, 6, 7, 1, 2, 3, 4, 5, 6, 7]


def test_a_shortened_rotation_wraps_an_old_position() -> None:
    assert next_position(12, 7) == 6  # 12 % 7 + 1
    assert next_position(0, 7) == 1


def test_auto_gives_tonights_subset_and_other_options_pass_through() -> None:
    assert restic_subset("auto", None, 14) == ("1/14", 1)
    assert restic_subset("auto", 14, 14) == ("1/14", 1)
    assert restic_subset("auto", 3, 14) == ("4/14", 4)
    assert restic_subset("2/5", 3, 14) == ("2/5", None)
    assert restic_subset("10%", None, 14) == ("10%", None)
    assert restic_subset("all", None, 14) == ("all", None)
    assert restic_subset("none", None, 14) == (None, None)


@pytest.mark.parametrize("text", ["auto", "AUTO", "none", "all", "3/14", "1/1", "10%", "2.5%",
                                  "100%"])
def test_subset_options_that_restic_understands_are_accepted(text: str) -> None:
    assert parse_subset_option(text) == text.lower()


@pytest.mark.parametrize("text", ["0/3", "4/3", "0%", "101%", "half", "3/", "500M", ""])
def test_other_subset_options_are_refused_with_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match=r"n/t|%|at most"):
        parse_subset_option(text)


def test_the_plan_reads_the_rotation_from_the_ledger(tmp_path: Path, estate_copy: Any) -> None:
    estate = estate_copy.load()
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.set_fact("verify.read_data", "qlvb@repo-qnam-01", {"position": 7, "total": 7})
        ledger.set_fact("verify.read_data", "email@repo-qnam-01", {"position": 3, "total": 14})
        the_plan = plan(estate, ["qlvb", "email", "ioc"], "auto", ledger)
        subsets = {t.system: (t.subset, t.position) for t in the_plan.targets}
        # tier 1 rotates over 7 nights, tier 2 over 14, tier 3 over 30
        assert subsets == {"qlvb": ("1/7", 1), "email": ("4/14", 4), "ioc": ("1/30", 1)}
        qlvb = the_plan.targets[0]
        assert qlvb.expected_hosts == ("qlvb-db-01",)  # the data-bearing VM, not the app servers
        assert qlvb.rpo == HOUR and qlvb.expected_paths == ("/srv/qlvb",)
        assert the_plan.concurrency == 4  # the verification settings' default


# --- freshness ------------------------------------------------------------------------------


def test_every_expected_host_fresh_within_the_rpo_is_ok() -> None:
    snapshots = [snap("a", "db-01", 5 * HOUR), snap("b", "db-01", timedelta(minutes=20)),
                 snap("c", "db-02", timedelta(minutes=50))]
    states = host_states(snapshots, ("db-01", "db-02"), NOW, {})
    check = judge_freshness(WHERE, states, HOUR)
    assert check.status == OK
    assert "50m0s" in check.message and "RPO 1h0m0s" in check.message
    assert [(s.host, s.latest_id, s.age_seconds) for s in states] == [
        ("db-01", "b" * 8, 1200.0), ("db-02", "c" * 8, 3000.0)]


def test_each_hosts_restic_version_comes_from_its_latest_snapshot() -> None:
    from dataclasses import replace

    snapshots = [replace(snap("a", "db-01", HOUR), program_version="restic 0.14.0"),
                 replace(snap("b", "db-01", HOUR / 2), program_version="restic 0.18.1"),
                 snap("c", "db-02", HOUR / 2)]  # made by a restic that does not say (0.14)
    states = host_states(snapshots, ("db-01", "db-02", "db-03"), NOW, {})
    assert [(s.host, s.restic_version) for s in states] == [
        ("db-01", "0.18.1"), ("db-02", None), ("db-03", None)]
    assert states[0].as_dict()["restic_version"] == "0.18.1"


def test_the_table_shows_the_restic_that_checked_and_those_that_backed_up() -> None:
    from dataclasses import replace

    from orchestrator.cli.verify import _restic_cell

    result = _result()
    good = result.reports[0]
    assert _restic_cell(good) == "check -\nbackup < 0.16"  # a host whose restic did not say
    checked = replace(good, restic_version="0.18.1",
                      hosts=(replace(good.hosts[0], restic_version="0.18.1"),))
    assert _restic_cell(checked) == "check 0.18.1\nbackup 0.18.1"
    assert checked.as_dict()["restic_version"] == "0.18.1"
    assert _restic_cell(replace(result.reports[2], restic_version="0.14.0")) == "check 0.14.0"


def test_a_snapshot_older_than_the_rpo_is_stale_and_named() -> None:
    snapshots = [snap("a", "db-01", 3 * HOUR), snap("b", "db-02", timedelta(minutes=10))]
    check = judge_freshness(WHERE, host_states(snapshots, ("db-01", "db-02"), NOW, {}), HOUR)
    assert check.status == FAILED
    assert check.message.startswith(WHERE)
    assert "host db-01: stale, latest snapshot aaaaaaaa is 3h0m0s old" in check.message
    assert "db-02" not in check.message


def test_an_expected_host_without_any_snapshot_fails_freshness() -> None:
    states = host_states([snap("a", "db-01", HOUR / 2)], ("db-01", "db-02"), NOW, {})
    check = judge_freshness(WHERE, states, HOUR)
    assert check.status == FAILED and "host db-02: no snapshot" in check.message


def test_exactly_the_rpo_is_still_fresh_and_an_empty_repository_is_not() -> None:
    assert judge_freshness(WHERE, host_states([snap("a", "h", HOUR)], ("h",), NOW, {}),
                           HOUR).status == OK
    empty = judge_freshness(WHERE, host_states([], (), NOW, {}), HOUR)
    assert empty.status == FAILED and "no snapshot at all" in empty.message


def test_unexpected_hosts_are_listed_but_only_expected_ones_are_judged() -> None:
    snapshots = [snap("a", "db-01", HOUR / 2), snap("b", "old-host", 30 * 24 * HOUR)]
    states = host_states(snapshots, ("db-01",), NOW, {"a" * 8: (100, 2)})
    assert [(s.host, s.expected, s.bytes) for s in states] == [
        ("db-01", True, 100), ("old-host", False, None)]
    assert judge_freshness(WHERE, states, HOUR).status == OK


# --- anomalies ------------------------------------------------------------------------------


Sizes = dict[str, tuple[int, int]]


def _series(host: str, sizes: list[tuple[int, int]],
            paths: tuple[str, ...] = ("/srv/qlvb",)) -> tuple[list[Snapshot], Sizes]:
    snapshots = [snap(f"{host[0]}{i}", host, (len(sizes) - i) * HOUR, paths)
                 for i in range(len(sizes))]
    return snapshots, {s.id: size for s, size in zip(snapshots, sizes, strict=True)}


def judge(snapshots: list[Snapshot], sizes: dict[str, tuple[int, int]], **limits: Any) -> Check:
    return judge_anomaly(WHERE, snapshots, ("db-01",), ("/srv/qlvb",), sizes, **limits)


def test_a_backup_within_the_limits_of_the_median_is_ok() -> None:
    snapshots, sizes = _series("db-01", [(100, 10)] * 7 + [(140, 12)])
    check = judge(snapshots, sizes)
    assert check.status == OK, check.message
    assert check.details["db-01"]["bytes"] == {"latest": 140, "median": 100.0,
                                               "change_pct": 40.0}


def test_most_of_the_data_gone_is_an_anomaly_naming_host_and_numbers() -> None:
    snapshots, sizes = _series("db-01", [(100 * 2**20, 1000)] * 7 + [(8 * 2**20, 90)])
    check = judge(snapshots, sizes)
    assert check.status == FAILED
    assert "host db-01: bytes dropped 92% (limit 50%)" in check.message
    assert "8.0 MiB, the median of the 7 before it 100.0 MiB" in check.message
    assert "files dropped 91%" in check.message


def test_growth_beyond_the_limit_is_an_anomaly_too() -> None:
    snapshots, sizes = _series("db-01", [(100, 10)] * 7 + [(301, 10)])
    assert judge(snapshots, sizes).status == FAILED
    assert "grew 201% (limit 200%)" in judge(snapshots, sizes).message
    assert judge(snapshots, sizes, growth_pct=250).status == OK


def test_the_median_ignores_one_odd_snapshot_among_the_earlier_ones() -> None:
    # one tiny earlier backup does not drag the baseline down (a mean would)
    snapshots, sizes = _series("db-01", [(100, 10)] * 3 + [(1, 1)] + [(100, 10)] * 3
                               + [(45, 10)])
    check = judge(snapshots, sizes)
    assert check.status == FAILED and "dropped 55%" in check.message


def test_only_the_last_seven_earlier_snapshots_count() -> None:
    snapshots, sizes = _series("db-01", [(1000, 10)] * 5 + [(100, 10)] * 7 + [(100, 10)])
    assert judge(snapshots, sizes).status == OK


def test_too_little_history_is_said_not_judged() -> None:
    snapshots, sizes = _series("db-01", [(100, 10), (100, 10), (1, 1)])
    check = judge(snapshots, sizes)
    assert check.status == OK
    assert "2 earlier snapshot(s) of 3 needed" in check.message


def test_a_path_missing_from_the_latest_snapshot_is_an_anomaly() -> None:
    snapshots, sizes = _series("db-01", [(100, 10)] * 4)
    latest = snapshots[-1]
    snapshots[-1] = Snapshot(id=latest.id, short_id=latest.short_id, time=latest.time,
                             hostname="db-01", username="root", paths=("/srv/other",))
    check = judge(snapshots, sizes)
    assert check.status == FAILED and "lacks /srv/qlvb" in check.message


def test_a_trailing_slash_is_the_same_path() -> None:
    snapshots, sizes = _series("db-01", [(100, 10)] * 4, paths=("/srv/qlvb/",))
    assert judge(snapshots, sizes).status == OK


def test_an_expected_host_missing_from_the_repository_is_an_anomaly() -> None:
    snapshots, sizes = _series("db-01", [(100, 10)] * 4)
    check = judge_anomaly(WHERE, snapshots, ("db-01", "db-02"), (), sizes)
    assert check.status == FAILED and "host db-02: no snapshot" in check.message


# --- the second copy ------------------------------------------------------------------------


def test_a_copy_made_by_restic_copy_counts_by_its_original() -> None:
    source = [snap("a", "h", 5 * HOUR), snap("b", "h", 3 * HOUR)]
    copied = [snap("x", "h", 5 * HOUR, original="a" * 8), snap("y", "h", 3 * HOUR,
                                                               original="b" * 8)]
    check = judge_copy(WHERE, "qlvb@repo-2", source, copied, NOW, HOUR)
    assert check.status == OK and check.details["lag_seconds"] == 0.0


def test_snapshots_missing_from_the_copy_are_reported_with_the_lag() -> None:
    source = [snap("a", "h", 30 * HOUR), snap("b", "h", 5 * HOUR), snap("c", "h", 3 * HOUR)]
    copied = [source[0]]  # a copy of the files keeps the IDs
    check = judge_copy(WHERE, "qlvb@repo-2", source, copied, NOW, HOUR)
    assert check.status == FAILED
    assert "lacks 2 snapshot(s): bbbbbbbb (h, 5h0m0s old), cccccccc (h, 3h0m0s old)" \
        in check.message
    assert "lag 5h0m0s" in check.message
    assert check.details["missing"] == ["bbbbbbbb", "cccccccc"]
    assert check.details["lag_seconds"] == 5 * 3600.0


def test_a_snapshot_younger_than_the_grace_may_still_be_on_its_way() -> None:
    source = [snap("a", "h", 5 * HOUR), snap("b", "h", timedelta(minutes=10))]
    check = judge_copy(WHERE, "qlvb@repo-2", source, [source[0]], NOW, HOUR)
    assert check.status == OK and "1 snapshot(s) younger than 1h0m0s" in check.message
    assert check.details["lag_seconds"] == 600.0


def test_restic_snapshots_json_carries_original() -> None:
    text = json.dumps([{"time": "2026-11-21T01:00:00Z", "tree": "t", "paths": ["/srv/x"],
                        "hostname": "h", "username": "root", "original": "a" * 64,
                        "id": "b" * 64, "short_id": "bbbbbbbb"}])
    assert parse_snapshots(text)[0].original == "a" * 64


# --- locks ----------------------------------------------------------------------------------


def lock(pid: int, host: str, age: timedelta, exclusive: bool = False,
         now: datetime = NOW) -> LockInfo:
    return LockInfo(id=f"{pid:08x}" * 8, time=now - age, exclusive=exclusive, hostname=host,
                    username="root", pid=pid)


def test_no_lock_and_live_locks_pass_and_say_who_holds_them() -> None:
    assert judge_locks(WHERE, [], NOW, "ctl", lambda pid: "gone").message == "no lock"
    check = judge_locks(WHERE, [lock(41, "db-01", timedelta(minutes=3))], NOW, "ctl",
                        lambda pid: "gone")
    assert check.status == OK and "live lock by PID 41 on db-01, 3m0s old" in check.message


def test_stale_locks_fail_with_holder_and_age_and_are_never_removed() -> None:
    locks = [lock(41, "db-01", 2 * HOUR, exclusive=True), lock(42, "ctl", timedelta(minutes=1))]
    check = judge_locks(WHERE, locks, NOW, "ctl", lambda pid: "gone")
    assert check.status == FAILED
    assert "stale exclusive lock 00000029 by PID 41 on db-01 (root), 2h0m0s old" in check.message
    assert "PID 42 on ctl" in check.message and "process 42 is gone" in check.message
    assert "verify removes no lock" in check.message
    assert check.details["stale"] == 2


def test_verifys_own_check_lock_is_not_reported() -> None:
    check = judge_locks(WHERE, [lock(77, "ctl", timedelta(seconds=1), exclusive=True)], NOW,
                        "ctl", lambda pid: "restic", own_pids={77})
    assert check.message == "no lock"


# --- restic check's output ------------------------------------------------------------------

CHECK_OUTPUT = """using temporary cache in /tmp/restic-check-cache-1
create exclusive lock for repository
load indexes
check all packs
check snapshots, trees and blobs
[0:00] 100.00%  2 / 2 snapshots
read group #1 of 4 data packs (out of total 4 packs in 1 groups)
Pack ID does not match, want 580ea964, got dba319b2
[0:00] 100.00%  4 / 4 packs
Fatal: repository contains errors""".splitlines()


def test_damage_found_while_reading_data_fails_read_data_not_structure() -> None:
    structure, data = judge_check_run(WHERE, "1/1", check_phases(CHECK_OUTPUT),
                                      problems=("Pack ID does not match, want 580ea964, "
                                                "got dba319b2",))
    assert structure.status == OK
    assert data.status == FAILED
    assert data.message == (f"{WHERE}: read-data subset 1/1 found damaged data (1 problem(s)): "
                            "Pack ID does not match, want 580ea964, got dba319b2")


def test_damage_in_the_structure_fails_structure() -> None:
    lines = [*CHECK_OUTPUT[:4], "error for tree 1234: blob not found"]
    structure, data = judge_check_run(WHERE, "2/7", check_phases(lines),
                                      problems=("error for tree 1234: blob not found",))
    assert (structure.status, data.status) == (FAILED, OK)
    assert "blob not found" in structure.message


def test_a_check_that_could_not_run_is_an_error_and_no_subset_skips_read_data() -> None:
    structure, data = judge_check_run(WHERE, "3/7", {}, error="restic check: locked by PID 9")
    assert (structure.status, data.status) == (ERROR, ERROR)
    assert "locked by PID 9" in data.message
    structure, data = judge_check_run(WHERE, None, {}, notes=("pack x not referenced",))
    assert (structure.status, data.status) == (OK, SKIPPED)
    assert structure.details["notes"] == ["pack x not referenced"]


# --- the restic additions verify uses -------------------------------------------------------

LOCAL = ResticRepository(url="/srv/r", password_file=Path("/p"))


def test_backup_time_is_written_in_resticss_local_zone() -> None:
    from zoneinfo import ZoneInfo

    at = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)
    argv = make_backup_argv(LOCAL, ["/srv"], time=at, zone=ZoneInfo("Asia/Ho_Chi_Minh"))
    assert argv[argv.index("--time") + 1] == "2026-11-21 05:00:00"
    with pytest.raises(ValueError, match="time zone"):
        make_backup_argv(LOCAL, ["/srv"], time=datetime(2026, 1, 1))


def test_snapshots_and_stats_can_read_without_a_lock() -> None:
    assert "--no-lock" in make_snapshots_argv(LOCAL, no_lock=True)
    assert make_stats_argv(LOCAL, ["abcd1234"], no_lock=True)[-2:] == ("--no-lock", "abcd1234")
    assert "--no-lock" not in make_snapshots_argv(LOCAL)


# --- reports --------------------------------------------------------------------------------


def _target(system: str, tier: int = 1, copy: str | None = None,
            subset: str | None = "3/7") -> Target:
    return Target(system=system, tier=tier, repository="repo-qnam-01", copy=copy, rpo=HOUR,
                  rotation=7, expected_hosts=(f"{system}-db-01",),
                  expected_paths=(f"/srv/{system}",), subset=subset,
                  position=3 if subset == "3/7" else None)


def _result() -> VerifyResult:
    good = _target("qlvb", copy="repo-qnam-02")
    good_checks = (*(Check(name, OK, "fine") for name in CHECKS[:4]),
                   Check(COPY, OK, "every snapshot is in the copy",
                         {"missing": [], "lag_seconds": 0.0}),
                   Check(LOCKS, OK, "no lock", {"locks": [], "stale": 0}),
                   Check(FINAL, OK, "the final snapshot of every retired host is kept"),
                   Check(FUTURE, OK, "no snapshot dated in the future", {"count": 0}),
                   Check(FOREIGN, OK, "every snapshot is of the system's hosts", {"count": 0}),
                   Check(VANISHED, OK, "none of the 8 snapshot(s) seen before is gone",
                         {"count": 0}),
                   Check(DELETIONS, OK, "deleted no file but 1 lock(s)", {"count": 0}))
    host = verify_checks.HostState("qlvb-db-01", True, 8, "a" * 64, NOW - HOUR / 2, 1800.0,
                                   5 * 2**20, 120)
    stale = _target("video", subset=None)
    stale_checks = (Check(STRUCTURE, OK, "no errors were found"),
                    Check(READ_DATA, SKIPPED, "not asked for"),
                    Check(FRESHNESS, FAILED, 'video@repo: host "x" stale <&>'),
                    Check(ANOMALY, OK, "fine"), Check(COPY, SKIPPED, "no second copy"),
                    Check(LOCKS, OK, "no lock", {"locks": [], "stale": 0}),
                    Check(FINAL, SKIPPED, "not retired"),
                    Check(FUTURE, OK, "no snapshot dated in the future", {"count": 0}),
                    Check(FOREIGN, FAILED, "video@repo: 2 snapshot(s) of intruder",
                          {"count": 2}),
                    Check(VANISHED, SKIPPED, "sftp repository: its clients prune it"),
                    Check(DELETIONS, SKIPPED, "sftp repository: no rest-server"))
    gone = _target("dvc")
    gone_checks = verify_checks.error_checks("dvc@repo-qnam-01", "no repository at sftp:x",
                                             copy=False, subset="3/7",
                                             vanished_skipped="sftp repository",
                                             deletions_skipped="sftp repository")
    return VerifyResult("verify-1", "danang", "auto", NOW, 12.5, (
        RepositoryReport(good, "qlvb@repo-qnam-01 (sftp:…)", good_checks, (host,), 8, 2.0),
        RepositoryReport(stale, "video@repo-qnam-01", stale_checks, (), 3, 1.0),
        RepositoryReport(gone, "dvc@repo-qnam-01", gone_checks, (), 0, 0.5)))


def test_the_junit_report_parses_with_a_case_per_repository_and_check(tmp_path: Path) -> None:
    text = render_junit(_result())
    root = ET.fromstring(text)
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors"),
            root.get("skipped")) == ("33", "2", "7", "9")
    path = tmp_path / "verify.xml"
    path.write_text(text)
    suites = {suite.name: suite for suite in JUnitXml.fromfile(str(path))}
    assert set(suites) == {"qlvb@repo-qnam-01", "video@repo-qnam-01", "dvc@repo-qnam-01"}
    cases = {case.name: case for case in suites["video@repo-qnam-01"]}
    assert set(cases) == set(CHECKS)
    assert isinstance(cases[FRESHNESS].result[0], Failure)
    assert cases[FRESHNESS].result[0].message == 'video@repo: host "x" stale <&>'
    assert cases[FRESHNESS].classname == "hopnhat.verify.video.repo-qnam-01"
    assert isinstance(cases[READ_DATA].result[0], Skipped)
    assert all(isinstance(c.result[0], Error) for c in suites["dvc@repo-qnam-01"]
               if c.name not in (COPY, FINAL, VANISHED, DELETIONS))
    assert all(not c.result for c in suites["qlvb@repo-qnam-01"])


def test_the_metrics_parse_with_prometheus_client_and_carry_the_labels() -> None:
    text = render_metrics(_result())
    families = {f.name: f for f in text_string_to_metric_families(text)}
    ok = {s.labels["system"]: s.value for s in families["hopnhat_verify_ok"].samples}
    assert ok == {"qlvb": 1.0, "video": 0.0, "dvc": 0.0}
    age = families["hopnhat_backup_last_snapshot_age_seconds"].samples
    assert [(s.labels, s.value) for s in age] == [(
        {"system": "qlvb", "tier": "1", "repository": "repo-qnam-01", "host": "qlvb-db-01"},
        1800.0)]
    checks = {(s.labels["system"], s.labels["check"]): s.value
              for s in families["hopnhat_verify_check_ok"].samples}
    assert checks[("video", FRESHNESS)] == 0.0 and ("video", READ_DATA) not in checks
    assert checks[("dvc", STRUCTURE)] == 0.0
    assert families["hopnhat_backup_snapshot_bytes"].samples[0].value == 5 * 2**20
    assert families["hopnhat_verify_read_data_fraction"].samples[0].value == pytest.approx(1 / 7)
    assert families["hopnhat_verify_exit_code"].samples[0].value == 1.0
    copy = families["hopnhat_backup_copy_lag_seconds"].samples[0]
    assert copy.labels["copy_repository"] == "repo-qnam-02" and copy.value == 0.0
    # nothing is made up for the repository that could not be read
    assert {s.labels["system"] for s in families["hopnhat_backup_snapshots"].samples} == {
        "qlvb", "video"}


def test_a_run_that_could_not_start_still_writes_its_exit_code() -> None:
    families = {f.name: f for f in text_string_to_metric_families(
        render_could_not_run("danang", NOW.timestamp(), 2))}
    assert families["hopnhat_verify_exit_code"].samples[0].value == 2.0


# --- notifications --------------------------------------------------------------------------


class _Hook(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        self.seen.append((self.path, body))
        self.send_response(500 if self.path.endswith("/broken") else 200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        del format, args


@pytest.fixture
def hook() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_url_is_pinged_healthchecks_style(hook: str) -> None:
    secret = "5f2c0b8e-uuid"
    for event in ("start", "success", "failure"):
        assert ping_url(f"{hook}/ping/{secret}", event, "summary").ok
    assert [path for path, _ in _Hook.seen] == [
        f"/ping/{secret}/start", f"/ping/{secret}", f"/ping/{secret}/fail"]
    assert _Hook.seen[1][1] == "summary"
    assert event_url("https://hc.example/p/x/?a=1", "failure") == "https://hc.example/p/x/fail?a=1"
    assert url_host(f"https://hc.example/p/{secret}") == "https://hc.example"


def test_a_failing_ping_is_reported_without_the_urls_secret(hook: str) -> None:
    failed = ping_url(f"{hook}/broken", "success")
    assert not failed.ok and failed.error == "HTTP 500"
    closed = ping_url("http://127.0.0.1:9/secret-token", "start", timeout=2)
    assert not closed.ok and "secret-token" not in json.dumps(closed.as_dict())


# --- the CLI when it cannot run -------------------------------------------------------------


def test_no_vault_exits_2_and_still_notifies_and_writes_the_exit_code(
        tmp_path: Path, estate_copy: Any, hook: str) -> None:
    metrics = tmp_path / "textfile" / "verify.prom"
    result = CliRunner().invoke(app, [
        "--estate", str(estate_copy.root), "--state", str(tmp_path / "state"), "verify",
        "--system", "qlvb", "--metrics", str(metrics), "--notify-url", f"{hook}/ping"])
    assert result.exit_code == 2, result.output
    assert "vault" in result.output
    assert [path for path, _ in _Hook.seen] == ["/ping/fail"]
    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    assert families["hopnhat_verify_exit_code"].samples[0].value == 2.0
    # and nothing was recorded as a run that never started
    with Ledger(tmp_path / "state" / "ledger.sqlite") as ledger:
        assert ledger.runs("verify") == []


def test_an_unknown_system_and_a_bad_subset_exit_2(tmp_path: Path, estate_copy: Any) -> None:
    base = ["--estate", str(estate_copy.root), "--state", str(tmp_path), "verify"]
    unknown = CliRunner().invoke(app, [*base, "--system", "nope"])
    assert unknown.exit_code == 2 and "no system 'nope'" in unknown.output
    bad = CliRunner().invoke(app, [*base, "--read-data-subset", "half"])
    assert bad.exit_code == 2 and "not a read-data subset" in bad.output


# --- the schedule ---------------------------------------------------------------------------


def test_the_units_render_and_validate_with_systemd_analyze(tmp_path: Path) -> None:
    units = schedule.render_units(
        "danang", Path("/srv/estates/da nang"), tmp_path / "state",
        metrics_dir=tmp_path / "textfile", reports_dir=tmp_path / "reports",
        unit_dir=tmp_path / "units", program=Path(sys.executable),
        environment={"HOPNHAT_VAULT_PASSWORD_FILE": "/etc/hopnhat/vault 50%"})
    service = units.service
    assert f'--estate "/srv/estates/da nang" --state {tmp_path}/state verify --metrics ' \
        f"{tmp_path}/textfile/hopnhat_verify_danang.prom --junit " \
        f"{tmp_path}/reports/verify-danang.xml" in service
    assert 'Environment="HOPNHAT_VAULT_PASSWORD_FILE=/etc/hopnhat/vault 50%%"' in service
    assert "OnCalendar=*-*-* 03:30:00" in units.timer
    assert "Unit=hopnhat-verify-danang.service" in units.timer
    assert schedule.validate(units) != "?"  # systemd's next elapse of the calendar
    done = schedule.install(units)
    assert sorted(p.name for p in (tmp_path / "units").iterdir()) == [
        "hopnhat-verify-danang.service", "hopnhat-verify-danang.timer"]
    assert (tmp_path / "textfile").is_dir() and (tmp_path / "reports").is_dir()
    if other_init() is not None:  # this machine's PID 1 (a container)
        assert not done.enabled and "systemd is not PID 1" in (done.why_not or "")


def test_a_bad_calendar_or_program_is_refused(tmp_path: Path) -> None:
    units = schedule.render_units("danang", tmp_path, tmp_path, on_calendar="someday",
                                  program=Path(sys.executable), unit_dir=tmp_path / "u")
    with pytest.raises(schedule.ScheduleError, match="not a systemd calendar event"):
        schedule.install(units)
    units = schedule.render_units("danang", tmp_path, tmp_path, unit_dir=tmp_path / "u",
                                  program=Path("relative/hopnhat"))
    with pytest.raises(schedule.ScheduleError, match="systemd-analyze verify refused"):
        schedule.validate(units)
    assert not (tmp_path / "u").exists()


def test_schedule_install_print_shows_the_units_and_installs_nothing(
        tmp_path: Path, estate_copy: Any) -> None:
    result = CliRunner().invoke(app, [
        "--estate", str(estate_copy.root), "--state", str(tmp_path), "schedule", "install",
        "--print", "--unit-dir", str(tmp_path / "units")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "[Timer]" in result.output and "ExecStart=" in result.output
    assert "nothing installed" in result.output
    assert not (tmp_path / "units").exists()


# --- check and the locks in its way ---------------------------------------------------------


class _FakeRestic:
    """check() raises the queued errors, then succeeds; locks() returns ``held``."""

    def __init__(self, errors: list[Exception], held: list[LockInfo],
                 waits: list[float], lock_wait: float) -> None:
        self.errors, self.held, self.waits, self.lock_wait = errors, held, waits, lock_wait

    def check(self, subset: str | None, *, on_line: Any = None) -> Any:
        self.waits.append(self.lock_wait)
        if self.errors:
            raise self.errors.pop(0)
        from orchestrator.adapters.restic_results import CheckResult
        return CheckResult(("no errors were found",))

    def locks(self) -> list[LockInfo]:
        return self.held


def _locked_by(pid: int) -> Exception:
    from orchestrator.adapters.restic import RepositoryLocked
    return RepositoryLocked(f"restic check: repository {WHERE} is locked by PID {pid}",
                            repository=WHERE, command="check")


def _run(errors: list[Exception], held: list[LockInfo]) -> tuple[Any, list[float]]:
    from orchestrator.actions.verify.run import _run_check

    waits: list[float] = []
    repo = ResticRepository(url="sftp:x@h:/repo", password_file=Path("/p"))
    run = _run_check(repo, WHERE, "1/7",
                     lambda r, wait, on_start: _FakeRestic(errors, held, waits, wait),  # type: ignore[arg-type,return-value]
                     600.0, set())
    return run, waits


def test_a_check_that_ran_reads_no_lock_file() -> None:
    run, waits = _run([], [lock(9, "db-01", HOUR)])
    assert run.error is None and run.locks is None and waits == [0.0]


def test_a_live_lock_in_the_way_is_waited_for_then_check_runs() -> None:
    live = lock(41, "db-01", timedelta(minutes=2), now=datetime.now(UTC))
    run, waits = _run([_locked_by(41)], [live])
    assert run.error is None and waits == [0.0, 600.0]
    assert run.locks.status == OK and "live lock by PID 41 on db-01" in run.locks.message


def test_a_stale_lock_in_the_way_is_reported_at_once_without_waiting() -> None:
    stale = lock(41, "db-01", 2 * HOUR, now=datetime.now(UTC))
    run, waits = _run([_locked_by(41)], [stale])
    assert waits == [0.0]  # no wait for a lock nobody will remove
    assert run.locks.status == FAILED and "stale lock" in run.locks.message
    assert "locked by PID 41" in (run.error or "")


def test_restic_0_18s_json_says_which_damage_reading_data_found() -> None:
    # check --json prints no phase lines: the problems' phases come from the error itself
    from orchestrator.adapters.restic import RepositoryDamaged

    pack = "ab" * 32
    damaged = RepositoryDamaged(
        "restic check: repository contains errors", repository=WHERE, command="check",
        problems=(f"pack {pack} contains 1 errors: [blob 12: ciphertext verification failed]",
                  "error for tree 1234:", "  blob 5678 not found in index"),
        broken_packs=(pack,), read_data_problems=(
            f"pack {pack} contains 1 errors: [blob 12: ciphertext verification failed]",))
    run, _ = _run([damaged], [])
    structure, data = judge_check_run(WHERE, "1/7", run.phases, problems=run.problems)
    assert (structure.status, data.status) == (FAILED, FAILED)
    assert structure.details["problems"] == ["error for tree 1234:",
                                             "blob 5678 not found in index"]
    assert data.details["problems"] == [
        f"pack {pack} contains 1 errors: [blob 12: ciphertext verification failed]"]


# --- the ledger's facts ---------------------------------------------------------------------


def test_facts_round_trip_and_an_older_ledger_gains_the_table(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "ledger.sqlite"
    old = sqlite3.connect(path)  # a ledger from before facts existed
    old.executescript("CREATE TABLE runs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, estate TEXT "
                      "NOT NULL, operator TEXT NOT NULL, started REAL NOT NULL, finished REAL, "
                      "status TEXT NOT NULL, params TEXT NOT NULL, summary TEXT);")
    old.close()
    with Ledger(path) as ledger:
        assert ledger.fact("snapshot.size", "abc") is None
        ledger.set_fact("snapshot.size", "abc", [10, 2])
        ledger.set_fact("snapshot.size", "abc", [11, 3])  # replaced, not added
        keys = [f"k{i}" for i in range(1200)]  # more than one query's worth of parameters
        for key in keys[::100]:
            ledger.set_fact("snapshot.size", key, [1, 1])
        assert ledger.fact("snapshot.size", "abc") == [11, 3]
        assert set(ledger.facts("snapshot.size", [*keys, "abc"])) == {*keys[::100], "abc"}
        assert ledger.facts("verify.read_data", ["abc"]) == {}
