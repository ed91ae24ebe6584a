"""``configure``: run ``playbooks/site.yml`` against the estate's hosts, and judge the run.

:func:`plan` says, as data, which hosts a run touches and how (``--system``, check, diff,
forks from the estate); :func:`configure` runs it through ansible-runner
(:mod:`orchestrator.adapters.ansible`) against the inventory derived from the estate and
records it in the ledger; :func:`judge` turns the runner's stats into ok / partial / failed
and an exit code. Secrets never pass through here: the playbooks read the restic passwords
from the vault themselves, with ``--vault-password-file``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.actions.selection import require_known
from orchestrator.adapters.ansible import (
    FAILED,
    SITE,
    UNREACHABLE,
    HostEvent,
    PlaybookRequest,
    PlaybookRun,
    run_playbook,
)
from orchestrator.adapters.vault import read_vault
from orchestrator.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_PARTIAL,
    AnsibleError,
    HopnhatError,
    PlanError,
    SecretError,
)
from orchestrator.estate.inventory import build_inventory
from orchestrator.estate.model import Estate
from orchestrator.lab import gobuild
from orchestrator.ledger import Ledger
from orchestrator.settings import Paths

OK, PARTIAL = "ok", "partial"
Runner = Callable[..., PlaybookRun]
Probe = Callable[[str, int, float], bool]
_RETRY = 0.25  # seconds between two tries of a host that does not accept SSH yet


@dataclass(frozen=True)
class ConfigurePlan:
    """What a configure run covers: the systems (empty: all), the host pattern passed as
    ``--limit`` (None: every host), the hosts that pattern names, and how it runs."""

    estate: str
    systems: tuple[str, ...]
    limit: str | None
    hosts: tuple[str, ...]
    check: bool
    diff: bool
    forks: int

    def as_dict(self) -> dict[str, Any]:
        return {"estate": self.estate, "systems": list(self.systems), "limit": self.limit,
                "hosts": list(self.hosts), "check": self.check, "diff": self.diff,
                "forks": self.forks}


def plan(estate: Estate, systems: Sequence[str] = (), *, check: bool = False,
         diff: bool = False) -> ConfigurePlan:
    """The hosts of ``systems`` (all systems when empty) and the repository hosts they back
    up to; forks from the estate's ``configuration.forks``. Raises PlanError (exit 2) for a
    system the estate does not have."""
    wanted = tuple(dict.fromkeys(systems))
    require_known(estate, systems=wanted)
    forks = estate.settings.configuration.forks
    repository_hosts = [h.name for h in estate.settings.repository_hosts]
    if not wanted:
        hosts = tuple(vm.name for vm in estate.vms) + tuple(repository_hosts)
        return ConfigurePlan(estate.id, (), None, hosts, check, diff, forks)
    used: list[str] = []
    for code in wanted:
        backup = estate.systems[code].backup
        if backup is not None:
            used.append(backup.repository_host)
            if backup.copy_to is not None:
                used.append(backup.copy_to.repository_host)
    repositories = [name for name in repository_hosts if name in used]
    limit = ",".join([*(f"system_{code}" for code in wanted), *repositories])
    hosts = tuple(vm.name for vm in estate.vms if vm.system in wanted) + tuple(repositories)
    return ConfigurePlan(estate.id, wanted, limit, hosts, check, diff, forks)


def extra_vars(paths: Paths, systems: Sequence[str] = ()) -> dict[str, Any]:
    """What the playbooks need to know of the controller (paths only, never a secret):
    hopnhat's state folder, the estate, the vault file, hopnhat's known_hosts, and the
    systems selected (``--system``: a repository host then converges only their accounts).
    Which vault key holds a system's password is in the inventory (password_vault_key)."""
    estate = paths.estate
    selected = {"hopnhat_selected_systems": list(systems)} if systems else {}
    return {
        "hopnhat_state_dir": str(paths.state),
        "hopnhat_estate_dir": str(estate.root),
        "hopnhat_vault_file": str(paths.vault_file),
        "hopnhat_known_hosts_file": str(paths.known_hosts),
        # rest repository hosts run the rest-server the project builds at a pinned release
        "hopnhat_rest_server_source": str(gobuild.rest_server_binary(paths.lab)),
        **selected,
    }


