"""A full repository, told from a failed write: the storage's free space, read with statvfs
(a local repository) or ``sftp``'s ``df`` (OpenSSH's statvfs@openssh.com, an SFTP one).

Over SFTP a full disk is a bare ``SSH_FX_FAILURE``, so restic's "no space" is only a guess:
:func:`judge_space` decides it by the free space (``NO_SPACE_BELOW``), and
:func:`full_storage` stops restic at its first retry of a write that cannot succeed rather
than after its ten (about a minute)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.adapters.restic import NoSpace, ResticCommandError, Retry
from orchestrator.errors import HopnhatError
from orchestrator.hostjob.config import COMMAND_PATH, RepositoryConfig
from orchestrator.human import size
from orchestrator.process import run

if TYPE_CHECKING:
    from orchestrator.hostjob.status import Status

#: a failed write means "no space" when the repository's storage has less than this free:
#: room for less than two of the packs restic writes (16 MiB each by default)
NO_SPACE_BELOW = 32 * 1024 * 1024
#: how long the free-space check of a repository host may take
SPACE_TIMEOUT = 60.0
#: seconds between two free-space checks while restic retries failed writes: often, since
#: restic removes a pack whose write failed, so the storage's free space swings back and forth
#: while its uploads fail and are retried (a reading can show room that the next write fills)
SPACE_RECHECK = 1.0
#: restic's words for a write the storage refused (over SFTP a full disk is a bare failure)
_WRITE_FAILURES = ('sftp: "failure"', "ssh_fx_failure", "no space left", "disk quota")


@dataclass(frozen=True)
class Space:
    """A repository's storage, as its file system reports it (bytes)."""

    total: int
    free: int


_SFTP_URL = re.compile(r"^sftp:(?P<dest>[^/:@]+@[^/:]+):(?P<path>/.*)$")
_SFTP_LONG_URL = re.compile(r"^sftp://(?P<dest>[^/:@]+@[^/:]+)(?::(?P<port>\d+))?/(?P<path>.+)$")
_DF_LINE = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\d+%\s*$")


def make_sftp_df_argv(url: str) -> tuple[tuple[str, ...], str] | None:
    """For restic's ``sftp:user@host:/path`` (or ``sftp://user@host[:port]//path``): the
    ``sftp`` batch run — argv and the batch on stdin — whose ``df`` asks the server for the
    path's file system (OpenSSH's statvfs@openssh.com); the host's ssh config reaches the
    host as it does for restic. None for another kind of URL."""
    found = _SFTP_URL.match(url) or _SFTP_LONG_URL.match(url)
    if found is None:
        return None
    port = found.groupdict().get("port")
    argv = ("sftp", "-q", "-b", "-", *(("-P", port) if port else ()), found["dest"])
    return argv, f'df "{found["path"]}"\n'


def parse_sftp_df(text: str) -> Space | None:
    """``sftp``'s ``df`` output (1 KiB blocks: size, used, available, root's available,
    capacity) → Space, or None when it holds no such line."""
    for line in text.splitlines():
        found = _DF_LINE.match(line)
        if found:
            return Space(total=int(found[1]) * 1024, free=int(found[3]) * 1024)
    return None


def repository_space(repository: RepositoryConfig) -> Space | None:
    """The free space of ``repository``'s storage: statvfs of a local path, or ``df`` over
    SFTP. None when it cannot be read (another kind of repository, the host unreachable, a
    server without the statvfs extension)."""
    url = repository.url
    if url.startswith("/"):
        try:
            stat = os.statvfs(url)
        except OSError:
            return None
        return Space(total=stat.f_blocks * stat.f_frsize, free=stat.f_bavail * stat.f_frsize)
    batch = make_sftp_df_argv(url)
    if batch is None:
        return None
    argv, commands = batch
    try:
        done = run(argv, env={"PATH": COMMAND_PATH, "HOME": os.environ.get("HOME", "/root")},
                   inherit_env=False, timeout=SPACE_TIMEOUT, cwd="/", input=commands)
    except HopnhatError:
        return None
    return parse_sftp_df(done.stdout) if done.ok else None


