"""The lab's vCenter: govmomi's simulator with hopnhat's own Go ``main``.

The Go program (``orchestrator/lab/go/vcsim/main.go``, a module pinning a govmomi release)
is built by :mod:`orchestrator.lab.gobuild`. It takes one argument, the path of a JSON
model file, and serves the inventory that file describes over HTTPS, with only the
credentials of ``credentials_file`` allowed to log in.

Model file (``lab_dir/<name>/model.json``, written by :func:`start`; ``name`` is ``vcsim``,
or ``vcsim-<site>`` in a lab with one simulator per vCenter)::

    {"listen": "127.0.0.1:8989",
     "tls": {"cert": "/abs/cert.pem", "key": "/abs/key.pem"},   # made when missing
     "credentials_file": "/abs/vcenter-credentials.json",       # see write_credentials
     "ready_file": "/abs/vcsim.ready",          # holds the SDK URL once serving
     "storage_dir": "/abs/datastores",          # datastore folders (emptied at start)
     "delays": {"delay_ms": 0, "jitter": 0.0, "methods": {"CloneVM_Task": 500}},
     "datacenters": [{"name": ..., "clusters": [...], "datastores": [...],
                      "portgroups": [...], "templates": [...], "vms": [...]}]}

A template or VM is ``{"name", "cluster", "datastore", "portgroup", "cpu", "memory_mb",
"disk_gb"}``; a VM also takes ``power_on`` and, all optional (``config.py: LabVM``), ``folder``
("Legacy/QLVB", under the datacenter's VM folder), ``extra_disks_gb``, ``ip`` and
``hostname`` (its guest info), ``annotation``, ``attributes`` (custom attribute values) and
``extra_config``.

:func:`start` fills ``tls``, ``ready_file`` and ``storage_dir`` under ``lab_dir/<name>`` when
the model leaves them out. The server also answers, for tests and benchmarks only,
``GET /lab/methods`` (SOAP method call counts), ``POST /lab/methods/reset`` and
``GET /lab/delays`` (the delays in force).
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from orchestrator import process
from orchestrator.errors import LabError
from orchestrator.files import write_atomically
from orchestrator.lab import gobuild
from orchestrator.lab.processes import ProcessRecord, ProcessTable

PROCESS_NAME = "vcsim"
PROCESS_KIND = "vcsim"
DEFAULT_LISTEN = "127.0.0.1:8989"
_POLL = 0.05  # seconds between two looks at a condition that has a deadline


# ------------------------------------------------------------------ paths


def binary_path(lab_dir: Path) -> Path:
    """Where the lab's build puts the simulator: ``lab_dir/bin/hopnhat-vcsim``
    (:mod:`orchestrator.lab.gobuild`)."""
    return gobuild.binary_path(lab_dir, gobuild.VCSIM)


def state_dir(lab_dir: Path, name: str = PROCESS_NAME) -> Path:
    """The folder of simulator ``name`` (a lab runs one per vCenter: ``vcsim`` alone, or
    ``vcsim-<site>``): model, log, ready file, certificate, datastores."""
    return lab_dir / name


def model_path(lab_dir: Path, name: str = PROCESS_NAME) -> Path:
    """The model file :func:`start` writes and :func:`set_delays` rewrites."""
    return state_dir(lab_dir, name) / "model.json"


def log_path(lab_dir: Path, name: str = PROCESS_NAME) -> Path:
    """The simulator's log (stdout and stderr)."""
    return state_dir(lab_dir, name) / "vcsim.log"


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


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
        write_atomically(path, text, mode)
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
    lab_dir: Path, model: dict[str, Any], table: ProcessTable, timeout: float = 30, *,
    name: str = PROCESS_NAME,
) -> ProcessRecord:
    """Start the simulator (building it when needed) and wait until it serves.

    In: the lab folder, the model (see the module doc; ``credentials_file`` and
    ``datacenters`` are needed, ``listen`` defaults to 127.0.0.1:8989, ``tls``,
    ``ready_file`` and ``storage_dir`` to files under ``lab_dir/<name>``), the lab's process
    table, how long to wait and the simulator's ``name`` (a lab with several vCenters runs
    one simulator each, ``vcsim-<site>``; its files are under ``lab_dir/<name>``).
    Out: the record of the running simulator, named ``name``, kind "vcsim", address the SDK
    URL (``https://host:port/sdk``), details ``cafile`` (the certificate to verify it
    with), ``model`` and ``log``. If the recorded simulator is alive, its record is
    returned and nothing is started.
    Raises :class:`LabError` when the build fails, the credentials file is missing, or the
    simulator exits or is not ready in time (then it is stopped; the message ends with
    its log's last lines).
    """
    running = table.running(name)
    if running is not None:
        return running
    table.forget(name)

    binary = gobuild.build(lab_dir, gobuild.VCSIM)
    folder = state_dir(lab_dir, name)
    full = _complete_model(model, folder)
    if not Path(full["credentials_file"]).is_file():
        raise LabError(f"{full['credentials_file']}: vCenter credentials file not found")
    ready = Path(full["ready_file"])
    ready.unlink(missing_ok=True)
    path = model_path(lab_dir, name)
    _write_atomic(path, json.dumps(full, indent=2) + "\n", 0o644)
    log = log_path(lab_dir, name)
    details = {"cafile": full["tls"]["cert"], "model": str(path), "log": str(log)}

    proc = process.spawn([str(binary), str(path)], log=log)
    try:
        table.record(name, PROCESS_KIND, proc.pid, "", **details)
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
            table.forget(name)
            raise LabError(f"{name} ({full['listen']}) exited with code {code} before it was "
                           f"ready{_log_tail(log)}")
        if time.monotonic() >= deadline:
            table.stop(name)
            raise LabError(f"{name} ({full['listen']}) not ready within {timeout:.0f} s"
                           f"{_log_tail(log)}")
        time.sleep(_POLL)
    return table.record(name, PROCESS_KIND, proc.pid, url, **details)


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


