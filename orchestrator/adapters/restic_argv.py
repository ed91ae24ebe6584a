"""restic command lines as data: the repository, the version's features, the environment and
one pure function per command returning its argv tuple (borgmatic style: unit-tested exactly).

Every argv starts with ``"restic"``; the runner (:mod:`orchestrator.adapters.restic`) puts its
own binary in that place. The password never appears here: it travels only as the *path* of a
file in ``RESTIC_PASSWORD_FILE`` (see :func:`make_environment`).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path

from orchestrator.quoting import ssh_option

Version = tuple[int, int, int]

#: restic's own rule (internal/restic/lock.go): a lock older than this is stale
STALE_LOCK_AGE = 30 * 60.0

_VERSION = re.compile(r"\brestic (\d+)\.(\d+)\.(\d+)")
_SUBSET = re.compile(r"^(?:[1-9]\d*/[1-9]\d*|\d+(?:\.\d+)?%|\d+[kKmMgGtT]?)$")
_DURATION = re.compile(r"^(?:\d+[yY])?(?:\d+m)?(?:\d+[dD])?(?:\d+[hH])?$")
# restic's split of sftp.command (internal/backend/sftp/split.go) knows quotes but no escapes:
# a backslash splits a word and a quote inside a word ends it
_UNSAFE_SSH_ARG = re.compile(r"['\\\n\r]")
_RETENTION_COUNTS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
_RETENTION_DURATIONS = ("within", "within-hourly", "within-daily", "within-weekly",
                        "within-monthly", "within-yearly")


@dataclass(frozen=True)
class Repository:
    """One restic repository and how to open it.

    ``url``: restic's location (``sftp:user@host:/repo``, ``sftp://user@host:port//repo``,
    ``rest:https://host:port/code/`` or a local path). ``password_file``: the file restic
    reads the password from (its path goes in the environment, the password itself nowhere).
    ``sftp_command``: the ssh argv restic runs for an ``sftp:`` repository (see
    :func:`ssh_command`). ``location_file``: a private file holding the location restic
    opens instead of ``url`` (``--repository-file``): a rest URL with its credentials, which
    must never reach argv; ``url`` is then that location without them, for messages.
    ``cacert``: the CA a ``rest:https`` server's certificate is checked against
    (``--cacert``; never skipped). ``cache_dir``: restic's cache; None runs with
    ``--no-cache``. ``name``: how messages name it (system code / repository host).
    """

    url: str
    password_file: Path
    sftp_command: tuple[str, ...] | None = None
    cache_dir: Path | None = None
    name: str = ""
    location_file: Path | None = None
    cacert: Path | None = None

    @property
    def display(self) -> str:
        """``name (url)`` for messages, with any password in the URL masked."""
        url = redact(self.url)
        return f"{self.name} ({url})" if self.name else url


def redact(text: str) -> str:
    """``text`` with the password of any ``scheme://user:password@`` URL replaced by ``***``."""
    return re.sub(r"(://[^/\s:@]*):[^@/\s]*@", r"\1:***@", text)


# --- versions and features ------------------------------------------------------------------


def parse_version(text: str) -> Version:
    """``restic 0.14.0 compiled with go1.19.8 on linux/amd64`` → ``(0, 14, 0)``.
    Raises ValueError when ``text`` names no version."""
    found = _VERSION.search(text)
    if found is None:
        raise ValueError(f"no restic version in {text.strip()[:80]!r}")
    major, minor, patch = (int(g) for g in found.groups())
    return major, minor, patch


