"""The estate lock: one command that changes the world at a time per state folder.

Commands that change the world (apply, destroy, configure, migrate, retire, …) hold it for
their whole life; read-only ones (plan, status, verify) never take it nor wait for it.

The lock is ``<state>/lock``: a ``flock`` on that file (so a process that dies, however it
dies, frees it: the kernel drops the lock with its last descriptor, which is close-on-exec
and never passed to children), and in the same file a JSON record naming its holder
(operator, command, PID, host, since), written 0600 once the lock is held and emptied when
it is let go. A record found in a lock that was free means its holder ended without letting
go (killed, crashed): the lock is taken over and :func:`hold` says so through its
``on_takeover`` call-back.

In: the state folder (made 0700 if it does not exist yet), the command's name, how long to
wait. Raises :class:`~orchestrator.errors.EstateLockedError` naming the holder when the lock
is still held after the wait, HopnhatError when the lock file cannot be opened.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.errors import EstateLockedError, HopnhatError

LOCK_FILE = "lock"
POLL_SECONDS = 0.2
_FIELD_MAX = 80  # a holder's field longer than this is cut when shown
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _safe(text: str) -> str:
    """``text`` as it may reach a terminal: control characters (escape sequences, line
    breaks, bidirectional overrides) written as ``\\xNN`` / ``\\uNNNN``, cut to a sane
    length."""
    def one(match: re.Match[str]) -> str:
        code = ord(match.group(0))
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    cut = text if len(text) <= _FIELD_MAX else text[:_FIELD_MAX] + "…"
    return _CONTROL.sub(one, cut)


@dataclass(frozen=True)
class Holder:
    """Who holds the estate lock: ``since`` is an ISO 8601 time in UTC."""

    operator: str
    command: str
    pid: int
    host: str
    since: str

    def as_dict(self) -> dict[str, Any]:
        return {"operator": self.operator, "command": self.command, "pid": self.pid,
                "host": self.host, "since": self.since}

    @classmethod
    def from_text(cls, text: str) -> Holder | None:
        """The holder a lock file's text records, or None (empty, not hopnhat's, cut)."""
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        fields = ("operator", "command", "host", "since")
        pid = data.get("pid")
        if not all(isinstance(data.get(k), str) for k in fields) or \
                not isinstance(pid, int) or isinstance(pid, bool):
            return None
        return cls(data["operator"], data["command"], pid, data["host"], data["since"])

    def describe(self) -> str:
        """``operator 'ana' running 'apply' (PID 4242 on host ctl-01, since …)``, every
        field made safe for a terminal (it came from a file, and from $HOPNHAT_OPERATOR)."""
        return (f"operator '{_safe(self.operator)}' running '{_safe(self.command)}' "
                f"(PID {self.pid} on host {_safe(self.host)}, since {_safe(self.since)})")

    def process_gone(self) -> bool:
        """True when the holder ran on this host and its process no longer exists (from
        another host nothing can be told: False)."""
        return self.host == socket.gethostname() and not pid_alive(self.pid)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (one of another user's counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def current_holder(command: str) -> Holder:
    """This process as the lock's holder running ``command``."""
    from orchestrator.ledger import operator_name

    return Holder(operator=operator_name(), command=command, pid=os.getpid(),
                  host=socket.gethostname(),
                  since=datetime.now(UTC).isoformat(timespec="seconds"))


def lock_path(state_dir: Path) -> Path:
    return state_dir / LOCK_FILE


def read_holder(state_dir: Path) -> Holder | None:
    """The holder the lock file records (None: no lock file, or an empty record — the lock
    is free or its holder has not written its name yet)."""
    try:
        with lock_path(state_dir).open(encoding="utf-8", errors="replace") as handle:
            return Holder.from_text(handle.read(64 * 1024))
    except OSError:
        return None


def _read_fd(fd: int) -> str:
    return os.pread(fd, 64 * 1024, 0).decode("utf-8", errors="replace")


def _held_by(fd: int) -> Holder | None:
    """The holder recorded in the lock held by someone else, read again a few times: it
    writes its record just after it takes the lock."""
    for _ in range(5):
        holder = Holder.from_text(_read_fd(fd))
        if holder is not None:
            return holder
        time.sleep(0.05)
    return None


def _open(state_dir: Path) -> int:
    """The lock file's descriptor (the state folder made 0700 when missing). Raises
    HopnhatError naming the file when it cannot be opened (a symlink is refused)."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(lock_path(state_dir),
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise HopnhatError(f"the estate lock {lock_path(state_dir)} cannot be opened: "
                           f"{exc.strerror}") from None
    with suppress(OSError):  # another user's file: leave its mode (flock still works)
        os.fchmod(fd, 0o600)
    return fd


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def hold(state_dir: Path, command: str, *, timeout: float = 0.0,
         on_wait: Callable[[Holder | None], None] | None = None,
         on_takeover: Callable[[Holder], None] | None = None,
         poll: float = POLL_SECONDS) -> Iterator[Holder]:
    """Hold the estate lock of ``state_dir`` while the ``with`` block runs.

    When another process holds it: ``on_wait(holder)`` once (when ``timeout`` > 0), then a
    try every ``poll`` seconds until ``timeout`` seconds have passed; then
    :class:`EstateLockedError` naming the holder (None: it wrote no record). A lock that was
    free but still records a holder (it ended without letting go) is taken over:
    ``on_takeover(that holder)``. Yields this process's :class:`Holder`."""
    fd = _open(state_dir)
    try:
        deadline = time.monotonic() + max(timeout, 0.0)
        waited = False
        while not _try_lock(fd):
            holder = _held_by(fd)
            if time.monotonic() >= deadline:
                raise EstateLockedError(_refusal(holder, timeout))
            if not waited and on_wait is not None:
                on_wait(holder)
            waited = True
            time.sleep(min(poll, max(deadline - time.monotonic(), 0.0)))
        left = Holder.from_text(_read_fd(fd))
        if left is not None and on_takeover is not None:
            on_takeover(left)
        me = current_holder(command)
        record = json.dumps(me.as_dict(), ensure_ascii=True).encode() + b"\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        try:
            yield me
        finally:
            os.ftruncate(fd, 0)  # let go: an empty record is a free lock's
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _refusal(holder: Holder | None, timeout: float) -> str:
    who = holder.describe() if holder is not None else "a process that wrote no record"
    waited = (f"after waiting {timeout:g} s" if timeout > 0
              else "not waited for (--lock-timeout 0)")
    text = f"the estate is locked by {who}; {waited}"
    if holder is not None and holder.process_gone():
        text += ("; its process is gone, yet the lock is still held (by a process it left "
                 "behind?)")
    return (text + ". Try again when it ends, or give --lock-timeout DURATION (30s, 5m) to "
            "wait for it")
