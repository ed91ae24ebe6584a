"""``backup run``: start the hosts' backup job now, and report what each run did.

:func:`select_clients` picks the backup clients — the data-bearing VMs of systems with a
backup, the derived inventory's ``backup_clients`` group — by system and host.
:func:`run_backups` starts on each, over SSH (host keys pinned), the same job the systemd
timer starts (:func:`job_argv`: the service's ExecStart, plus ``--progress``), hosts in
parallel with a bound, streaming each job's output lines as they come; each host's result is
the summary the job prints last — the status document it has just written to its status file
(:func:`host_result`). The run and one event per host go to the ledger (kind ``backup``).

No secret passes through here: the job reads the repository password from its own file on
the host; the command line names only the job's config file.

``backup status`` is :mod:`orchestrator.actions.backup.status`; the backup gate of apply and
destroy is :mod:`orchestrator.actions.backup.gate`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.actions.selection import unknown_message
from orchestrator.adapters.restic_results import json_object
from orchestrator.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_PARTIAL,
    PlanError,
    SSHError,
)
from orchestrator.estate.model import Estate
from orchestrator.hostjob.contract import (
    FAILED,
    JOB_CONFIG,
    JOB_PYTHON,
    JOB_PYTHON_FLAGS,
    JOB_SCRIPT,
    JOB_STATUS,
    OK,
    PARTIAL,
    REFUSED,
)
from orchestrator.ledger import Ledger
from orchestrator.quoting import shell_join
from orchestrator.settings import Paths

if TYPE_CHECKING:
    from orchestrator.adapters.ssh import StreamedJobs, Target

#: how long a running job may stay silent before hopnhat gives up on it (its own limits:
#: 6 h per restic command and 1 h per pre-backup command, by default)
SILENCE_TIMEOUT = 8 * 3600.0
#: lines of a job's output kept for the report when it ends without a result
_TAIL = 5

LineCallback = Callable[[str, str], None]  # (host, line)


@dataclass(frozen=True)
class BackupClient:
    """A host that backs up: a data-bearing VM of a system with a backup."""

    host: str
    system: str
    tier: int
    address: str
    port: int = 22


def backup_clients(estate: Estate) -> list[BackupClient]:
    """Every backup client of the estate, in estate order (the inventory's rule)."""
    return [BackupClient(vm.name, vm.system, vm.tier, str(vm.ip)) for vm in estate.vms
            if vm.data and estate.systems[vm.system].backup is not None]


def select_clients(estate: Estate, systems: Sequence[str] = (),
                   hosts: Sequence[str] = ()) -> list[BackupClient]:
    """The backup clients of ``systems`` (all when empty) that are among ``hosts`` (all when
    empty). Raises PlanError (exit 2) naming an unknown system, a system without a backup, a
    host that is no backup client, or a selection that leaves no host."""
    every = backup_clients(estate)
    problems = []
    problems += [unknown_message("system", s, estate.systems)
                 for s in dict.fromkeys(systems) if s not in estate.systems]
    without = [s for s in systems if s in estate.systems and estate.systems[s].backup is None]
    if without:
        problems.append(f"system {', '.join(map(repr, without))} has no backup in the estate")
    strangers = [h for h in hosts if h not in {c.host for c in every}]
    if strangers:
        problems.append(f"{', '.join(map(repr, strangers))}: not a backup client (a "
                        "data-bearing VM of a system with a backup)")
    if problems:
        raise PlanError("; ".join(problems), exit_code=EXIT_BAD_INPUT)
    chosen = [c for c in every if (not systems or c.system in systems)
              and (not hosts or c.host in hosts)]
    if not chosen:
        raise PlanError(f"nothing to back up: no host of system {', '.join(systems)} is "
                        f"among {', '.join(hosts)}", exit_code=EXIT_BAD_INPUT)
    return chosen


# --- the job's command lines (pure) -----------------------------------------------------------


def job_argv(code: str) -> tuple[str, ...]:
    """The backup service's ExecStart for system ``code``, with ``--progress`` (restic's
    progress about once a second)."""
    return (JOB_PYTHON, *JOB_PYTHON_FLAGS, JOB_SCRIPT, "--config", JOB_CONFIG.format(code=code),
            "--progress")


def job_command(code: str) -> str:
    """The line the host's shell runs over SSH: :func:`job_argv`, quoted, with the job's
    stderr (log and progress lines) joined to its stdout so that both stream in order."""
    return shell_join(job_argv(code)) + " 2>&1"


def status_command(code: str) -> str:
    """Read the job's status file (``cat``: no SFTP subsystem needed on the host; in the C
    locale, so that a missing file says "No such file")."""
    return shell_join(("env", "LC_ALL=C", "cat", "--", JOB_STATUS.format(code=code)))


# --- what a run returned ----------------------------------------------------------------------


@dataclass(frozen=True)
class HostBackup:
    """One host's backup run: the job's result (ok, partial, failed, refused) and, from its
    summary (the document it writes to its status file), the snapshot, bytes and files read,
    how long it took and the error. ``source`` says where the result came from: ``job`` (its
    summary) or ``hopnhat`` (no result from the job: unreachable host, a job that died or
    is not installed)."""

    host: str
    system: str
    result: str
    source: str
    snapshot_id: str | None = None
    bytes: int | None = None
    files: int | None = None
    data_added: int | None = None
    duration_seconds: float | None = None
    time: str | None = None
    stage: str | None = None
    error_class: str | None = None
    error_message: str | None = None
    exit_code: int | None = None
    warnings: tuple[str, ...] = ()
    #: the version of the restic the job ran, from its summary (None: not said)
    restic_version: str | None = None
    #: the database dumps the run made before its files backup (their manifests)
    dumps: tuple[dict[str, Any], ...] = ()

    @property
    def ok(self) -> bool:
        return self.result == OK

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "system": self.system, "result": self.result,
                "snapshot_id": self.snapshot_id, "bytes": self.bytes, "files": self.files,
                "data_added": self.data_added, "duration_seconds": self.duration_seconds,
                "time": self.time, "stage": self.stage,
                "error": None if self.error_class is None else {
                    "class": self.error_class, "message": self.error_message},
                "exit_code": self.exit_code, "source": self.source,
                "warnings": list(self.warnings), "restic_version": self.restic_version,
                "dumps": list(self.dumps)}