def stop(table: ProcessTable, timeout: float = 10.0, *, name: str = PROCESS_NAME) -> bool:
    """Stop the recorded simulator ``name`` by its PID (SIGTERM, then SIGKILL after
    ``timeout``).

    Out: True if a live simulator was stopped; the record is forgotten either way.
    """
    return table.stop(name, timeout)


def set_delays(
    lab_dir: Path, table: ProcessTable, delays: dict[str, Any], timeout: float = 10.0, *,
    name: str = PROCESS_NAME,
) -> None:
    """Change the method delays of the running simulator without restarting it.

    In: the lab folder, its process table, the new ``delays`` (see
    :func:`check_delays`) and which simulator (``name``). Rewrites ``delays`` in the model
    file, sends SIGHUP, and waits until the simulator reports (GET /lab/delays) that the
    new delays are in force.
    Raises :class:`LabError` when no simulator runs, the delays are invalid, or they are
    not in force within ``timeout`` seconds.
    """
    wanted = check_delays(delays)
    rec = table.running(name)
    if rec is None or not rec.address:
        raise LabError(f"{name} is not running")
    path = model_path(lab_dir, name)
    try:
        current = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LabError(f"{path}: cannot read the vcsim model: {exc}") from exc
    current["delays"] = wanted
    _write_atomic(path, json.dumps(current, indent=2) + "\n", 0o644)
    try:
        os.kill(rec.pid, signal.SIGHUP)
    except ProcessLookupError as exc:
        raise LabError(f"{name} is not running") from exc

    cafile = rec.details.get("cafile", "")
    deadline = time.monotonic() + timeout
    while True:
        if check_delays(_lab_get(rec.address, cafile, "/lab/delays")) == wanted:
            return
        if time.monotonic() >= deadline:
            raise LabError(f"{name} did not apply the new delays within {timeout:.0f} s")
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