@dataclass(frozen=True)
class Verdict:
    status: str
    exit_code: int
    failed_hosts: tuple[str, ...]
    unreachable_hosts: tuple[str, ...]
    untrusted_hosts: tuple[str, ...] = ()  # adopted hosts whose key is not trusted yet


def judge(run: PlaybookRun) -> Verdict:
    """ok (exit 0): the run succeeded on every host; partial (exit 3): some hosts failed or
    were unreachable while others were configured; failed (exit 1): no host was configured,
    or the run itself failed (a playbook, vault or connection problem before any host
    result, a timeout, a cancel)."""
    failed = tuple(h for h, s in sorted(run.hosts.items()) if s.status == FAILED)
    unreachable = tuple(h for h, s in sorted(run.hosts.items()) if s.status == UNREACHABLE)
    good = [h for h in run.hosts if h not in failed and h not in unreachable]
    if run.status == "successful" and run.rc == 0 and not failed and not unreachable:
        return Verdict(OK, EXIT_OK, (), ())
    if (failed or unreachable) and good and run.status in ("successful", "failed"):
        return Verdict(PARTIAL, EXIT_PARTIAL, failed, unreachable)
    return Verdict("failed", EXIT_FAILURE, failed, unreachable)


def converge(paths: Paths, playbook: Path, inventory: dict[str, Any],
             extravars: dict[str, Any], ident: str, what: str, *, forks: int,
             timeout: float) -> tuple[PlaybookRun, Verdict]:
    """Run ``playbook`` on an inventory of a run's own VMs (a drill's scratch VMs, a
    migration's targets) in ``<state>/runs/<ident>``. Raises AnsibleError naming the first
    failed tasks unless every host converged (``what``: whose configuring failed)."""
    request = PlaybookRequest(playbook=playbook, inventory=inventory, extravars=extravars,
                              vault_password_file=paths.vault_password_file,
                              forks=max(1, forks), timeout=timeout)
    run = run_playbook(request, paths.state / "runs" / ident, ident)
    verdict = judge(run)
    if verdict.status != OK:
        why = "; ".join(f"{f.host}: {f.task}: {f.message}" for f in run.failures[:3]) \
            or f"ansible-runner {run.status} (rc {run.rc})"
        raise AnsibleError(f"configuring {what} failed: {why}")
    return run, verdict


def untrusted_hosts(paths: Paths, hosts: Sequence[str]) -> tuple[str, ...]:
    """The adopted hosts among ``hosts`` whose SSH key hopnhat's known_hosts does not hold:
    never trusted on first use, they wait for ``hopnhat hosts trust``. (A host hopnhat
    built has its key recorded when it is made.)"""
    from orchestrator.adapters.ssh import known_keys  # paramiko: imported when used

    wanted = set(hosts)
    return tuple(vm.name for vm in paths.estate.vms if vm.adopted and vm.name in wanted
                 and not known_keys(paths.known_hosts, str(vm.ip), 22))


def leave_out(verdict: Verdict, untrusted: tuple[str, ...], ran: bool) -> Verdict:
    """The verdict once the hosts left out for an untrusted key count: partial (exit 3)
    when others were configured, failed when none was."""
    if not untrusted:
        return verdict
    status, code = (PARTIAL, EXIT_PARTIAL) if ran and verdict.status != "failed" \
        else ("failed", EXIT_FAILURE)
    return Verdict(status, code, verdict.failed_hosts, verdict.unreachable_hosts, untrusted)


