"""The vault (issue 19, item 3): the estate's rules (a host of its own that no client
names), the pull's plan (wrong names refused before anything), what a pull copies, the pull
run against a fake restic and a real ledger, its metrics, its timer and verify's copy check
pointed at it."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from orchestrator.actions import schedule
from orchestrator.actions import vault as vault_action
from orchestrator.actions.passes import Hooks
from orchestrator.actions.vault import (
    Outcome,
    PullResult,
    Target,
    last_successes,
    missing_from,
    plan_pull,
    pull,
)
from orchestrator.actions.verify.checks import judge_copy
from orchestrator.adapters.restic import Repository, ResticCommandError
from orchestrator.adapters.restic_errors import NoRepository
from orchestrator.adapters.restic_results import Snapshot
from orchestrator.cli.app import app
from orchestrator.errors import EstateError
from orchestrator.estate import Estate, load_estate
from orchestrator.ledger import Ledger
from orchestrator.reports.vault_metrics import render_vault_metrics
from orchestrator.settings import Paths
from orchestrator.verdicts import COPY, FAILED, OK
from tests.helpers import EXAMPLE_ESTATE, EstateCopy

VAULT = "vault-danang-01"
REPO = "repo-qnam-01"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def example() -> Estate:
    return load_estate(EXAMPLE_ESTATE)


def snap(ident: str, age: timedelta, original: str | None = None) -> Snapshot:
    return Snapshot(id=ident * 8, short_id=ident, time=NOW - age, hostname="qlvb-db-01",
                    username="root", paths=("/srv/qlvb",), original=original)


# --- the estate -----------------------------------------------------------------------------

def test_the_example_vault_holds_every_system_from_a_host_of_its_own(example: Estate) -> None:
    assert example.settings.vault is not None
    host = example.repository_host(example.settings.vault.repository_host)
    assert (host.role, host.protocol, host.site) == ("vault", "rest", "danang")
    assert example.vault_systems() == sorted(example.systems)
    assert all(s.backup is None or s.backup.repository_host != VAULT
               for s in example.systems.values())


def test_a_vault_that_serves_sftp_is_refused(estate_copy: EstateCopy) -> None:
    def sftp(data: dict[str, Any]) -> None:
        host = data["repository_hosts"][1]
        host["protocol"] = "sftp"
        del host["maintenance_port"], host["tls_ca"]
    estate_copy.edit("estate.yml", sftp)
    estate_copy.assert_only_problems(("estate.yml", "repository_hosts[1]", "a vault host "
                                      "serves REST"))


def test_the_vault_must_be_a_vault_host(estate_copy: EstateCopy) -> None:
    estate_copy.edit("estate.yml", lambda data: data["vault"].update(repository_host=REPO))
    estate_copy.assert_only_problems(("estate.yml", "vault.repository_host", "a host of its "
                                      "own (role: vault)"))


def test_an_unknown_vault_host_is_named(estate_copy: EstateCopy) -> None:
    estate_copy.edit("estate.yml", lambda data: data["vault"].update(repository_host="nope"))
    estate_copy.assert_only_problems(("estate.yml", "vault.repository_host",
                                      "unknown repository host 'nope'"))


def test_no_client_backs_up_or_copies_to_the_vault(estate_copy: EstateCopy) -> None:
    estate_copy.edit("systems/qlvb.yml", lambda data: data["backup"].update(
        repository_host=VAULT))
    estate_copy.assert_only_problems(("systems/qlvb.yml", "backup.repository_host",
                                      "which no backup client reaches"))


def test_vault_systems_must_be_known_and_backed_up(estate_copy: EstateCopy) -> None:
    estate_copy.edit("estate.yml", lambda data: data["vault"].update(systems=["qlvb", "nope"]))
    estate_copy.assert_only_problems(("estate.yml", "vault.systems[1]", "unknown system 'nope'"))


def test_a_vault_limited_to_some_systems_holds_only_those(estate_copy: EstateCopy) -> None:
    estate_copy.edit("estate.yml", lambda data: data["vault"].update(systems=["sso", "qlvb"]))
    assert estate_copy.load().vault_systems() == ["qlvb", "sso"]


# --- the plan -------------------------------------------------------------------------------

def test_the_plan_pulls_every_held_system_by_default(example: Estate) -> None:
    targets = plan_pull(example)
    assert [t.system for t in targets] == sorted(example.systems)
    assert {(t.repository, t.vault) for t in targets} == {(REPO, VAULT)}
    assert [t.system for t in plan_pull(example, ["sso", "qlvb", "sso"])] == ["sso", "qlvb"]


def test_the_plan_refuses_unknown_systems_and_an_estate_without_a_vault(
        example: Estate, estate_copy: EstateCopy) -> None:
    with pytest.raises(EstateError, match="no system 'nope'"):
        plan_pull(example, ["nope"])
    estate_copy.edit("estate.yml", lambda data: data.pop("vault"))
    with pytest.raises(EstateError, match="this estate has no vault"):
        plan_pull(estate_copy.load())


def test_a_system_the_vault_does_not_hold_is_refused(estate_copy: EstateCopy) -> None:
    estate_copy.edit("estate.yml", lambda data: data["vault"].update(systems=["sso"]))
    with pytest.raises(EstateError, match="the vault does not hold system 'qlvb'"):
        plan_pull(estate_copy.load(), ["qlvb"])


# --- what a pull copies ---------------------------------------------------------------------

def test_only_what_the_vault_lacks_is_copied_oldest_first() -> None:
    source = [snap("aaaa", timedelta(hours=3)), snap("cccc", timedelta(hours=1)),
              snap("bbbb", timedelta(hours=2))]
    held = [snap("ffff", timedelta(hours=3), original="aaaa" * 8)]
    assert [s.short_id for s in missing_from(source, held)] == ["bbbb", "cccc"]
    # a snapshot gone from the source stays in the vault: nothing asks to remove it
    assert missing_from([], held) == []


# --- the pull, against a fake restic --------------------------------------------------------

class FakeRestic:
    """Per repository name: the snapshots it holds (absent: no repository yet); what was
    asked of it."""

    repos: ClassVar[dict[str, list[Snapshot]]] = {}
    calls: ClassVar[list[tuple[str, str]]] = []
    broken: ClassVar[set[str]] = set()

    def __init__(self, repo: Repository, **_: Any) -> None:
        self.name = repo.name

    def snapshots(self, **_: Any) -> list[Snapshot]:
        self.calls.append(("snapshots", self.name))
        if self.name in self.broken:
            raise ResticCommandError("Fatal: unable to open config file", command="snapshots")
        if self.name not in self.repos:
            raise NoRepository("Is there a repository at the following location?",
                               command="snapshots")
        return list(self.repos[self.name])

    def init(self, **kw: Any) -> str:
        self.calls.append(("init", self.name))
        assert kw["chunker_from"].name.endswith(f"@{REPO}")
        self.repos[self.name] = []
        return "1234"

    def copy(self, from_repo: Repository, ids: Sequence[str]) -> tuple[str, ...]:
        self.calls.append(("copy", self.name))
        self.repos[self.name] += [snap(i[:4], timedelta(0), original=i) for i in ids]
        return ()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeRestic]:
    FakeRestic.repos, FakeRestic.calls, FakeRestic.broken = {}, [], set()

    @contextmanager
    def opened(paths: Paths, code: str, *, vault: bool = False, **_: Any
               ) -> Iterator[Repository]:
        yield Repository(url="rest:https://x/", password_file=Path("/nonexistent"),
                         name=f"{code}@{VAULT if vault else REPO}")

    monkeypatch.setattr(vault_action, "Restic", FakeRestic)
    monkeypatch.setattr(vault_action, "open_repository", opened)
    return FakeRestic


def test_a_pull_makes_the_vault_repository_copies_and_records_each_system(
        fake: type[FakeRestic], estate_copy: EstateCopy, tmp_path: Path) -> None:
    paths = Paths(state=tmp_path / "state", estate=estate_copy.load())
    fake.repos[f"qlvb@{REPO}"] = [snap("aaaa", timedelta(hours=2)),
                                  snap("bbbb", timedelta(hours=1))]
    fake.repos[f"sso@{REPO}"] = [snap("cccc", timedelta(hours=1))]
    fake.broken.add(f"sso@{VAULT}")
    targets = plan_pull(paths.estate, ["qlvb", "sso"])
    seen: list[str] = []
    with Ledger(paths.ledger) as ledger:
        result = pull(paths, targets, ledger=ledger,
                      on_outcome=lambda o: seen.append(o.target.system))
    assert seen == ["qlvb", "sso"]  # the failed one does not stop the run, nor hide
    qlvb, sso = result.outcomes
    assert (qlvb.status, qlvb.created, qlvb.held) == (OK, True, 2)
    assert [i[:4] for i in qlvb.copied] == ["aaaa", "bbbb"]
    assert sso.status == FAILED and "unable to open config file" in (sso.error or "")
    assert result.exit_code == 1
    # a second pull copies nothing, and a snapshot gone from the source stays in the vault
    fake.repos[f"qlvb@{REPO}"] = [snap("bbbb", timedelta(hours=1))]
    with Ledger(paths.ledger) as ledger:
        again = pull(paths, plan_pull(paths.estate, ["qlvb"]), ledger=ledger)
    assert (again.outcomes[0].copied, again.outcomes[0].held, again.exit_code) == ([], 2, 0)
    assert ("init", f"qlvb@{VAULT}") in fake.calls
    assert fake.calls.count(("copy", f"qlvb@{VAULT}")) == 1
    with Ledger(paths.ledger) as ledger:
        runs = ledger.runs("vault-pull")
        assert [r.status for r in runs] == ["ok", "failed"]
        events = ledger.events(runs[1].id)
        assert [(e["subject"], e["kind"]) for e in events] == [
            (f"qlvb@{VAULT}", OK), (f"sso@{VAULT}", FAILED)]
        assert set(last_successes(ledger)) == {"qlvb"}


class _AnyKey:
    """A vault holding every key."""

    def get(self, ref: Any) -> str:
        return "x"


def test_the_pull_flow_locks_pulls_and_writes_a_textfile_carrying_a_failed_ones_last_success(
        fake: type[FakeRestic], estate_copy: EstateCopy, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    paths = Paths(state=tmp_path / "state", estate=estate_copy.load())
    monkeypatch.setattr(vault_action, "Secrets", lambda _: _AnyKey())
    fake.repos[f"qlvb@{REPO}"] = [snap("aaaa", timedelta(hours=2))]
    fake.repos[f"sso@{REPO}"] = [snap("cccc", timedelta(hours=1))]
    locked: list[bool] = []
    vault_action.pull_flow(paths, ["qlvb", "sso"],
                           hooks=Hooks[Target, Outcome](lock=lambda: locked.append(True)))
    assert locked == [True]
    fake.broken.add(f"qlvb@{VAULT}")
    metrics = tmp_path / "metrics" / "vault.prom"
    second = vault_action.pull_flow(paths, ["qlvb", "sso"], metrics=metrics)
    with Ledger(paths.ledger) as ledger:
        [_, first] = ledger.runs("vault-pull")
    assert [o.status for o in second.outcomes] == [FAILED, OK]
    assert metrics.read_text() == render_vault_metrics(
        paths.estate.id, second, {"qlvb": first.started, "sso": first.started})
    samples = {s.labels["system"]: s.value
               for family in text_string_to_metric_families(metrics.read_text())
               for s in family.samples
               if s.name == "hopnhat_vault_last_success_timestamp_seconds"}
    assert samples == {"qlvb": first.started, "sso": second.started}


def test_the_pull_needs_every_secret_before_it_starts(estate_copy: EstateCopy,
                                                       tmp_path: Path) -> None:
    metrics = tmp_path / "vault.prom"
    result = CliRunner().invoke(app, ["--estate", str(estate_copy.root), "--state",
                                      str(tmp_path / "state"), "vault", "pull", "--metrics",
                                      str(metrics)])
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "state" / "ledger.sqlite").exists()
    assert not metrics.exists()  # a pull that cannot run writes no textfile


# --- metrics, timer, verify -----------------------------------------------------------------

def test_the_metrics_carry_a_failed_systems_last_success() -> None:
    ok = Outcome(Target("qlvb", REPO, VAULT), OK, ["a" * 64, "b" * 64])
    failed = Outcome(Target("sso", REPO, VAULT), FAILED, error="boom")
    text = render_vault_metrics("danang", PullResult("r1", 2000.0, [ok, failed]),
                                {"sso": 1000.0, "qlvb": 500.0})
    samples = {(s.name, s.labels.get("system", "")): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("hopnhat_vault_last_success_timestamp_seconds", "qlvb")] == 2000.0
    assert samples[("hopnhat_vault_last_success_timestamp_seconds", "sso")] == 1000.0
    assert samples[("hopnhat_vault_copied_snapshots", "qlvb")] == 2.0
    assert ("hopnhat_vault_copied_snapshots", "sso") not in samples
    assert samples[("hopnhat_vault_exit_code", "")] == 1.0


def test_the_vault_timer_runs_vault_pull(tmp_path: Path) -> None:
    units = schedule.render_units("danang", tmp_path / "estate", tmp_path / "state",
                                  job="vault", on_calendar="*-*-* 06:30:00",
                                  metrics_dir=tmp_path, unit_dir=tmp_path / "units",
                                  program=Path(sys.executable))
    assert units.name == "hopnhat-vault-danang"
    assert f"--state {tmp_path}/state vault pull --metrics {tmp_path}/hopnhat_vault_danang.prom" \
        in units.service
    assert "OnCalendar=*-*-* 06:30:00" in units.timer
    assert schedule.validate(units) != "?"


def test_verify_judges_the_vault_as_the_systems_copy() -> None:
    source = [snap("aaaa", timedelta(hours=5)), snap("bbbb", timedelta(minutes=5))]
    held = [snap("ffff", timedelta(hours=5), original="aaaa" * 8)]
    check = judge_copy("qlvb@repo", "qlvb@vault", source, held, NOW, timedelta(hours=1),
                       what="the vault")
    assert (check.name, check.status) == (COPY, "ok")  # bbbb is on its way
    late = judge_copy("qlvb@repo", "qlvb@vault", source, [], NOW, timedelta(hours=1),
                      what="the vault")
    assert late.status == "failed" and "the vault qlvb@vault lacks 1 snapshot" in late.message


def test_the_timers_that_change_the_world_wait_for_the_estate_lock() -> None:
    """A maintain or vault-pull timer firing while an operator's apply holds the estate lock
    waits for it (then fails, naming the holder); verify reads only and takes no lock."""
    from orchestrator.actions import schedule

    def exec_start(job: str) -> str:
        units = schedule.render_units("danang", Path("/e"), Path("/s"), job=job)
        return next(line for line in units.service.splitlines()
                    if line.startswith("ExecStart="))

    assert exec_start("maintain").endswith(" --lock-timeout 30m")
    assert exec_start("vault").endswith(" --lock-timeout 30m")
    assert "--lock-timeout" not in exec_start("verify")
