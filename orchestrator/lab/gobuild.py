"""The lab's Go parts, built from the project's own pinned Go modules.

Each part is a Go module under ``orchestrator/lab/go/<part>/`` whose ``go.mod`` and
``go.sum`` are committed, so every machine builds the same sources, checked against go.sum:

- ``vcsim``: hopnhat's own ``main.go`` around govmomi's ``simulator`` package (the lab's
  vCenter), built as ``hopnhat-vcsim``;
- ``restic``: a current restic release, a ``tool`` of its module and nothing else, so the
  build uses exactly that release's own dependency versions; built as ``restic-<version>``
  beside Debian's restic (both are real targets);
- ``rest-server``: restic's REST server, likewise; built as ``rest-server-<version>``.

A part is rebuilt only when its sources (go.mod, go.sum, ``*.go``) or the Go toolchain
changed: the hash of both is kept beside the binary (``<binary>.sha256``). Go's own caches
(``GOCACHE``, ``GOMODCACHE``) are the machine's, so a second lab on the same machine links
in seconds. Nothing is fetched but modules, from the Go module proxy, and never a toolchain
(``GOTOOLCHAIN=local``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestrator import process
from orchestrator.errors import CommandError, LabError

GO_DIR = Path(__file__).resolve().parent / "go"
BUILD_TIMEOUT = 900.0  # restic from a cold cache takes ~2.5 min on 2 cores
# Where Go's official tarball installs itself; looked at when the `go` on PATH is too old
# (Debian 12's golang-go is 1.19)
FALLBACK_GO = Path("/usr/local/go/bin/go")


@dataclass(frozen=True)
class GoPart:
    """One Go program of the lab: its module folder, what to build, the binary's name."""

    name: str
    package: str  # "." for the module's own main, else the tool's import path
    tool_module: str | None = None  # the module whose version names the binary

    @property
    def module_dir(self) -> Path:
        return GO_DIR / self.name

    def binary_name(self) -> str:
        if self.tool_module is None:
            return f"hopnhat-{self.name}"
        return f"{self.name}-{pinned_version(self.module_dir / 'go.mod', self.tool_module)}"


VCSIM = GoPart("vcsim", ".")
RESTIC = GoPart("restic", "github.com/restic/restic/cmd/restic", "github.com/restic/restic")
REST_SERVER = GoPart("rest-server", "github.com/restic/rest-server/cmd/rest-server",
                     "github.com/restic/rest-server")
PARTS = (VCSIM, RESTIC, REST_SERVER)


def pinned_version(go_mod: Path, module: str) -> str:
    """The version of ``module`` that ``go_mod`` requires, without its ``v``.

    Raises :class:`LabError` naming the file when it is unreadable or does not require
    ``module``.
    """
    try:
        text = go_mod.read_text()
    except OSError as exc:
        raise LabError(f"{go_mod}: cannot read: {exc.strerror}") from exc
    found = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+v(\d[^\s/]*)", text,
                      re.MULTILINE)
    if not found:
        raise LabError(f"{go_mod}: does not require {module}")
    return found.group(1)


def bin_dir(lab_dir: Path) -> Path:
    """Where the lab's binaries go: ``lab_dir/bin``."""
    return lab_dir / "bin"


def binary_path(lab_dir: Path, part: GoPart) -> Path:
    """Where :func:`build` puts ``part``'s binary."""
    return bin_dir(lab_dir) / part.binary_name()


def restic_binary(lab_dir: Path) -> Path:
    """The pinned newer restic of this lab (built by :func:`build_all`)."""
    return binary_path(lab_dir, RESTIC)


def rest_server_binary(lab_dir: Path) -> Path:
    """The pinned rest-server of this lab (built by :func:`build_all`)."""
    return binary_path(lab_dir, REST_SERVER)


def source_digest(part: GoPart, toolchain: str) -> str:
    """SHA-256 over the part's module files (go.mod, go.sum, ``*.go``, by name) and the Go
    toolchain's version: what decides whether a built binary is still current."""
    digest = hashlib.sha256(toolchain.encode() + b"\0")
    files = sorted(p for p in part.module_dir.iterdir()
                   if p.name in ("go.mod", "go.sum") or p.suffix == ".go")
    for path in files:
        try:
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        except OSError as exc:
            raise LabError(f"{path}: cannot read: {exc.strerror}") from exc
    return digest.hexdigest()


