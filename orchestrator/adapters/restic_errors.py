"""restic's failures, classified.

restic 0.14 exits 1 for nearly every failure (3 for an incomplete backup), so the cause is read
from stderr; restic 0.17+ adds exit codes 10 (no repository), 11 (locked) and 12 (wrong
password), which then decide before any text does, and 0.18 with ``--json`` prints the fatal
error as a JSON ``exit_error`` line and ``check``'s problems as JSON ``error`` lines. All are
understood. Every message names the repository (name and URL, password masked) and the
command, and quotes at most one line of restic's own output.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from orchestrator.adapters.restic_argv import Repository, redact
from orchestrator.adapters.restic_results import check_summary, error_text, message_lines
from orchestrator.errors import EXIT_PARTIAL, ResticError
from orchestrator.human import duration

if TYPE_CHECKING:
    from orchestrator.adapters.restic_results import BackupResult

_LOCKED = re.compile(
    r"repository is already locked (?P<exclusive>exclusively )?by PID (?P<pid>\d+) "
    r"on (?P<host>\S*) by (?P<user>.*?) \(UID (?P<uid>\d+), GID (?P<gid>\d+)\)\s*\n"
    r"\s*lock was created at (?P<created>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) "
    r"\((?P<age>[^)]*) ago\)(?:\s*\n\s*storage ID (?P<lock_id>[0-9a-f]+))?")
# check's progress and phase lines (stdout), which are not problems
_CHECK_PROGRESS = re.compile(
    r"^(?:using temporary cache|create exclusive lock|load indexes|check all packs|"
    r"check snapshots, trees and blobs|read all data|read group|created new cache|"
    r"repository \w+ opened|no errors were found|\[\d+:\d\d\])")
# restic 0.16+'s advice after check's problems (how to repair), which is not a problem itself
_CHECK_ADVICE = re.compile(
    r"^(?:The repository (?:contains damaged pack files|is damaged and must be repaired|"
    r"index is damaged)|restic repair |Damaged pack files can be caused|"
    r"Duplicate packs are non-critical|Mixed packs with tree and data blobs are non-critical)")
# what restic 0.18's check says of a pack whose data it read and found damaged (ErrPackData, or
# a pack it could not download); its structure errors name a pack as "pack <id>: …"
_READ_DATA_PROBLEM = re.compile(r"^(?:pack [0-9a-f]{64} contains \d+ errors?:|download error:)")
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|μs|ns)")
_GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "μs": 1e-6,
             "ns": 1e-9}

_NO_SPACE = ("no space left on device", "enospc", "disk quota exceeded")
#: rest-server refusing a write past its --max-size (the system's quota): 507 with its words
_QUOTA = ("507 insufficient storage", "would exceed maximum size of repository",
          "repository has reached maximum size")
# sftp-server answers a failed write on a full disk with a bare SSH_FX_FAILURE
_SFTP_FAILURE = ('sftp: "failure"', "ssh_fx_failure")
_ACCESS = ("permission denied (publickey", "host key verification failed",
           "you have requested strict checking",  # OpenSSH's line before the one above
           "remote host identification has changed", "no matching host key",
           "too many authentication failures")
_NO_REPOSITORY = ("is there a repository at the following location", "unable to open config file",
                  "repository does not exist")
_CONNECTION = ("connection refused", "closed by remote host", "connection reset",
               "connection timed out", "no route to host", "could not resolve hostname",
               "network is unreachable", "broken pipe", "connection closed", "connection lost",
               "ssh command exited", "unexpected eof", "unable to start the sftp session",
               "file already closed")


# restic's retry backend: "Save(<data/c2a9ae6dd9>) returned error, retrying after 552ms: …"
_RETRY = re.compile(r"^(?P<op>\w+)\((?P<what>[^)]*)\) returned error, retrying after "
                    r"(?P<after>[^:]+): (?P<error>.*)$")
# what an SFTP session says once its ssh is gone; restic never opens a new one (restic#415)
_SFTP_GONE = ("connection lost", "ssh command exited", "file already closed")


@dataclass(frozen=True)
class Retry:
    """One of restic's retry messages: the backend operation, its object, the error."""

    operation: str
    subject: str
    error: str

    @property
    def is_write(self) -> bool:
        return self.operation == "Save"


