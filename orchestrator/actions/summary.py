"""``hopnhat summary``: the morning summary of the estate — its backups, the verifications
and the drills of the last day, and the drills overdue — from the ledger alone.

Fast by choice: no restic and no SSH. A backup's freshness is what the latest verification
saw (each host's latest snapshot, recorded in that run's ``repository`` events), its age
counted again to now against the tier's RPO — so a snapshot that was fresh at 03:30 and is
older than the RPO at 07:00 shows stale. The summary names the verification it read and
when it ran; when the latest one is older than the window, it says so (``stale_source``).
Verifications and drills are the runs of the window; overdue drills as ``drill due`` judges.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from orchestrator.actions.drill.history import due
from orchestrator.actions.notifications import send_to
from orchestrator.adapters.notify import Sent
from orchestrator.estate.model import Estate
from orchestrator.ledger import Ledger, Run
from orchestrator.reports.summary import summary_html, summary_text, summary_title
from orchestrator.settings import Paths
from orchestrator.verdicts import OK

FRESH, STALE, NONE = "fresh", "stale", "none"


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()


@dataclass(frozen=True)
class BackupLine:
    """One host's latest snapshot as the latest verification saw it, aged to now."""

    system: str
    tier: int | None
    host: str
    latest_time: str | None
    age_seconds: float | None
    rpo_seconds: float | None
    state: str


@dataclass(frozen=True)
class VerifyLine:
    """One verification of the window: its verdict, and each system not ok with why."""

    run_id: str
    started: str
    status: str
    repositories: int
    failed: dict[str, list[str]]


@dataclass(frozen=True)
class DrillLine:
    """One drill of the window."""

    drill_id: str
    system: str
    started: str
    verdict: str
    rpo_seconds: float | None
    rto_seconds: float | None


@dataclass(frozen=True)
class OverdueLine:
    system: str
    tier: int
    last_passed: str | None
    interval_seconds: float


@dataclass(frozen=True)
class Summary:
    """The morning summary: what it covers (``since`` → ``generated``, times UTC ISO;
    reports show them in ``timezone``) and what it found."""

    estate: str
    estate_name: str
    timezone: str
    generated: str
    since: str
    backups_from: str | None  # the verification the backups are read from (its run id)
    backups_seen: str | None  # when it ran
    stale_source: bool  # that verification is older than the window
    backups: tuple[BackupLine, ...] = ()
    verifications: tuple[VerifyLine, ...] = ()
    drills: tuple[DrillLine, ...] = ()
    overdue: tuple[OverdueLine, ...] = ()
    #: each system's name by its code (reports name a system by both)
    names: dict[str, str] = field(default_factory=dict)
    notifications: tuple[Sent, ...] = ()

    @property
    def problems(self) -> int:
        """How many things want someone's attention."""
        return (sum(b.state != FRESH for b in self.backups)
                + sum(v.status != OK for v in self.verifications)
                + sum(d.verdict == "failed" for d in self.drills)
                + len(self.overdue) + int(self.stale_source))

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["notifications"] = [s.as_dict() for s in self.notifications]
        data["problems"] = self.problems
        return data


def _backups(estate: Estate, ledger: Ledger, now: float
             ) -> tuple[Run | None, tuple[BackupLine, ...]]:
    """The latest verification and each expected host's snapshot in it, aged to ``now``."""
    runs = [r for r in ledger.history("verify", limit=20) if r.estate == estate.id
            and r.finished is not None]
    if not runs:
        return None, ()
    run = runs[0]
    lines = []
    for event in ledger.events(run.id):
        if event["kind"] != "repository":
            continue
        rpo = event.get("rpo_seconds")
        for host in event.get("hosts", []):
            if not host.get("expected"):
                continue
            lines.append(_backup_line(event, host, rpo, now))
    return run, tuple(sorted(lines, key=lambda b: (b.system, b.host)))


def _backup_line(event: dict[str, Any], host: dict[str, Any], rpo: float | None,
                 now: float) -> BackupLine:
    latest = host.get("latest_time")
    age = None if latest is None else now - datetime.fromisoformat(latest).timestamp()
    state = NONE if age is None else FRESH if rpo is not None and age <= rpo else STALE
    return BackupLine(str(event.get("system", event["subject"])), event.get("tier"),
                      str(host.get("host")), latest, age, rpo, state)


def _verifications(estate: Estate, ledger: Ledger, since: float) -> tuple[VerifyLine, ...]:
    lines = []
    for run in ledger.history("verify"):
        if run.started < since:
            break
        if run.estate != estate.id:
            continue
        summary = run.summary or {}
        lines.append(VerifyLine(run.id, _iso(run.started) or "", run.status,
                                len(summary.get("repositories", {})),
                                dict(summary.get("failed", {}))))
    return tuple(lines)


def _drills(estate: Estate, ledger: Ledger, since: float) -> tuple[DrillLine, ...]:
    lines = []
    for run in ledger.history("drill"):
        if run.started < since:
            break
        if run.estate != estate.id:
            continue
        summary = run.summary or {}
        lines.append(DrillLine(run.id, str(run.params.get("system", "")),
                               _iso(run.started) or "", run.status,
                               summary.get("rpo_seconds"), summary.get("rto_seconds")))
    return tuple(lines)


def summarise(estate: Estate, ledger: Ledger, *, window: timedelta = timedelta(days=1),
              now: float | None = None) -> Summary:
    """The summary of the ``window`` before ``now`` (default: this moment), from
    ``ledger`` alone."""
    now = time.time() if now is None else now
    since = now - window.total_seconds()
    seen, backups = _backups(estate, ledger, now)
    overdue = tuple(OverdueLine(r.system, r.tier, r.last_passed, r.interval_seconds)
                    for r in due(estate, ledger, now) if r.overdue)
    return Summary(
        estate.id, estate.settings.name or estate.id, estate.settings.timezone,
        _iso(now) or "", _iso(since) or "", seen.id if seen else None,
        _iso(seen.started) if seen else None, seen is None or seen.started < since,
        backups, _verifications(estate, ledger, since), _drills(estate, ledger, since),
        overdue, {code: system.name for code, system in estate.systems.items()})


def send_summary(paths: Paths, summary: Summary, lang: str,
                 attachments: Sequence[Path] = ()) -> tuple[Sent, ...]:
    """Send ``summary`` in ``lang`` to the channels routed ``summary``: the HTML page to
    those that show HTML (e-mail: with its text part), the text to the others."""
    names = paths.estate.settings.notifications.routed("summary")
    doc = summary.as_dict()
    return send_to(paths, "summary", names, summary_title(doc, lang), summary_text(doc, lang),
                   html=summary_html(doc, lang), attachments=attachments)
