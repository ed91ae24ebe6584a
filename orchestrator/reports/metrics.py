"""The Prometheus textfile (text exposition format 0.0.4) of a verification, for
node_exporter's textfile collector. Every series is labelled by ``system``, ``tier`` and
``repository`` (the repository host); per-host ones add ``host``, per-check ones ``check``.
A series whose value is unknown (a host with no snapshot, a repository that could not be
read) is left out rather than written as 0."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from orchestrator.quoting import prometheus_label
from orchestrator.reports.verification import RepositoryReport, VerifyResult
from orchestrator.verdicts import (
    COPY,
    DELETIONS,
    ERROR,
    FAILED,
    FOREIGN,
    FUTURE,
    LOCKS,
    OK,
    READ_DATA,
    SKIPPED,
    VANISHED,
)

#: name → (help, type); the order of the file
METRICS: dict[str, str] = {
    "hopnhat_verify_ok": "1 when every check of the repository passed, else 0.",
    "hopnhat_verify_check_ok": "1 when the check passed, 0 when it failed or could not run "
                               "(skipped checks are left out).",
    "hopnhat_verify_duration_seconds": "How long verifying the repository took.",
    "hopnhat_verify_read_data_fraction": "Share of the repository's pack files whose data "
                                         "this run read (0 to 1).",
    "hopnhat_verify_read_data_subset_index": "With --read-data-subset auto: the rotation's "
                                             "subset read this run (n of n/t).",
    "hopnhat_verify_read_data_subsets": "With --read-data-subset auto: the rotation's length "
                                        "in runs (t of n/t).",
    "hopnhat_backup_rpo_seconds": "The tier's recovery point objective.",
    "hopnhat_backup_snapshots": "Snapshots in the repository.",
    "hopnhat_backup_last_snapshot_timestamp_seconds": "Time of the host's latest snapshot.",
    "hopnhat_backup_last_snapshot_age_seconds": "Age of the host's latest snapshot when "
                                                "verify ran.",
    "hopnhat_backup_snapshot_bytes": "Total size of the files in the host's latest snapshot.",
    "hopnhat_backup_snapshot_files": "Files and folders in the host's latest snapshot.",
    "hopnhat_backup_copy_missing_snapshots": "Snapshots of the repository missing from its "
                                             "second copy.",
    "hopnhat_backup_copy_lag_seconds": "Age of the oldest snapshot missing from the second "
                                       "copy (0 when none is).",
    "hopnhat_backup_locks": "Locks in the repository (other than verify's own).",
    "hopnhat_backup_stale_locks": "Stale locks in the repository (verify removes none).",
    "hopnhat_repository_used_bytes": "Bytes a rest repository holds, as its server counts "
                                     "them against the system's quota.",
    "hopnhat_repository_quota_bytes": "The system's quota on its rest repository host "
                                      "(backup.quota_gb).",
    "hopnhat_backup_future_snapshots": "Snapshots dated later than verify's clock plus the "
                                       "allowed clock skew (planted to push real ones out "
                                       "of retention).",
    "hopnhat_backup_foreign_snapshots": "Snapshots of a host that is not one of the "
                                        "system's (written under another host's name).",
    "hopnhat_backup_vanished_snapshots": "Snapshots the previous verification saw that are "
                                         "gone without hopnhat removing them (rest "
                                         "repository hosts only: on sftp ones clients "
                                         "prune).",
    "hopnhat_backup_server_deleted_files": "Files other than locks that the system's own "
                                           "append-only rest-server deleted since it "
                                           "started, by its own metrics (none can be while "
                                           "it is append-only).",
    "hopnhat_verify_last_run_timestamp_seconds": "When this verification started.",
    "hopnhat_verify_run_duration_seconds": "How long the whole verification took.",
    "hopnhat_verify_exit_code": "Exit code of the verification: 0 all good, 1 a check "
                                "failed, 2 could not run.",
}


def _labels(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f'{k}="{prometheus_label(v)}"' for k, v in labels.items()) + "}"


@dataclass
class _Samples:
    series: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)

    def add(self, name: str, labels: dict[str, str], value: float | None) -> None:
        if value is not None:
            self.series.setdefault(name, []).append((labels, float(value)))


def _fraction(subset: str | None) -> float:
    if subset is None:
        return 0.0
    if subset == "all":
        return 1.0
    if subset.endswith("%"):
        return float(subset[:-1]) / 100.0
    _, total = subset.split("/")
    return 1.0 / int(total)


def _repository(samples: _Samples, report: RepositoryReport) -> None:
    t = report.target
    base = {"system": t.system, "tier": str(t.tier), "repository": t.repository}
    _verification(samples, base, report)
    if report.check(LOCKS).status == ERROR and not report.hosts:
        return  # the repository could not be read: nothing more is known
    _snapshots(samples, base, report)
    _repository_state(samples, base, report)


def _verification(samples: _Samples, base: dict[str, str], report: RepositoryReport) -> None:
    """How the verification of the repository went: its verdict, each check run, how long,
    and the RPO and share of the data it read."""
    t = report.target
    samples.add("hopnhat_verify_ok", base, 1.0 if report.verdict == OK else 0.0)
    for check in report.checks:
        if check.status != SKIPPED:
            samples.add("hopnhat_verify_check_ok", {**base, "check": check.name},
                        1.0 if check.passed else 0.0)
    samples.add("hopnhat_verify_duration_seconds", base, report.duration_seconds)
    samples.add("hopnhat_backup_rpo_seconds", base, t.rpo.total_seconds())
    read = report.check(READ_DATA)
    if read.status != ERROR:
        samples.add("hopnhat_verify_read_data_fraction", base, _fraction(t.subset))
    if t.position is not None:
        samples.add("hopnhat_verify_read_data_subset_index", base, t.position)
        samples.add("hopnhat_verify_read_data_subsets", base, t.rotation)


def _snapshots(samples: _Samples, base: dict[str, str], report: RepositoryReport) -> None:
    """The repository's snapshots, and each host's latest: when, how old, how large."""
    samples.add("hopnhat_backup_snapshots", base, report.snapshots)
    for host in report.hosts:
        at = {**base, "host": host.host}
        if host.latest_time is not None:
            samples.add("hopnhat_backup_last_snapshot_timestamp_seconds", at,
                        host.latest_time.timestamp())
        samples.add("hopnhat_backup_last_snapshot_age_seconds", at, host.age_seconds)
        samples.add("hopnhat_backup_snapshot_bytes", at, host.bytes)
        samples.add("hopnhat_backup_snapshot_files", at, host.files)


def _repository_state(samples: _Samples, base: dict[str, str], report: RepositoryReport
                      ) -> None:
    """The repository's second copy, locks, space used and the signs of an attack, where
    they are known."""
    t = report.target
    copy = report.check(COPY)
    if copy.status in (OK, FAILED) and "lag_seconds" in copy.details:
        at = {**base, "copy_repository": t.copy or ""}
        samples.add("hopnhat_backup_copy_missing_snapshots", at, len(copy.details["missing"]))
        samples.add("hopnhat_backup_copy_lag_seconds", at, copy.details["lag_seconds"])
    locks = report.check(LOCKS)
    if "locks" in locks.details:
        samples.add("hopnhat_backup_locks", base, len(locks.details["locks"]))
        samples.add("hopnhat_backup_stale_locks", base, locks.details["stale"])
    if report.used_bytes is not None:
        samples.add("hopnhat_repository_used_bytes", base, report.used_bytes)
        samples.add("hopnhat_repository_quota_bytes", base, t.quota_bytes)
    for name, metric in ((FUTURE, "hopnhat_backup_future_snapshots"),
                         (FOREIGN, "hopnhat_backup_foreign_snapshots"),
                         (VANISHED, "hopnhat_backup_vanished_snapshots"),
                         (DELETIONS, "hopnhat_backup_server_deleted_files")):
        judged = next((c for c in report.checks if c.name == name), None)
        if judged is not None and judged.status in (OK, FAILED) and "count" in judged.details:
            samples.add(metric, base, judged.details["count"])


def render_metrics(result: VerifyResult) -> str:
    """The textfile of ``result``: HELP and TYPE (all gauges) before each metric's samples."""
    samples = _Samples()
    for report in result.reports:
        _repository(samples, report)
    run = {"estate": result.estate}
    samples.add("hopnhat_verify_last_run_timestamp_seconds", run, result.started.timestamp())
    samples.add("hopnhat_verify_run_duration_seconds", run, result.duration_seconds)
    samples.add("hopnhat_verify_exit_code", run, result.exit_code)
    return gauges(METRICS, samples.series)


def gauges(help_texts: Mapping[str, str],
           series: Mapping[str, Sequence[tuple[Mapping[str, str], float]]]) -> str:
    """A textfile of gauges: for each metric of ``help_texts`` (in its order) that has
    samples in ``series``, its HELP and TYPE lines, then its samples."""
    lines = []
    for name, help_text in help_texts.items():
        if not series.get(name):
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        lines += [f"{name}{_labels(labels)} {value:.17g}" for labels, value in series[name]]
    return "\n".join(lines) + "\n"


def render_could_not_run(estate: str, started: float, exit_code: int) -> str:
    """The textfile of a verification that could not run (bad estate, no vault): only
    when it ran and its exit code, so an alert on the exit code still fires."""
    run = _labels({"estate": estate})
    lines = []
    for name, value in (("hopnhat_verify_last_run_timestamp_seconds", started),
                        ("hopnhat_verify_exit_code", float(exit_code))):
        lines += [f"# HELP {name} {METRICS[name]}", f"# TYPE {name} gauge",
                  f"{name}{run} {value:.17g}"]
    return "\n".join(lines) + "\n"
