"""A drill's recovery steps: bringing the service back on a scratch VM after the restore.

Each step of the system's ``drill.recovery`` runs, in order, on each scratch VM:

- a **command** step runs one program with its arguments (the estate's words, each quoted
  for the VM's shell), bounded by the step's timeout with coreutils' ``timeout`` on the VM
  (so a step given up is also stopped there); it fails on an exit code other than 0;
- a **restore_database** step reads the dump's manifest from the restored copy
  (:mod:`orchestrator.actions.drill.manifest`), restores the dump's own snapshot's one file
  into a private folder on the VM (``restic restore --include``, read-only: ``--no-lock``),
  loads it into the running engine as the database's ``run_as`` user, and removes the
  folder: PostgreSQL ``createdb`` + ``pg_restore --exit-on-error -j N`` (a ``pg_dumpall``
  dump: ``psql -f``), MariaDB ``CREATE DATABASE IF NOT EXISTS`` + ``mariadb <db> < file``, SQLite
  the file copied into place (``install``).

The command lines are built here by pure functions (:func:`load_commands`,
:func:`command_line`); every value in them is quoted with :mod:`orchestrator.quoting`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from orchestrator.actions.drill.manifest import Manifest, read_manifest
from orchestrator.actions.drill.remote import read_only, scratch_environment
from orchestrator.adapters.restic import Repository
from orchestrator.adapters.restic_argv import make_restore_argv
from orchestrator.adapters.ssh import Remote
from orchestrator.errors import HopnhatError
from orchestrator.estate.databases import Database
from orchestrator.estate.recovery import RecoveryStep
from orchestrator.hostjob.contract import STATE_DIR
from orchestrator.hostjob.dump_commands import quote_identifier
from orchestrator.quoting import shell, shell_join, terminal

#: a dump's private folder on a scratch VM while it is loaded
STAGING = STATE_DIR + "/drill-dumps/{name}"
#: after its timeout, a command gets TERM, then KILL this many seconds later
KILL_AFTER = 10
#: coreutils' timeout exits so when the command outlasted it (124) or had to be killed
TIMED_OUT = (124, 137)
OUTPUT_TAIL = 300  # characters of a failing command's output kept in the reason
MAX_JOBS = 8  # pg_restore -j: at most this many, and no more than the VM's vCPUs


class RecoveryError(HopnhatError):
    """A recovery step failed (its message names the VM and what failed)."""


@dataclass(frozen=True)
class Command:
    """One program run on a scratch VM: its argv, what it is (for messages), an
    environment of paths (restic's), a file on the VM fed to its standard input."""

    argv: tuple[str, ...]
    what: str
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: str | None = None


def as_user(user: str, argv: Sequence[str]) -> tuple[str, ...]:
    """``argv`` run as ``user`` (``runuser -u user --``), or as it is for root."""
    return tuple(argv) if user == "root" else ("runuser", "-u", user, "--", *argv)


def command_line(command: Command, seconds: float) -> str:
    """The shell line that runs ``command`` on a scratch VM for at most ``seconds``
    (``timeout -k``): every word quoted, the standard input redirected from its file."""
    words: list[str] = []
    if command.env:
        words += ["env", *(f"{k}={v}" for k, v in sorted(command.env.items()))]
    words += ["timeout", "-k", f"{KILL_AFTER}s", f"{max(1, math.ceil(seconds))}s",
              *command.argv]
    line = shell_join(words)
    return line if command.stdin is None else f"{line} < {shell(command.stdin)}"


def jobs_for(cpus: int | None) -> int:
    """pg_restore's ``-j``: the VM's vCPUs, at most :data:`MAX_JOBS` (1: no ``-j``)."""
    return max(1, min(cpus or 1, MAX_JOBS))


def online_cpus(remote: Remote, planned: int | None) -> int | None:
    """The CPUs the VM itself has online (``nproc``), which is what pg_restore's workers
    share; ``planned`` (the estate's vCPUs) when the VM does not say. (The estate's count
    was used before: in the lab, 8 workers for a VM that shares 2 cores made the load 30 %
    slower than one pg_restore by hand.)"""
    try:
        done = remote.run("nproc", timeout=30)
    except HopnhatError:
        return planned
    text = done.stdout.strip()
    return int(text) if done.returncode == 0 and text.isdigit() and int(text) > 0 else planned


def fetch_commands(repo: Repository, restic: str, database: Database, manifest: Manifest
                   ) -> list[Command]:
    """The dump's file restored from its own snapshot into its private folder (emptied
    first), owned by the database's ``run_as`` user."""
    staging = STAGING.format(name=database.name)
    restore = read_only(make_restore_argv(repo, manifest.snapshot, staging,
                                          include=[manifest.file], verify=False))
    commands = [Command(("rm", "-rf", "--", staging), "empty the dump's folder"),
                Command(("install", "-d", "-m", "0700", "--", staging), "make the dump's folder"),
                Command((restic, *restore[1:]), f"restic restore of dump snapshot "
                        f"{manifest.snapshot[:8]}", scratch_environment(repo))]
    if database.user != "root":
        commands.append(Command(("chown", "-R", "--", database.user, staging),
                                f"hand the dump to {database.user}"))
    return commands


def load_commands(database: Database, manifest: Manifest, jobs: int = 1) -> list[Command]:
    """How the restored dump file is loaded into the running engine (see the module's
    doc), as the database's ``run_as`` user."""
    file = STAGING.format(name=database.name) + manifest.file
    user, name = database.user, database.database
    if database.engine == "postgresql" and database.whole_cluster:
        return [Command(as_user(user, ("psql", "-X", "-q", "-d", "postgres", "-f", file)),
                        "psql -f of the pg_dumpall dump")]
    if database.engine == "postgresql":
        parallel = ("-j", str(jobs)) if jobs > 1 else ()
        return [Command(as_user(user, ("createdb", name)), f"createdb {name}"),
                Command(as_user(user, ("pg_restore", "--exit-on-error", *parallel, "-d", name,
                                       file)), f"pg_restore into {name}")]
    if database.engine == "mariadb":
        create = f"CREATE DATABASE IF NOT EXISTS {quote_identifier(name, 'mariadb')}"
        return [Command(as_user(user, ("mariadb", "--batch", "-e", create)),
                        f"create database {name}"),
                Command(as_user(user, ("mariadb", name)), f"mariadb {name} < the dump",
                        stdin=file)]
    return [Command(("install", "-D", "-m", "0640", "-o", user, "--", file, name),
                    f"copy the SQLite file into place at {name}")]


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return terminal(lines[-1], OUTPUT_TAIL) if lines else ""


@dataclass(frozen=True)
class Loaded:
    """A dump a restore_database step loaded: the manifest it followed, the seconds its file
    took to come from the repository and to load into the engine."""

    manifest: Manifest
    fetch_seconds: float
    load_seconds: float


def run_command(remote: Remote, command: Command, deadline: float) -> float:
    """``command`` on ``remote``, stopped there when ``deadline`` (time.monotonic) passes.
    Out: the seconds it took. Raises RecoveryError naming it when it fails or outlasts the
    deadline, SSHError when the connection does."""
    started = time.monotonic()
    left = deadline - started
    host = remote.target.host
    if left <= 0:
        raise RecoveryError(f"{host}: {command.what}: the step's timeout passed before it "
                            "could start")
    done = remote.run(command_line(command, left), timeout=left + KILL_AFTER + 30)
    if done.returncode in TIMED_OUT:
        raise RecoveryError(f"{host}: {command.what} did not finish within the step's "
                            "timeout and was stopped")
    if done.returncode != 0:
        said = _tail(done.stderr) or _tail(done.stdout) or "no output"
        raise RecoveryError(f"{host}: {command.what} exited {done.returncode}: {said}")
    return time.monotonic() - started


def run_step(remote: Remote, step: RecoveryStep) -> None:
    """A ``command`` recovery step on ``remote``. Raises RecoveryError or SSHError."""
    argv = tuple(step.argv)
    run_command(remote, Command(argv, terminal(argv[0], 80)),
                time.monotonic() + step.timeout.total_seconds())


def restore_database(remote: Remote, repo: Repository, restic: str, database: Database,
                     timeout: float, jobs: int = 1) -> Loaded:
    """A ``restore_database`` step on ``remote`` (see the module's doc), within ``timeout``
    seconds. Out: the manifest it followed and its timings. Raises ManifestError or
    RecoveryError naming what failed, SSHError when the connection does; the dump's folder
    is removed either way."""
    deadline = time.monotonic() + timeout
    manifest = read_manifest(remote, database.name)
    if manifest.engine != database.engine:
        raise RecoveryError(f"{remote.target.host}: dump {database.name!r} is a "
                            f"{terminal(manifest.engine, 40)} dump; the estate says "
                            f"{database.engine}")
    staging = STAGING.format(name=database.name)
    try:
        fetch = sum(run_command(remote, command, deadline)
                    for command in fetch_commands(repo, restic, database, manifest))
        load = sum(run_command(remote, command, deadline)
                   for command in load_commands(database, manifest, jobs))
    finally:
        _clean(remote, staging)
    return Loaded(manifest, fetch, load)


def _clean(remote: Remote, staging: str) -> None:
    """Remove the dump's folder; a failure to (the drill stopped, the VM gone) is left to
    the teardown, which takes the VM."""
    with contextlib.suppress(HopnhatError):
        remote.run(shell_join(["rm", "-rf", "--", staging]), timeout=120)