def parse_retry(line: str) -> Retry | None:
    """A retry message of restic's backend → Retry; None for any other line."""
    found = _RETRY.match(line.strip())
    if found is None:
        return None
    return Retry(found["op"], found["what"], found["error"])


def futile_sftp_retry(retry: Retry) -> str | None:
    """Why retrying ``retry`` cannot succeed on an SFTP repository, or None: once restic's
    ssh has gone, every retry fails alike (10 of them, over about a minute)."""
    low = retry.error.lower()
    if any(word in low for word in _SFTP_GONE):
        return ("the SFTP connection is gone and restic does not open a new one: stopped at "
                "its first retry")
    return None


def futile_quota_retry(retry: Retry) -> str | None:
    """Why retrying ``retry`` cannot succeed on a rest repository, or None: a write its
    server refused for the quota is refused again until the repository is pruned."""
    low = retry.error.lower()
    if any(word in low for word in _QUOTA):
        return "the repository is at its quota: stopped at restic's first retry"
    return None


def ssh_said_why(output: str) -> bool:
    """Whether restic's copy of its ssh's stderr (``subprocess ssh: …`` lines) says why the
    connection failed. restic (0.14 and 0.18 alike) may exit before it has copied all of it,
    or any of it: then only ssh itself can say."""
    return any(needle in line.lower() for line in output.splitlines()
               if line.startswith("subprocess ssh:") for needle in _ACCESS + _CONNECTION)


def with_note(error: ResticCommandError, note: str) -> ResticCommandError:
    """``error`` with ``note`` added to its message (same type and fields)."""
    error.args = (f"{error}; {note}",)
    return error


def parse_go_duration(text: str) -> float | None:
    """Go's ``time.Duration`` text (``3m2.5s``, ``1h0m0s``, ``512ms``) → seconds, or None."""
    text = text.strip()
    parts = _GO_DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.lstrip("-"):
        return None
    return sum(float(n) * _GO_UNITS[u] for n, u in parts)


@dataclass(frozen=True)
class LockHolder:
    """Who holds a repository lock, as restic reported it."""

    pid: int
    host: str
    user: str
    uid: int | None = None
    gid: int | None = None
    created: datetime | None = None
    age: float | None = None
    exclusive: bool = False
    lock_id: str | None = None

    def describe(self) -> str:
        """``PID 1234 on host by root, created 2026-11-21 10:00:00 (3m2s ago)``."""
        text = f"PID {self.pid} on {self.host or '?'} by {self.user or '?'}"
        if self.created is not None:
            text += f", created {self.created:%Y-%m-%d %H:%M:%S}"
            if self.age is not None:
                text += f" ({duration(self.age, 'compact')} ago)"
        elif self.age is not None:
            text += f", {duration(self.age, 'compact')} old"
        return text


