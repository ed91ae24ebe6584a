"""Ansible through ansible-runner: one private data dir per run, results as data.

A run gets its own folder (``<state>/runs/<run id>``) holding the inventory it ran against,
its extra vars and ansible-runner's artifacts (events, stdout, status, rc). What hopnhat
reports comes from ansible-runner's data — ``status``, ``rc``, ``stats`` per host and the
events — never from scraping ``ansible-playbook``'s output. Secrets reach the playbooks only
through the vault (``--vault-password-file``; the tasks handling them are ``no_log``), so
the folder holds none.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator import process
from orchestrator.errors import AnsibleError, CommandError
from orchestrator.quoting import ansible_value
from orchestrator.resources import package_dir, playbooks_dir, templates_dir

PLAYBOOKS = playbooks_dir()
SITE = PLAYBOOKS / "site.yml"
ANSIBLE_CONFIG = PLAYBOOKS / "ansible.cfg"

OK, CHANGED, FAILED, UNREACHABLE, SKIPPED = "ok", "changed", "failed", "unreachable", "skipped"
_RESULT_EVENTS = {"runner_on_ok": OK, "runner_on_failed": FAILED,
                  "runner_on_unreachable": UNREACHABLE, "runner_on_skipped": SKIPPED}
_DEBUG_ACTIONS = ("debug", "ansible.builtin.debug", "ansible.legacy.debug")
_MESSAGE_MAX = 500


@dataclass(frozen=True)
class HostStats:
    """One host's counts from ansible-runner's ``stats`` (``ok`` includes ``changed``)."""

    host: str
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0

    @property
    def status(self) -> str:
        """``unreachable``, ``failed``, ``changed`` or ``ok`` — the worst that happened."""
        if self.unreachable:
            return UNREACHABLE
        if self.failed:
            return FAILED
        return CHANGED if self.changed else OK

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "status": self.status, "ok": self.ok,
                "changed": self.changed, "failed": self.failed,
                "unreachable": self.unreachable, "skipped": self.skipped,
                "rescued": self.rescued, "ignored": self.ignored}


@dataclass(frozen=True)
class HostEvent:
    """One task's result on one host, as it happens (for live progress).

    ``outcome``: ok, changed, failed, unreachable or skipped; ``message``: why it failed
    (Ansible's own ``msg``, already censored for ``no_log`` tasks)."""

    host: str
    task: str
    role: str | None
    outcome: str
    message: str = ""
    ignored: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "task": self.task, "role": self.role,
                "outcome": self.outcome, "message": self.message, "ignored": self.ignored}


@dataclass(frozen=True)
class Notice:
    """A message a role gives the operator (a ``debug`` task of a role): something that is
    not an error but must not pass silently, such as units installed but not enabled."""

    host: str
    role: str | None
    task: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "role": self.role, "task": self.task,
                "message": self.message}


@dataclass(frozen=True)
class PlaybookRequest:
    """What to run: the playbook, an inventory in Ansible's YAML/JSON inventory format, extra
    vars (no secrets), and the usual switches."""

    playbook: Path
    inventory: Mapping[str, Any]
    extravars: Mapping[str, Any] = field(default_factory=dict)
    vault_password_file: Path | None = None
    forks: int = 5
    limit: str | None = None
    check: bool = False
    diff: bool = False
    tags: tuple[str, ...] = ()
    timeout: float | None = None


@dataclass(frozen=True)
class PlaybookRun:
    """A finished run: ansible-runner's ``status`` (successful, failed, timeout, canceled)
    and ``rc``, each host's stats, the roles' notices, the failed tasks, where the artifacts
    are, and how long it took."""

    ident: str
    status: str
    rc: int
    hosts: dict[str, HostStats]
    notices: tuple[Notice, ...]
    failures: tuple[HostEvent, ...]
    artifacts: Path
    duration: float

    @property
    def changed(self) -> int:
        return sum(s.changed for s in self.hosts.values())

    def as_dict(self) -> dict[str, Any]:
        return {"ident": self.ident, "status": self.status, "rc": self.rc,
                "duration_seconds": round(self.duration, 2),
                "hosts": {h: s.as_dict() for h, s in sorted(self.hosts.items())},
                "notices": [n.as_dict() for n in self.notices],
                "failures": [f.as_dict() for f in self.failures],
                "artifacts": str(self.artifacts)}