@dataclass(frozen=True)
class ConfigureResult:
    run_id: str
    plan: ConfigurePlan
    run: PlaybookRun
    verdict: Verdict

    @property
    def exit_code(self) -> int:
        return self.verdict.exit_code

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": self.verdict.status,
                "exit_code": self.verdict.exit_code, "plan": self.plan.as_dict(),
                "failed_hosts": list(self.verdict.failed_hosts),
                "unreachable_hosts": list(self.verdict.unreachable_hosts),
                "untrusted_hosts": list(self.verdict.untrusted_hosts),
                "changed": self.run.changed, "runner_status": self.run.status,
                **{k: v for k, v in self.run.as_dict().items() if k not in ("ident", "status")}}


def _probe(address: str, port: int, timeout: float) -> bool:
    from orchestrator.adapters.ssh import wait_for_port  # paramiko: imported when used

    return wait_for_port(address, port, timeout)


def wait_for_hosts(inventory: Mapping[str, Any], hosts: Sequence[str], timeout: float, *,
                   on_wait: Callable[[tuple[str, ...], float], None] | None = None,
                   probe: Probe | None = None) -> tuple[str, ...]:
    """Wait, all hosts at once, until each of ``hosts`` accepts TCP on its SSH address and
    port from ``inventory`` (dynamic-inventory form), for ``timeout`` seconds at most: a VM
    that ``apply`` just made has its IP before its sshd listens. ``on_wait(hosts, timeout)``
    hears of those not answering at the first try. Returns the hosts that never answered
    (Ansible then reports them unreachable)."""
    hostvars = inventory.get("_meta", {}).get("hostvars", {})
    tcp = probe or _probe

    def answers(host: str, wait: float) -> bool:
        found = hostvars.get(host, {})
        address, port = found.get("ansible_host", host), int(found.get("ansible_port", 22))
        return tcp(str(address), port, wait)

    def silent(among: tuple[str, ...]) -> tuple[str, ...]:
        # one try each, all at once (a try is bounded by the probe's 1 s connect timeout,
        # so an interrupt is never held up longer than that)
        tried = pool.map(lambda h: answers(h, 0.0), among)
        return tuple(h for h, ok in zip(among, tried, strict=True) if not ok)

    if not hosts:
        return ()
    deadline = time.monotonic() + max(timeout, 0.0)
    with ThreadPoolExecutor(max_workers=min(32, len(hosts)),
                            thread_name_prefix="ssh-wait") as pool:
        late = silent(tuple(hosts))
        if late and timeout > 0 and on_wait is not None:
            on_wait(late, timeout)
        while late and time.monotonic() < deadline:
            time.sleep(_RETRY)  # the pause between rounds of the deadline loop
            late = silent(late)
    return late


def _require_vault(paths: Paths) -> None:
    if not paths.vault_file.is_file():
        raise SecretError(f"{paths.vault_file}: no vault file (the playbooks read the "
                          "repository passwords from it)")
    if not paths.vault_password_file.is_file():
        raise SecretError(f"{paths.vault_password_file}: no vault password file (set "
                          "$HOPNHAT_VAULT_PASSWORD_FILE or secrets.password_file)")
    # read once here, so that a wrong password or a broken vault is a named exit 2 before
    # any host is touched, not a failure inside every host's play
    read_vault(paths.vault_file, paths.vault_password_file)