def job_summary(output: str) -> dict[str, Any] | None:
    """The job's own summary: the last output line that is a JSON object with a
    ``result`` (the job prints it last, on stdout), or None."""
    for line in reversed(output.splitlines()):
        data = json_object(line.strip())
        if data is not None and isinstance(data.get("result"), str):
            return data
    return None


def _number(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def result_from(client: BackupClient, data: Mapping[str, Any], source: str,
                exit_code: int | None) -> HostBackup:
    """A HostBackup from the job's status document (its summary, or its status file)."""
    error = data.get("error") if isinstance(data.get("error"), dict) else None
    duration = data.get("duration_seconds")
    warnings = data.get("warnings")
    version = data.get("restic_version")
    return HostBackup(
        host=client.host, system=client.system, result=str(data.get("result")), source=source,
        snapshot_id=data.get("snapshot_id") or None, bytes=_number(data, "bytes"),
        files=_number(data, "files"), data_added=_number(data, "data_added"),
        duration_seconds=float(duration) if isinstance(duration, int | float) else None,
        time=data.get("time"), stage=data.get("stage"),
        error_class=str(error.get("class")) if error else None,
        error_message=str(error.get("message")) if error else None,
        exit_code=exit_code,
        warnings=tuple(str(w) for w in warnings) if isinstance(warnings, list) else (),
        restic_version=version if isinstance(version, str) and version else None,
        dumps=_dumps(data.get("dumps")))


def _dumps(value: Any) -> tuple[dict[str, Any], ...]:
    """The summary's ``dumps`` (manifests), what of it is a list of objects."""
    return tuple(d for d in value if isinstance(d, dict)) if isinstance(value, list) else ()


def host_result(client: BackupClient, exit_code: int, output: str) -> HostBackup:
    """Judge one finished run from the job's exit code and its output.

    The job's summary — the last line, the status document it wrote to its status file (or,
    when that write failed, the same document saying so; for a refused run, another run held
    the lock, a short one that leaves the status file to the other run) — is the result. A
    job that printed no summary (not installed, bad config, killed) failed, with its last
    output line as the message.
    """
    printed = job_summary(output)
    if printed is not None:
        return result_from(client, printed, "job", exit_code)
    tail = [line for line in output.splitlines() if line.strip()][-_TAIL:]
    why = tail[-1].strip() if tail else "no output"
    return HostBackup(client.host, client.system, FAILED, "hopnhat", stage="job",
                      error_class="JobError", exit_code=exit_code,
                      error_message=f"the backup job ended with exit {exit_code} and no "
                                    f"result: {why[:300]}")


def unreachable(client: BackupClient, error: Exception, stage: str) -> HostBackup:
    """A host that could not be reached, or was lost while its job ran."""
    return HostBackup(client.host, client.system, FAILED, "hopnhat", stage=stage,
                      error_class=type(error).__name__, error_message=str(error))


@dataclass(frozen=True)
class BackupRun:
    """A ``backup run``: its ledger id, one result per host, the wall time."""

    run_id: str
    hosts: tuple[HostBackup, ...]
    seconds: float

    @property
    def status(self) -> str:
        """ok: every host ok; failed: none ok; partial: some."""
        good = sum(1 for h in self.hosts if h.ok)
        if good == len(self.hosts):
            return OK
        return FAILED if good == 0 else PARTIAL

    @property
    def exit_code(self) -> int:
        """0 every host ok, 3 some partial or failed, 1 none ok."""
        return {OK: EXIT_OK, PARTIAL: EXIT_PARTIAL}.get(self.status, EXIT_FAILURE)

    def counts(self) -> dict[str, int]:
        out = {r: 0 for r in (OK, PARTIAL, FAILED, REFUSED)}
        for host in self.hosts:
            out[host.result] = out.get(host.result, 0) + 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run_id, "status": self.status, "exit_code": self.exit_code,
                "seconds": round(self.seconds, 3), "counts": self.counts(),
                "hosts": [h.as_dict() for h in self.hosts]}


