"""The lab's vCenter: govmomi 0.24's vcsim with hopnhat's own Go ``main``.

The Go program (``orchestrator/lab/vcsim/main.go``) is built from a copy of Debian's govmomi
source (package ``golang-github-vmware-govmomi-dev``) with ``fetch.patch`` applied; Debian's
tree under /usr/share/gocode is never changed. It takes one argument, the path of a JSON
model file, and serves the inventory that file describes over HTTPS, with only the
credentials of ``credentials_file`` allowed to log in.

Model file (``lab_dir/vcsim/model.json``, written by :func:`start`)::

    {"listen": "127.0.0.1:8989",
     "tls": {"cert": "/abs/cert.pem", "key": "/abs/key.pem"},   # made when missing
     "credentials_file": "/abs/vcenter-credentials.json",       # see write_credentials
     "ready_file": "/abs/vcsim.ready",          # holds the SDK URL once serving
     "storage_dir": "/abs/datastores",          # datastore folders (emptied at start)
     "delays": {"delay_ms": 0, "jitter": 0.0, "methods": {"CloneVM_Task": 500}},
     "datacenters": [{"name": ..., "clusters": [...], "datastores": [...],
                      "portgroups": [...], "templates": [...], "vms": [...]}]}

:func:`start` fills ``tls``, ``ready_file`` and ``storage_dir`` under ``lab_dir/vcsim`` when
the model leaves them out. The server also answers, for tests and benchmarks only,
``GET /lab/methods`` (SOAP method call counts), ``POST /lab/methods/reset`` and
``GET /lab/delays`` (the delays in force).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import ssl
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from orchestrator import process
from orchestrator.errors import CommandError, LabError
from orchestrator.lab.processes import ProcessRecord, ProcessTable

GOVMOMI_SOURCE = Path("/usr/share/gocode/src/github.com/vmware/govmomi")
SYSTEM_GOPATH = Path("/usr/share/gocode")
SOURCE_DIR = Path(__file__).resolve().parent / "vcsim"
MAIN_GO = SOURCE_DIR / "main.go"
PATCH = SOURCE_DIR / "fetch.patch"

BINARY_NAME = "hopnhat-vcsim"
PROCESS_NAME = "vcsim"
PROCESS_KIND = "vcsim"
DEFAULT_LISTEN = "127.0.0.1:8989"
BUILD_TIMEOUT = 600.0
_POLL = 0.05  # seconds between two looks at a condition that has a deadline


# ------------------------------------------------------------------ paths


def binary_path(lab_dir: Path) -> Path:
    """Where :func:`build` puts the simulator: ``lab_dir/bin/hopnhat-vcsim``."""
    return lab_dir / "bin" / BINARY_NAME


def state_dir(lab_dir: Path) -> Path:
    """The simulator's folder: model, log, ready file, certificate, datastores."""
    return lab_dir / "vcsim"


def model_path(lab_dir: Path) -> Path:
    """The model file :func:`start` writes and :func:`set_delays` rewrites."""
    return state_dir(lab_dir) / "model.json"


def log_path(lab_dir: Path) -> Path:
    """The simulator's log (stdout and stderr)."""
    return state_dir(lab_dir) / "vcsim.log"


# ------------------------------------------------------------------ build


def build(lab_dir: Path) -> Path:
    """Build the simulator and return the path of the binary.

    In: ``lab_dir``, the lab's folder. Copies Debian's govmomi tree to
    ``lab_dir/build/gopath/src/github.com/vmware/govmomi`` (once), applies ``fetch.patch``
    to the files it names (each restored from Debian's tree first), copies ``main.go`` to
    ``lab_dir/build/gopath/src/hopnhat/vcsim`` and runs ``go build`` with GO111MODULE=off,
    GOPATH=<copy>:/usr/share/gocode and GOCACHE=``lab_dir/build/gocache``.

    Out: ``lab_dir/bin/hopnhat-vcsim``. Nothing is rebuilt when the binary exists and the
    hash of main.go and the patch stored beside it (``hopnhat-vcsim.sha256``) matches.

    Raises :class:`LabError` when the govmomi source or Go is missing, the patch does not
    apply, or the compiler fails (with its last lines).
    """
    binary = binary_path(lab_dir)
    stamp = binary.with_name(binary.name + ".sha256")
    main_go, patch = _read_source(MAIN_GO), _read_source(PATCH)
    digest = hashlib.sha256(main_go + b"\0" + patch).hexdigest()
    if binary.is_file() and _read_text(stamp).strip() == digest:
        return binary

    if not (GOVMOMI_SOURCE / "simulator" / "simulator.go").is_file():
        raise LabError(
            f"govmomi source not found at {GOVMOMI_SOURCE}: "
            "install the Debian package golang-github-vmware-govmomi-dev"
        )
    gopath = lab_dir / "build" / "gopath"
    tree = gopath / "src" / "github.com" / "vmware" / "govmomi"
    _copy_tree_once(GOVMOMI_SOURCE, tree)
    for rel, text in apply_patch(patch.decode(), GOVMOMI_SOURCE).items():
        (tree / rel).write_text(text)
    package = gopath / "src" / "hopnhat" / "vcsim"
    package.mkdir(parents=True, exist_ok=True)
    (package / "main.go").write_bytes(main_go)

    binary.parent.mkdir(parents=True, exist_ok=True)
    output = binary.with_name(f".{binary.name}.{os.getpid()}.tmp")
    env = {
        "GO111MODULE": "off",
        "GOPATH": f"{gopath}{os.pathsep}{SYSTEM_GOPATH}",
        "GOCACHE": str(lab_dir / "build" / "gocache"),
        "GOFLAGS": "",
    }
    try:
        done = process.run(
            ["go", "build", "-o", str(output), "."], env=env, cwd=package, timeout=BUILD_TIMEOUT
        )
    except CommandError as exc:
        raise LabError(f"cannot build {BINARY_NAME}: {exc} (is golang-go installed?)") from exc
    if not done.ok or not output.is_file():
        output.unlink(missing_ok=True)
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise LabError(f"go build of {BINARY_NAME} failed (exit {done.returncode}):\n{tail}")
    output.replace(binary)
    _write_atomic(stamp, digest + "\n", 0o644)
    return binary


