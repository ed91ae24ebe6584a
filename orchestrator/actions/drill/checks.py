"""A drill's checks of a restored copy, each as data.

- **listing**: the snapshot's files, directories and total size (``restic ls --json``,
  streamed) against the restored tree under the system's backup paths;
- **samples**: the SHA-256 of sampled files as the snapshot holds them — read again by a
  restic process of their own (one ``restore --include`` of just those files into a private
  folder: one key derivation and index load instead of one per ``restic dump``) — against
  the restored files; beside ``restore --verify``, which re-reads every file;
- **probes**: the system's own checks from the estate (``sqlite3 app.db 'PRAGMA
  integrity_check'`` → ``ok``), run on the scratch VM, with the exit code and output they
  must give.

The snapshot's listing, then its sampled files, are read on the scratch VM while the restore
runs (they need only the repository); the restored side after it. Files are sampled by
reservoir (memory stays flat for millions of files), seeded by the drill id so a drill's
sample can be reproduced.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.actions.drill.remote import (
    RESTIC,
    read_only,
    remote_command,
    restic_env,
)
from orchestrator.adapters.restic import Repository
from orchestrator.adapters.restic_argv import base_argv, make_ls_argv
from orchestrator.adapters.restic_results import Listing, Node, parse_ls_line
from orchestrator.adapters.ssh import Remote
from orchestrator.errors import HopnhatError, ResticError
from orchestrator.estate.recovery import Probe
from orchestrator.quoting import shell_join

SAMPLES = 12
SAMPLE_DIR = "/var/lib/hopnhat/drill-samples"  # on the scratch VM (the base role's folder)
OUTPUT_MAX = 2000  # characters of a probe's output kept in the evidence

#: runs on the scratch VM (its text shipped with ``python3 -c``): the restored tree's counts
#: and hashes, and the sampled files read again from the snapshot
SCRATCH_CHECKS = Path(__file__).with_name("scratch_checks.py")


@dataclass(frozen=True)
class Counts:
    files: int = 0
    dirs: int = 0
    others: int = 0
    total_size: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"files": self.files, "dirs": self.dirs, "others": self.others,
                "total_size": self.total_size}


@dataclass(frozen=True)
class SnapshotSide:
    """What the snapshot holds under the backup paths, and the files sampled from it
    (path → size)."""

    counts: Counts
    samples: dict[str, int]
    sample_hashes: dict[str, str | None] = field(default_factory=dict)
    sample_errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SampleCheck:
    path: str
    size: int
    snapshot_sha256: str | None
    restored_sha256: str | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.snapshot_sha256 is not None and self.snapshot_sha256 == self.restored_sha256

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "snapshot_sha256": self.snapshot_sha256,
                "restored_sha256": self.restored_sha256, "ok": self.ok, "error": self.error}


@dataclass(frozen=True)
class ContentCheck:
    """The restored tree against the snapshot: counts, missing paths, sampled hashes."""

    vm: str
    snapshot: Counts
    restored: Counts
    missing: tuple[str, ...]
    samples: tuple[SampleCheck, ...]

    @property
    def listing_ok(self) -> bool:
        return self.snapshot == self.restored and not self.missing

    @property
    def ok(self) -> bool:
        return self.listing_ok and all(s.ok for s in self.samples)

    def problems(self) -> list[str]:
        """Each difference as a sentence (empty when ok)."""
        out = []
        for what in ("files", "dirs", "others", "total_size"):
            want, got = getattr(self.snapshot, what), getattr(self.restored, what)
            if want != got:
                out.append(f"{self.vm}: {what.replace('_', ' ')}: snapshot {want}, "
                           f"restored {got}")
        out += [f"{self.vm}: {path} missing after the restore" for path in self.missing]
        out += [f"{self.vm}: {s.path}: content differs from the snapshot"
                + (f" ({s.error})" if s.error else "") for s in self.samples if not s.ok]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"vm": self.vm, "ok": self.ok, "listing_ok": self.listing_ok,
                "snapshot": self.snapshot.as_dict(), "restored": self.restored.as_dict(),
                "missing": list(self.missing), "samples": [s.as_dict() for s in self.samples]}


@dataclass(frozen=True)
class ProbeResult:
    vm: str
    name: str
    command: str
    expect_rc: int
    expect_stdout: str | None
    rc: int | None
    stdout: str
    stderr: str
    seconds: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.rc == self.expect_rc and (
            self.expect_stdout is None or self.stdout.strip() == self.expect_stdout.strip())

    def describe(self) -> str:
        if self.error:
            return f"{self.vm}: probe {self.name!r}: {self.error}"
        want = f"exit {self.expect_rc}" + (f" and {self.expect_stdout!r}"
                                          if self.expect_stdout is not None else "")
        got = f"exit {self.rc}" + (f" and {self.stdout.strip()[:80]!r}"
                                   if self.expect_stdout is not None else "")
        return f"{self.vm}: probe {self.name!r} gave {got}, expected {want}"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "command", "vm": self.vm, "name": self.name, "command": self.command,
                "expect_rc": self.expect_rc, "expect_stdout": self.expect_stdout,
                "rc": self.rc, "stdout": self.stdout, "stderr": self.stderr,
                "seconds": round(self.seconds, 3), "ok": self.ok, "error": self.error}


# ---------------------------------------------------------------- pure pieces


def under(path: str, roots: Sequence[str]) -> bool:
    """``path`` is one of ``roots`` or lies below one."""
    return any(path == r.rstrip("/") or path.startswith(r.rstrip("/") + "/") for r in roots)


class Tally:
    """Counts of the nodes under ``roots`` and a reservoir sample of ``samples`` of their
    files (path → size), drawn with a Random seeded by ``seed``; fed one node at a time."""

    def __init__(self, roots: Sequence[str], samples: int, seed: str) -> None:
        self.roots = tuple(roots)
        self.samples = samples
        self.listing = Listing()
        self._rng = random.Random(seed)  # noqa: S311 - a sample, not a secret
        self._chosen: list[tuple[str, int]] = []
        self._seen = 0

    def add(self, node: Node) -> None:
        if not under(node.path, self.roots):
            return
        self.listing.add(node)
        if node.type != "file":
            return
        self._seen += 1
        if len(self._chosen) < self.samples:
            self._chosen.append((node.path, node.size or 0))
        else:
            slot = self._rng.randrange(self._seen)
            if slot < self.samples:
                self._chosen[slot] = (node.path, node.size or 0)

    def result(self) -> tuple[Counts, dict[str, int]]:
        lst = self.listing
        return Counts(lst.files, lst.dirs, lst.others, lst.total_size), dict(sorted(self._chosen))


def tally(nodes: Iterable[Node], roots: Sequence[str], samples: int,
          seed: str) -> tuple[Counts, dict[str, int]]:
    """:class:`Tally` over ``nodes``: (counts, sampled files)."""
    counter = Tally(roots, samples, seed)
    for node in nodes:
        counter.add(node)
    return counter.result()


def compare(vm: str, snapshot: SnapshotSide, restored: Counts, missing: Sequence[str],
            hashes: dict[str, str | None]) -> ContentCheck:
    """The :class:`ContentCheck` of one scratch VM (pure)."""
    samples = tuple(SampleCheck(path, size, snapshot.sample_hashes.get(path),
                                hashes.get(path), snapshot.sample_errors.get(path, ""))
                    for path, size in snapshot.samples.items())
    return ContentCheck(vm, snapshot.counts, restored, tuple(missing), samples)


def _clip(text: str) -> str:
    return text if len(text) <= OUTPUT_MAX else text[:OUTPUT_MAX] + "…"


# ---------------------------------------------------------------- on the scratch VM


def scratch_command(args: dict[str, Any], env_prefix: str = "") -> str:
    """The command that runs :mod:`~orchestrator.actions.drill.scratch_checks` on a scratch
    VM: its text and one JSON argument, each quoted (no value reaches the shell unquoted),
    after ``env_prefix`` (``env K=V … ``, or nothing)."""
    return env_prefix + shell_join(["python3", "-c", SCRATCH_CHECKS.read_text(),
                                    json.dumps(args)])


def _script(remote: Remote, args: dict[str, Any], timeout: float,
            env_prefix: str = "") -> Any:
    done = remote.run(scratch_command(args, env_prefix), timeout=timeout)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise HopnhatError(f"{remote.target.host}: the drill's check script failed: {tail[0]}")
    return json.loads(done.stdout)


def snapshot_side(remote: Remote, repo: Repository, snapshot_id: str, roots: Sequence[str],
                  *, samples: int, seed: str, timeout: float,
                  restic: str = RESTIC) -> SnapshotSide:
    """The snapshot's counts under ``roots`` (``restic ls --json``, streamed, on the scratch
    VM) and the files sampled from it (no hashes yet: see :func:`read_samples`).
    Raises ResticError when restic cannot list the snapshot."""
    counter = Tally(roots, samples, seed)
    errors: list[str] = []

    def each(line: str) -> None:
        node = parse_ls_line(line)
        if node is not None:
            counter.add(node)
        elif line and not line.startswith("{"):
            errors.append(line)

    command = remote_command(repo, make_ls_argv(repo, snapshot_id), restic) + " 2>&1"
    done = remote.run(command, timeout=timeout, on_line=each)
    if done.returncode != 0:
        raise ResticError(f"restic ls {snapshot_id[:8]} on {remote.target.host}: "
                          f"{(errors or [f'exit {done.returncode}'])[-1][:300]}")
    counts, chosen = counter.result()
    return SnapshotSide(counts, chosen)


def read_samples(remote: Remote, repo: Repository, snapshot_id: str, side: SnapshotSide,
                 timeout: float, restic: str = RESTIC) -> SnapshotSide:
    """``side`` with the SHA-256 of its sampled files as the snapshot holds them, read again
    from the repository by a restic of their own on the scratch VM. (Run beside the restore
    once the listing is read: a dozen files and one key derivation cost the restore less
    than they would add after it.)"""
    if not side.samples:
        return side
    argv = [restic, *read_only((*base_argv(repo), "restore", snapshot_id))[1:]]
    read = _script(remote, {"mode": "samples", "argv": argv, "target": SAMPLE_DIR,
                            "samples": list(side.samples)}, timeout, restic_env(repo) + " ")
    return SnapshotSide(side.counts, side.samples,
                        {p: d.get("sha256") for p, d in read.items()},
                        {p: d["error"] for p, d in read.items() if "error" in d})


def restored_side(remote: Remote, roots: Sequence[str], samples: Sequence[str],
                  timeout: float) -> tuple[Counts, list[str], dict[str, str | None]]:
    """Counts of the restored tree under ``roots``, the roots missing, and the SHA-256 of
    the sampled files as restored."""
    found = _script(remote, {"mode": "tree", "paths": list(roots), "samples": list(samples)},
                    timeout)
    c = found["counts"]
    return (Counts(c["files"], c["dirs"], c["others"], c["total_size"]), found["missing"],
            found["hashes"])


def run_probe(remote: Remote, probe: Probe) -> ProbeResult:
    """One command probe on the scratch VM (its words quoted one by one: a program and its
    arguments, no shell line), bounded by its timeout. Out: its result (a failure to run
    it is a failed result, not an exception)."""
    started = time.monotonic()
    timeout = probe.timeout.total_seconds()
    command = probe.command or ""
    try:
        done = remote.run(shell_join(probe.argv), timeout=timeout)
    except HopnhatError as exc:
        return ProbeResult(remote.target.host, probe.name, command, probe.expect_rc,
                           probe.expect_stdout, None, "", "", time.monotonic() - started,
                           error=str(exc))
    return ProbeResult(remote.target.host, probe.name, command, probe.expect_rc,
                       probe.expect_stdout, done.returncode, _clip(done.stdout),
                       _clip(done.stderr), time.monotonic() - started)
