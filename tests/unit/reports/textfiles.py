"""Every Prometheus textfile hopnhat writes, rendered by its real writer from realistic
results: the checks of the exposition format (``test_textfiles``) and the Grafana dashboard's
test (``test_grafana_dashboard``: its queries name only metrics written here) read them.

A writer is a module of ``orchestrator/`` that writes the exposition format: a ``# TYPE``
line of its own, or gauges through ``reports.metrics.gauges`` or ``reports.passes.Textfile``
(:func:`writer_modules` finds them in the source); each :class:`Written` names the modules
whose output it holds, so a new writer without a case here fails the tests.

Each case is made so that every series its writer can write is there (the tests check that
for the verification, whose gauges are a table): a metric a dashboard names but no case
renders is one nobody writes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from orchestrator.actions.maintain.plan import Target as MaintainTarget
from orchestrator.actions.maintain.run import MaintainResult
from orchestrator.actions.maintain.run import Outcome as MaintainOutcome
from orchestrator.actions.vault import Outcome as PullOutcome
from orchestrator.actions.vault import PullResult
from orchestrator.actions.vault import Target as PullTarget
from orchestrator.actions.verify import checks as verify_checks
from orchestrator.actions.verify.checks import Check, HostState
from orchestrator.actions.verify.run import RepositoryReport, Target, VerifyResult
from orchestrator.hostjob.contract import PARTIAL
from orchestrator.hostjob.status import Status, iso
from orchestrator.hostjob.textfile import textfile
from orchestrator.reports.drill.nightly import render_nightly_metrics
from orchestrator.reports.maintain_metrics import render_maintain_metrics
from orchestrator.reports.metrics import render_could_not_run, render_metrics
from orchestrator.reports.vault_metrics import render_vault_metrics
from orchestrator.verdicts import (
    ANOMALY,
    COPY,
    DELETIONS,
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
from tests.helpers import REPO

NOW = datetime(2026, 12, 7, 3, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
GIB = 2**30

#: the source of a module that writes the exposition format itself or through the gauges
_WRITES = re.compile(r"# TYPE |\bgauges\(|\bTextfile\[")


@dataclass(frozen=True)
class Written:
    """One textfile as its writer renders it: what it is (``case``), the modules of
    ``orchestrator/`` whose output it holds (dotted), the text."""

    case: str
    modules: tuple[str, ...]
    text: str


def writer_modules() -> set[str]:
    """The modules of ``orchestrator/`` (dotted) that write the exposition format, found in
    their source."""
    found = set()
    for path in sorted((REPO / "orchestrator").rglob("*.py")):
        if _WRITES.search(path.read_text(encoding="utf-8")):
            found.add(".".join(path.relative_to(REPO).with_suffix("").parts))
    return found


# --- verify ---------------------------------------------------------------------------------

def _checks(*changed: Check) -> tuple[Check, ...]:
    """Every check passed with the details verify gives it, but those ``changed`` (by
    name)."""
    fine = {
        STRUCTURE: Check(STRUCTURE, OK, "no errors were found"),
        READ_DATA: Check(READ_DATA, OK, "read subset 3/7 of the pack files: no errors"),
        FRESHNESS: Check(FRESHNESS, OK, "every host's latest snapshot is within the RPO"),
        ANOMALY: Check(ANOMALY, OK, "sizes within the usual"),
        COPY: Check(COPY, OK, "every snapshot is in the copy",
                    {"missing": [], "lag_seconds": 0.0}),
        LOCKS: Check(LOCKS, OK, "no lock", {"locks": [], "stale": 0}),
        FINAL: Check(FINAL, SKIPPED, "no retired host"),
        FUTURE: Check(FUTURE, OK, "no snapshot dated in the future", {"count": 0}),
        FOREIGN: Check(FOREIGN, OK, "every snapshot is of the system's hosts", {"count": 0}),
        VANISHED: Check(VANISHED, OK, "none of the 40 snapshot(s) seen before is gone",
                        {"count": 0}),
        DELETIONS: Check(DELETIONS, OK, "deleted no file but 3 lock(s)", {"count": 0}),
    }
    instead = {check.name: check for check in changed}
    return tuple(instead.get(name, check) for name, check in fine.items())


def _target(system: str, tier: int, **overrides: object) -> Target:
    values: dict[str, object] = {
        "system": system, "tier": tier, "repository": "repo-qnam-01", "copy": "vault-01",
        "rpo": DAY if tier == 1 else 7 * DAY, "rotation": 7,
        "expected_hosts": (f"{system}-app-01", f"{system}-db-01"),
        "expected_paths": (f"/srv/{system}",), "subset": "3/7", "position": 3,
        "protocol": "rest", "quota_bytes": 200 * GIB, "vaulted": True}
    values.update(overrides)
    return Target(**values)  # type: ignore[arg-type]


def _host(name: str, age: timedelta, size: int, files: int) -> HostState:
    return HostState(name, True, 40, "a" * 64, NOW - age, age.total_seconds(), size, files,
                     "0.18.1")


def verify_result() -> VerifyResult:
    """A verification of three repositories: one where everything is in order (rest, with
    its quota, vaulted, read-data rotation), one found stale with a lagging copy and a stale
    lock (sftp), one that could not be read at all."""
    qlvb = RepositoryReport(
        _target("qlvb", 1), "qlvb@repo-qnam-01 (rest:…)", _checks(),
        (_host("qlvb-app-01", 5 * HOUR, 3 * GIB, 48_211),
         _host("qlvb-db-01", 5 * HOUR, 12 * GIB, 1_204)),
        snapshots=80, duration_seconds=41.5, restic_version="0.18.1", used_bytes=31 * GIB)
    dvc = RepositoryReport(
        _target("dvc", 1, protocol="sftp", quota_bytes=None, copy="repo-qnam-02",
                vaulted=False, subset=None, position=None),
        "dvc@repo-qnam-01 (sftp:…)",
        _checks(Check(READ_DATA, SKIPPED, "not asked for"),
                Check(FRESHNESS, FAILED, "host dvc-db-01: latest snapshot 30h old"),
                Check(COPY, FAILED, "2 snapshot(s) missing from repo-qnam-02",
                      {"missing": ["b" * 64, "c" * 64], "lag_seconds": 108_000.0}),
                Check(LOCKS, FAILED, "1 stale lock",
                      {"locks": [{"id": "d" * 64}], "stale": 1}),
                Check(VANISHED, SKIPPED, "sftp repository: its clients prune it"),
                Check(DELETIONS, SKIPPED, "sftp repository: no rest-server")),
        (_host("dvc-db-01", 30 * HOUR, 2 * GIB, 91_004),), snapshots=35, duration_seconds=12.0)
    sso = RepositoryReport(
        _target("sso", 2), "sso@repo-qnam-01 (rest:…)",
        verify_checks.error_checks("sso@repo-qnam-01", "connection refused", copy=True,
                                   subset="3/7"),
        duration_seconds=0.4)
    return VerifyResult("verify-20261207-033000", "danang", "auto", NOW, 58.2,
                        (qlvb, dvc, sso))


# --- the host's backup job ------------------------------------------------------------------

def backup_status(result: str) -> Status:
    """The status of a backup run on qlvb-db-01 that ended ``result`` (ok, partial, failed
    before any snapshot)."""
    started = NOW - timedelta(minutes=12)
    status = Status("qlvb", 1, "qlvb-db-01", "rest:https://repo-qnam-01:8000/qlvb/", started,
                    result=result, finished=NOW, duration_seconds=720.4,
                    last_success=iso(NOW - DAY), last_snapshot=iso(NOW - DAY),
                    restic_version="0.18.1")
    if result != FAILED:
        status.snapshot_id = "1a2b3c4d"
        status.bytes, status.files, status.data_added = 12 * GIB, 1_204, 210 * 2**20
        status.last_snapshot = iso(NOW)
        if result == OK:
            status.last_success = iso(NOW)
    return status


# --- the control host's passes --------------------------------------------------------------

def maintain_result(dry_run: bool) -> MaintainResult:
    """A maintenance pass: one repository pruned, one that failed, one skipped (sftp)."""
    policy = {"within-daily": "14d", "within-weekly": "8w"}
    outcomes = [
        MaintainOutcome(MaintainTarget("qlvb", "repo-qnam-01", "rest", policy), OK,
                        [f"{i:064x}" for i in range(3)], kept=40, seconds=20.5),
        MaintainOutcome(MaintainTarget("dvc", "repo-qnam-01", "rest", policy), FAILED,
                        error="repository is locked", seconds=1.2),
        MaintainOutcome(MaintainTarget("email", "repo-qnam-02", "sftp", {},
                                       "an SFTP repository host: its clients prune it"),
                        SKIPPED)]
    return MaintainResult("maintain-20261207-040000", NOW.timestamp(), outcomes, 22.0,
                          dry_run=dry_run)


def pull_result() -> PullResult:
    """A vault pull: one system copied, one that failed."""
    return PullResult("vault-20261207-063000", NOW.timestamp(), [
        PullOutcome(PullTarget("qlvb", "repo-qnam-01", "vault-01"), OK, ["e" * 64, "f" * 64],
                    held=80, seconds=95.0),
        PullOutcome(PullTarget("sso", "repo-qnam-01", "vault-01"), FAILED,
                    error="connection refused", seconds=0.3)], 95.5)


# --- the nightly drills ---------------------------------------------------------------------

@dataclass(frozen=True)
class Standing:
    system: str
    tier: int
    last_passed: float | None


@dataclass(frozen=True)
class Overdue:
    system: str
    overdue: bool


@dataclass(frozen=True)
class NightOutcome:
    system: str
    tier: int
    status: str
    reason: str = ""
    drill_id: str = ""
    seconds: float = 0.0
    rpo_seconds: float | None = None
    rto_seconds: float | None = None
    evidence: str = ""


@dataclass(frozen=True)
class Night:
    """A night of drills as ``reports.drill.nightly`` reads it: dvc passed, qlvb failed at a
    probe, sso not run (the window closed); lgsp (tier 2) not due tonight, never drilled."""

    night_id: str
    estate: str
    started: float
    seconds: float
    exit_code: int
    outcomes: tuple[NightOutcome, ...]
    standings: tuple[Standing, ...]
    overdue: tuple[Overdue, ...]
    last_runs: dict[str, tuple[float, int, float | None, float | None]]
    targets: dict[str, tuple[float, float]]


def night() -> Night:
    start = (NOW - 3 * HOUR).timestamp()
    tier1 = (DAY.total_seconds(), 4 * HOUR.total_seconds())
    return Night(
        "night-20261207", "danang", start, 3_300.0, 1,
        (NightOutcome("dvc", 1, "passed", drill_id="drill-dvc", seconds=1_250.0,
                      rpo_seconds=4_100.0, rto_seconds=1_180.0),
         NightOutcome("qlvb", 1, "failed", "probe 'documents' failed", "drill-qlvb", 900.0,
                      6_000.0, None),
         NightOutcome("sso", 1, "not run", "window closed")),
        (Standing("dvc", 1, start), Standing("qlvb", 1, start - 2 * DAY.total_seconds()),
         Standing("sso", 1, start - DAY.total_seconds()), Standing("lgsp", 2, None)),
        (Overdue("dvc", False), Overdue("qlvb", True), Overdue("sso", True),
         Overdue("lgsp", True)),
        {"dvc": (start, 0, 4_100.0, 1_180.0), "qlvb": (start + 1_250.0, 1, 6_000.0, None),
         "sso": (start - DAY.total_seconds(), 0, 3_000.0, 700.0)},
        {"dvc": tier1, "qlvb": tier1, "sso": tier1,
         "lgsp": (7 * DAY.total_seconds(), DAY.total_seconds())})


def _backup_job(result: str) -> str:
    return textfile(backup_status(result))


def _maintain(dry_run: bool) -> str:
    carried = {("dvc", "repo-qnam-01"): (NOW - 3 * DAY).timestamp()}
    return render_maintain_metrics("danang", maintain_result(dry_run), carried)


PASSES = "orchestrator.reports.passes"

#: each case: what it is, the modules whose output it holds, how it is rendered
CASES: tuple[tuple[str, tuple[str, ...], Callable[[], str]], ...] = (
    ("verify: three repositories", ("orchestrator.reports.metrics",),
     lambda: render_metrics(verify_result())),
    ("verify: could not run", ("orchestrator.reports.metrics",),
     partial(render_could_not_run, "danang", NOW.timestamp(), 2)),
    *((f"backup job: {result}", ("orchestrator.hostjob.textfile",),
       partial(_backup_job, result)) for result in (OK, PARTIAL, FAILED)),
    ("maintain", ("orchestrator.reports.maintain_metrics", PASSES), partial(_maintain, False)),
    ("maintain --dry-run", ("orchestrator.reports.maintain_metrics", PASSES),
     partial(_maintain, True)),
    ("drill nightly", ("orchestrator.reports.drill.nightly",),
     lambda: render_nightly_metrics(night())),
    ("vault pull", ("orchestrator.reports.vault_metrics", PASSES),
     lambda: render_vault_metrics("danang", pull_result(),
                                  {"sso": (NOW - 2 * DAY).timestamp()})),
)


def written() -> list[Written]:
    """Every case rendered."""
    return [Written(case, modules, render()) for case, modules, render in CASES]