def check_restic_binary(paths: Paths) -> None:
    """The estate's pinned restic (``restic.binary``), when it has one, must be a file on the
    control host whose SHA-256 is ``restic.sha256``; else :class:`PlanError` (exit 2) naming
    the file and the key — before anything is shipped to a host."""
    restic = paths.estate.settings.restic
    if restic.binary is None:
        return
    path = Path(paths.restic_binary)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as binary:
            for block in iter(lambda: binary.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise PlanError(f"estate.yml: restic.binary: {path}: {exc.strerror or exc}",
                        exit_code=EXIT_BAD_INPUT) from None
    if digest.hexdigest() != restic.sha256:
        raise PlanError(f"estate.yml: restic.binary: {path}: refused, its SHA-256 "
                        f"{digest.hexdigest()} is not restic.sha256 {restic.sha256}",
                        exit_code=EXIT_BAD_INPUT)


def configure(paths: Paths, the_plan: ConfigurePlan, *, ledger: Ledger,
              on_event: Callable[[HostEvent], None] | None = None,
              on_task: Callable[[str], None] | None = None,
              on_wait: Callable[[tuple[str, ...], float], None] | None = None,
              runner: Runner | None = None, timeout: float | None = None,
              connect_wait: float | None = None, probe: Probe | None = None
              ) -> ConfigureResult:
    """Run site.yml for ``the_plan`` in ``<state>/runs/<run id>`` and record the run, each
    host's stats, each notice and each failed task in the ledger. First waits up to
    ``connect_wait`` seconds (default: the estate's ``configuration.connect_wait``) for
    every host to accept SSH (:func:`wait_for_hosts`; ``on_wait`` hears who is waited for).

    ``runner`` stands in for :func:`~orchestrator.adapters.ansible.run_playbook`, ``probe``
    for the TCP probe (tests).
    Out: :class:`ConfigureResult` (its ``exit_code`` 0, 3 or 1). Raises SecretError (exit 2)
    when the vault or its password file is missing, AnsibleError when ansible-runner cannot
    start; either way the ledger records the run as failed.
    """
    run_id = ledger.start("configure", the_plan.estate, the_plan.as_dict())
    try:
        _require_vault(paths)
        check_restic_binary(paths)
        inventory = build_inventory(paths)
        untrusted = untrusted_hosts(paths, the_plan.hosts)
        for host in untrusted:
            ledger.event(run_id, host, "untrusted-key",
                         message=f"its SSH host key is not trusted yet: run `hopnhat hosts "
                                 f"trust --host {host}`")
        hosts = tuple(h for h in the_plan.hosts if h not in untrusted)
        wait = (paths.estate.settings.configuration.connect_wait.total_seconds()
                if connect_wait is None else connect_wait)
        silent = wait_for_hosts(inventory, hosts, wait, on_wait=on_wait, probe=probe)
        for host in silent:
            ledger.event(run_id, host, "not-answering", waited_seconds=wait)
        limit = the_plan.limit
        if untrusted:  # the others go on; Ansible never sees the untrusted ones
            limit = ",".join([limit or "all", *(f"!{host}" for host in untrusted)])
        request = PlaybookRequest(
            playbook=SITE, inventory=inventory,
            extravars=extra_vars(paths, the_plan.systems),
            vault_password_file=paths.vault_password_file, forks=the_plan.forks,
            limit=limit, check=the_plan.check, diff=the_plan.diff, timeout=timeout)
        run = (runner or run_playbook)(request, paths.state / "runs" / run_id, run_id,
                                       on_event=on_event, on_task=on_task)
    except HopnhatError as exc:
        ledger.finish(run_id, "failed", {"error": str(exc)})
        raise
    verdict = leave_out(judge(run), untrusted, bool(run.hosts))
    for host, stats in sorted(run.hosts.items()):
        ledger.event(run_id, host, "host", **stats.as_dict())
    for notice in run.notices:
        ledger.event(run_id, notice.host, "notice", role=notice.role, task=notice.task,
                     message=notice.message)
    for failure in run.failures:
        ledger.event(run_id, failure.host, "failure", task=failure.task, role=failure.role,
                     outcome=failure.outcome, message=failure.message)
    result = ConfigureResult(run_id, the_plan, run, verdict)
    ledger.finish(run_id, verdict.status, {
        "hosts": len(run.hosts), "changed": run.changed,
        "failed_hosts": list(verdict.failed_hosts),
        "unreachable_hosts": list(verdict.unreachable_hosts),
        "untrusted_hosts": list(verdict.untrusted_hosts),
        "notices": len(run.notices), "runner_status": run.status, "rc": run.rc,
        "duration_seconds": round(run.duration, 2), "check": the_plan.check,
        "artifacts": str(run.artifacts)})
    return result