def _read_source(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise LabError(f"{path}: cannot read: {exc.strerror}") from exc


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _copy_tree_once(source: Path, dest: Path) -> None:
    """Copy ``source`` to ``dest`` unless ``dest`` exists; a copy cut short never counts
    as done (it is made under a temporary name and renamed)."""
    if dest.is_dir():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        shutil.copytree(source, partial, symlinks=True, dirs_exist_ok=True)
        partial.replace(dest)
    except OSError as exc:
        if not dest.is_dir():  # else another build of the same lab copied it first
            raise LabError(f"cannot copy {source} to {dest}: {exc}") from exc
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)


_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def apply_patch(patch: str, base: Path) -> dict[str, str]:
    """Apply a unified diff to pristine files under ``base``, in memory.

    In: the diff text (any text before the first ``---`` line is a comment; paths are
    ``a/...``/``b/...``) and the folder the paths are relative to.
    Out: ``{relative path: patched text}``; nothing is written.
    Raises :class:`LabError` when a file is missing, the diff is malformed, or a hunk's
    lines are not exactly at the place the diff says (the source is not the one the patch
    was made for).
    """
    result: dict[str, str] = {}
    lines = patch.splitlines()
    i = 0
    while i < len(lines):
        if not (
            lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")
        ):
            i += 1
            continue
        rel = lines[i + 1][4:].split("\t")[0].strip()
        rel = rel[2:] if rel.startswith("b/") else rel
        if not rel or rel.startswith("/") or ".." in Path(rel).parts:
            raise LabError(f"{PATCH.name}: bad path {rel!r}")
        try:
            original = (base / rel).read_text().splitlines(keepends=True)
        except OSError as exc:
            raise LabError(f"{PATCH.name}: {base / rel}: {exc.strerror}") from exc
        out: list[str] = []
        pos = 0  # lines of `original` consumed so far
        i += 2
        while i < len(lines) and lines[i].startswith("@@"):
            m = _HUNK.match(lines[i])
            if not m:
                raise LabError(f"{PATCH.name}: bad hunk header {lines[i]!r}")
            old_left = int(m.group(2) or "1")
            new_left = int(m.group(4) or "1")
            start = int(m.group(1)) - (1 if old_left else 0)
            if start < pos:
                raise LabError(f"{PATCH.name}: {rel}: hunks overlap")
            out.extend(original[pos:start])
            pos = start
            i += 1
            while old_left or new_left:
                if i >= len(lines):
                    raise LabError(f"{PATCH.name}: {rel}: hunk cut short")
                line = lines[i]
                i += 1
                tag, body = (line[:1] or " "), line[1:]
                if tag == "\\":  # "\ No newline at end of file"
                    continue
                if tag not in " -+":
                    raise LabError(f"{PATCH.name}: {rel}: bad hunk line {line!r}")
                if tag in " -":
                    if not old_left or pos >= len(original) or original[pos].rstrip("\r\n") != body:
                        raise LabError(
                            f"{PATCH.name}: {rel}: line {pos + 1} does not match the patch "
                            "(is this govmomi 0.24?)"
                        )
                    old_left -= 1
                    if tag == " ":
                        out.append(original[pos])
                        new_left -= 1
                    pos += 1
                else:
                    if not new_left:
                        raise LabError(f"{PATCH.name}: {rel}: hunk longer than its header says")
                    out.append(body + "\n")
                    new_left -= 1
        out.extend(original[pos:])
        result[rel] = "".join(out)
    if not result:
        raise LabError(f"{PATCH.name}: no file to patch")
    return result


