"""The job's lock: one run of a system's backup at a time on a host. A second run while one
is going is refused (result ``refused``) rather than queued, and says who holds the lock."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.errors import HopnhatError
from orchestrator.hostjob.status import iso


class AlreadyRunning(HopnhatError):
    """Another run of the same job holds the lock."""


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold ``flock(LOCK_EX)`` on ``path`` for the block (the same lock ``flock(1)`` takes).
    The holder writes its PID and start time into the file, so a refused run can say who
    holds it. Raises AlreadyRunning when another process holds the lock (without waiting)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            raise AlreadyRunning(
                f"another backup run holds {path} ({holder or 'holder unknown'}): this run "
                "is refused so that two never overlap") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} since {iso(datetime.now(UTC))}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
