"""``hopnhat maintain``: the plan (each rest system's retention as keep-within rules, SFTP
systems skipped, wrong names refused before anything), the pass, run against a fake restic
and a real ledger — every removal recorded before the pruning forget, the run going on past
a failed repository — and the flow around it (the lock, the textfile, nothing touched when
it cannot run)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.actions.maintain import flow
from orchestrator.actions.maintain import run as maintain_run
from orchestrator.actions.maintain.plan import Target, describe, plan_maintenance, within_policy
from orchestrator.actions.maintain.run import MaintainResult, Outcome, last_successes, maintain
from orchestrator.actions.passes import Hooks
from orchestrator.actions.snapshot_log import removed_ids, removed_since, short_key
from orchestrator.adapters.restic import Repository, ResticCommandError
from orchestrator.adapters.restic_results import ForgetGroup, ForgetResult, Snapshot
from orchestrator.errors import EXIT_BAD_INPUT, EstateError, SecretError
from orchestrator.estate import Estate, load_estate
from orchestrator.estate.model import Retention
from orchestrator.ledger import Ledger
from orchestrator.reports.maintain_metrics import render_maintain_metrics
from orchestrator.settings import Paths
from orchestrator.verdicts import FAILED, OK, SKIPPED
from tests.helpers import EXAMPLE_ESTATE, EstateCopy

HOST = "repo-qnam-01"


@pytest.fixture(scope="module")
def example() -> Estate:
    return load_estate(EXAMPLE_ESTATE)


# --- the policy -----------------------------------------------------------------------------

def test_each_count_becomes_a_keep_within_rule_of_its_span() -> None:
    policy = within_policy(Retention(hourly=48, daily=14, weekly=8, monthly=12, yearly=2))
    assert policy == {"within-hourly": "48h", "within-daily": "14d", "within-weekly": "56d",
                      "within-monthly": "12m", "within-yearly": "2y"}
    assert describe(policy).startswith("keep-within-hourly 48h, keep-within-daily 14d")


def test_a_count_of_zero_is_left_out() -> None:
    assert within_policy(Retention(hourly=0, daily=7, weekly=0, monthly=6, yearly=0)) == {
        "within-daily": "7d", "within-monthly": "6m"}


def test_a_retention_that_keeps_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="keeps nothing"):
        within_policy(Retention(hourly=0, daily=0, weekly=0, monthly=0, yearly=0))


# --- the plan -------------------------------------------------------------------------------

def test_by_default_every_system_with_a_backup_is_maintained_in_code_order(
        example: Estate) -> None:
    targets = plan_maintenance(example)
    assert [t.system for t in targets] == sorted(
        code for code, s in example.systems.items() if s.backup is not None)
    dvc = next(t for t in targets if t.system == "dvc")
    assert (dvc.repository, dvc.protocol, dvc.skipped) == (HOST, "rest", None)
    assert dvc.policy == {"within-hourly": "48h", "within-daily": "14d",
                          "within-weekly": "56d", "within-monthly": "12m"}


def test_named_systems_are_maintained_in_the_order_given_once_each(example: Estate) -> None:
    targets = plan_maintenance(example, ["sso", "dvc", "sso"])
    assert [t.system for t in targets] == ["sso", "dvc"]


def test_an_unknown_system_is_refused_before_anything_naming_it(example: Estate) -> None:
    with pytest.raises(EstateError) as caught:
        plan_maintenance(example, ["dvc", "qvlb"])
    assert caught.value.exit_code == 2
    assert [p[1] for p in caught.value.problems] == ["qvlb"]
    assert "no system 'qvlb'" in caught.value.problems[0][2]


def test_a_system_without_a_backup_is_refused(estate_copy: EstateCopy) -> None:
    estate_copy.edit("systems/video.yml", lambda data: data.pop("backup"))
    estate = estate_copy.load()
    with pytest.raises(EstateError) as caught:
        plan_maintenance(estate, ["video"])
    assert caught.value.exit_code == 2
    assert caught.value.problems == [("systems/video.yml", "backup",
                                      "system 'video' has no backup to maintain")]
    assert "video" not in [t.system for t in plan_maintenance(estate)]


def test_a_system_on_an_sftp_host_is_skipped_saying_why(estate_copy: EstateCopy) -> None:
    estate_copy.edit("estate.yml", lambda data: data["repository_hosts"].append(
        {"name": "repo-qnam-02", "site": "quangnam", "address": "127.20.2.11",
         "storage_path": "/srv/restic", "capacity_gb": 500, "protocol": "sftp"}))

    def to_sftp(data: dict[str, Any]) -> None:
        data["backup"]["repository_host"] = "repo-qnam-02"
        del data["backup"]["port"], data["backup"]["quota_gb"]

    estate_copy.edit("systems/email.yml", to_sftp)
    [dvc, email] = plan_maintenance(estate_copy.load(), ["dvc", "email"])
    assert dvc.skipped is None
    assert (email.repository, email.protocol, email.policy) == ("repo-qnam-02", "sftp", {})
    assert email.skipped is not None and "clients apply the retention" in email.skipped


def test_a_retention_keeping_nothing_is_refused_naming_the_file(
        estate_copy: EstateCopy) -> None:
    estate_copy.edit("systems/sso.yml", lambda data: data["backup"].update(retention={
        "hourly": 0, "daily": 0, "weekly": 0, "monthly": 0, "yearly": 0}))
    with pytest.raises(EstateError) as caught:
        plan_maintenance(estate_copy.load())
    assert caught.value.problems == [("systems/sso.yml", "backup.retention",
                                      "the retention keeps nothing")]


# --- the pass -------------------------------------------------------------------------------

def _id(char: str) -> str:
    return char * 64


def _snapshot(ident: str) -> Snapshot:
    return Snapshot(id=ident, short_id=ident[:8], time=datetime(2026, 11, 1, tzinfo=UTC),
                    hostname="dvc-db-01", username="root", paths=("/srv/dvc",))


def _forgot(remove: Sequence[str], keep: Sequence[str] = (_id("0"),),
            pruned: bool = False) -> ForgetResult:
    return ForgetResult((ForgetGroup("dvc-db-01", ("/srv/dvc",), (),
                                     keep=tuple(_snapshot(i) for i in keep),
                                     remove=tuple(_snapshot(i) for i in remove)),), pruned)


@dataclass
class Scenario:
    """What the fake restic answers per system: the dry run's removals, the real run's, or
    an error raised by any forget."""

    planned: dict[str, list[str]] = field(default_factory=dict)
    done: dict[str, list[str]] = field(default_factory=dict)
    errors: dict[str, Exception] = field(default_factory=dict)
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    #: per system: the removals the ledger held when the pruning forget started
    ledger_at_prune: dict[str, frozenset[str]] = field(default_factory=dict)


def install_fakes(monkeypatch: pytest.MonkeyPatch, paths: Paths,
                  scenario: Scenario) -> None:
    @contextmanager
    def open_repository(paths_: Paths, code: str, **_: Any) -> Iterator[Repository]:
        scenario.calls.append(("open", code, {}))
        yield Repository(f"rest:https://127.20.2.10:8000/{code}/{code}/",
                         paths_.state / "pw", name=f"{code}@{HOST}")

    class FakeRestic:
        def __init__(self, repo: Repository, **options: Any) -> None:
            self.system = repo.name.split("@")[0]
            scenario.calls.append(("restic", self.system, options))

        def forget(self, retention: dict[str, str], prune: bool = True, *,
                   dry_run: bool = False, **_: Any) -> ForgetResult:
            scenario.calls.append(("forget", self.system, {
                "retention": dict(retention), "prune": prune, "dry_run": dry_run}))
            if self.system in scenario.errors:
                raise scenario.errors[self.system]
            if dry_run:
                return _forgot(scenario.planned.get(self.system, []))
            with Ledger(paths.ledger) as ledger:
                scenario.ledger_at_prune[self.system] = removed_ids(ledger, self.system, HOST)
            return _forgot(scenario.done.get(self.system, []), pruned=prune)

    monkeypatch.setattr(maintain_run, "open_repository", open_repository)
    monkeypatch.setattr(maintain_run, "Restic", FakeRestic)


@pytest.fixture
def paths(tmp_path: Path, example: Estate) -> Paths:
    return Paths(state=tmp_path / "state", estate=example)


def _targets(estate: Estate, *codes: str) -> list[Target]:
    return plan_maintenance(estate, codes)


def maintained(paths: Paths, targets: Sequence[Target], *, dry_run: bool = False,
               on_outcome: Callable[[Outcome], None] | None = None) -> MaintainResult:
    """The pass, with the ledger open as its flow opens it."""
    with Ledger(paths.ledger) as ledger:
        return maintain(paths, targets, ledger=ledger, dry_run=dry_run, on_outcome=on_outcome)


def successes(paths: Paths) -> dict[tuple[str, str], float]:
    with Ledger(paths.ledger) as ledger:
        return last_successes(ledger)


def _forgets(scenario: Scenario, system: str) -> list[dict[str, Any]]:
    return [detail for kind, code, detail in scenario.calls if kind == "forget" and code == system]


def test_the_dry_runs_removals_are_recorded_before_the_pruning_forget(
        monkeypatch: pytest.MonkeyPatch, paths: Paths) -> None:
    scenario = Scenario(planned={"dvc": [_id("a"), _id("b")]},
                        done={"dvc": [_id("a"), _id("b"), _id("c")]})  # a backup landed
    install_fakes(monkeypatch, paths, scenario)
    [target] = _targets(paths.estate, "dvc")
    result = maintained(paths, [target])

    policy = target.policy
    assert _forgets(scenario, "dvc") == [
        {"retention": policy, "prune": False, "dry_run": True},
        {"retention": policy, "prune": True, "dry_run": False}]
    assert scenario.ledger_at_prune["dvc"] == {short_key(_id("a")), short_key(_id("b"))}
    with Ledger(paths.ledger) as ledger:
        removed = removed_since(ledger, "dvc", HOST)
        [run] = ledger.runs("maintain")
        events = ledger.events(result.run_id)
    assert set(removed) == {short_key(_id(c)) for c in "abc"}
    assert {r.run_id for r in removed.values()} == {result.run_id}
    assert {r.why for r in removed.values()} == {f"maintain: {describe(policy)}"}
    [outcome] = result.outcomes
    assert (outcome.status, outcome.removed, outcome.kept) == (
        OK, [_id("a"), _id("b"), _id("c")], 1)
    assert (result.exit_code, run.status, run.summary) == (0, "ok", {"removed": 3,
                                                                     "failed": []})
    assert [(e["subject"], e["kind"]) for e in events] == [(f"dvc@{HOST}", OK)]


def test_nothing_to_remove_records_nothing_but_still_prunes(
        monkeypatch: pytest.MonkeyPatch, paths: Paths) -> None:
    scenario = Scenario()
    install_fakes(monkeypatch, paths, scenario)
    result = maintained(paths, _targets(paths.estate, "dvc"))
    assert [d["prune"] for d in _forgets(scenario, "dvc")] == [False, True]
    with Ledger(paths.ledger) as ledger:
        assert removed_ids(ledger, "dvc", HOST) == frozenset()
    assert result.outcomes[0].removed == [] and result.exit_code == 0


def test_a_dry_run_records_nothing_and_never_prunes(monkeypatch: pytest.MonkeyPatch,
                                                    paths: Paths) -> None:
    scenario = Scenario(planned={"dvc": [_id("a")], "sso": [_id("d"), _id("e")]})
    install_fakes(monkeypatch, paths, scenario)
    result = maintained(paths, _targets(paths.estate, "dvc", "sso"), dry_run=True)
    forgets = [d for kind, _, d in scenario.calls if kind == "forget"]
    assert forgets and all(d["dry_run"] and not d["prune"] for d in forgets)
    assert [o.removed for o in result.outcomes] == [[_id("a")], [_id("d"), _id("e")]]
    with Ledger(paths.ledger) as ledger:
        assert removed_ids(ledger, "dvc", HOST) == removed_ids(ledger, "sso", HOST) == set()
        [run] = ledger.runs("maintain")
    assert run.params["dry_run"] is True
    assert (run.status, run.summary) == ("ok", {"removed": 0, "failed": []})
    assert successes(paths) == {}  # a dry run is no maintenance


def test_a_failed_repository_is_named_and_the_next_still_maintained(
        monkeypatch: pytest.MonkeyPatch, paths: Paths) -> None:
    scenario = Scenario(done={"sso": [_id("f")]}, errors={"dvc": ResticCommandError(
        "restic forget: repository dvc@repo-qnam-01 is locked", repository="dvc",
        command="forget")})
    install_fakes(monkeypatch, paths, scenario)
    seen: list[Outcome] = []
    result = maintained(paths, _targets(paths.estate, "dvc", "sso"), on_outcome=seen.append)
    dvc, sso = result.outcomes
    assert (dvc.status, dvc.removed) == (FAILED, [])
    assert dvc.error is not None and "is locked" in dvc.error
    assert (sso.status, sso.removed) == (OK, [_id("f")])
    assert seen == result.outcomes
    assert result.exit_code == 1
    with Ledger(paths.ledger) as ledger:
        [run] = ledger.runs("maintain")
        kinds = [(e["subject"], e["kind"]) for e in ledger.events(run.id)]
    assert (run.status, run.summary) == ("failed", {"removed": 1, "failed": ["dvc"]})
    assert kinds == [(f"dvc@{HOST}", FAILED), (f"sso@{HOST}", OK)]
    assert successes(paths) == {("sso", HOST): run.started}


def test_a_skipped_target_opens_no_repository_and_runs_no_restic(
        monkeypatch: pytest.MonkeyPatch, paths: Paths) -> None:
    scenario = Scenario()
    install_fakes(monkeypatch, paths, scenario)
    skipped = Target("email", "repo-qnam-02", "sftp", skipped="an SFTP repository host")
    result = maintained(paths, [skipped, *_targets(paths.estate, "dvc")])
    assert [(o.target.system, o.status) for o in result.outcomes] == [("email", SKIPPED),
                                                                      ("dvc", OK)]
    assert {code for _, code, _ in scenario.calls} == {"dvc"}
    assert result.exit_code == 0


def test_an_unexpected_error_stops_the_run_and_the_ledger_says_so(
        monkeypatch: pytest.MonkeyPatch, paths: Paths) -> None:
    scenario = Scenario(errors={"sso": RuntimeError("bug")})
    install_fakes(monkeypatch, paths, scenario)
    with pytest.raises(RuntimeError, match="bug"):
        maintained(paths, _targets(paths.estate, "dvc", "sso", "video"))
    with Ledger(paths.ledger) as ledger:
        [run] = ledger.runs("maintain")
    assert (run.status, run.summary) == ("stopped", {"done": ["dvc"]})
    assert "video" not in {code for _, code, _ in scenario.calls}


class _Vault:
    """A vault holding every key but ``missing``."""

    def __init__(self, missing: str) -> None:
        self.missing = missing
        self.read: list[str] = []

    def get(self, ref: Any) -> str:
        if ref.vault == self.missing:
            raise SecretError(f"vault.yml: the vault holds no key {ref.vault!r}")
        self.read.append(ref.vault)
        return "x"


def test_a_missing_maintenance_password_is_bad_input_before_anything_runs(
        example: Estate, tmp_path: Path) -> None:
    from orchestrator.actions.maintain.run import require_secrets

    paths = Paths(tmp_path, example)
    targets = plan_maintenance(example, ["qlvb", "sso"])
    vault = _Vault("rest_maintenance_repo_qnam_01")
    with pytest.raises(SecretError) as caught:
        require_secrets(paths, targets, vault)  # type: ignore[arg-type]
    assert caught.value.exit_code == EXIT_BAD_INPUT
    assert "rest_maintenance_repo_qnam_01" in str(caught.value)
    assert not paths.ledger.exists()  # nothing ran, nothing recorded
    everything = _Vault("none")
    require_secrets(paths, targets, everything)  # type: ignore[arg-type]
    assert set(everything.read) == {"restic_password_qlvb", "restic_password_sso",
                                    "rest_maintenance_repo_qnam_01"}


# --- the flow -------------------------------------------------------------------------------

def _last_success(text: str) -> dict[str, float]:
    """System → its last success in a maintain textfile."""
    return {s.labels["system"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "hopnhat_maintain_last_success_timestamp_seconds"}


def test_the_flow_locks_runs_and_writes_a_textfile_carrying_a_failed_ones_last_success(
        monkeypatch: pytest.MonkeyPatch, paths: Paths, tmp_path: Path) -> None:
    scenario = Scenario(done={"dvc": [_id("a")]})
    install_fakes(monkeypatch, paths, scenario)
    monkeypatch.setattr(flow, "Secrets", lambda _: _Vault("none"))
    heard: list[str] = []
    hooks = Hooks[Target, Outcome](lock=lambda: heard.append("lock"),
                                   planned=lambda targets: heard.append(f"{len(targets)}"),
                                   outcome=lambda outcome: heard.append(outcome.target.system))
    flow.maintain_flow(paths, ["dvc", "sso"], hooks=hooks)
    assert heard == ["lock", "2", "dvc", "sso"]
    scenario.errors["sso"] = ResticCommandError("repository is locked", command="forget")
    metrics = tmp_path / "metrics" / "maintain.prom"
    second = flow.maintain_flow(paths, ["dvc", "sso"], metrics=metrics)
    with Ledger(paths.ledger) as ledger:
        [_, first] = ledger.runs("maintain")
    text = metrics.read_text()
    assert _last_success(text) == {"dvc": second.started, "sso": first.started}
    assert text == render_maintain_metrics(paths.estate.id, second,
                                           {("dvc", HOST): first.started,
                                            ("sso", HOST): first.started})


def test_a_dry_run_takes_no_lock_and_a_pass_that_cannot_run_touches_nothing(
        monkeypatch: pytest.MonkeyPatch, paths: Paths, tmp_path: Path) -> None:
    install_fakes(monkeypatch, paths, Scenario())
    monkeypatch.setattr(flow, "Secrets", lambda _: _Vault("none"))
    locked: list[str] = []
    hooks = Hooks[Target, Outcome](lock=lambda: locked.append("lock"))
    assert flow.maintain_flow(paths, ["dvc"], dry_run=True, hooks=hooks).exit_code == 0
    assert locked == []
    monkeypatch.setattr(flow, "Secrets", lambda _: _Vault("rest_maintenance_repo_qnam_01"))
    fresh = Paths(tmp_path / "fresh", paths.estate)
    metrics = tmp_path / "maintain.prom"
    with pytest.raises(SecretError) as caught:
        flow.maintain_flow(fresh, ["dvc"], metrics=metrics, hooks=hooks)
    assert caught.value.exit_code == EXIT_BAD_INPUT
    assert locked == [] and not fresh.ledger.exists() and not metrics.exists()
