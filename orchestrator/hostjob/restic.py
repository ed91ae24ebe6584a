"""The job's restic: the adapter's :class:`~orchestrator.adapters.restic.Restic` as a run
uses it — waiting ``lock_wait_seconds`` for a live repository lock, removing stale ones,
stopping at the first retry of a write that a full storage cannot take
(:func:`~orchestrator.hostjob.space.full_storage`) — and restic's version, asked once per
binary and kept beside the status file."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from orchestrator.adapters.restic import BackupResult, ForgetResult, Repository, Restic, Snapshot
from orchestrator.adapters.restic_argv import Version
from orchestrator.errors import HopnhatError
from orchestrator.files import write_atomically
from orchestrator.hostjob.config import JobConfig
from orchestrator.hostjob.contract import VERSION_CACHE
from orchestrator.hostjob.space import SpaceReader, full_storage


class ResticRunner(Protocol):
    """What the job needs of :class:`orchestrator.adapters.restic.Restic`."""

    def backup(self, paths: Sequence[str | Path], tags: Sequence[str] = (),
               exclude: Sequence[str] = (), host: str | None = None, *,
               on_progress: Callable[[dict[str, Any]], None] | None = None,
               partial_ok: bool = True) -> BackupResult: ...

    def forget(self, retention: Mapping[str, int | str], prune: bool = True, *,
               host: str | None = None, tags: Sequence[str] = (), group_by: str | None = None,
               dry_run: bool = False) -> ForgetResult: ...

    def copy(self, from_repo: Repository, snapshot_ids: Sequence[str] = ()) -> tuple[str, ...]: ...

    def backup_stdin(self, filename: str, tags: Sequence[str] = (), host: str | None = None,
                     *, command: Sequence[str] | None = None,
                     feed: Callable[[IO[bytes]], bool] | None = None) -> BackupResult: ...

    def snapshots(self, *, host: str | None = None, tags: Sequence[str] = (),
                  paths: Sequence[str] = (), latest: int | None = None,
                  no_lock: bool = False) -> list[Snapshot]: ...


ResticFactory = Callable[[Repository], ResticRunner]


def default_restic(config: JobConfig, read_space: SpaceReader | None = None, *,
                   version: Version | None = None) -> ResticFactory:
    """restic for the job: waits ``lock_wait_seconds`` for a live lock, removes stale ones,
    and — with ``read_space`` — stops at restic's first retry of a write that the storage's
    free space shows cannot succeed (rather than after its ten, about a minute).
    ``version``: restic's, when the caller has read it (else read here)."""
    def make(repo: Repository) -> ResticRunner:
        storage = next((r for r in (config.repository, config.copy)
                        if r is not None and r.url == repo.url), None)
        give_up = (full_storage(storage, read_space)
                   if storage is not None and read_space is not None else None)
        return Restic(repo, binary=config.restic, timeout=config.timeout_seconds,
                      lock_wait=config.lock_wait_seconds, remove_stale=True, give_up=give_up,
                      version=known)
    known = version or restic_version(config)
    return make


def version_text(version: Version | None) -> str | None:
    """``(0, 18, 1)`` → ``"0.18.1"``; None stays None."""
    return ".".join(str(part) for part in version) if version else None


def restic_version(config: JobConfig) -> Version | None:
    """restic's version from the cache beside the status file (``restic-version.json``),
    when it was written for this very binary (path, size, modification time, inode); else
    asked once (``restic version``) and cached. None when restic is not found: the run's
    first restic command then fails and says so."""
    binary = shutil.which(config.restic)
    if binary is None:
        return None
    try:
        seen = os.stat(binary)
    except OSError:
        return None
    key = [binary, seen.st_size, seen.st_mtime_ns, seen.st_ino]
    cache = config.status_file.with_name(VERSION_CACHE)
    # an unreadable or damaged cache is asked again
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError, AttributeError):
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached.get("binary") == key and len(cached["version"]) == 3:
            return (int(cached["version"][0]), int(cached["version"][1]),
                    int(cached["version"][2]))
    try:
        version = Restic(config.restic_repository(config.repository), binary=binary,
                         timeout=30).version()
    except HopnhatError:
        return None  # the run's restic commands will say what is wrong
    with contextlib.suppress(OSError):
        write_atomically(cache, json.dumps({"binary": key, "version": list(version)}) + "\n")
    return version