def parse_lock_holder(text: str) -> LockHolder | None:
    """The holder from restic's "repository is already locked … by PID 1234 on host by user
    (UID 0, GID 0)\\nlock was created at 2026-11-21 10:00:00 (3m2s ago)[\\nstorage ID …]"
    (0.14 and later, exclusive or not), or None when ``text`` holds no such message."""
    found = _LOCKED.search(text)
    if found is None:
        return None
    try:
        created: datetime | None = datetime.strptime(found["created"], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        created = None
    return LockHolder(
        pid=int(found["pid"]), host=found["host"], user=found["user"], uid=int(found["uid"]),
        gid=int(found["gid"]), created=created, age=parse_go_duration(found["age"]),
        exclusive=bool(found["exclusive"]), lock_id=found["lock_id"])


# --- the errors -----------------------------------------------------------------------------


class ResticCommandError(ResticError):
    """A restic command failed; ``repository`` (display form), ``command``, ``returncode`` and
    ``detail`` (the one line of restic's output that says why) are kept for reports."""

    def __init__(self, message: str, *, repository: str = "", command: str = "",
                 returncode: int | None = None, detail: str = "",
                 exit_code: int | None = None) -> None:
        super().__init__(message, exit_code=exit_code)
        self.repository = repository
        self.command = command
        self.returncode = returncode
        self.detail = detail


class InputAborted(ResticCommandError):
    """``backup --stdin``: the input's source failed or gave nothing, so restic was stopped
    before it wrote a snapshot (none claims the input)."""



class RepositoryLocked(ResticCommandError):
    """Another restic process holds a conflicting lock; ``holder`` says who and since when
    (None if restic's message could not be read); ``waited``: seconds hopnhat waited."""

    def __init__(self, message: str, *, holder: LockHolder | None = None, waited: float = 0.0,
                 **fields: Any) -> None:
        super().__init__(message, **fields)
        self.holder = holder
        self.waited = waited

    def after_wait(self, waited: float) -> RepositoryLocked:
        """The same failure, its message saying how long hopnhat waited."""
        return RepositoryLocked(
            f"{self}; still locked after waiting {waited:.0f} s", holder=self.holder,
            waited=waited, repository=self.repository, command=self.command,
            returncode=self.returncode, detail=self.detail)


class WrongPassword(ResticCommandError):
    """No key of the repository opens with this password."""


class NoRepository(ResticCommandError):
    """Nothing (or no restic repository) at the location."""


class NoSpace(ResticCommandError):
    """The repository's storage is full."""


class QuotaExceeded(ResticCommandError):
    """The system's repository is at its quota (its rest-server's ``--max-size``): this
    system's backups fail until the control host prunes it or the quota grows; the other
    systems' go on."""


class ConnectionLost(ResticCommandError):
    """The repository host could not be reached, or the link broke during the command."""


class AccessDenied(ResticCommandError):
    """ssh refused the key, or the repository host's key is unknown or changed."""


class RepositoryDamaged(ResticCommandError):
    """``check`` found errors; ``problems`` holds restic's lines about them (its advice on
    repairing left out). From restic 0.18's ``check --json``: ``broken_packs`` (the pack IDs
    restic says to repair) and ``read_data_problems``, those of ``problems`` found while
    reading data; None when the output does not say (0.14's text: its phase lines do)."""

    def __init__(self, message: str, *, problems: tuple[str, ...] = (),
                 broken_packs: tuple[str, ...] = (),
                 read_data_problems: tuple[str, ...] | None = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.problems = problems
        self.broken_packs = broken_packs
        self.read_data_problems = read_data_problems


class IncompleteBackup(ResticCommandError):
    """restic saved a snapshot but could not read every file (exit 3); ``result`` is the
    backup's summary."""

    exit_code = EXIT_PARTIAL

    def __init__(self, message: str, *, result: BackupResult | None = None,
                 **fields: Any) -> None:
        super().__init__(message, **fields)
        self.result = result


# --- classification -------------------------------------------------------------------------


def plain_stderr(stderr: str) -> str:
    """``stderr`` with restic's JSON error lines (``exit_error`` of 0.18, ``error`` of backup
    and of 0.18's ``check --json``) replaced by their message text, and check's JSON summary
    left out."""
    lines = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            messages = message_lines(line)
            if messages is not None:
                lines.extend(messages)
                continue
            try:
                data = json.loads(line)
            except ValueError:
                lines.append(line)
                continue
            if isinstance(data, dict) and data.get("message_type") == "error":
                lines.append(f"error: {data.get('item', '')}: {error_text(data.get('error'))}")
                continue
        lines.append(line)
    return "\n".join(lines)


def key_line(text: str) -> str:
    """The line that says why: the last ``Fatal:`` line (without the prefix), else the last
    non-empty one; password-masked and at most 300 characters."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith("Fatal:")]
    line = fatal[-1].removeprefix("Fatal:").strip() if fatal else (lines[-1] if lines else "")
    line = redact(line)
    return line if len(line) <= 300 else line[:297] + "..."


def _line_with(text: str, needles: tuple[str, ...]) -> str:
    """The last line holding the first of ``needles`` that occurs (needles come in order of
    how much they tell: "Connection refused" before "file already closed")."""
    lines = text.splitlines()
    for needle in needles:
        found = [line for line in lines if needle in line.lower()]
        if found:
            return redact(found[-1].strip())[:300]
    return key_line(text)


def _is_no_space(low: str) -> bool:
    if any(n in low for n in _NO_SPACE):
        return True
    # a bare sftp failure counts only on a write (Save/Write), where a full disk is its cause
    return any(n in low for n in _SFTP_FAILURE) and any(
        w in low for w in ("save(", "write", "unable to save", "close", "rename"))


def classify(stderr: str, returncode: int, *, repo: Repository, command: str,
             exit_codes: bool = False) -> ResticCommandError:
    """The typed error for a restic command that exited ``returncode`` with ``stderr``.

    ``exit_codes``: the version has restic 0.17's distinct exit codes, which then decide
    before the text does: 11 locked, 12 wrong password, 10 no repository. With them, "no
    repository" is never read from the text alone: restic prints "unable to open config
    file … Is there a repository at the following location?" also when reading the config
    failed for another reason (a connection lost), and then exits 1, not 10. Without them
    (0.14), the text decides. Returns (does not raise) the error.
    """
    text = plain_stderr(stderr)
    low = text.lower()
    where = repo.display
    fields: dict[str, Any] = {"repository": where, "command": command,
                             "returncode": returncode}
    code = returncode if exit_codes else None
    if code == 11 or (code not in (10, 12) and "repository is already locked" in low):
        holder = parse_lock_holder(text)
        who = holder.describe() if holder else key_line(text)
        how = "exclusively " if holder and holder.exclusive else ""
        detail = _line_with(text, ("repository is already locked",))
        return RepositoryLocked(f"restic {command}: repository {where} is locked {how}by {who}",
                                holder=holder, detail=detail, **fields)
    if code == 12 or (code != 10 and "wrong password or no key found" in low):
        return WrongPassword(
            f"restic {command}: repository {where}: wrong password or no key found "
            f"(password file {repo.password_file})", detail=key_line(text), **fields)
    if code == 10:
        return _no_repository(text, command, where, fields)
    if any(n in low for n in _QUOTA):
        detail = _line_with(text, _QUOTA)
        return QuotaExceeded(f"restic {command}: repository {where}: quota reached: the "
                             f"repository holds as much as its system may store ({detail})",
                             detail=detail, **fields)
    if _is_no_space(low):
        detail = _line_with(text, _NO_SPACE + _SFTP_FAILURE)
        return NoSpace(f"restic {command}: repository {where}: no space left on the "
                       f"repository's storage ({detail})", detail=detail, **fields)
    if any(n in low for n in _ACCESS):
        detail = _line_with(text, _ACCESS)
        return AccessDenied(f"restic {command}: repository {where}: access refused by ssh "
                            f"({detail})", detail=detail, **fields)
    if not exit_codes and any(n in low for n in _NO_REPOSITORY):
        return _no_repository(text, command, where, fields)
    if any(n in low for n in _CONNECTION):
        detail = _line_with(text, _CONNECTION)
        return ConnectionLost(f"restic {command}: repository {where}: connection to the "
                              f"repository host failed or was lost ({detail})",
                              detail=detail, **fields)
    if "repository contains errors" in low:
        return _damaged(stderr, text, command, where, fields)
    detail = key_line(text) or f"exit status {returncode}"
    return ResticCommandError(f"restic {command}: repository {where}: {detail}",
                              detail=detail, **fields)


def _no_repository(text: str, command: str, where: str,
                   fields: dict[str, Any]) -> NoRepository:
    detail = key_line(text)
    return NoRepository(f"restic {command}: no repository at {where} ({detail})",
                        detail=detail, **fields)


def _damaged(stderr: str, text: str, command: str, where: str,
             fields: dict[str, Any]) -> RepositoryDamaged:
    """``check``'s report of damage: its problem lines (not its progress, phases or advice);
    with restic 0.18's JSON summary, the broken packs and which problems reading data
    found."""
    problems = tuple(line.rstrip() for line in text.splitlines()
                     if line.strip() and not line.startswith("Fatal:")
                     and not _CHECK_PROGRESS.match(line.strip())
                     and not _CHECK_ADVICE.match(line.strip()))
    summary = check_summary(stderr.splitlines())
    read_data = None if summary is None else tuple(
        line for line in problems if _READ_DATA_PROBLEM.match(line.strip()))
    first = problems[0].strip() if problems else key_line(text)
    return RepositoryDamaged(
        f"restic {command}: repository {where} contains errors "
        f"({len(problems)} line(s) of report; first: {redact(first)[:200]})",
        problems=problems, broken_packs=summary.broken_packs if summary else (),
        read_data_problems=read_data, detail=key_line(text), **fields)