SpaceReader = Callable[[RepositoryConfig], "Space | None"]


class SpaceWatch:
    """A SpaceReader that remembers, per repository, the lowest free space it read in this
    run: while restic's writes fail and are retried the free space swings (restic removes a
    pack it could not finish), so the reading that made restic stop tells more than one
    taken after it stopped."""

    def __init__(self, read_space: SpaceReader) -> None:
        self._read = read_space
        self.lowest: dict[str, Space] = {}

    def __call__(self, repository: RepositoryConfig) -> Space | None:
        space = self._read(repository)
        if space is not None:
            known = self.lowest.get(repository.name)
            if known is None or space.free < known.free:
                self.lowest[repository.name] = space
        return space

    def judged(self, repository: RepositoryConfig) -> Space | None:
        """The lowest reading of this run, or a fresh one."""
        return self.lowest.get(repository.name) or self(repository)


def judge_space(exc: HopnhatError, repository: RepositoryConfig, status: Status,
                read_space: SpaceWatch | SpaceReader | None) -> HopnhatError:
    """A failure that a full repository may explain — restic's "no space" (which over SFTP is
    only a guess from a bare SSH_FX_FAILURE on a write) or an unclassified one — decided by
    the storage's free space: NoSpace, naming what is free, when it is under
    ``NO_SPACE_BELOW``; a guessed NoSpace with room to spare becomes a plain write failure.
    Other failures, or an unreadable free space, are returned as they are. The space read (a
    SpaceWatch's lowest reading of the run, when it has one) is recorded in
    ``status.repository_space``."""
    if read_space is None or type(exc) not in (NoSpace, ResticCommandError):
        return exc
    assert isinstance(exc, ResticCommandError)
    space = (read_space.judged(repository) if isinstance(read_space, SpaceWatch)
             else read_space(repository))
    if space is None:
        return exc
    status.repository_space = {"repository": repository.name, "total_bytes": space.total,
                               "free_bytes": space.free}
    where = (f"the storage of {repository.name} has {size(space.free, 'MiB')} free of "
             f"{size(space.total, 'MiB')}")
    fields: dict[str, Any] = {"repository": exc.repository, "command": exc.command,
                              "returncode": exc.returncode, "detail": exc.detail}
    if space.free < NO_SPACE_BELOW:
        return NoSpace(f"restic {exc.command}: repository {exc.repository}: no space left on "
                       f"the repository's storage: {where} (restic: {exc.detail})", **fields)
    if isinstance(exc, NoSpace):
        return ResticCommandError(f"restic {exc.command}: repository {exc.repository}: a write "
                                  f"failed ({exc.detail}), but {where}: not a full disk",
                                  **fields)
    return exc


def full_storage(repository: RepositoryConfig,
                 read_space: SpaceReader) -> Callable[[Retry], str | None]:
    """A judge of restic's retries: a failed write while ``repository``'s storage has less
    than ``NO_SPACE_BELOW`` free cannot succeed. The space is read at a failed write, at
    most once every ``SPACE_RECHECK`` seconds."""
    seen: dict[str, Any] = {}

    def judge(retry: Retry) -> str | None:
        low = retry.error.lower()
        if not retry.is_write or not any(w in low for w in _WRITE_FAILURES):
            return None
        if time.monotonic() - seen.get("at", -SPACE_RECHECK) >= SPACE_RECHECK:
            seen["at"], seen["space"] = time.monotonic(), read_space(repository)
        space: Space | None = seen["space"]
        if space is None or space.free >= NO_SPACE_BELOW:
            return None
        return (f"the storage of {repository.name} has {size(space.free, 'MiB')} free of "
                f"{size(space.total, 'MiB')}: stopped at restic's first retry of a write")
    return judge