# --- running ----------------------------------------------------------------------------------


HostRunner = Callable[[BackupClient, Callable[[str], None]], HostBackup]


class SSHRunner:
    """Runs the job on a host with OpenSSH's ``ssh`` (through
    :class:`orchestrator.adapters.ssh.StreamedJobs`), as the estate's SSH user with hopnhat's
    key and known_hosts (strict), and judges what it printed. :meth:`close_all` ends every
    running ``ssh`` (an interrupt)."""

    def __init__(self, paths: Paths, silence_timeout: float = SILENCE_TIMEOUT) -> None:
        from orchestrator.adapters.ssh import StreamedJobs

        self.paths = paths
        self.jobs: StreamedJobs = StreamedJobs(silence_timeout)

    def target(self, client: BackupClient) -> Target:
        from orchestrator.adapters.ssh import Target

        return Target(host=client.host, address=client.address, port=client.port,
                      user=self.paths.estate.settings.ssh.user,
                      key_file=self.paths.private_key, known_hosts=self.paths.known_hosts)

    def __call__(self, client: BackupClient, on_line: Callable[[str], None]) -> HostBackup:
        seen: list[str] = []

        def each(line: str) -> None:
            seen.append(line)
            if not line.lstrip().startswith("{"):  # the summary is reported, not streamed
                on_line(line)
        try:
            done = self.jobs.run(self.target(client), job_command(client.system), on_line=each)
        except SSHError as exc:
            return unreachable(client, exc, "run" if seen else "connect")
        # the job's summary (its last line) is the status document it wrote to its status
        # file: no second round trip to read that file back
        return host_result(client, done.returncode, done.stdout)

    def close_all(self) -> None:
        self.jobs.close_all()


def run_backups(paths: Paths, clients: Sequence[BackupClient], *, ledger: Ledger,
                parallel: int = 8, on_line: LineCallback | None = None,
                on_done: Callable[[HostBackup], None] | None = None,
                params: Mapping[str, Any] | None = None,
                runner: HostRunner | None = None) -> BackupRun:
    """Run the backup job on each of ``clients``, ``parallel`` hosts at once; each output
    line goes to ``on_line(host, line)`` as it comes, each result to ``on_done``.

    ``runner`` stands in for :class:`SSHRunner` (tests). Out: :class:`BackupRun` (its
    ``exit_code`` 0, 3 or 1); the ledger holds the run (kind ``backup``) and one event per
    host (subject: the host; kind: its result). A host's failure is in its result; nothing
    is raised for one. On an interrupt (Ctrl-C) the hosts not started are skipped, the
    connections cut, the run recorded as interrupted and the interrupt raised again.
    """
    started = time.monotonic()
    run_id = ledger.start("backup", paths.estate.id, {
        **(params or {}), "hosts": [c.host for c in clients], "parallel": parallel})
    ssh_runner: SSHRunner | None = None
    if runner is None:
        ssh_runner = runner = SSHRunner(paths)
    work: HostRunner = runner

    def one(client: BackupClient) -> HostBackup:
        def line(text: str) -> None:
            if on_line is not None:
                on_line(client.host, text)
        result = work(client, line)
        ledger.event(run_id, client.host, result.result,
                     **{k: v for k, v in result.as_dict().items() if k != "host"})
        if on_done is not None:
            on_done(result)
        return result

    results: list[HostBackup] = []
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(clients) or 1)),
                                thread_name_prefix="backup") as pool:
            futures = [pool.submit(one, client) for client in clients]
            try:
                results = [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()
                if ssh_runner is not None:
                    ssh_runner.close_all()
                raise
    except BaseException:
        ledger.finish(run_id, "interrupted", {"seconds": round(time.monotonic() - started, 3)})
        raise
    run = BackupRun(run_id, tuple(results), time.monotonic() - started)
    ledger.finish(run_id, run.status, {k: v for k, v in run.as_dict().items() if k != "hosts"})
    return run
