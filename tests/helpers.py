"""What the tests share besides fixtures: where the project and its example estate are, free
ports, copies of the estate, running ``hopnhat`` as an operator does, and waiting on a
condition. Fixtures and pytest hooks are in the conftest.py files; tests import these
names from here (``from tests.helpers import …``), never from a conftest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from orchestrator import process
from orchestrator.errors import EstateError
from orchestrator.estate import Estate, load_estate
from orchestrator.lab.handle import LabDirs

T = TypeVar("T")

#: the project's checkout, and its example estate
REPO = Path(__file__).resolve().parents[1]
EXAMPLE_ESTATE = REPO / "inventory"

#: the example estate's vCenters: Đà Nẵng's (site danang), Quảng Nam's (site quangnam)
EXAMPLE_VCENTER_PORTS = (8989, 8990)

#: the ``hopnhat`` command of the virtualenv the tests run in
HOPNHAT = Path(sys.executable).with_name("hopnhat")


def free_port(ip: str = "127.0.0.1") -> int:
    """A TCP port free on ``ip`` now."""
    with socket.socket() as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (all held open while chosen, so none repeats)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def copy_estate(dest: Path, *, ports: Sequence[int] | None = None, primary: str = "127.110.",
                secondary: str = "127.120.") -> Path:
    """A copy of the example estate (without its vault) on other loopback addresses and,
    with ``ports`` (one per vCenter of :data:`EXAMPLE_VCENTER_PORTS`, e.g.
    ``free_ports(2)``), other vCenter ports: each site's vCenter keeps its own port unless
    the same port is given twice."""
    shutil.copytree(EXAMPLE_ESTATE, dest, ignore=shutil.ignore_patterns("secrets.vault.yml"))
    if ports is not None:
        assert len(ports) == len(EXAMPLE_VCENTER_PORTS), "one port per vCenter of the example"
    for path in dest.rglob("*.yml"):
        text = path.read_text()
        text = text.replace("127.10.", primary).replace("127.20.", secondary)
        for old, new in zip(EXAMPLE_VCENTER_PORTS, ports or (), strict=False):
            text = text.replace(f"127.0.0.1:{old}/", f"127.0.0.1:{new}/")
        path.write_text(text)
    return dest


def prebuilt_vcsim(lab_dir: Path) -> None:
    """Reuse the vcsim that `make` built under ./.hopnhat (saves a rebuild per lab)."""
    built = REPO / ".hopnhat" / "lab" / "bin"
    if built.is_dir() and not (lab_dir / "bin").exists():
        shutil.copytree(built, lab_dir / "bin")


@dataclass
class LabHandle(LabDirs):
    """The session's running lab (its estate read again on each use)."""

    extra: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """Environment for running the `hopnhat` command against this lab."""
        return {**os.environ, "HOPNHAT_ESTATE": str(self.estate_dir),
                "HOPNHAT_STATE": str(self.state_dir)}


def hopnhat(env: dict[str, str], *args: str, timeout: float = 300,
            input: str = "") -> process.Completed:
    """Run the ``hopnhat`` command as an operator types it (no terminal: stdin ``input``)."""
    return process.run([str(HOPNHAT), *args], env={**env, "COLUMNS": "200"}, timeout=timeout,
                       input=input)


def as_json(done: process.Completed) -> Any:
    """The JSON document a command printed on stdout."""
    assert done.stdout.strip(), f"no JSON on stdout (exit {done.returncode}): {done.stderr}"
    return json.loads(done.stdout)