# --- pure pieces ----------------------------------------------------------------------------


def yaml_inventory(dynamic: Mapping[str, Any]) -> dict[str, Any]:
    """A dynamic-inventory ``--list`` answer (groups with ``hosts``/``vars``/``children``,
    ``_meta.hostvars``) in Ansible's YAML inventory format (which is also valid JSON), so a
    run can keep the exact inventory it used as a plain file."""
    hostvars: Mapping[str, Any] = dynamic.get("_meta", {}).get("hostvars", {})
    children: dict[str, Any] = {}
    for name, group in dynamic.items():
        if name in ("_meta", "all", "ungrouped") or not isinstance(group, Mapping):
            continue
        entry: dict[str, Any] = {}
        if group.get("hosts"):
            entry["hosts"] = {host: None for host in group["hosts"]}
        if group.get("vars"):
            entry["vars"] = dict(group["vars"])
        if group.get("children"):
            entry["children"] = {child: None for child in group["children"]}
        children[name] = entry
    top = dynamic.get("all", {})
    everything: dict[str, Any] = {"hosts": {h: dict(v) for h, v in hostvars.items()},
                                  "children": children}
    if isinstance(top, Mapping) and top.get("vars"):
        everything["vars"] = dict(top["vars"])
    return {"all": everything}


def command_line(request: PlaybookRequest) -> list[str]:
    """The ``ansible-playbook`` options ansible-runner does not take as arguments of its
    own (the vault password *file*, check, diff, tags)."""
    args: list[str] = []
    if request.vault_password_file is not None:
        args += ["--vault-password-file", str(request.vault_password_file)]
    if request.check:
        args.append("--check")
    if request.diff:
        args.append("--diff")
    if request.tags:
        args += ["--tags", ",".join(request.tags)]
    return args


def stats_by_host(stats: Mapping[str, Any] | None) -> dict[str, HostStats]:
    """ansible-runner's ``stats`` (``{"ok": {host: n}, "dark": …, "failures": …}``) → one
    HostStats per host that appears in any of them."""
    if not stats:
        return {}
    keys = {"ok": "ok", "changed": "changed", "failures": "failed", "dark": "unreachable",
            "skipped": "skipped", "rescued": "rescued", "ignored": "ignored"}
    hosts: set[str] = set()
    for key in (*keys, "processed"):
        hosts.update((stats.get(key) or {}).keys())
    return {host: HostStats(host, **{field_: int((stats.get(key) or {}).get(host, 0))
                                     for key, field_ in keys.items()})
            for host in sorted(hosts)}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def failure_message(res: Mapping[str, Any]) -> str:
    """Why a task failed, from its result: Ansible's ``msg`` and the last line of a
    command's stderr (``no_log`` results are already censored by Ansible)."""
    parts = []
    if res.get("censored"):
        return _text(res["censored"])[:_MESSAGE_MAX]
    if res.get("msg"):
        parts.append(_text(res["msg"]).strip())
    stderr = res.get("stderr")
    if isinstance(stderr, str) and stderr.strip():
        parts.append(stderr.strip().splitlines()[-1])
    results = res.get("results")
    if not parts and isinstance(results, list):
        failed = [r for r in results if isinstance(r, Mapping) and r.get("failed")]
        if failed:
            parts.append(failure_message(failed[0]))
    message = ": ".join(p for p in parts if p) or "failed"
    return message if len(message) <= _MESSAGE_MAX else message[: _MESSAGE_MAX - 3] + "..."


