"""Streaming a restic process's output line by line, through :func:`orchestrator.process.spawn`
(the one door to subprocesses): its stdout and stderr go to a private FIFO that hopnhat reads as
restic writes, so progress arrives live and ``ls`` of millions of files never sits in memory.
Also: what a lock's PID is now (for the stale-lock rule).
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from orchestrator.adapters.restic_results import ProcessState
from orchestrator.errors import CommandError
from orchestrator.process import spawn

KEEP_LINES = 1000  # lines of output kept for classifying a failure (memory stays bounded)
GRACE = 10.0  # seconds restic gets to remove its lock after SIGINT, before SIGKILL
#: what restic prints on stderr once it has taken a SIGINT (its context then cancelled)
INTERRUPTED = b"signal interrupt received, cleaning up"
#: seconds an interrupted restic gets to end by itself, and to cancel after saying so
ABORT_WAIT = 0.5


def process_state(pid: int) -> ProcessState:
    """"gone", "restic" (a live restic), "other" (the PID belongs to another program) or
    "unknown" (not ours to signal)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        return "unknown"
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "gone"
    return "restic" if "restic" in comm else "other"


@dataclass
class Feeding:
    """A thread feeding a restic's stdin (:meth:`Stream.feed`): whether the input was
    ``complete``, the pipe ``broken`` (restic stopped reading) or the source raised
    ``error``."""

    stdin: IO[bytes]
    complete: bool = False
    broken: bool = False
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()


class Stream:
    """A restic process whose stdout+stderr arrive line by line through a private FIFO."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], timeout: float, *,
                 stdin: bool = False) -> None:
        self._dir = tempfile.mkdtemp(prefix="hopnhat-restic-")  # 0700: file names flow here
        fifo = Path(self._dir) / "output"
        os.mkfifo(fifo, 0o600)
        self._fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader first: spawn's open
        try:                                                     # of the writer cannot block
            self.proc = spawn(argv, env=env, log=fifo, inherit_env=False, cwd="/",
                              stdin=subprocess.PIPE if stdin else subprocess.DEVNULL)
        except BaseException:
            os.close(self._fd)
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        self.program = Path(argv[0]).name
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.returncode: int | None = None
        self.tail: deque[str] = deque(maxlen=KEEP_LINES)
        #: set once restic has said it took a SIGINT
        self.interrupted = threading.Event()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def lines(self) -> Iterator[str]:
        """Each output line as it comes; ``returncode`` is set once the process ended.
        Raises CommandError (after stopping restic) when the timeout passes."""
        pending = b""
        exited_at: float | None = None
        try:
            while True:
                now = time.monotonic()
                if now > self.deadline:
                    self._stop()
                    raise CommandError(f"{self.program}: no answer within {self.timeout:.0f} s")
                if self.proc.poll() is not None:
                    exited_at = exited_at or now
                    if now - exited_at > 5.0:  # a leftover child still holds the FIFO
                        break
                ready, _, _ = select.select([self._fd], [], [], min(0.5, self.deadline - now))
                if not ready:
                    continue
                chunk = os.read(self._fd, 1 << 16)
                if not chunk:  # every writer (restic, its ssh) has closed it
                    break
                *complete, pending = (pending + chunk).split(b"\n")
                for raw in complete:
                    if raw.endswith(INTERRUPTED):
                        self.interrupted.set()
                    yield raw.decode("utf-8", "replace")
            if pending:
                yield pending.decode("utf-8", "replace")
            self.returncode = self.proc.wait(timeout=max(1.0, self.deadline - time.monotonic()))
        finally:
            self.close()

    def feed(self, source: Callable[[IO[bytes]], bool]) -> Feeding:
        """Run ``source(stdin)`` in a thread beside :meth:`lines` (the stream must have been
        started with ``stdin=True``): when it returns True its input is complete and stdin
        is closed (restic then writes its snapshot); when it returns False or raises, restic
        is stopped *with its stdin still open*, so it never takes what it read for the whole
        input and writes no snapshot. A broken pipe (restic ended early) ends the feeding."""
        assert self.proc.stdin is not None
        feeding = Feeding(self.proc.stdin)

        def run() -> None:
            try:
                feeding.complete = bool(source(feeding.stdin))
            except BrokenPipeError:
                feeding.complete = False
                feeding.broken = True
            except BaseException as exc:  # re-raised by the caller, in its thread
                feeding.complete = False
                feeding.error = exc
            if feeding.complete:
                with contextlib.suppress(OSError):
                    feeding.stdin.close()
            elif not feeding.broken:
                self._abort(feeding.stdin)
        feeding.thread = threading.Thread(target=run, name="restic-stdin", daemon=True)
        feeding.thread.start()
        return feeding

    def _abort(self, stdin: IO[bytes]) -> None:
        """Stop a restic reading its stdin without letting it take the input as whole:
        SIGINT first (restic 0.14 ends there); restic 0.17+ keeps waiting on its stdin, so
        once it has said that it took the signal (its context is cancelled: it can no longer
        save a snapshot) stdin is closed and it ends with "unable to save snapshot: context
        canceled"; one that lingers is killed (:meth:`_stop`)."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=ABORT_WAIT)
        if self.proc.poll() is None and self.interrupted.wait(GRACE):
            threading.Event().wait(ABORT_WAIT)  # the cancellation after its message
            with contextlib.suppress(OSError):
                stdin.close()
        self._stop()

    def stop(self) -> None:
        """Stop restic now (as on a timeout); :meth:`lines` then reads what it still says."""
        self._stop()

    def _stop(self) -> None:
        """SIGINT to restic (it then removes its lock); if it lingers, SIGKILL to its process
        group — itself and its ssh (spawn made it a session leader) — while it is still
        unreaped, so the group ID cannot belong to anyone else."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=GRACE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def close(self) -> None:
        """Stop restic if it still runs; release the FIFO (and its stdin)."""
        self._stop()
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        with contextlib.suppress(OSError):
            os.close(self._fd)
        shutil.rmtree(self._dir, ignore_errors=True)
