"""hopnhat's Prometheus alert rules: valid for Prometheus (``promtool check rules``), and
firing exactly when they should (``promtool test rules``: input series in, alerts out).

Each scenario starts from one healthy system — its verify series, its host's backup job,
its maintenance and quota — changes a few series, and names every alert that fires at each
evaluation time; every other rule is asserted silent there. promtool comes from Debian's
``prometheus`` package (``make test`` installs it); without it these tests fail."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.reports.alerts import (
    ATTACK_ALERTS,
    CHECK_ALERTS,
    CRITICAL,
    WARNING,
    alert_groups,
    render_rules,
    rules_document,
)

GROUPS = alert_groups()
RULES = {rule.alert: rule for group in GROUPS for rule in group.rules}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: install Debian's prometheus package "
                    "(apt-get install --no-install-recommends prometheus; make test does)")
    return found


def _promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120,
                          check=False)


# --- the series of one healthy system ------------------------------------------------------

CONTROL = {"instance": "control:9100", "job": "node"}  # node_exporter of the control host
REPO = {"system": "qlvb", "tier": "1", "repository": "repo-01"}
HOST = {"system": "qlvb", "tier": "1", "host": "qlvb-db-01",
        "instance": "qlvb-db-01:9100", "job": "node"}
AT_HOST = {**REPO, **CONTROL, "host": "qlvb-db-01"}
RUN = {"estate": "demo", **CONTROL}
DRILLED = {"system": "qlvb", "tier": "1", **CONTROL}  # the nightly drills' per-system series
RPO = 86400  # tier 1: a day
SAMPLES = 1600  # at 1 m: 26 h 40 m


def series(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def check_ok(check: str) -> str:
    return series("hopnhat_verify_check_ok", {**REPO, **CONTROL, "check": check})


def repo(name: str) -> str:
    return series(name, {**REPO, **CONTROL})


def steady(value: float) -> str:
    return f"{value:g}x{SAMPLES}"


def healthy() -> dict[str, str]:
    """Series → promtool values: verify ran at 0 and found everything in order, the host's
    backup succeeds all the time (its last success is always now), maintenance succeeded at
    0, half the quota used, the system's last drill passed and the nightly drills ran (their
    last run is always now)."""
    return {
        series("hopnhat_verify_last_run_timestamp_seconds", RUN): steady(0),
        series("hopnhat_verify_exit_code", RUN): steady(0),
        repo("hopnhat_verify_ok"): steady(1),
        **{check_ok(c): steady(1) for c in (*CHECK_ALERTS, *ATTACK_ALERTS)},
        repo("hopnhat_backup_rpo_seconds"): steady(RPO),
        series("hopnhat_backup_last_snapshot_age_seconds", AT_HOST): steady(3600),
        repo("hopnhat_backup_stale_locks"): steady(0),
        **{repo(count): steady(0) for _, count in ATTACK_ALERTS.values()},
        **{series("hopnhat_backup_result", {**HOST, "result": r}): steady(r == "ok")
           for r in ("ok", "partial", "failed")},
        series("hopnhat_backup_exit_code", HOST): steady(0),
        series("hopnhat_backup_last_success_timestamp_seconds", HOST): f"0+60x{SAMPLES}",
        series("hopnhat_maintain_last_success_timestamp_seconds",
               {"system": "qlvb", "repository": "repo-01", **CONTROL}): steady(0),
        series("hopnhat_maintain_exit_code", RUN): steady(0),
        series("hopnhat_repository_used_bytes",
               {"system": "qlvb", "repository": "repo-01", **CONTROL}): steady(50e9),
        series("hopnhat_repository_quota_bytes",
               {"system": "qlvb", "repository": "repo-01", **CONTROL}): steady(100e9),
        series("hopnhat_drill_last_exit_code", DRILLED): steady(0),
        series("hopnhat_drill_overdue", DRILLED): steady(0),
        series("hopnhat_drill_nightly_last_run_timestamp_seconds", RUN): f"0+60x{SAMPLES}",
        series("hopnhat_drill_nightly_exit_code", RUN): steady(0),
    }


def fired(alert: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"alert": alert, "labels": {**labels, "severity": RULES[alert].severity}}


@dataclass
class Scenario:
    """``changed`` series replace the healthy ones (None removes one); ``expect`` maps an
    evaluation time to the alerts firing then — every other rule must be silent."""

    name: str
    changed: dict[str, str | None] = field(default_factory=dict)
    expect: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    interval: str = "1m"  # of the samples and of the rules' evaluation
    whole: dict[str, str] | None = None  # the series, instead of healthy() + changed

    def promtool_test(self) -> dict[str, Any]:
        inputs = dict(self.whole if self.whole is not None else healthy())
        for key, values in self.changed.items():
            if values is None:
                del inputs[key]
            else:
                inputs[key] = values
        cases = []
        for at, alerts in self.expect.items():
            for name in RULES:
                cases.append({"eval_time": at, "alertname": name, "exp_alerts": [
                    {"exp_labels": a["labels"]} for a in alerts if a["alert"] == name]})
            unknown = {a["alert"] for a in alerts} - set(RULES)
            assert not unknown, f"{self.name}: no such alert {unknown}"
        return {"name": self.name, "interval": self.interval,
                "input_series": [{"series": k, "values": v} for k, v in inputs.items()],
                "alert_rule_test": cases}


VANISHED_AT = "5m"
SCENARIOS = [
    Scenario("a failed drill fires at once, critical; an overdue system warns",
             changed={series("hopnhat_drill_last_exit_code", DRILLED): steady(1),
                      series("hopnhat_drill_overdue", DRILLED): steady(1)},
             expect={"1m": [fired("HopnhatDrillFailed", DRILLED),
                            fired("HopnhatDrillOverdue", DRILLED)]}),
    Scenario("a drill stopped at the window's end is no failure: the night is incomplete",
             changed={series("hopnhat_drill_last_exit_code", DRILLED): steady(130),
                      series("hopnhat_drill_nightly_exit_code", RUN): steady(3)},
             expect={"1m": [fired("HopnhatDrillNightlyIncomplete", RUN)]}),
    Scenario("nightly drills that have not run for 26 h fire, not before",
             changed={series("hopnhat_drill_nightly_last_run_timestamp_seconds", RUN):
                      steady(0),
                      series("hopnhat_verify_last_run_timestamp_seconds", RUN):
                      f"0+60x{SAMPLES}"},
             expect={"25h59m": [], "26h1m": [fired("HopnhatDrillNightlyNotRun", RUN)]}),
    Scenario("a healthy system fires nothing, a day after verify ran",
             expect={"1m": [], "25h": []}),
    Scenario("verify that has not run for 26 h fires, not before",
             expect={"25h59m": [], "26h1m": [fired("HopnhatVerifyNotRun", RUN)]}),
    Scenario("no verify metric at all fires after an hour", whole={},
             expect={"59m": [], "61m": [fired("HopnhatVerifyMetricsAbsent", {})]}),
    Scenario("verify that could not run fires its exit code",
             changed={series("hopnhat_verify_exit_code", RUN): steady(2)},
             expect={"1m": [fired("HopnhatVerifyCouldNotRun", RUN)]}),
    Scenario("a vanished snapshot fires at once, alone (no generic 'verify failed')",
             changed={repo("hopnhat_backup_vanished_snapshots"): "0x4 2x100",
                      check_ok("vanished"): "1x4 0x100", repo("hopnhat_verify_ok"): "1x4 0x100"},
             expect={"4m": [],
                     VANISHED_AT: [fired("HopnhatSnapshotVanished", {**REPO, **CONTROL})]}),
    Scenario("future and foreign snapshots fire at once",
             changed={repo("hopnhat_backup_future_snapshots"): steady(1),
                      repo("hopnhat_backup_foreign_snapshots"): steady(3),
                      check_ok("future"): steady(0), check_ok("foreign"): steady(0),
                      repo("hopnhat_verify_ok"): steady(0)},
             expect={"0m": [fired("HopnhatSnapshotInFuture", {**REPO, **CONTROL}),
                            fired("HopnhatSnapshotFromForeignHost", {**REPO, **CONTROL})]}),
    Scenario("files deleted by a system's own append-only server fire at once",
             changed={repo("hopnhat_backup_server_deleted_files"): steady(3),
                      check_ok("deletions"): steady(0), repo("hopnhat_verify_ok"): steady(0)},
             expect={"0m": [fired("HopnhatRepositoryServerDeleted", {**REPO, **CONTROL})]}),
    Scenario("an attack check that could not run is no attack sign, but verify failed",
             changed={check_ok("vanished"): steady(0), repo("hopnhat_verify_ok"): steady(0),
                      repo("hopnhat_backup_vanished_snapshots"): None},
             expect={"1m": [fired("HopnhatVerifyFailed", {**REPO, **CONTROL})]}),
    Scenario("RPO exceeded fires once the age verify measured passes the RPO",
             changed={series("hopnhat_backup_last_snapshot_age_seconds", AT_HOST):
                      f"{RPO - 400}+100x100",  # past the RPO from the 5th minute
                      check_ok("freshness"): "1x4 0x100", repo("hopnhat_verify_ok"): "1x4 0x100"},
             expect={"4m": [], "5m": [fired("HopnhatBackupRpoExceeded", AT_HOST)]}),
    Scenario("a host with no snapshot at all fails freshness: RPO exceeded, by the check",
             changed={series("hopnhat_backup_last_snapshot_age_seconds", AT_HOST): None,
                      check_ok("freshness"): steady(0), repo("hopnhat_verify_ok"): steady(0)},
             expect={"1m": [fired("HopnhatBackupRpoExceeded",
                                  {**REPO, **CONTROL, "check": "freshness"})]}),
    Scenario("a host whose backups stop succeeding fires once its RPO has passed",
             changed={series("hopnhat_backup_last_success_timestamp_seconds", HOST): steady(0)},
             expect={"23h59m": [],
                     "24h1m": [fired("HopnhatBackupNotSucceededWithinRpo", HOST)]}),
    Scenario("a failed and a partial backup run fire",
             changed={series("hopnhat_backup_result", {**HOST, "result": "ok"}): steady(0),
                      series("hopnhat_backup_result", {**HOST, "result": "failed"}):
                      "1x60 0x2000",
                      series("hopnhat_backup_result", {**HOST, "result": "partial"}):
                      "0x60 1x2000"},
             expect={"1m": [fired("HopnhatBackupJobFailed", {**HOST, "result": "failed"})],
                     "2h": [fired("HopnhatBackupJobPartial", {**HOST, "result": "partial"})]}),
    Scenario("damaged structure fires critical, alone",
             changed={check_ok("structure"): steady(0), repo("hopnhat_verify_ok"): steady(0)},
             expect={"1m": [fired("HopnhatVerifyStructureFailed", {**REPO, **CONTROL,
                                                                   "check": "structure"})]}),
    Scenario("a check with no alert of its own fires 'verify failed'",
             changed={check_ok("newcheck"): steady(0), repo("hopnhat_verify_ok"): steady(0)},
             expect={"1m": [fired("HopnhatVerifyFailed", {**REPO, **CONTROL})]}),
    Scenario("stale locks fire once, by their count",
             changed={repo("hopnhat_backup_stale_locks"): steady(1), check_ok("locks"): steady(0),
                      repo("hopnhat_verify_ok"): steady(0)},
             expect={"1m": [fired("HopnhatRepositoryStaleLocks", {**REPO, **CONTROL})]}),
    Scenario("a quota above 90 % fires after 30 minutes; a zero quota never",
             changed={series("hopnhat_repository_used_bytes",
                             {"system": "qlvb", "repository": "repo-01", **CONTROL}):
                      steady(95e9)},
             expect={"29m": [], "31m": [fired("HopnhatRepositoryQuotaNearlyFull",
                                              {"system": "qlvb", "repository": "repo-01",
                                               **CONTROL})]}),
    Scenario("a zero quota (none set) never fires",
             changed={series("hopnhat_repository_quota_bytes",
                             {"system": "qlvb", "repository": "repo-01", **CONTROL}):
                      steady(0)},
             expect={"1h": []}),
    Scenario("maintenance not succeeded for 8 days fires, a failed pass at once",
             interval="1h",
             changed={**{k: v.replace(f"x{SAMPLES}", "x300") for k, v in healthy().items()},
                      series("hopnhat_verify_last_run_timestamp_seconds", RUN): "0+3600x300",
                      series("hopnhat_drill_nightly_last_run_timestamp_seconds", RUN):
                      "0+3600x300",
                      series("hopnhat_backup_last_success_timestamp_seconds", HOST):
                      "0+3600x300",
                      series("hopnhat_maintain_exit_code", RUN): "0x100 1x1 0x200"},
             expect={"191h": [],
                     "193h": [fired("HopnhatMaintainNotSucceeded",
                                    {"system": "qlvb", "repository": "repo-01", **CONTROL})],
                     "101h": [fired("HopnhatMaintainFailed", RUN)]}),
]


def _rule_file(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "hopnhat-alerts.yml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False))
    return path


def _run_promtool_test(promtool: str, tmp_path: Path, rules: Path, test: dict[str, Any],
                       evaluation_interval: str = "1m") -> None:
    test_file = tmp_path / "alerts_test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(rules)],
                                         "evaluation_interval": evaluation_interval,
                                         "tests": [test]}, allow_unicode=True, sort_keys=False))
    done = _promtool(promtool, "test", "rules", str(test_file))
    assert done.returncode == 0, done.stdout + done.stderr


# --- promtool ------------------------------------------------------------------------------


def test_promtool_accepts_the_rendered_rule_file(promtool: str, tmp_path: Path) -> None:
    path = tmp_path / "hopnhat.yml"
    path.write_text(render_rules(GROUPS), encoding="utf-8")
    done = _promtool(promtool, "check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(RULES)} rules found" in done.stdout


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_the_alerts_that_fire_and_no_other(promtool: str, tmp_path: Path,
                                           scenario: Scenario) -> None:
    # the logic only: the annotations are asserted once, below (promtool compares them whole)
    document = rules_document(GROUPS)
    for group in document["groups"]:
        for rule in group["rules"]:
            del rule["annotations"]
    # rules evaluated as often as the series are sampled: 8 days at 1 m take promtool 20 s
    _run_promtool_test(promtool, tmp_path, _rule_file(tmp_path, document),
                       scenario.promtool_test(), scenario.interval)


def test_an_alert_reads_in_vietnamese_and_english_with_its_labels_filled_in(
        promtool: str, tmp_path: Path) -> None:
    rule = RULES["HopnhatSnapshotVanished"]
    labels = {**REPO, **CONTROL}
    texts = rule.as_dict()["annotations"]
    assert all(re.sub(r"\{\{ \$labels\.\w+ \}\}", "", t).count("{{") == 0
               for t in texts.values()), "only labels here, to fill them in below"
    expected = {k: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m[1]], v)
                for k, v in texts.items()}
    assert "hệ thống qlvb" in expected["summary"] and "system qlvb" in expected["summary_en"]
    vanished = next(s for s in SCENARIOS if s.name.startswith("a vanished snapshot"))
    test = vanished.promtool_test()
    test["alert_rule_test"] = [{"eval_time": VANISHED_AT, "alertname": rule.alert,
                                "exp_alerts": [{"exp_labels": {**labels, "severity": CRITICAL},
                                                "exp_annotations": expected}]}]
    path = tmp_path / "rules.yml"
    path.write_text(render_rules(GROUPS), encoding="utf-8")
    _run_promtool_test(promtool, tmp_path, path, test)


# --- the rules as data ---------------------------------------------------------------------


def test_attack_signs_are_critical_and_fire_without_delay() -> None:
    for alert, _ in ATTACK_ALERTS.values():
        assert RULES[alert].severity == CRITICAL
        assert "for" not in RULES[alert].as_dict()


def test_every_rule_has_a_severity_and_both_languages() -> None:
    for rule in RULES.values():
        assert rule.severity in (CRITICAL, WARNING)
        assert rule.summary and rule.summary_en and rule.description and rule.description_en
        assert rule.summary != rule.summary_en and rule.description != rule.description_en


def test_each_check_alert_fires_on_its_checks_failure() -> None:
    # HopnhatVerifyFailed leaves these checks to their own alert: each must fire on them
    for check, alert in CHECK_ALERTS.items():
        assert f'hopnhat_verify_check_ok{{check="{check}"}} == 0' in RULES[alert].expr


def test_thresholds_come_from_the_parameters() -> None:
    groups = alert_groups(verify_max_age=timedelta(hours=30), maintain_max_age=timedelta(days=3),
                          quota_percent=80, quota_for=timedelta(hours=1))
    rules = {r.alert: r for g in groups for r in g.rules}
    assert rules["HopnhatVerifyNotRun"].expr.endswith("> 108000")
    assert "30 giờ" in rules["HopnhatVerifyNotRun"].summary
    assert rules["HopnhatMaintainNotSucceeded"].expr.endswith("> 259200")
    assert "3 ngày" in rules["HopnhatMaintainNotSucceeded"].summary
    quota = rules["HopnhatRepositoryQuotaNearlyFull"]
    assert quota.expr.endswith("> 0.8") and quota.as_dict()["for"] == "1h"


@pytest.mark.parametrize("bad", [{"quota_percent": 0}, {"quota_percent": 101},
                                 {"verify_max_age": timedelta(0)},
                                 {"maintain_max_age": timedelta(seconds=-1)}])
def test_nonsense_thresholds_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        alert_groups(**bad)


# --- hopnhat alerts ------------------------------------------------------------------------


def test_print_writes_the_rule_file_on_stdout() -> None:
    done = CliRunner().invoke(app, ["alerts", "--print"])
    assert done.exit_code == 0, done.output
    assert done.stdout == render_rules(GROUPS)
    assert yaml.safe_load(done.stdout) == rules_document(GROUPS)


def test_json_prints_the_groups() -> None:
    done = CliRunner().invoke(app, ["--json", "alerts", "--print"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == rules_document(GROUPS)


def test_output_writes_the_file_readable_by_prometheus(tmp_path: Path) -> None:
    target = tmp_path / "rules" / "hopnhat.yml"
    done = CliRunner().invoke(app, ["alerts", "--output", str(target), "--quota-percent", "85"])
    assert done.exit_code == 0, done.output
    assert target.read_text(encoding="utf-8") == render_rules(alert_groups(quota_percent=85))
    assert target.stat().st_mode & 0o777 == 0o644
    assert "rule_files" in done.stdout


def test_without_print_or_output_it_says_what_to_do() -> None:
    done = CliRunner().invoke(app, ["alerts"])
    assert done.exit_code == 2
    assert "--print" in done.stderr and "--output FILE" in done.stderr
    assert done.stdout == ""


def test_help_says_where_the_file_goes() -> None:
    done = CliRunner().invoke(app, ["alerts", "--help"], terminal_width=100)
    assert done.exit_code == 0
    assert "rule_files" in done.output and "promtool check config" in done.output
