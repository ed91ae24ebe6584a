"""What a drill runs on its scratch VMs over SSH, and the read-only repository reads it makes
from the control host.

A drill only ever *reads* the system's repository: every restic command it runs carries
``--no-lock``, so it writes not even a lock file — an interrupted drill (Ctrl-C, a scratch VM
torn down mid-restore) can leave no stale lock in a production repository. The price: a
``prune`` running at the same moment could remove packs under the drill, which then fails
(the drill, never the repository).

On a scratch VM, restic reaches the repository as the system's backup clients do (the
restic_client role's ssh settings, the password file it wrote): the password is only ever a
file's path in restic's environment, never in a command line.

Here are the drill's decisions only — which repository, which command line (pure functions,
quoted with :mod:`orchestrator.quoting`); the commands run through the adapters: on a VM
with :class:`orchestrator.adapters.ssh.Remote`, on the control host with
:func:`orchestrator.adapters.restic.read_snapshots`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from orchestrator.actions.repositories import REPOSITORY_PATH, open_repository
from orchestrator.adapters.restic import Repository, Snapshot, read_snapshots
from orchestrator.adapters.restic_argv import (
    make_environment,
    make_snapshots_argv,
    make_version_argv,
    parse_version,
)
from orchestrator.adapters.ssh import Remote
from orchestrator.errors import ResticError
from orchestrator.estate.endpoints import CLIENT_CACERT, CLIENT_LOCATION_FILE, client_url
from orchestrator.estate.inventory import repository_user
from orchestrator.estate.model import DISTRIBUTION_RESTIC, Estate
from orchestrator.quoting import shell_join
from orchestrator.settings import Paths

RESTIC = DISTRIBUTION_RESTIC  # on a scratch VM, unless the estate pins its own restic
PASSWORD_FILE = "/etc/hopnhat/restic-{code}.password"  # noqa: S105 - a path: restic_client's
CACHE_DIR = "/var/cache/hopnhat/restic-drill-{code}"
REMOTE_TMP = "/tmp"  # noqa: S108 - the scratch VM's own, for restic's temporary files


def read_only(argv: Sequence[str]) -> tuple[str, ...]:
    """restic's ``argv`` with ``--no-lock`` right after the program: a read that leaves
    nothing behind in the repository."""
    return (argv[0], "--no-lock", *argv[1:])


# ---------------------------------------------------------------- from the control host


def list_snapshots(paths: Paths, code: str, timeout: float = 300.0) -> list[Snapshot]:
    """System ``code``'s snapshots (oldest first), read from the control host through the
    system's own SFTP account, without a lock. Raises a classified ResticError."""
    with open_repository(paths, code) as repo:
        argv = (paths.restic_binary, *read_only(make_snapshots_argv(repo))[1:])
        env = make_environment(repo, path="/usr/bin:/bin", home=str(paths.state),
                               tmpdir=str(paths.state / "tmp"))
        return read_snapshots(repo, argv, env, timeout=timeout)


# ---------------------------------------------------------------- on a scratch VM


def scratch_repository(estate: Estate, code: str) -> Repository:
    """System ``code``'s repository as a configured client of it reaches it: the repository
    host's *name* (its ssh settings supply address, key and pinned host key), the password
    file the restic_client role wrote, a cache of the drill's own."""
    backup = estate.systems[code].backup
    assert backup is not None
    host = estate.repository_host(backup.repository_host)
    if host.protocol == "rest":
        assert backup.port is not None
        # the location file and CA the restic_client role wrote: the system's own
        # append-only server, which a restore only reads
        return Repository(
            url=client_url(host, code, backup.port),
            password_file=Path(PASSWORD_FILE.format(code=code)),
            location_file=Path(CLIENT_LOCATION_FILE.format(code=code)),
            cacert=Path(CLIENT_CACERT),
            cache_dir=Path(CACHE_DIR.format(code=code)), name=f"{code}@{host.name}")
    return Repository(
        url=f"sftp:{repository_user(code)}@{backup.repository_host}:{REPOSITORY_PATH}",
        password_file=Path(PASSWORD_FILE.format(code=code)),
        cache_dir=Path(CACHE_DIR.format(code=code)), name=f"{code}@{backup.repository_host}")


def scratch_environment(repo: Repository) -> dict[str, str]:
    """restic's whole environment on a scratch VM (paths only: the password file's, the
    cache's)."""
    return make_environment(repo, path="/usr/sbin:/usr/bin:/sbin:/bin", home="/root",
                            tmpdir=REMOTE_TMP)


def restic_env(repo: Repository) -> str:
    """``env K=V …`` with restic's whole environment on a scratch VM, to put in front of a
    command."""
    env = scratch_environment(repo)
    return "env " + shell_join([f"{k}={v}" for k, v in sorted(env.items())])


def remote_command(repo: Repository, argv: Sequence[str], restic: str = RESTIC) -> str:
    """The shell command that runs restic ``argv`` (read-only) on a scratch VM, with the
    restic program ``restic`` (the estate's ``restic.host_binary``)."""
    return f"{restic_env(repo)} {shell_join([restic, *read_only(argv)[1:]])}"


def restic_version(remote: Remote, restic: str = RESTIC) -> str:
    """restic's version on the VM (``0.14.0``). Raises ResticError when it does not say."""
    done = remote.run(shell_join([restic, *make_version_argv()[1:]]), timeout=60)
    try:
        return ".".join(str(n) for n in parse_version(done.stdout))
    except ValueError:
        raise ResticError(f"{remote.target.host}: restic version: "
                          f"{(done.stderr or done.stdout).strip()[:200]}") from None
