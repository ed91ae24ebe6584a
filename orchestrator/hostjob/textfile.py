"""The Prometheus textfile of a run (text exposition format 0.0.4), for node_exporter's
textfile collector: the result, exit code, duration, what restic read and added, and when the
last success and the last snapshot were; the alert rules (:mod:`orchestrator.reports.alerts`)
read these series."""

from __future__ import annotations

from datetime import datetime

from orchestrator.hostjob.contract import RESULTS
from orchestrator.hostjob.status import Status
from orchestrator.quoting import prometheus_label


def _timestamp(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def textfile(status: Status) -> str:
    """The Prometheus text exposition of ``status`` (for node_exporter's textfile
    collector)."""
    labels = (f'system="{prometheus_label(status.system)}",host="{prometheus_label(status.host)}",'
              f'tier="{status.tier}"')
    metrics: list[tuple[str, str, str, list[tuple[str, float]]]] = [
        ("hopnhat_backup_last_run_timestamp_seconds", "gauge",
         "When the last backup run of this system on this host finished.",
         [("", status.finished.timestamp() if status.finished else 0.0)]),
        ("hopnhat_backup_result", "gauge",
         "Result of the last run: 1 for the result it had (ok, partial, failed), else 0.",
         [(f',result="{r}"', 1.0 if status.result == r else 0.0) for r in RESULTS]),
        ("hopnhat_backup_exit_code", "gauge", "Exit code of the last run.",
         [("", float(status.exit_code))]),
        ("hopnhat_backup_duration_seconds", "gauge", "How long the last run took.",
         [("", status.duration_seconds)]),
    ]
    if status.snapshot_id is not None:
        metrics += [
            ("hopnhat_backup_bytes_processed", "gauge", "Bytes restic read in the last run.",
             [("", float(status.bytes or 0))]),
            ("hopnhat_backup_files_processed", "gauge", "Files restic read in the last run.",
             [("", float(status.files or 0))]),
            ("hopnhat_backup_data_added_bytes", "gauge",
             "Bytes the last run added to the repository.", [("", float(status.data_added or 0))]),
        ]
    for name, help_text, key in (
            ("hopnhat_backup_last_success_timestamp_seconds",
             "When the last fully successful run finished.", status.last_success),
            ("hopnhat_backup_last_snapshot_timestamp_seconds",
             "When the last run that made a snapshot (ok or partial) finished.",
             status.last_snapshot)):
        stamp = _timestamp(key)
        if stamp is not None:
            metrics.append((name, "gauge", help_text, [("", stamp)]))
    lines = []
    for name, kind, help_text, samples in metrics:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{{{labels}{extra}}} {value:.17g}" for extra, value in samples]
    return "\n".join(lines) + "\n"
