"""The one door to subprocesses.

Every external program hopnhat runs goes through :func:`run` (:func:`stream` when its
output is wanted line by line as it comes — :class:`Running` ends several such at once;
:func:`reading` when it is bytes to read as a stream; :func:`spawn` for long-lived lab
daemons): argv
lists, never shell strings; secrets travel through files or the environment, never through
argv. A child's environment is built, never copied: the allow-list :data:`INHERITED` of
hopnhat's own (or only PATH with ``inherit_env=False``), plus what the caller passes in
``env``.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import CommandError


@dataclass(frozen=True)
class Completed:
    """What a finished command returned."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


#: what a child may inherit of hopnhat's own environment: where programs are, whose home,
#: language and time zone, temporary files, which certificates to trust. Nothing else passes
#: unless a caller hands it over in ``env``: an operator's shell may hold RESTIC_PASSWORD,
#: AWS keys, a proxy with credentials or an SSH agent, none of which a child asked for.
INHERITED = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR",
                       "SSL_CERT_FILE", "SSL_CERT_DIR"})
INHERITED_PREFIXES = ("LC_",)


def inherited(name: str) -> bool:
    """Whether a variable of hopnhat's environment may pass to a child (:data:`INHERITED`)."""
    return name in INHERITED or name.startswith(INHERITED_PREFIXES)


def allowed_environment() -> dict[str, str]:
    """The part of hopnhat's own environment that every child may see."""
    return {k: v for k, v in os.environ.items() if inherited(k)}


def _environment(env: Mapping[str, str] | None, inherit: bool) -> dict[str, str]:
    merged = allowed_environment() if inherit else \
        {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if env:
        merged.update(env)
    return merged


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 600.0,
    input: str | None = None,
    cwd: str | Path | None = None,
    check: bool = False,
    inherit_env: bool = True,
) -> Completed:
    """Run ``argv`` to completion and return its output as text.

    Raises :class:`CommandError` when the program is missing, the timeout passes, or
    ``check`` is set and the exit code is not 0. The message names the program only,
    never the environment (which may carry secrets).
    """
    args = tuple(str(a) for a in argv)
    try:
        proc = subprocess.run(  # argv list, no shell
            args,
            env=_environment(env, inherit_env),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            check=False,
        )
    except FileNotFoundError as exc:
        raise CommandError(f"{args[0]}: program not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"{args[0]}: no answer within {timeout:.0f} s") from exc
    done = Completed(args, proc.returncode, proc.stdout, proc.stderr)
    if check and not done.ok:
        tail = done.stderr.strip().splitlines()[-1:] or [""]
        raise CommandError(f"{args[0]} exited {done.returncode}: {tail[0]}")
    return done


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    cwd: str | Path | None = None,
    inherit_env: bool = True,
    stdin: int = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    """Start a long-lived process in its own session (so a terminal's Ctrl-C does not
    reach it), output to ``log`` (or discarded). The caller records its PID. ``stdin``:
    nothing (the default), or ``subprocess.PIPE`` for the caller to write."""
    args = [str(a) for a in argv]
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(  # argv list, no shell
            args,
            env=_environment(env, inherit_env),
            stdin=stdin,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise CommandError(f"{args[0]}: program not found") from exc
    finally:
        if log:
            out.close()  # type: ignore[union-attr]


def stream(
    argv: Sequence[str],
    *,
    on_line: Callable[[str], None] | None = None,
    silence_timeout: float | None = None,
    on_start: Callable[[subprocess.Popen[bytes]], None] | None = None,
    env: Mapping[str, str] | None = None,
    inherit_env: bool = True,
) -> Completed:
    """Run ``argv`` to completion, handing each line of its stdout to ``on_line`` as it
    comes (without the newline); stderr is collected. ``on_start`` gets the process once it
    runs (so that an interrupt handler can end it). A command that prints nothing for
    ``silence_timeout`` seconds is killed: :class:`CommandError`, as for a missing program.
    """
    args = tuple(str(a) for a in argv)
    proc = _piped(args, env, inherit_env)
    if on_start is not None:
        on_start(proc)
    assert proc.stdout is not None and proc.stderr is not None
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    silence = _SilenceWatch(proc, silence_timeout)
    out: list[str] = []
    try:
        for raw in proc.stdout:
            silence.heard()
            line = raw.decode(errors="replace")
            out.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))
        returncode = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        silence.finished.set()
        proc.stdout.close()
    reader.join()
    proc.stderr.close()
    if silence.killed.is_set():
        raise CommandError(f"{args[0]}: no output for {silence_timeout:.0f} s; stopped")
    return Completed(args, returncode, "".join(out), b"".join(errors).decode(errors="replace"))


