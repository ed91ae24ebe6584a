"""Runs on a migration's target (and source) VM with its own python3, standard library only:
hopnhat sends this file's text as ``python3 -c`` and one JSON argument, never through a
shell.

``{"mode": "scan", "paths": [...], "hash": true}`` walks the paths (never following a
symbolic link) and prints one JSON object per entry, as it goes (memory stays flat):
``{"p": path, "t": "f"|"d"|"l"|"o", "s": size, "m": permission bits, "n": mtime in ns,
"h": SHA-256 of a file's bytes (with ``hash``)}``, then ``{"end": true, "missing": [...]}``
naming the paths that do not exist.

``{"mode": "meta", "paths": [...], "meta": {path: {"m": mode, "u": uid, "g": gid, "n": mtime
ns}}}`` gives each of ``paths`` (the backup paths themselves: a restore of a snapshot's
sub-folder fills the folder but leaves the folder's own metadata alone) its owner,
permission bits and mtime. Prints ``{"fixed": n, "errors": [...]}``.

``{"mode": "delete", "paths": [...]}`` reads JSON strings from stdin, one a line: entries to
remove, each strictly below one of ``paths``; files and links first, then folders deepest
first (a folder that is not empty stays and is named). Prints ``{"deleted": n, "errors":
[...]}``.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from collections.abc import Iterator
from typing import Any

CHUNK = 1 << 20


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "f"
    if stat.S_ISDIR(mode):
        return "d"
    if stat.S_ISLNK(mode):
        return "l"
    return "o"


def _sha256(path: str) -> str | None:
    digest = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb", buffering=0) as f:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            digest.update(view[:n])
    return digest.hexdigest()


def entry(path: str, st: os.stat_result, want_hash: bool) -> dict[str, Any]:
    kind = _kind(st.st_mode)
    out: dict[str, Any] = {"p": path, "t": kind, "m": stat.S_IMODE(st.st_mode),
                           "n": st.st_mtime_ns}
    if kind == "f":
        out["s"] = st.st_size
        if want_hash:
            out["h"] = _sha256(path)
    return out


def walk(root: str) -> Iterator[tuple[str, os.stat_result]]:
    """``root`` and everything below it, without following links, sorted per folder."""
    st = os.lstat(root)
    yield root, st
    if not stat.S_ISDIR(st.st_mode):
        return
    stack = [root]
    while stack:
        here = stack.pop()
        try:
            names = sorted(os.listdir(here))
        except OSError:
            continue
        below = []
        for name in names:
            path = os.path.join(here, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            yield path, st
            if stat.S_ISDIR(st.st_mode):
                below.append(path)
        stack.extend(reversed(below))


def scan(paths: list[str], want_hash: bool) -> None:
    missing = []
    write = sys.stdout.write
    for root in paths:
        if not os.path.lexists(root):
            missing.append(root)
            continue
        for path, st in walk(root):
            write(json.dumps(entry(path, st, want_hash)) + "\n")
    write(json.dumps({"end": True, "missing": missing}) + "\n")


def _inside(path: str, roots: list[str]) -> bool:
    parts = path.split("/")
    if ".." in parts or "." in parts or "" in parts[1:]:
        return False
    return any(path.startswith(r.rstrip("/") + "/") for r in roots)


def delete(paths: list[str]) -> None:
    doomed = [json.loads(line) for line in sys.stdin if line.strip()]
    errors = []
    folders = []
    deleted = 0
    for path in doomed:
        if not isinstance(path, str) or not _inside(path, paths):
            errors.append(f"refused: {path!r} is not below the backup paths")
            continue
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            errors.append(f"{path!r}: {exc.strerror}")
            continue
        if stat.S_ISDIR(st.st_mode):
            folders.append(path)
            continue
        try:
            os.unlink(path)
            deleted += 1
        except OSError as exc:
            errors.append(f"{path!r}: {exc.strerror}")
    for path in sorted(folders, key=lambda p: p.count("/"), reverse=True):
        try:
            os.rmdir(path)
            deleted += 1
        except OSError as exc:
            errors.append(f"{path!r}: {exc.strerror}")
    print(json.dumps({"deleted": deleted, "errors": errors}))


def meta(paths: list[str], wanted: dict[str, dict[str, int]]) -> None:
    fixed = 0
    errors = []
    for path in paths:
        want = wanted.get(path)
        if not want:
            continue
        try:
            if want.get("u") is not None and want.get("g") is not None:
                os.chown(path, int(want["u"]), int(want["g"]), follow_symlinks=False)
            if not os.path.islink(path):
                os.chmod(path, int(want["m"]))
            os.utime(path, ns=(int(want["n"]), int(want["n"])), follow_symlinks=False)
            fixed += 1
        except OSError as exc:
            errors.append(f"{path!r}: {exc.strerror}")
    print(json.dumps({"fixed": fixed, "errors": errors}))


def main() -> int:
    args = json.loads(sys.argv[1])
    paths = [p for p in args["paths"] if isinstance(p, str) and p.startswith("/")]
    if args["mode"] == "scan":
        scan(paths, bool(args.get("hash")))
    elif args["mode"] == "delete":
        delete(paths)
    elif args["mode"] == "meta":
        meta(paths, dict(args.get("meta") or {}))
    else:
        print(f"unknown mode {args['mode']!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