# ------------------------------------------------------------------ credentials and files


def write_credentials(path: Path, username: str, password: str) -> None:
    """Write the simulator's credentials file.

    In: the file path, the user name and password that alone may log in.
    Out: ``{"username": ..., "password": ...}`` as JSON, mode 0600, replaced atomically.
    Raises :class:`LabError` when a value is empty or the file cannot be written (the
    message never holds the password).
    """
    if not username or not password:
        raise LabError(f"{path}: vCenter user name and password must not be empty")
    _write_atomic(path, json.dumps({"username": username, "password": password}) + "\n", 0o600)


def _write_atomic(path: Path, text: str, mode: int) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise LabError(f"{path}: cannot write: {exc.strerror}") from exc


def check_delays(delays: dict[str, Any]) -> dict[str, Any]:
    """Validate a ``delays`` mapping and return it in full form.

    In: ``{"delay_ms": int >= 0, "jitter": float >= 0, "methods": {name: ms >= 0}}``,
    every key optional. Out: the same with all three keys.
    Raises :class:`LabError` on an unknown key or a bad value.
    """
    unknown = set(delays) - {"delay_ms", "jitter", "methods"}
    if unknown:
        raise LabError(f"vcsim delays: unknown key(s) {sorted(unknown)}")
    delay_ms = delays.get("delay_ms", 0)
    jitter = delays.get("jitter", 0.0)
    methods = delays.get("methods") or {}
    if not isinstance(delay_ms, int) or isinstance(delay_ms, bool) or delay_ms < 0:
        raise LabError("vcsim delays: delay_ms must be an integer >= 0")
    if not isinstance(jitter, (int, float)) or isinstance(jitter, bool) or jitter < 0:
        raise LabError("vcsim delays: jitter must be a number >= 0")
    if not isinstance(methods, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for k, v in methods.items()
    ):
        raise LabError("vcsim delays: methods must map method names to integers >= 0")
    return {"delay_ms": delay_ms, "jitter": float(jitter), "methods": dict(methods)}


# ------------------------------------------------------------------ start and stop


def start(
    lab_dir: Path, model: dict[str, Any], table: ProcessTable, timeout: float = 30
) -> ProcessRecord:
    """Start the simulator (building it when needed) and wait until it serves.

    In: the lab folder, the model (see the module doc; ``credentials_file`` and
    ``datacenters`` are needed, ``listen`` defaults to 127.0.0.1:8989, ``tls``,
    ``ready_file`` and ``storage_dir`` to files under ``lab_dir/vcsim``), the lab's process
    table and how long to wait.
    Out: the record of the running simulator, named "vcsim", kind "vcsim", address the SDK
    URL (``https://host:port/sdk``), details ``cafile`` (the certificate to verify it
    with), ``model`` and ``log``. If the recorded simulator is alive, its record is
    returned and nothing is started.
    Raises :class:`LabError` when the build fails, the credentials file is missing, or the
    simulator exits or is not ready in time (then it is stopped; the message ends with
    its log's last lines).
    """
    running = table.running(PROCESS_NAME)
    if running is not None:
        return running
    table.forget(PROCESS_NAME)

    binary = build(lab_dir)
    folder = state_dir(lab_dir)
    full = _complete_model(model, folder)
    if not Path(full["credentials_file"]).is_file():
        raise LabError(f"{full['credentials_file']}: vCenter credentials file not found")
    ready = Path(full["ready_file"])
    ready.unlink(missing_ok=True)
    path = model_path(lab_dir)
    _write_atomic(path, json.dumps(full, indent=2) + "\n", 0o644)
    log = log_path(lab_dir)
    details = {"cafile": full["tls"]["cert"], "model": str(path), "log": str(log)}

    proc = process.spawn([str(binary), str(path)], log=log)
    try:
        table.record(PROCESS_NAME, PROCESS_KIND, proc.pid, "", **details)
    except LabError as exc:
        proc.wait()
        raise LabError(f"{exc}{_log_tail(log)}") from exc

    deadline = time.monotonic() + timeout
    while True:
        url = _read_text(ready).strip()
        if url:
            break
        code = proc.poll()
        if code is not None:
            table.forget(PROCESS_NAME)
            raise LabError(f"vcsim exited with code {code} before it was ready{_log_tail(log)}")
        if time.monotonic() >= deadline:
            table.stop(PROCESS_NAME)
            raise LabError(f"vcsim not ready within {timeout:.0f} s{_log_tail(log)}")
        time.sleep(_POLL)
    return table.record(PROCESS_NAME, PROCESS_KIND, proc.pid, url, **details)


