"""What one run did (:class:`Status`): the document of the status file (JSON; ``backup run``
prints it, ``backup status`` reads it back over SSH), which the Prometheus textfile
(:mod:`orchestrator.hostjob.textfile`) is made from too, and the last run's, read back to
carry its times forward."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.hostjob.contract import EXIT_CODES, FAILED, RESULTS


@dataclass
class Status:
    """What one run did; written as the status file (JSON) and the textfile."""

    system: str
    tier: int
    host: str
    repository: str
    started: datetime
    result: str = FAILED
    finished: datetime | None = None
    duration_seconds: float = 0.0
    stage: str | None = None
    error: dict[str, str] | None = None
    snapshot_id: str | None = None
    bytes: int | None = None
    files: int | None = None
    data_added: int | None = None
    files_new: int | None = None
    files_changed: int | None = None
    warnings: list[str] = field(default_factory=list)
    forget: dict[str, int] | None = None
    copy: dict[str, str] | None = None
    last_success: str | None = None
    last_snapshot: str | None = None
    repository_space: dict[str, Any] | None = None
    #: the version of the restic that ran (None: not known, e.g. restic not found)
    restic_version: str | None = None
    #: the database dumps made before the files backup (their manifests)
    dumps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.result]

    def fail(self, stage: str, exc: BaseException, result: str = FAILED) -> None:
        """Record a failure at ``stage``: the result becomes the worse of the current one and
        ``result``; the first error is kept as *the* error, later ones go to warnings."""
        self.result = max(self.result, result, key=RESULTS.index)
        if self.error is None:
            self.stage = stage
            self.error = {"class": type(exc).__name__, "message": str(exc)}
        else:
            self.warnings.append(f"{stage}: {type(exc).__name__}: {exc}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "system": self.system, "tier": self.tier, "host": self.host,
            "repository": self.repository, "result": self.result,
            "exit_code": self.exit_code,
            "time": iso(self.finished) if self.finished else None,
            "started": iso(self.started),
            "duration_seconds": round(self.duration_seconds, 3),
            "snapshot_id": self.snapshot_id, "bytes": self.bytes, "files": self.files,
            "data_added": self.data_added, "files_new": self.files_new,
            "files_changed": self.files_changed, "stage": self.stage, "error": self.error,
            "warnings": self.warnings, "forget": self.forget, "copy": self.copy,
            "last_success": self.last_success, "last_snapshot": self.last_snapshot,
            "repository_space": self.repository_space, "restic_version": self.restic_version,
            "dumps": self.dumps,
        }


def iso(moment: datetime) -> str:
    """A moment as the status file writes it: UTC, whole seconds, ``2026-11-21T11:59:00Z``."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def previous_status(path: Path) -> dict[str, Any]:
    """The last status file, if readable (to carry ``last_success`` forward)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}

