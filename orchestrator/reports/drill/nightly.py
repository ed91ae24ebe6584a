"""The Prometheus textfile of ``hopnhat drill nightly`` (all gauges), for node_exporter's
textfile collector.

Per drillable system (labels ``system``, ``tier``) — for every one, not only tonight's, so
that a system whose drills keep failing or never run still ages into an alert: when its
last passed drill started, whether it is overdue now, its tier's RPO and RTO, and of its
last drill (tonight's, or the last the ledger holds): when it started, its exit code (0
passed, 1 failed, 130 stopped) and the RPO and RTO it achieved (left out when it measured
none). Per night (label ``estate``): when it started, how long it took, its exit code, and
how many systems ended each way (``outcome``: passed, failed, not_run, stopped).

Reports import no action: the night is read through the protocols below.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from orchestrator.reports.metrics import gauges

#: name → help; the order of the file
METRICS: dict[str, str] = {
    "hopnhat_drill_last_success_timestamp_seconds": "When the system's last passed drill "
                                                    "started.",
    "hopnhat_drill_overdue": "1 when the system has no passed drill within its tier's "
                             "drill_interval, else 0.",
    "hopnhat_drill_last_run_timestamp_seconds": "When the system's last drill started.",
    "hopnhat_drill_last_exit_code": "Exit code of the system's last drill: 0 passed, "
                                    "1 failed, 130 stopped.",
    "hopnhat_drill_achieved_rpo_seconds": "Recovery point the system's last drill achieved: "
                                          "its start minus the restored snapshot's time.",
    "hopnhat_drill_achieved_rto_seconds": "Recovery time the system's last drill achieved: "
                                          "its start until every probe passed.",
    "hopnhat_drill_rpo_target_seconds": "The RPO of the system's tier.",
    "hopnhat_drill_rto_target_seconds": "The RTO of the system's tier.",
    "hopnhat_drill_nightly_last_run_timestamp_seconds": "When the nightly drills started.",
    "hopnhat_drill_nightly_duration_seconds": "How long the nightly drills took.",
    "hopnhat_drill_nightly_exit_code": "Exit code of the nightly drills: 0 all passed, 1 a "
                                       "drill failed, 3 some not run, 130 stopped.",
    "hopnhat_drill_nightly_systems": "Systems of tonight's drills that ended this way.",
}

OUTCOMES = {"passed": "passed", "failed": "failed", "not run": "not_run",
            "stopped": "stopped"}


class SystemStanding(Protocol):
    @property
    def system(self) -> str: ...

    @property
    def tier(self) -> int: ...

    @property
    def last_passed(self) -> float | None: ...


class OverdueRow(Protocol):
    @property
    def system(self) -> str: ...

    @property
    def overdue(self) -> bool: ...


class NightOutcome(Protocol):
    @property
    def system(self) -> str: ...

    @property
    def tier(self) -> int: ...

    @property
    def status(self) -> str:
        """passed, failed, stopped or not run."""

    @property
    def reason(self) -> str: ...

    @property
    def drill_id(self) -> str: ...

    @property
    def seconds(self) -> float: ...

    @property
    def rpo_seconds(self) -> float | None: ...

    @property
    def rto_seconds(self) -> float | None: ...

    @property
    def evidence(self) -> str: ...


class Night(Protocol):
    """The night as the textfile and the JUnit XML read it."""

    @property
    def night_id(self) -> str: ...

    @property
    def estate(self) -> str: ...

    @property
    def started(self) -> float: ...

    @property
    def seconds(self) -> float: ...

    @property
    def exit_code(self) -> int: ...

    @property
    def outcomes(self) -> Sequence[NightOutcome]: ...

    @property
    def standings(self) -> Sequence[SystemStanding]: ...

    @property
    def overdue(self) -> Sequence[OverdueRow]: ...

    @property
    def last_runs(self) -> Mapping[str, tuple[float, int, float | None, float | None]]:
        """system → (started, exit code, achieved RPO, achieved RTO) of its last drill."""

    @property
    def targets(self) -> Mapping[str, tuple[float, float]]:
        """system → (RPO, RTO) of its tier, in seconds."""


Series = dict[str, list[tuple[Mapping[str, str], float]]]


def render_nightly_metrics(night: Night) -> str:
    """The textfile of ``night`` (see the module's doc)."""
    series: Series = {name: [] for name in METRICS}
    overdue = {row.system: row.overdue for row in night.overdue}

    def add(name: str, labels: Mapping[str, str], value: float | None) -> None:
        if value is not None:
            series[name].append((labels, float(value)))

    for s in night.standings:
        labels = {"system": s.system, "tier": str(s.tier)}
        add("hopnhat_drill_last_success_timestamp_seconds", labels, s.last_passed)
        add("hopnhat_drill_overdue", labels, float(overdue.get(s.system, s.last_passed is None)))
        if s.system in night.last_runs:
            started, code, rpo, rto = night.last_runs[s.system]
            add("hopnhat_drill_last_run_timestamp_seconds", labels, started)
            add("hopnhat_drill_last_exit_code", labels, code)
            add("hopnhat_drill_achieved_rpo_seconds", labels, rpo)
            add("hopnhat_drill_achieved_rto_seconds", labels, rto)
        if s.system in night.targets:
            rpo_target, rto_target = night.targets[s.system]
            add("hopnhat_drill_rpo_target_seconds", labels, rpo_target)
            add("hopnhat_drill_rto_target_seconds", labels, rto_target)
    run = {"estate": night.estate}
    add("hopnhat_drill_nightly_last_run_timestamp_seconds", run, night.started)
    add("hopnhat_drill_nightly_duration_seconds", run, night.seconds)
    add("hopnhat_drill_nightly_exit_code", run, night.exit_code)
    for status, word in OUTCOMES.items():
        add("hopnhat_drill_nightly_systems", {**run, "outcome": word},
            sum(o.status == status for o in night.outcomes))
    return gauges(METRICS, series)