def _complete_model(model: dict[str, Any], folder: Path) -> dict[str, Any]:
    if "credentials_file" not in model:
        raise LabError("vcsim model: credentials_file is required")
    full = dict(model)
    full.setdefault("listen", DEFAULT_LISTEN)
    tls = dict(full.get("tls") or {})
    tls.setdefault("cert", str(folder / "cert.pem"))
    tls.setdefault("key", str(folder / "key.pem"))
    full.setdefault("ready_file", str(folder / "vcsim.ready"))
    full.setdefault("storage_dir", str(folder / "datastores"))
    full["delays"] = check_delays(full.get("delays") or {})
    full.setdefault("datacenters", [])
    for key in ("credentials_file", "ready_file", "storage_dir"):
        full[key] = str(Path(full[key]).absolute())
    full["tls"] = {k: str(Path(v).absolute()) for k, v in tls.items()}
    return full


def _log_tail(log: Path, lines: int = 10) -> str:
    tail = _read_text(log).strip().splitlines()[-lines:]
    return ("\n" + "\n".join(tail)) if tail else ""


def stop(table: ProcessTable, timeout: float = 10.0) -> bool:
    """Stop the recorded simulator by its PID (SIGTERM, then SIGKILL after ``timeout``).

    Out: True if a live simulator was stopped; the record is forgotten either way.
    """
    return table.stop(PROCESS_NAME, timeout)


def set_delays(
    lab_dir: Path, table: ProcessTable, delays: dict[str, Any], timeout: float = 10.0
) -> None:
    """Change the method delays of the running simulator without restarting it.

    In: the lab folder, its process table and the new ``delays`` (see
    :func:`check_delays`). Rewrites ``delays`` in the model file, sends SIGHUP, and waits
    until the simulator reports (GET /lab/delays) that the new delays are in force.
    Raises :class:`LabError` when no simulator runs, the delays are invalid, or they are
    not in force within ``timeout`` seconds.
    """
    wanted = check_delays(delays)
    rec = table.running(PROCESS_NAME)
    if rec is None or not rec.address:
        raise LabError("vcsim is not running")
    path = model_path(lab_dir)
    try:
        current = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LabError(f"{path}: cannot read the vcsim model: {exc}") from exc
    current["delays"] = wanted
    _write_atomic(path, json.dumps(current, indent=2) + "\n", 0o644)
    try:
        os.kill(rec.pid, signal.SIGHUP)
    except ProcessLookupError as exc:
        raise LabError("vcsim is not running") from exc

    cafile = rec.details.get("cafile", "")
    deadline = time.monotonic() + timeout
    while True:
        if check_delays(_lab_get(rec.address, cafile, "/lab/delays")) == wanted:
            return
        if time.monotonic() >= deadline:
            raise LabError(f"vcsim did not apply the new delays within {timeout:.0f} s")
        time.sleep(_POLL)


# ------------------------------------------------------------------ lab endpoints


def method_counts(url: str, cafile: str | Path) -> dict[str, int]:
    """SOAP method call counts since the simulator started or was last reset.

    In: the SDK URL (``https://host:port/sdk``) and the certificate to verify it with.
    Out: ``{"CloneVM_Task": 3, "RetrievePropertiesEx": 12, ...}``.
    Raises :class:`LabError` when the simulator cannot be reached or answers nonsense.
    """
    data = _lab_get(url, cafile, "/lab/methods")
    if not all(isinstance(k, str) and isinstance(v, int) for k, v in data.items()):
        raise LabError(f"{url}: /lab/methods did not answer name -> count")
    return {str(k): int(v) for k, v in data.items()}


def reset_method_counts(url: str, cafile: str | Path) -> None:
    """Zero the simulator's method call counts (POST /lab/methods/reset).

    Raises :class:`LabError` when the simulator cannot be reached.
    """
    _lab_request(url, cafile, "/lab/methods/reset", method="POST")


def _lab_get(url: str, cafile: str | Path, path: str) -> dict[str, Any]:
    body = _lab_request(url, cafile, path, method="GET")
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise LabError(f"{url}: {path} did not answer JSON") from exc
    if not isinstance(data, dict):
        raise LabError(f"{url}: {path} did not answer a JSON object")
    return data


def _lab_request(url: str, cafile: str | Path, path: str, *, method: str) -> bytes:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        raise LabError(f"{url}: not an https URL")
    target = urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    try:
        context = ssl.create_default_context(cafile=str(cafile))
    except (OSError, ssl.SSLError) as exc:
        raise LabError(f"{cafile}: cannot load the vcsim certificate: {exc}") from exc
    data = b"" if method == "POST" else None
    request = urllib.request.Request(target, method=method, data=data)  # noqa: S310
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:  # noqa: S310
            body: bytes = response.read()
            return body
    except (urllib.error.URLError, OSError) as exc:
        raise LabError(f"{target}: {exc}") from exc