@dataclass(frozen=True)
class Features:
    """What a restic version offers that hopnhat uses differently."""

    version: Version

    @property
    def retry_lock(self) -> bool:
        """``--retry-lock DURATION`` (0.16): restic waits for a lock itself."""
        return self.version >= (0, 16, 0)

    @property
    def copy_from_repo(self) -> bool:
        """``copy --from-repo`` run against the destination (0.14); before, ``--repo2`` named
        the destination and ``-r`` the source."""
        return self.version >= (0, 14, 0)

    @property
    def restore_verify(self) -> bool:
        """``restore --verify`` (0.9.2)."""
        return self.version >= (0, 9, 2)

    @property
    def exit_codes(self) -> bool:
        """Distinct exit codes: 10 no repository, 11 locked (0.17.0), 12 wrong password
        (0.17.1; 0.17.0 still exits 1 for it, which the text then names)."""
        return self.version >= (0, 17, 0)

    @property
    def stdin_from_command(self) -> bool:
        """``backup --stdin-from-command -- PROGRAM ARG…`` (0.17): restic runs the program,
        backs up its stdout and writes no snapshot when it exits non-zero."""
        return self.version >= (0, 17, 0)

    @property
    def check_json(self) -> bool:
        """``check --json`` (0.18): a summary object on stdout (``num_errors``,
        ``broken_packs``, ``suggest_repair_index``, ``suggest_prune``) and each problem as an
        ``{"message_type": "error", "message": …}`` line on stderr; before, check printed
        text only (and ignored ``--json``)."""
        return self.version >= (0, 18, 0)


# --- ssh for sftp: repositories -------------------------------------------------------------


def ssh_command(destination: str, key_file: Path, known_hosts: Path, *, port: int = 22,
                alive_interval: int = 15, alive_count: int = 4,
                connect_timeout: int = 30) -> tuple[str, ...]:
    """The ssh argv for ``sftp.command``: only ``key_file``, host keys checked strictly against
    ``known_hosts`` alone, never a prompt, keep-alives for long transfers, a bound on
    connecting (a cut link answers nothing: without it, ssh waits for TCP's SYN retries, 2+
    minutes), and ``-s sftp`` (restic's own form: ``ssh user@host -s sftp``; the URL's host
    is then only a label)."""
    return (
        "ssh", "-o", ssh_option("IdentityFile", key_file), "-o", "IdentitiesOnly=yes",
        "-o", "StrictHostKeyChecking=yes", "-o", ssh_option("UserKnownHostsFile", known_hosts),
        "-o", "BatchMode=yes", "-o", f"ServerAliveInterval={alive_interval}",
        "-o", f"ServerAliveCountMax={alive_count}", "-o", f"ConnectTimeout={connect_timeout}",
        "-p", str(port),
        destination, "-s", "sftp",
    )


def sftp_option(command: Sequence[str]) -> str:
    """The value of restic's ``-o`` for ``sftp.command``: one string that restic splits back
    into exactly ``command``.

    restic reads ``-o`` values as CSV (pflag StringSlice) and then splits the command on
    whitespace honouring quotes but no escapes; so the argv is joined with :func:`shlex.join`
    and the whole option CSV-quoted when it holds a comma or a double quote. Raises ValueError
    for an argument restic could not get back intact (empty, a single quote, a backslash).
    """
    if not command:
        raise ValueError("sftp.command: empty ssh command")
    for arg in command:
        if not arg.strip() or _UNSAFE_SSH_ARG.search(arg):
            raise ValueError(f"sftp.command: argument {arg!r} cannot be passed through restic "
                             "(empty, or holds a quote, backslash or newline)")
    value = "sftp.command=" + shlex.join(command)
    if "," in value or '"' in value:
        value = '"' + value.replace('"', '""') + '"'
    return value


# --- environment ----------------------------------------------------------------------------


