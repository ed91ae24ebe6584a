"""PID records for every process the lab starts.

Each process the lab starts is recorded in ``<lab dir>/pids/<name>.json`` with its PID and
its kernel start time (so a recycled PID is never mistaken for ours), and stopped by that
PID at ``lab down``. Nothing is ever killed by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchestrator.errors import LabError


@dataclass(frozen=True)
class ProcessRecord:
    """A process the lab started: ``kind`` is vcsim, guest, repository, hypervisor…"""

    name: str
    kind: str
    pid: int
    start_ticks: int
    address: str = ""
    details: dict[str, str] = field(default_factory=dict)


def stat_fields(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` after the command name, from the state (field 3) on; None if the
    process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    return raw[raw.rindex(")") + 2 :].split()


def parent_pid(pid: int) -> int | None:
    """The process's parent, or None if it is gone."""
    fields = stat_fields(pid)
    return None if fields is None else int(fields[1])


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone."""
    fields = stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_alive(record: ProcessRecord) -> bool:
    """True when the recorded process still runs (same PID and same start time)."""
    return start_ticks(record.pid) == record.start_ticks


class ProcessTable:
    """The lab's PID records under ``lab_dir/pids``."""

    def __init__(self, lab_dir: Path) -> None:
        self.dir = lab_dir / "pids"

    def _path(self, name: str) -> Path:
        if "/" in name or name.startswith("."):
            raise LabError(f"bad process name {name!r}")
        return self.dir / f"{name}.json"

    def record(
        self, name: str, kind: str, pid: int, address: str = "", **details: str
    ) -> ProcessRecord:
        """Record a freshly started process; raises LabError if it already died."""
        ticks = start_ticks(pid)
        if ticks is None:
            raise LabError(f"{name}: process {pid} exited right after it started")
        rec = ProcessRecord(name, kind, pid, ticks, address, dict(details))
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self._path(name).with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(rec)))
        tmp.replace(self._path(name))
        return rec

    def get(self, name: str) -> ProcessRecord | None:
        try:
            data = json.loads(self._path(name).read_text())
        except (OSError, ValueError):
            return None
        return ProcessRecord(**data)

    def all(self) -> list[ProcessRecord]:
        if not self.dir.is_dir():
            return []
        records = []
        for path in sorted(self.dir.glob("*.json")):
            rec = self.get(path.stem)
            if rec is not None:
                records.append(rec)
        return records

    def running(self, name: str) -> ProcessRecord | None:
        """The record of ``name`` if its process still runs."""
        rec = self.get(name)
        return rec if rec is not None and is_alive(rec) else None

    def forget(self, name: str) -> None:
        self._path(name).unlink(missing_ok=True)

    def stop(self, name: str, timeout: float = 10.0) -> bool:
        """Stop the recorded process (SIGTERM, then SIGKILL after ``timeout``), then
        forget it. Returns True if a live process was stopped."""
        rec = self.get(name)
        if rec is None:
            return False
        stopped = False
        if is_alive(rec):
            stopped = True
            _signal(rec, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while is_alive(rec) and time.monotonic() < deadline:
                _reap(rec.pid)
                time.sleep(0.05)
            if is_alive(rec):
                _signal(rec, signal.SIGKILL)
                while is_alive(rec):
                    _reap(rec.pid)
                    time.sleep(0.05)
        self.forget(name)
        return stopped


def _signal(rec: ProcessRecord, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(rec.pid, sig)


def _reap(pid: int) -> None:
    """Collect our own child's exit status so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
