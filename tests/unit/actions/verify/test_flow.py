"""verify as one flow: the plan, the run with the ledger open, the JUnit and metrics files,
the notifications — and, when it cannot run, the failure still told and its exit code
still in the metrics file. The repositories are not read: the run itself is a fake."""

from __future__ import annotations

import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.actions.verify import flow
from orchestrator.actions.verify.checks import Check
from orchestrator.actions.verify.flow import VerifyRequest, verify_flow
from orchestrator.actions.verify.run import RepositoryReport, VerifyPlan, VerifyResult
from orchestrator.errors import EstateError, HopnhatError
from orchestrator.estate import Estate, load_estate
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths
from orchestrator.verdicts import CHECKS, OK
from tests.helpers import EXAMPLE_ESTATE, WebhookReceiver

ESTATE = load_estate(EXAMPLE_ESTATE)
NOW = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Loaded:
    """The estate as the CLI's context gives it."""

    estate: Estate
    declared: Estate
    paths: Paths


class Unloadable:
    """An estate whose files do not load."""

    @property
    def estate(self) -> Estate:
        raise EstateError([("estate.yml", "id", "missing")])

    declared = estate

    @property
    def paths(self) -> Paths:
        raise AssertionError("not reached: the estate did not load")


def loaded(tmp_path: Path) -> Loaded:
    return Loaded(ESTATE, ESTATE, Paths(tmp_path / "state", ESTATE))


@pytest.fixture
def pings() -> Iterator[WebhookReceiver]:
    """A healthchecks-style endpoint, at ``<url>/ping``."""
    with WebhookReceiver() as receiver:
        yield receiver


def heard(pings: WebhookReceiver) -> list[str]:
    """The events pinged so far (healthchecks' paths: URL/start, URL, URL/fail)."""
    names = {"/ping/start": "start", "/ping": "success", "/ping/fail": "failure"}
    return [names[r.path] for r in pings.received]


def exit_code_in(metrics: Path) -> float:
    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    return float(families["hopnhat_verify_exit_code"].samples[0].value)


@pytest.fixture
def ledgers(monkeypatch: pytest.MonkeyPatch) -> list[Ledger]:
    """The run as a fake that finds every repository ok; the ledgers it was given."""
    given: list[Ledger] = []

    def fake_verify(paths: Paths, the_plan: VerifyPlan, *, ledger: Ledger, secrets: Any,
                    on_start: Callable[[str], None],
                    on_report: Callable[[RepositoryReport], None] | None) -> VerifyResult:
        del paths, secrets
        given.append(ledger)
        on_start("verify-1")
        reports = tuple(RepositoryReport(t, t.key, tuple(Check(c, OK, "fine") for c in CHECKS))
                        for t in the_plan.targets)
        for report in reports:
            if on_report is not None:
                on_report(report)
        return VerifyResult("verify-1", the_plan.estate, the_plan.option, NOW, 1.0, reports)

    monkeypatch.setattr(flow, "verify", fake_verify)
    return given


def test_a_verification_is_planned_run_reported_and_told(
        tmp_path: Path, ledgers: list[Ledger], pings: WebhookReceiver) -> None:
    junit, metrics = tmp_path / "out" / "verify.xml", tmp_path / "textfile" / "verify.prom"
    request = VerifyRequest(systems=["qlvb", "email"], junit=junit, metrics=metrics,
                            notify_url=f"{pings.url}/ping")
    planned: list[VerifyPlan] = []
    reported: list[str] = []
    done = verify_flow(loaded(tmp_path), request, on_planned=planned.append,
                       on_report=lambda report: reported.append(report.target.system))
    assert [t.system for t in planned[0].targets] == ["qlvb", "email"]
    assert reported == ["qlvb", "email"]
    assert done.result.exit_code == 0
    assert heard(pings) == ["start", "success"]
    assert [n.event for n in done.notifications] == ["start", "success"]
    assert len(ET.parse(junit).getroot().findall(".//testcase")) == 2 * len(CHECKS)
    assert exit_code_in(metrics) == 0.0
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):  # the flow closed it
        ledgers[0].runs()


def test_an_estate_that_does_not_load_is_still_told_and_in_the_metrics(
        tmp_path: Path, ledgers: list[Ledger], pings: WebhookReceiver) -> None:
    metrics = tmp_path / "textfile" / "verify.prom"
    metrics.parent.mkdir()
    with pytest.raises(EstateError):
        verify_flow(Unloadable(), VerifyRequest(metrics=metrics,
                                                notify_url=f"{pings.url}/ping"))
    assert heard(pings) == ["failure"]
    assert exit_code_in(metrics) == 2.0
    assert ledgers == []


def test_nothing_to_verify_could_not_run_and_records_no_run(
        tmp_path: Path, ledgers: list[Ledger], monkeypatch: pytest.MonkeyPatch,
        pings: WebhookReceiver) -> None:
    metrics = tmp_path / "textfile" / "verify.prom"
    monkeypatch.setattr(flow, "plan", lambda estate, *args, **kwargs: VerifyPlan(
        estate.id, "none", 1, ()))
    with pytest.raises(HopnhatError, match="no system of the estate has a backup"):
        verify_flow(loaded(tmp_path), VerifyRequest(metrics=metrics,
                                                    notify_url=f"{pings.url}/ping"))
    assert heard(pings) == ["failure"]
    assert exit_code_in(metrics) == 2.0
    assert ledgers == []
    with Ledger(tmp_path / "state" / "ledger.sqlite") as ledger:
        assert ledger.runs() == []


def test_a_report_folder_that_cannot_be_made_stops_verify_before_it_starts(
        tmp_path: Path, ledgers: list[Ledger], pings: WebhookReceiver) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(HopnhatError, match=r"--junit .*cannot create its folder"):
        verify_flow(loaded(tmp_path), VerifyRequest(
            junit=tmp_path / "a-file" / "verify.xml", notify_url=f"{pings.url}/ping"))
    assert heard(pings) == ["failure"]
    assert ledgers == []