def wait_for(what: str, condition: Callable[[], T | None], timeout: float = 60, *,
             interval: float = 0.2) -> T:
    """Poll ``condition`` every ``interval`` seconds until it answers something true
    (bounded); that answer. Fails the test naming ``what`` when ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while True:
        answer = condition()
        if answer:
            return answer
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def guest_seeded(lab_dir: Path, vm: str) -> Callable[[], bool]:
    """For :func:`wait_for`: the lab's guest of ``vm`` holds its data (the lab's hypervisor
    lays it down once the VM is on)."""
    return (lab_dir / "guests" / vm / ".seeded").exists


def guest_gone(lab_dir: Path, vm: str) -> Callable[[], bool]:
    """For :func:`wait_for`: the lab's guest of ``vm`` is gone, its disk too (the lab's
    hypervisor takes it away once the VM is off or destroyed)."""
    disk = lab_dir / "guests" / vm
    return lambda: not disk.exists()


def destroy_systems(paths: Any, ledger: Any, systems: Sequence[str], vms: Sequence[Any]
                    ) -> None:
    """A module fixture's end: ``systems`` destroyed as ``hopnhat destroy`` does (``vms``:
    theirs that were built), then their guests awaited until gone."""
    from orchestrator.actions.provision import destroy, vcenters
    from orchestrator.adapters import vsphere

    endpoints = vcenters.endpoints(paths, {vm.site for vm in vms})
    with vsphere.open_vcenters(endpoints) as vcs:
        facts = vcenters.read_facts(vcs, {vm.name for vm in vms})
        for code in systems:
            destroy.destroy(destroy.plan_destroy(paths.estate, code, facts), vcs,
                            ledger=ledger, concurrency=4)
    for vm in vms:
        wait_for(f"guest {vm.name} to go", guest_gone(paths.lab, vm.name), 60, interval=0.1)


def wait_task(task: Any, timeout: float = 60) -> Any:
    """Wait for a vCenter task (bounded); its result. Fails the test if the task failed."""
    wait_for("a vCenter task to finish", lambda: task.info.state in ("success", "error"),
             timeout, interval=0.05)
    assert task.info.state == "success", task.info.error
    return task.info.result


def estate_copy(lab: LabHandle, tmp_path: Path, edit: Callable[[Path], None]) -> dict[str, str]:
    """The lab's estate (with its vault) copied to ``tmp_path`` and changed by ``edit``; the
    env to run hopnhat on it against the same lab."""
    dest = tmp_path / "inventory"
    shutil.copytree(lab.estate_dir, dest)
    edit(dest)
    return {**lab.env, "HOPNHAT_ESTATE": str(dest)}


def readme_block(name: str) -> str:
    """The shell lines of README.md between ``<!-- name: begin -->`` and
    ``<!-- name: end -->`` (a fenced sh block), for a test to run exactly as written."""
    text = (REPO / "README.md").read_text()
    found = re.search(rf"<!-- {re.escape(name)}: begin -->\n```sh\n(.*?)```\n"
                      rf"<!-- {re.escape(name)}: end -->", text, re.S)
    assert found, f"README.md has no {name} block"
    return found.group(1)


def replace_in(path: Path, old: str, new: str) -> None:
    """Replace ``old``, which must occur exactly once in the file at ``path``, by ``new``."""
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {path}"
    path.write_text(text.replace(old, new))


def state_beside(lab: LabHandle, state: Path) -> Path:
    """A state folder of its own (ledger, device cache, vault copy) at ``state`` that uses
    the session's lab: its SSH keys, CA and certificates, known_hosts and vault password
    copied, its lab linked."""
    state.mkdir()
    shutil.copytree(lab.state_dir / "ssh", state / "ssh")
    shutil.copytree(lab.state_dir / "pki", state / "pki")
    for name in ("known_hosts", "vault-password"):
        shutil.copy2(lab.state_dir / name, state / name)
    (state / "lab").symlink_to(lab.state_dir / "lab")
    return state


def ledger_dump(path: Path) -> str:
    """The ledger's whole content as SQL text, read by the sqlite3 program in another
    process: reading the file's bytes here would drop the SQLite locks that any connection
    of this process holds on it (POSIX locks are per process), and a concurrent writer
    could then corrupt it."""
    done = subprocess.run(["sqlite3", str(path), ".dump"], capture_output=True, text=True,
                          timeout=60, check=True)
    return done.stdout


def tree_digest(root: Path) -> str:
    """Names, contents, modes and modification times of everything under ``root``: equal
    digests, nothing there changed."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        stat = path.lstat()
        digest.update(f"{path.relative_to(root)}|{stat.st_mode}|{stat.st_mtime_ns}|".encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


Problem = tuple[str, str, str]


class EstateCopy:
    """A copy of ``inventory/`` in a temporary folder, with helpers to break it (the unit
    tests' ``estate_copy`` fixture)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, rel: str) -> Path:
        return self.root / rel

    def data(self, rel: str) -> Any:
        return yaml.safe_load(self.path(rel).read_text(encoding="utf-8"))

    def edit(self, rel: str, change: Callable[[Any], object]) -> None:
        """Load ``rel``, let ``change`` modify the data in place, write it back."""
        data = self.data(rel)
        change(data)
        self.write(rel, data)

    def write(self, rel: str, data: Any) -> None:
        self.path(rel).parent.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
        self.path(rel).write_text(text, encoding="utf-8")

    def replace(self, rel: str, old: str, new: str) -> None:
        """Replace the one occurrence of ``old`` in the text of ``rel``."""
        text = self.path(rel).read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {rel}"
        self.path(rel).write_text(text.replace(old, new), encoding="utf-8")

    def load(self) -> Estate:
        return load_estate(self.root)

    def problems(self) -> list[Problem]:
        """Every problem ``load_estate`` reports (fails if the estate loads)."""
        with pytest.raises(EstateError) as caught:
            load_estate(self.root)
        return caught.value.problems

    def assert_only_problems(self, *expected: Problem) -> list[Problem]:
        """The estate reports exactly ``expected``, each ``(file, key path, message
        fragment)``, in any order."""
        found = self.problems()
        unmatched = list(found)
        for file, key, fragment in expected:
            match = next((p for p in unmatched
                          if p[0] == file and p[1] == key and fragment in p[2]), None)
            assert match is not None, (
                f"no problem ({file!r}, {key!r}, …{fragment!r}…) among:\n" + _lines(found))
            unmatched.remove(match)
        assert not unmatched, "unexpected problems:\n" + _lines(unmatched)
        return found


def _lines(problems: list[Problem]) -> str:
    return "\n".join(f"  {p}" for p in problems) or "  (none)"


def promtool_says(text: str) -> str:
    """What ``promtool check metrics`` (Debian's prometheus package) says of the Prometheus
    textfile ``text``: empty when it has nothing to say, else its lint messages (with its
    exit code when that is not 0). Fails the test when promtool is missing."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: install Debian's prometheus package "
                    "(apt-get install --no-install-recommends prometheus; make test does)")
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60, check=False)
    said = (done.stdout + done.stderr).strip()
    return said if done.returncode == 0 else f"exit {done.returncode}: {said}"