class _SilenceWatch:
    """Kills ``proc`` once it has printed nothing for ``timeout`` seconds (None: never),
    looking at least once a second, until ``finished`` is set; ``killed`` says it did."""

    def __init__(self, proc: subprocess.Popen[bytes], timeout: float | None) -> None:
        self.last = time.monotonic()
        self.killed = threading.Event()
        self.finished = threading.Event()
        if timeout is not None:
            threading.Thread(target=self._watch, args=(proc, timeout), daemon=True).start()

    def heard(self) -> None:
        """The process printed a line just now."""
        self.last = time.monotonic()

    def _watch(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        while not self.finished.wait(min(1.0, timeout)):
            if time.monotonic() - self.last > timeout:
                self.killed.set()
                proc.kill()
                return


class Running:
    """Programs run by :func:`stream` (in several threads) that one call ends: give
    :meth:`started` as ``on_start``, call :meth:`forget_ended` when a run returns;
    :meth:`kill_all` (from any thread: an interrupt) kills every one still running, and any
    started after it at once."""

    def __init__(self) -> None:
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._killed = False

    def started(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.add(proc)
            if self._killed:
                proc.kill()

    def forget_ended(self) -> None:
        with self._lock:
            self._procs = {p for p in self._procs if p.poll() is None}

    def kill_all(self) -> None:
        with self._lock:
            self._killed = True
            for proc in self._procs:
                proc.kill()


@dataclass
class Reading:
    """A running program's stdout (bytes, read by the caller); once the block has ended,
    its ``returncode`` and the last 64 KiB of its stderr."""

    stdout: Any
    returncode: int | None = None
    stderr: str = ""
    _errors: list[bytes] = field(default_factory=list)


@contextmanager
def reading(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
            inherit_env: bool = True, timeout: float | None = None) -> Iterator[Reading]:
    """Run ``argv`` with its stdout a binary pipe for the block to read. Leaving the block
    early (or on an error) kills the program; ``timeout`` (s) bounds the whole run. Raises
    CommandError for a missing program or a passed timeout."""
    args = tuple(str(a) for a in argv)
    proc = _piped(args, env, inherit_env)
    assert proc.stdout is not None and proc.stderr is not None
    result = Reading(proc.stdout)

    def drain() -> None:
        assert proc.stderr is not None
        for chunk in iter(lambda: proc.stderr.read(65536), b""):  # type: ignore[union-attr]
            result._errors.append(chunk)
            while sum(map(len, result._errors)) > 65536 and len(result._errors) > 1:
                result._errors.pop(0)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    expired = threading.Event()
    timer = None
    if timeout is not None:
        def expire() -> None:
            expired.set()
            proc.kill()
        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
    try:
        yield result
        proc.stdout.read()  # what the block left unread, so that the program can end
        result.returncode = proc.wait()
    finally:
        if timer is not None:
            timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        reader.join(timeout=5)
        proc.stderr.close()
        result.stderr = b"".join(result._errors).decode(errors="replace")
    if expired.is_set():
        raise CommandError(f"{args[0]}: no answer within {timeout:.0f} s")


def conversation(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                 inherit_env: bool = True, cwd: str | Path | None = None
                 ) -> subprocess.Popen[bytes]:
    """Start a program to converse with: its stdin, stdout and stderr are pipes (e.g. a
    database client's session the caller writes statements to and reads answers from).
    The caller ends it (close stdin, wait; kill on failure). Raises CommandError naming a
    missing program."""
    args = tuple(str(a) for a in argv)
    try:
        return subprocess.Popen(  # argv list, no shell
            args, env=_environment(env, inherit_env), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
    except FileNotFoundError as exc:
        raise CommandError(f"{args[0]}: program not found") from exc


def _piped(args: Sequence[str], env: Mapping[str, str] | None,
           inherit_env: bool) -> subprocess.Popen[bytes]:
    """``args`` started with stdout and stderr pipes, nothing on stdin. Raises CommandError
    naming a missing program."""
    try:
        return subprocess.Popen(  # argv list, no shell
            args, env=_environment(env, inherit_env), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError as exc:
        raise CommandError(f"{args[0]}: program not found") from exc