def host_event(event: Mapping[str, Any]) -> HostEvent | None:
    """The task result an ansible-runner event reports, or None for other events (play and
    task starts, loop items, stats…)."""
    kind = _RESULT_EVENTS.get(str(event.get("event", "")))
    data = event.get("event_data")
    if kind is None or not isinstance(data, Mapping) or not data.get("host"):
        return None
    raw = data.get("res")
    res: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    if kind == OK and res.get("changed"):
        kind = CHANGED
    message = failure_message(res) if kind in (FAILED, UNREACHABLE) else ""
    return HostEvent(host=str(data["host"]), task=str(data.get("task", "")),
                     role=data.get("role") or None, outcome=kind, message=message,
                     ignored=bool(data.get("ignore_errors")) and kind == FAILED)


def notice_of(event: Mapping[str, Any]) -> Notice | None:
    """A role's ``debug`` message from an ansible-runner event, or None."""
    if event.get("event") != "runner_on_ok":
        return None
    data = event.get("event_data")
    if not isinstance(data, Mapping) or not data.get("role"):
        return None
    action = data.get("resolved_action") or data.get("task_action")
    res = data.get("res")
    if action not in _DEBUG_ACTIONS or not isinstance(res, Mapping) or "msg" not in res:
        return None
    message = " ".join(_text(res["msg"]).split())
    return Notice(host=str(data.get("host", "")), role=str(data["role"]),
                  task=str(data.get("task", "")), message=message)