def make_environment(repo: Repository, *, path: str, home: str, tmpdir: str,
                     from_repo: Repository | None = None,
                     features: Features | None = None) -> dict[str, str]:
    """restic's whole environment (nothing else is inherited): PATH, HOME, TMPDIR,
    RESTIC_PASSWORD_FILE, RESTIC_CACHE_DIR when the repository has a cache, and the source
    repository's password file for ``copy`` (RESTIC_FROM_PASSWORD_FILE from 0.14, else
    RESTIC_PASSWORD_FILE2)."""
    env = {"PATH": path, "HOME": home, "TMPDIR": tmpdir,
           "RESTIC_PASSWORD_FILE": str(repo.password_file)}
    if repo.cache_dir is not None:
        env["RESTIC_CACHE_DIR"] = str(repo.cache_dir)
    if from_repo is not None:
        if features is None or features.copy_from_repo:
            env["RESTIC_FROM_PASSWORD_FILE"] = str(from_repo.password_file)
        else:
            # before 0.14, copy ran against the source: -r is the source, repo2 the target
            env["RESTIC_PASSWORD_FILE"] = str(from_repo.password_file)
            env["RESTIC_PASSWORD_FILE2"] = str(repo.password_file)
    return env


# --- argv builders --------------------------------------------------------------------------


def _location(repo: Repository) -> tuple[str, ...]:
    if repo.location_file is not None:
        return ("--repository-file", str(repo.location_file))
    return ("--repo", repo.url)


def _from_location(repo: Repository, flag: str) -> tuple[str, ...]:
    """The source repository of ``copy`` or ``init --copy-chunker-params``: its file
    (``--from-repository-file``) when it has one, else ``flag`` and its URL."""
    if repo.location_file is not None:
        return ("--from-repository-file", str(repo.location_file))
    return (flag, repo.url)


def _base(repo: Repository, *, sftp_command: tuple[str, ...] | None = None,
          cacert: Path | None = None) -> tuple[str, ...]:
    argv: tuple[str, ...] = ("restic", *_location(repo))
    command = sftp_command if sftp_command is not None else repo.sftp_command
    if command:
        argv += ("-o", sftp_option(command))
    ca = cacert if cacert is not None else repo.cacert
    if ca is not None:
        argv += ("--cacert", str(ca))
    if repo.cache_dir is None:
        argv += ("--no-cache",)
    return argv


def base_argv(repo: Repository) -> tuple[str, ...]:
    """``restic`` and how it opens ``repo`` (location, ssh command, CA, cache), for a
    command this module has no builder of."""
    return _base(repo)


def _repeat(flag: str, values: Iterable[str]) -> tuple[str, ...]:
    return tuple(part for value in values for part in (flag, value))


def with_retry_lock(argv: Sequence[str], seconds: float) -> tuple[str, ...]:
    """``argv`` with restic's own lock wait (``--retry-lock Ns``, restic 0.16+) after the
    program name."""
    return (argv[0], "--retry-lock", f"{max(1, round(seconds))}s", *argv[1:])


def make_version_argv() -> tuple[str, ...]:
    """``restic version``."""
    return ("restic", "version")


def make_init_argv(repo: Repository, *, chunker_from: Repository | None = None,
                   features: Features | None = None) -> tuple[str, ...]:
    """``init``; with ``chunker_from``, the chunker parameters are copied from that repository
    (so ``copy`` into this one deduplicates); its password goes through the environment."""
    argv = _base(repo)
    if chunker_from is not None and chunker_from.cacert not in (None, repo.cacert):
        argv += ("--cacert", str(chunker_from.cacert))  # restic takes several
    argv += ("init",)
    if chunker_from is not None:
        old = features is not None and not features.copy_from_repo
        if old and chunker_from.location_file is not None:
            raise ValueError("init: this restic reads no source location from a file")
        flag = "--repo2" if old else "--from-repo"
        argv += ("--copy-chunker-params", *_from_location(chunker_from, flag))
    return argv


