"""Runs on a drill's scratch VM with its own python3, standard library only: hopnhat sends
this file's text as ``python3 -c`` and one JSON argument, each quoted for the VM's shell
(:func:`orchestrator.actions.drill.checks.scratch_command`). Prints one JSON object.

``{"mode": "tree", "paths": [...], "samples": [...]}`` — the restored side: counts of the
files, folders and other entries under the paths and the files' total size (never following
a symbolic link), the paths that do not exist, and the SHA-256 of each sampled file as
restored (None when it cannot be read): ``{"counts": {"files", "dirs", "others",
"total_size"}, "missing": [...], "hashes": {path: sha256 | None}}``.

``{"mode": "samples", "argv": [...], "target": folder, "samples": [...]}`` — the snapshot's
side: the sampled files read from the snapshot again by a restic of their own (``argv``, a
``restore`` command line, with ``--target`` and one ``--include`` per file added), into a
private folder emptied before and removed after; then the SHA-256 of each: ``{path:
{"sha256": …} | {"error": why}}`` (why: restic's last line when it failed, else the read's
error). restic's password reaches it only through the environment the command gives.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

CHUNK = 1 << 20
ERROR_MAX = 300  # characters of a sample's error kept


def sha256(path: str) -> str:
    """The SHA-256 of ``path``'s bytes (hex). Raises OSError when it cannot be read."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _count(path: str, counts: dict[str, int]) -> bool:
    """Count ``path`` (never following a link) in ``counts``; whether it is a folder."""
    st = os.lstat(path)
    if stat.S_ISREG(st.st_mode):
        counts["files"] += 1
        counts["total_size"] += st.st_size
    elif stat.S_ISDIR(st.st_mode):
        counts["dirs"] += 1
    else:
        counts["others"] += 1
    return stat.S_ISDIR(st.st_mode)


def counts_under(paths: Sequence[str]) -> tuple[dict[str, int], list[str]]:
    """The files, folders and other entries under ``paths`` and the files' total size; the
    paths that do not exist."""
    counts = {"files": 0, "dirs": 0, "others": 0, "total_size": 0}
    missing = []
    for root in paths:
        if not os.path.lexists(root):
            missing.append(root)
        elif _count(root, counts):
            for here, dirs, files in os.walk(root):
                for name in dirs + files:
                    _count(os.path.join(here, name), counts)
    return counts, missing


def hashes_of(paths: Sequence[str]) -> dict[str, str | None]:
    """The SHA-256 of each of ``paths``, None for one that cannot be read."""
    hashes: dict[str, str | None] = {}
    for path in paths:
        try:
            hashes[path] = sha256(path)
        except OSError:
            hashes[path] = None
    return hashes


def tree(paths: Sequence[str], samples: Sequence[str]) -> dict[str, Any]:
    """The ``tree`` mode's document for ``paths`` and the sampled files ``samples``."""
    counts, missing = counts_under(paths)
    return {"counts": counts, "missing": missing, "hashes": hashes_of(samples)}


def snapshot_samples(argv: Sequence[str], target: str,
                     samples: Sequence[str]) -> dict[str, dict[str, str]]:
    """The ``samples`` mode's document: restic ``argv`` restores ``samples`` into
    ``target`` (emptied before, removed after); each file's SHA-256, or why not."""
    shutil.rmtree(target, ignore_errors=True)
    command = [*argv, "--target", target]
    for path in samples:
        command += ["--include", path]
    proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          check=False)
    lines = proc.stdout.decode(errors="replace").strip().splitlines()
    out: dict[str, dict[str, str]] = {}
    for path in samples:
        try:
            out[path] = {"sha256": sha256(target + path)}
        except OSError as exc:
            why = lines[-1] if proc.returncode and lines else str(exc)
            out[path] = {"error": why[:ERROR_MAX]}
    shutil.rmtree(target, ignore_errors=True)
    return out


def main(argv: Sequence[str]) -> int:
    """``argv``: the program's arguments after its name (one JSON document)."""
    args = json.loads(argv[0])
    if args["mode"] == "tree":
        out: Any = tree(args["paths"], args["samples"])
    else:
        out = snapshot_samples(args["argv"], args["target"], args["samples"])
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