def search_path() -> str:
    """PATH with hopnhat's virtualenv first, so ansible-runner starts the ansible-playbook
    installed with hopnhat. Raises AnsibleError when there is none anywhere."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    if shutil.which("ansible-playbook", path=path) is None:
        raise AnsibleError("ansible-playbook not found (install hopnhat with its dependencies)")
    return path


def package_vars() -> dict[str, str]:
    """Extra vars of every run: where this hopnhat's package and templates lie on the
    controller — in the checkout or inside an installed wheel — for the roles that copy
    files from there (backup_schedule: the job and its modules, the units' templates)."""
    return {"hopnhat_package_dir": str(package_dir()),
            "hopnhat_templates_dir": str(templates_dir())}


# --- running --------------------------------------------------------------------------------


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def end_control_masters(control_dir: Path) -> None:
    """Ask every ssh master whose socket is in ``control_dir`` to exit, then remove the
    folder (a master that does not answer goes when its socket is gone and it is idle)."""
    for socket_path in sorted(control_dir.glob("*")):
        with contextlib.suppress(CommandError):
            process.run(["ssh", "-F", "/dev/null", "-o", f"ControlPath={socket_path}", "-O",
                         "exit", "hopnhat-control-master"], timeout=10, inherit_env=False)
    shutil.rmtree(control_dir, ignore_errors=True)


def _owner_only(folder: Path) -> None:
    """Every folder under ``folder`` 0700, every file 0600: ansible-runner makes some of its
    artifacts (``stderr``, ``fact_cache/``, ``artifacts/``) under the umask, and the state
    folder's files are its owner's alone."""
    for here, _dirs, files in os.walk(folder):
        with contextlib.suppress(OSError):
            os.chmod(here, 0o700)
        for name in files:
            path = os.path.join(here, name)
            if not os.path.islink(path):
                with contextlib.suppress(OSError):
                    os.chmod(path, 0o600)


def _run_runner(**kwargs: Any) -> Any:
    """``ansible_runner.run(**kwargs)``, its child's environment cut to the allow-list of
    :mod:`orchestrator.process` plus ``envvars``: ansible-runner seeds it with a copy of
    hopnhat's whole environment (and writes it to ``artifacts/<ident>/command``), so an
    operator's RESTIC_PASSWORD or cloud key went to ansible-playbook, ssh and the file."""
    from ansible_runner.interface import init_runner  # 0.2 s: only when a run starts

    runner = init_runner(**kwargs)
    env = runner.config.env
    given = kwargs.get("envvars") or {}
    for name in [n for n, value in env.items() if os.environ.get(n) == value]:
        if not process.inherited(name) and name not in given:
            del env[name]  # copied from hopnhat's environment, not set by runner or by us
    runner.run()
    return runner


def run_playbook(request: PlaybookRequest, private_data_dir: Path, ident: str, *,
                 on_event: Callable[[HostEvent], None] | None = None,
                 on_task: Callable[[str], None] | None = None) -> PlaybookRun:
    """Run ``request`` with ansible-runner in ``private_data_dir`` (created, 0700).

    ``on_event`` gets each task result as it happens, ``on_task`` each task name as it
    starts (both from ansible-runner's event thread). Out: :class:`PlaybookRun`. Raises
    AnsibleError when ansible-runner cannot start the run; a run that fails on hosts is a
    result, not an exception.
    """
    started = time.monotonic()
    private_data_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # <state>/runs
    private_data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_data_dir.chmod(0o700)
    inventory = private_data_dir / "inventory" / "hosts.json"
    # every string of the estate reaches Ansible marked unsafe: a "{{ … }}" written in a
    # system's name or a path is text, never a template Ansible would evaluate
    _write_private(inventory, json.dumps(ansible_value(yaml_inventory(request.inventory)),
                                         indent=1, ensure_ascii=False, default=str))
    notices: list[Notice] = []
    failures: list[HostEvent] = []
    lock = threading.Lock()

    def handle(event: dict[str, Any]) -> bool:
        if event.get("event") == "playbook_on_task_start" and on_task is not None:
            data = event.get("event_data") or {}
            on_task(str(data.get("task", "")))
        result = host_event(event)
        found = notice_of(event)
        with lock:
            if found is not None:
                notices.append(found)
            if result is not None and result.outcome in (FAILED, UNREACHABLE) \
                    and not result.ignored:
                failures.append(result)
        if result is not None and on_event is not None:
            on_event(result)
        return True  # keep every event in the artifacts

    # ansible-runner sets ANSIBLE_HOST_KEY_CHECKING=False unless told otherwise (over
    # ansible.cfg), and ansible then puts "-o StrictHostKeyChecking=no" before the
    # inventory's own "=yes": ssh takes the first value, so unknown keys were trusted on
    # first use and changed ones accepted. Host keys are checked, always.
    # Each run has its own ssh control sockets (a short folder: a socket path has ~100
    # bytes), ended with the run: a master connection left by an earlier run would carry
    # commands to a host without its key being checked again.
    control_dir = Path(tempfile.mkdtemp(prefix="hopnhat-cp."))
    env = {"ANSIBLE_CONFIG": str(ANSIBLE_CONFIG), "ANSIBLE_NOCOLOR": "1", "PATH": search_path(),
           "ANSIBLE_HOST_KEY_CHECKING": "True",
           "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir)}
    settings: dict[str, Any] = {}
    if request.timeout is not None:
        settings["job_timeout"] = int(request.timeout)
    try:
        runner = _run_runner(
            private_data_dir=str(private_data_dir), ident=ident,
            project_dir=str(request.playbook.parent), playbook=str(request.playbook),
            inventory=str(inventory),
            extravars=ansible_value({**package_vars(), **request.extravars}),
            forks=request.forks, limit=request.limit,
            cmdline=shlex.join(command_line(request)) or None,
            envvars=env, settings=settings,
            event_handler=handle, quiet=True, suppress_env_files=False,
        )
    except Exception as exc:  # ansible-runner raises its own ConfigurationError and others
        raise AnsibleError(f"ansible-runner could not run {request.playbook.name}: "
                           f"{type(exc).__name__}: {exc}") from None
    finally:
        end_control_masters(control_dir)
        _owner_only(private_data_dir)
    rc = runner.rc if isinstance(runner.rc, int) else 1
    return PlaybookRun(
        ident=ident, status=str(runner.status), rc=rc, hosts=stats_by_host(runner.stats),
        notices=tuple(notices), failures=tuple(failures),
        artifacts=private_data_dir / "artifacts" / ident,
        duration=time.monotonic() - started)