# --- receivers of notifications (the notify tests): real servers on free ports ------------


@dataclass
class Received:
    """One request a :class:`WebhookReceiver` took: its path, headers and body."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """A local HTTP endpoint (``http.server`` in a thread, on a free port) that keeps every
    POST it is sent and answers ``status`` (200; set 500 to play a broken receiver). Use as a
    context manager; ``url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, status: int = 200) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from threading import Thread

        received: list[Received] = []
        self.received = received
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(Received(self.path, dict(self.headers.items()), body))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self._thread = Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class MailReceiver:
    """A local SMTP server (aiosmtpd's Controller: its own thread, on a free port) that
    keeps every message it is sent as an ``email.message.EmailMessage``. Use as a context
    manager; ``port`` is where it listens on 127.0.0.1."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[Any] = []
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import email
        import email.policy

        del server, session
        self.messages.append(email.message_from_bytes(envelope.content,
                                                      policy=email.policy.default))
        return "250 OK"

    def mailto(self, to: str = "ops@example.org") -> str:
        """An Apprise URL that sends to this server, without TLS or a login."""
        return (f"mailto://127.0.0.1:{self.port}?from=hopnhat@example.org&to={to}"
                "&secure=no&name=hopnhat")

    def __enter__(self) -> MailReceiver:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


def route_notifications(root: Path, state: Path, channels: dict[str, str],
                        routes: dict[str, list[str]], **settings: Any) -> None:
    """Give the estate at ``root`` a ``notifications:`` section: each channel's URL into
    its vault under ``notify_<name>`` (the vault made, with a password in ``state``, when
    there is none), ``routes`` as given, and ``settings`` (``timeout``, ``lang``)."""
    from orchestrator.adapters.vault import read_vault, write_private, write_vault
    from orchestrator.settings import Paths

    copy = EstateCopy(root)
    copy.edit("estate.yml", lambda data: data.__setitem__("notifications", {
        **settings, "channels": {name: {"url": {"vault": f"notify_{name}"}}
                                 for name in channels},
        "routes": routes}))
    paths = Paths(state, copy.load())
    secrets: dict[str, str] = {}
    if paths.vault_file.exists():
        secrets = read_vault(paths.vault_file, paths.vault_password_file)
    elif not paths.vault_password_file.exists():
        write_private(paths.vault_password_file, b"notify-tests-vault-password\n")
    secrets.update({f"notify_{name}": url for name, url in channels.items()})
    write_vault(paths.vault_file, paths.vault_password_file, secrets)


def guest_sql(lab_dir: Path, guest: str, engine: str, sql: str,
              database: str | None = None) -> str:
    """Run ``sql`` in running lab guest ``guest``'s database engine (``postgresql``: psql as
    postgres; ``mariadb``: mariadb as root), entered with nsenter through its sshd's PID in
    the lab's ProcessTable; in ``database`` (default: the one the guest was seeded with). Out:
    the client's output, one row a line (psql: columns ``|``-separated; mariadb: tabs), no
    headers. Raises CommandError when the SQL fails, LabError when the guest does not run."""
    from orchestrator.lab import engines

    return engines.guest_sql(lab_dir, guest, engine, sql, database)


#: what :class:`GuestWriter` inserts by default, one row per statement: a status change of
#: application 1 (dvc's PostgreSQL) or an exchange of document 1 (lgsp's MariaDB), stamped
#: with the engine's own clock
WRITER_SQL = {
    "postgresql": "INSERT INTO application_status (application_id, status, changed_at, "
                  "changed_by) VALUES (1, 'dang-xu-ly', now(), 'writer');\n",
    "mariadb": "INSERT INTO exchange_log (document_id, direction, peer, status, exchanged_at, "
               "duration_ms) VALUES (1, 'gui', 'writer', 'thanh-cong', UTC_TIMESTAMP(6), 1);\n",
}


class GuestWriter:
    """``with GuestWriter(lab_dir, guest, engine) as writer:`` keeps inserting rows into the
    guest's database (one client session inside the guest, each statement its own
    transaction) from a thread until the block ends: load for "backup under write load"
    tests. ``statement`` (default :data:`WRITER_SQL`) is sent ``batch`` times every
    ``interval`` seconds. ``writer.sent`` counts the statements sent; after the block they
    are all committed (the client's exit is awaited) and a failed client raises
    AssertionError with its message. :meth:`wait_sent` waits until the load has begun."""

    def __init__(self, lab_dir: Path, guest: str, engine: str, database: str | None = None,
                 *, statement: str | None = None, interval: float = 0.01,
                 batch: int = 5) -> None:
        from orchestrator.lab import engines

        self.argv = [*engines.enter_argv(lab_dir, guest), *engines.sql_argv(
            engine, database or engines.default_database(lab_dir, guest, engine))]
        self.statement = statement or WRITER_SQL[engine]
        self.interval, self.batch = interval, batch
        self.sent = 0
        self.error = ""
        import threading

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, name=f"writer-{guest}",
                                        daemon=True)
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> GuestWriter:
        from orchestrator.lab.guest_init import GUEST_ENV

        self._proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True, env=dict(GUEST_ENV), cwd="/")
        self._thread.start()
        return self

    def _write(self) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            while not self._stop.is_set():
                self._proc.stdin.write(self.statement * self.batch)
                self._proc.stdin.flush()
                self.sent += self.batch
                self._stop.wait(self.interval)
        except (BrokenPipeError, ValueError) as exc:  # the client ended: __exit__ says why
            self.error = str(exc)

    def wait_sent(self, count: int, timeout: float = 60) -> None:
        """Wait until ``count`` statements were sent (the load is on)."""
        wait_for(f"{count} statements sent by the writer",
                 lambda: self.sent >= count or self._proc is None
                 or self._proc.poll() is not None, timeout)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert self._proc is not None
        try:  # communicate closes the client's stdin: it ends once all is committed
            _out, err = self._proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            _out, err = self._proc.communicate()
        if self._proc.returncode != 0 or self.error:
            raise AssertionError(f"the writer's client failed ({self._proc.returncode}): "
                                 f"{(err or self.error).strip()[-500:]}")



@dataclass
class FakeRemote:
    """A scratch VM's SSH session for unit tests: each command is recorded; the first rule
    whose pattern (a regular expression) the command matches says how it ends (rc, stdout,
    stderr); none: exit 0, no output."""

    host: str = "drill-3fa2c1-dvc-db-01"
    rules: list[tuple[str, tuple[int, str, str]]] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    closed: bool = False

    @property
    def target(self) -> Any:
        from orchestrator.adapters.ssh import Target
        return Target(self.host, "127.20.9.10", 22, "root", Path("/k"), Path("/kh"))

    def answer(self, pattern: str, rc: int = 0, stdout: str = "", stderr: str = "") -> None:
        self.rules.append((pattern, (rc, stdout, stderr)))

    def run(self, command: str, *, timeout: float = 3600.0, stdin: str | None = None,
            on_line: Callable[[str], None] | None = None) -> Any:
        from orchestrator.adapters.ssh import RemoteResult
        del timeout, stdin, on_line
        self.commands.append(command)
        rc, out, err = next((answer for pattern, answer in self.rules
                             if re.search(pattern, command)), (0, "", ""))
        return RemoteResult(self.host, command, rc, out, err)

    def close(self) -> None:
        self.closed = True