_GO_VERSION = re.compile(r"^go(\d+)\.(\d+)")
_GO_DIRECTIVE = re.compile(r"^go\s+(\d+)\.(\d+)", re.MULTILINE)


def required_go(part: GoPart) -> tuple[int, int]:
    """The Go version the part's go.mod asks for (its ``go`` line), as (major, minor)."""
    found = _GO_DIRECTIVE.search((part.module_dir / "go.mod").read_text())
    return (int(found.group(1)), int(found.group(2))) if found else (1, 0)


def find_go(needed: tuple[int, int],
            version_of: Callable[[str], str | None] | None = None) -> tuple[str, str]:
    """The Go toolchain to build with: ``go`` on PATH, else Go's own install under
    /usr/local/go, whichever is at least ``needed``. Out: (path, version such as
    ``go1.26.8``).

    Raises :class:`LabError` saying what was found when no Go is new enough.
    """
    ask = version_of or _go_version
    seen: list[str] = []
    for candidate in (shutil.which("go"), str(FALLBACK_GO)):
        if not candidate or candidate in seen:
            continue
        version = ask(candidate)
        seen.append(f"{candidate} ({version or 'does not run'})")
        m = _GO_VERSION.match(version or "")
        if m and (int(m.group(1)), int(m.group(2))) >= needed:
            return candidate, version or ""
    want = f"go{needed[0]}.{needed[1]}"
    raise LabError(f"the lab's Go parts need {want} or newer; found: "
                   f"{', '.join(seen) or 'no go on PATH'} (the project's machines have Go "
                   "under /usr/local/go)")


def _go_version(go: str) -> str | None:
    try:
        done = process.run([go, "env", "GOVERSION"], timeout=60, env=build_env())
    except CommandError:
        return None
    return done.stdout.strip() if done.ok else None


#: what a build takes of hopnhat's environment beyond the children's allow-list: Go's own
#: settings (module cache, proxy, private modules) and the way out to fetch modules
_BUILD_INHERITS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
                   "no_proxy")


def build_env() -> dict[str, str]:
    """The environment of every build: modules checked against go.sum and never edited, no
    toolchain download, no VCS stamping, paths trimmed from the binary; the operator's GO*
    settings and proxies handed over (a child gets only an allow-list otherwise)."""
    handed = {k: v for k, v in os.environ.items()
              if k.startswith("GO") or k in _BUILD_INHERITS}
    return {**handed, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly -trimpath -buildvcs=false",
            "CGO_ENABLED": "0", "GO111MODULE": "on"}


def build(lab_dir: Path, part: GoPart) -> Path:
    """Build ``part`` into ``lab_dir/bin`` unless the binary there is current; its path.

    Raises :class:`LabError` when Go is missing or too old, a module cannot be fetched, or
    the compiler fails (with its last lines).
    """
    go, toolchain = find_go(required_go(part))
    binary = binary_path(lab_dir.resolve(), part)  # absolute: go runs in the module's folder
    stamp = binary.with_name(binary.name + ".sha256")
    digest = source_digest(part, toolchain)
    if binary.is_file() and _read_text(stamp).strip() == digest:
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    output = binary.with_name(f".{binary.name}.{os.getpid()}.tmp")
    try:
        done = process.run([go, "build", "-o", str(output), part.package], env=build_env(),
                           cwd=part.module_dir, timeout=BUILD_TIMEOUT)
    except CommandError as exc:
        output.unlink(missing_ok=True)
        raise LabError(f"cannot build {binary.name}: {exc}") from exc
    if not done.ok or not output.is_file():
        output.unlink(missing_ok=True)
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise LabError(f"go build of {binary.name} in {part.module_dir} failed "
                       f"(exit {done.returncode}):\n{tail}")
    output.replace(binary)
    tmp = stamp.with_name(stamp.name + ".tmp")
    tmp.write_text(digest + "\n")
    tmp.replace(stamp)
    return binary


def build_all(lab_dir: Path) -> dict[str, Path]:
    """Build every Go part of the lab (each only when not current): name → binary."""
    return {part.name: build(lab_dir, part) for part in PARTS}


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    """``python3 -m orchestrator.lab.gobuild LAB_DIR``: build every part (needs only the
    standard library, so ``make`` runs it beside the virtualenv's install)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python3 -m orchestrator.lab.gobuild LAB_DIR", file=sys.stderr)
        return 2
    try:
        for name, binary in build_all(Path(args[0])).items():
            print(f"{name}: {binary}")
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