def make_backup_argv(repo: Repository, paths: Sequence[str | Path], tags: Sequence[str] = (),
                     exclude: Sequence[str] = (), host: str | None = None,
                     json: bool = True, time: datetime | None = None,
                     zone: tzinfo = UTC) -> tuple[str, ...]:
    """``backup [--json] [--host H] [--time T] [--tag T]… [--exclude P]… -- PATH…``;
    ``time`` (aware) sets the snapshot's time, written in ``zone``: restic reads ``--time`` as
    its own local time. Raises ValueError without a path (restic would back up nothing) or
    for a naive ``time``."""
    if not paths:
        raise ValueError("backup: no path to back up")
    argv = (*_base(repo), "backup")
    if json:
        argv += ("--json",)
    if host:
        argv += ("--host", host)
    if time is not None:
        if time.tzinfo is None:
            raise ValueError("backup: the snapshot time must carry a time zone")
        argv += ("--time", time.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"))
    argv += _repeat("--tag", tags) + _repeat("--exclude", exclude)
    return (*argv, "--", *(str(p) for p in paths))


def make_backup_stdin_argv(repo: Repository, filename: str, tags: Sequence[str] = (),
                           host: str | None = None, *,
                           command: Sequence[str] | None = None) -> tuple[str, ...]:
    """``backup --json [--host H] [--tag T]… --stdin-filename NAME`` and then either
    ``--stdin`` (restic reads its standard input, which the caller feeds) or, with
    ``command`` (restic 0.17+), ``--stdin-from-command -- PROGRAM ARG…`` (restic runs it and
    backs up what it writes). ``filename`` is the file's name in the snapshot (``/NAME``).
    Raises ValueError for a file name restic would take apart (empty, a ``/``, ``.``/``..``)
    or an empty command."""
    if not filename or "/" in filename or filename in (".", "..") or "\0" in filename:
        raise ValueError(f"backup: {filename!r} is not a plain file name")
    argv = (*_base(repo), "backup", "--json")
    if host:
        argv += ("--host", host)
    argv += (*_repeat("--tag", tags), "--stdin-filename", filename)
    if command is None:
        return (*argv, "--stdin")
    if not command:
        raise ValueError("backup: no command to read from")
    return (*argv, "--stdin-from-command", "--", *command)


def make_snapshots_argv(repo: Repository, *, host: str | None = None, tags: Sequence[str] = (),
                        paths: Sequence[str] = (), latest: int | None = None,
                        snapshot_ids: Sequence[str] = (),
                        no_lock: bool = False) -> tuple[str, ...]:
    """``snapshots --json`` with optional filters (``--tag a --tag b`` means a *or* b);
    ``no_lock``: read without a lock (``--no-lock``), beside a running ``check``."""
    argv = (*_base(repo), "snapshots", "--json")
    if no_lock:
        argv += ("--no-lock",)
    if host:
        argv += ("--host", host)
    argv += _repeat("--tag", tags) + _repeat("--path", paths)
    if latest is not None:
        argv += ("--latest", str(latest))
    return (*argv, *snapshot_ids)


def retention_flags(retention: Mapping[str, int | str]) -> tuple[str, ...]:
    """``{"last": 7, "daily": 14, "within": "30d"}`` → ``--keep-last 7 --keep-daily 14
    --keep-within 30d`` in restic's order. Keys may carry a ``keep_``/``keep-`` prefix and
    ``_`` for ``-``. Raises ValueError for an unknown key, a count below 1, a bad duration, or
    an empty policy (restic would then keep everything and say so only in prose)."""
    given = _retention_keys(retention)
    flags: list[str] = []
    for key in _RETENTION_COUNTS:
        if key in given:
            flags += [f"--keep-{key}", _keep_count(key, given[key])]
    for key in _RETENTION_DURATIONS:
        if key in given:
            flags += [f"--keep-{key}", _keep_duration(key, given[key])]
    if "tag" in given:
        flags += ["--keep-tag", str(given["tag"])]
    return tuple(flags)


def _retention_keys(retention: Mapping[str, int | str]) -> dict[str, int | str]:
    """The policy by restic's names (``daily``, ``within-daily``, ``tag``). Raises
    ValueError for an unknown key or an empty policy."""
    given: dict[str, int | str] = {}
    for raw, value in retention.items():
        key = raw.replace("_", "-").removeprefix("keep-")
        if key not in _RETENTION_COUNTS and key not in _RETENTION_DURATIONS and key != "tag":
            raise ValueError(f"retention: unknown key {raw!r}")
        given[key] = value
    if not given:
        raise ValueError("retention: empty policy")
    return given


def _keep_count(key: str, count: int | str) -> str:
    """``count`` of ``keep-<key>``, checked to be a whole number >= 1 (ValueError)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"retention: keep-{key} must be a whole number >= 1, "
                         f"not {count!r}")
    return str(count)


def _keep_duration(key: str, value: int | str) -> str:
    """``value`` of ``keep-<key>``, checked to be a restic duration (ValueError)."""
    duration = str(value)
    if not duration or not _DURATION.match(duration):
        raise ValueError(f"retention: keep-{key} must be a duration such as 1y5m7d2h, "
                         f"not {duration!r}")
    return duration


# Snapshots a retirement keeps (``hopnhat retire``): every forget hopnhat runs keeps them,
# whatever the system's retention says
KEPT_TAGS = ("final", "archived")


def make_forget_argv(repo: Repository, retention: Mapping[str, int | str], prune: bool = True,
                     *, host: str | None = None, tags: Sequence[str] = (),
                     group_by: str | None = None, dry_run: bool = False) -> tuple[str, ...]:
    """``forget --json <policy> --keep-tag final --keep-tag archived [--prune]`` (see
    :func:`retention_flags`; the snapshots of :data:`KEPT_TAGS` are kept whatever the
    policy), optionally only for ``host``/``tags`` and grouped by ``group_by`` (restic's
    default: ``host,paths``)."""
    argv = (*_base(repo), "forget", "--json", *retention_flags(retention))
    for tag in KEPT_TAGS:
        argv += ("--keep-tag", tag)
    if host:
        argv += ("--host", host)
    argv += _repeat("--tag", tags)
    if group_by is not None:
        argv += ("--group-by", group_by)
    if dry_run:
        argv += ("--dry-run",)
    if prune:
        argv += ("--prune",)
    return argv


def make_check_argv(repo: Repository, read_data_subset: str | None = None, *,
                    json: bool = False) -> tuple[str, ...]:
    """``check [--json]``; ``read_data_subset``: None (structure only), ``"all"``
    (``--read-data``) or restic's subset ``n/t``, ``x%`` or a size (``500M``); ``json``: for
    restic 0.18+ (:attr:`Features.check_json`). Raises ValueError for another subset."""
    argv = (*_base(repo), "check")
    if json:
        argv += ("--json",)
    if read_data_subset is None:
        return argv
    if read_data_subset == "all":
        return (*argv, "--read-data")
    if not _SUBSET.match(read_data_subset):
        raise ValueError(f"check: bad read-data subset {read_data_subset!r} "
                         "(n/t, x%, a size such as 500M, or all)")
    if "/" in read_data_subset:
        n, t = (int(x) for x in read_data_subset.split("/"))
        if n > t:
            raise ValueError(f"check: subset {read_data_subset!r}: n must not exceed t")
    return (*argv, "--read-data-subset", read_data_subset)


def make_restore_argv(repo: Repository, snapshot: str, target: str | Path,
                      include: Sequence[str] | None = None, verify: bool = True,
                      *, host: str | None = None) -> tuple[str, ...]:
    """``restore SNAPSHOT --target DIR [--include P]… [--verify]`` (``--host`` narrows
    ``latest``)."""
    argv = (*_base(repo), "restore", snapshot, "--target", str(target))
    if host:
        argv += ("--host", host)
    argv += _repeat("--include", include or ())
    if verify:
        argv += ("--verify",)
    return argv


def make_ls_argv(repo: Repository, snapshot: str, paths: Sequence[str] = (),
                 *, host: str | None = None) -> tuple[str, ...]:
    """``ls --json SNAPSHOT [DIR…]`` (one JSON object per line)."""
    argv = (*_base(repo), "ls", "--json")
    if host:
        argv += ("--host", host)
    return (*argv, snapshot, *paths)


def make_tag_argv(repo: Repository, snapshot_ids: Sequence[str], add: Sequence[str]
                  ) -> tuple[str, ...]:
    """``tag --add T… ID…``: restic writes each snapshot again with the tags added (its ID
    changes; ``original`` keeps the first one). Raises ValueError without a snapshot or a
    tag (restic would then tag every snapshot, or do nothing)."""
    if not snapshot_ids or not add:
        raise ValueError("tag: name at least one snapshot and one tag")
    return (*_base(repo), "tag", *_repeat("--add", add), "--", *snapshot_ids)


def make_dump_argv(repo: Repository, snapshot: str, path: str) -> tuple[str, ...]:
    """``dump SNAPSHOT PATH``: a file's bytes on stdout; for a folder (``/`` for all) a tar
    stream whose member names are the paths without their leading ``/``."""
    if not path.startswith("/"):
        raise ValueError(f"dump: {path!r} is not an absolute path in the snapshot")
    return (*_base(repo), "dump", "--", snapshot, path)


def make_stats_argv(repo: Repository, snapshot_ids: Sequence[str] = (),
                    mode: str = "restore-size", *, no_lock: bool = False) -> tuple[str, ...]:
    """``stats --json --mode MODE [--no-lock] [ID…]``. Raises ValueError for an unknown
    mode."""
    if mode not in ("restore-size", "files-by-contents", "raw-data", "blobs-per-file"):
        raise ValueError(f"stats: unknown mode {mode!r}")
    lock = ("--no-lock",) if no_lock else ()
    return (*_base(repo), "stats", "--json", "--mode", mode, *lock, *snapshot_ids)


def make_copy_argv(from_repo: Repository, to_repo: Repository, snapshot_ids: Sequence[str] = (),
                   *, features: Features | None = None) -> tuple[str, ...]:
    """Copy ``snapshot_ids`` (all when empty) from ``from_repo`` to ``to_repo``.

    restic 0.14+ runs against the destination with ``--from-repo``; older versions ran against
    the source with ``--repo2`` naming the destination. Passwords go through the environment
    (:func:`make_environment` with ``from_repo``). restic has one ``sftp.command`` for both:
    raises ValueError when the two repositories need different ones.
    """
    if (from_repo.sftp_command and to_repo.sftp_command
            and from_repo.sftp_command != to_repo.sftp_command):
        raise ValueError("copy: restic takes one sftp.command for both repositories; "
                         f"{from_repo.display} and {to_repo.display} need different ones")
    command = to_repo.sftp_command or from_repo.sftp_command
    if features is None or features.copy_from_repo:
        argv = _base(to_repo, sftp_command=command)
        if from_repo.cacert is not None and from_repo.cacert != to_repo.cacert:
            argv += ("--cacert", str(from_repo.cacert))  # restic takes several
        return (*argv, "copy", *_from_location(from_repo, "--from-repo"), *snapshot_ids)
    if from_repo.location_file is not None or to_repo.location_file is not None:
        raise ValueError("copy: this restic reads no repository location from a file")
    return (*_base(from_repo, sftp_command=command), "copy", "--repo2", to_repo.url,
            *snapshot_ids)


def make_unlock_argv(repo: Repository) -> tuple[str, ...]:
    """``unlock`` — stale locks only (never ``--remove-all``: hopnhat removes no live lock)."""
    return (*_base(repo), "unlock")


def make_list_locks_argv(repo: Repository) -> tuple[str, ...]:
    """``list locks --no-lock`` (one lock ID per line)."""
    return (*_base(repo), "list", "locks", "--no-lock")


def make_cat_lock_argv(repo: Repository, lock_id: str) -> tuple[str, ...]:
    """``cat lock ID --no-lock`` (the lock as JSON). Raises ValueError for a non-hex ID."""
    if not re.fullmatch(r"[0-9a-f]{8,64}", lock_id):
        raise ValueError(f"bad lock ID {lock_id!r}")
    return (*_base(repo), "cat", "lock", lock_id, "--no-lock")
