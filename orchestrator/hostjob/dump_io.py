"""What a dump talks to (:mod:`~orchestrator.hostjob.dumps` decides what it says): a
database client's session (statements written, answers read up to a sentinel), the engines'
programs run to their end, and a dump relayed into restic's stdin (``os.splice``).

Standard library only: the ``backup_schedule`` role copies this module to each host.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO

from orchestrator.errors import HopnhatError
from orchestrator.hostjob import dump_commands as sql
from orchestrator.hostjob.config import COMMAND_PATH
from orchestrator.process import conversation, reading, run

_CHUNK = 1 << 20


class DumpFailed(HopnhatError):
    """A database's dump failed (its program, its session or its snapshot): the run fails at
    stage ``dump`` and makes no files snapshot."""


@dataclass(frozen=True)
class Tools:
    """How the job runs the engines' programs: their environment (PATH and a UTF-8 locale,
    nothing of the job's own), the user it runs as, and how long a program or an answer may
    take."""

    timeout: float
    user: str = field(default_factory=lambda: pwd.getpwuid(os.geteuid()).pw_name)
    env: dict[str, str] = field(default_factory=lambda: {
        "PATH": COMMAND_PATH, "HOME": "/root", "LC_ALL": "C.UTF-8"})

    def argv(self, user: str, argv: Sequence[str]) -> tuple[str, ...]:
        return sql.as_user(user, argv, self.user)


@dataclass
class Relayed:
    """What the relayed dump did (the last attempt)."""

    returncode: int | None = None
    bytes: int = 0
    stderr: str = ""


def run_program(argv: Sequence[str], tools: Tools, what: str) -> str:
    try:
        done = run(argv, env=tools.env, inherit_env=False, timeout=tools.timeout, cwd="/",
                   input="")
    except HopnhatError as exc:
        raise DumpFailed(f"{what}: {exc}") from None
    if not done.ok:
        last = done.stderr.strip().splitlines()[-1:] or [""]
        raise DumpFailed(f"{what} exited {done.returncode}: "
                         f"{last[0][:300]}")
    return done.stdout


def relay_feed(argv: Sequence[str], tools: Tools,
                relayed: Relayed) -> Callable[[IO[bytes]], bool]:
    def feed(sink: IO[bytes]) -> bool:
        return relay(argv, sink, tools, relayed, None)
    return feed


def relay(argv: Sequence[str], sink: IO[bytes], tools: Tools, relayed: Relayed,
           watch: Callable[[bytes], bool] | None) -> bool:
    """Run the dump and copy its stdout into ``sink`` (restic's stdin) until it ends; True
    only when it exited 0 having written something. ``watch`` sees the first chunks until it
    returns True (then the rest is spliced without being looked at)."""
    relayed.returncode, relayed.bytes, relayed.stderr = None, 0, ""
    with reading(argv, env=tools.env, inherit_env=False, timeout=tools.timeout) as dump:
        relayed.bytes = copy_stream(dump.stdout.fileno(), sink.fileno(), watch)
    relayed.returncode, relayed.stderr = dump.returncode, dump.stderr
    return dump.returncode == 0 and relayed.bytes > 0


def copy_stream(source: int, target: int, watch: Callable[[bytes], bool] | None = None) -> int:
    """Copy ``source`` to ``target`` (file descriptors) until end of file; returns the bytes
    copied. Chunks pass through ``watch`` until it returns True; then ``os.splice`` moves
    the rest inside the kernel (where it is refused, large reads and writes do)."""
    total = 0
    while watch is not None:
        chunk = os.read(source, _CHUNK)
        if not chunk:
            return total
        if watch(chunk):
            watch = None
        _write_all(target, chunk)
        total += len(chunk)
    splice = getattr(os, "splice", None)
    while splice is not None:
        try:
            moved = splice(source, target, _CHUNK)
        except OSError as exc:
            if isinstance(exc, BrokenPipeError):
                raise
            break  # EINVAL: not pipes; read and write instead
        if moved == 0:
            return total
        total += moved
    for chunk in iter(lambda: os.read(source, _CHUNK), b""):
        _write_all(target, chunk)
        total += len(chunk)
    return total


def _write_all(target: int, chunk: bytes) -> None:
    view = memoryview(chunk)
    while view:
        view = view[os.write(target, view):]


class Session:
    """A database client's session (psql, mariadb) the job talks to: statements written to
    its stdin, answers read up to :data:`SENTINEL`. Leaving the block ends it (its
    transaction or lock goes with it); an answer that does not come within the tools'
    timeout kills it."""

    def __init__(self, argv: Sequence[str], tools: Tools) -> None:
        self.argv = tuple(argv)
        self.tools = tools
        self.proc: subprocess.Popen[bytes] | None = None
        self.ended = False

    def __enter__(self) -> Session:
        self.proc = conversation(self.argv, env=self.tools.env, inherit_env=False, cwd="/")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
            for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                with contextlib.suppress(OSError):
                    if pipe is not None:
                        pipe.close()

    def ask(self, statements: str) -> list[str]:
        """Write ``statements``; the answer's lines before the sentinel (see
        :meth:`receive`)."""
        self.send(statements)
        return self.receive()

    def send(self, statements: str) -> None:
        """Write ``statements`` (their answer is read by :meth:`receive`). Raises DumpFailed
        when the session has ended."""
        proc = self.proc
        assert proc is not None and proc.stdin is not None
        try:
            proc.stdin.write(statements.encode())
            proc.stdin.flush()
        except BrokenPipeError:
            raise DumpFailed(f"{self._program()}: {self._error()}") from None

    def receive(self) -> list[str]:
        """The next answer's lines, up to the sentinel. Raises DumpFailed when the session
        ends first (an SQL error: ON_ERROR_STOP, or mariadb's batch mode) or the answer does
        not come within the tools' timeout."""
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        timer = threading.Timer(self.tools.timeout, proc.kill)
        timer.daemon = True
        timer.start()
        try:
            lines: list[str] = []
            for raw in iter(proc.stdout.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if line == sql.SENTINEL:
                    return lines
                lines.append(line)
        finally:
            timer.cancel()
        raise DumpFailed(f"{self._program()}: {self._error()}")

    def _program(self) -> str:
        return self.argv[4] if self.argv[0] == "runuser" else self.argv[0]

    def _error(self) -> str:
        proc = self.proc
        assert proc is not None and proc.stderr is not None
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        lines = [line.strip() for line in
                 proc.stderr.read().decode("utf-8", "replace").splitlines() if line.strip()]
        said = next((line for line in lines if line.startswith(("ERROR", "FATAL"))),
                    lines[-1] if lines else None)
        return (said[:300] if said else
                f"the session ended (exit {proc.returncode}) without an answer")

    def end(self, statements: str) -> None:
        """Say the last ``statements`` (COMMIT, UNLOCK TABLES) and close the session."""
        if self.ended or self.proc is None or self.proc.stdin is None:
            return
        self.ended = True
        with contextlib.suppress(OSError):
            self.proc.stdin.write(statements.encode())
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=self.tools.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
