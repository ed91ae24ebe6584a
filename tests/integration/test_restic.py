"""The restic adapter against the real restic — every test twice, with Debian 12's restic 0.14
and with the newer restic the project pins (``restic_release``, tests/integration/conftest.py)
— on a local repository in tmp_path, and an SFTP repository on a lab repository host (its own
sshd in its own namespaces). Each test asserts how its version got there: restic 0.17+'s exit
codes (10, 11, 12) or 0.14's words, ``--retry-lock`` (0.16+: one restic that waits) or
hopnhat's own retries, ``check --json`` (0.18+) or check's text.

Faults are real: a restic paused with SIGSTOP holds a live lock, a SIGKILLed one leaves a dead
lock, a 2 MiB tmpfs fills up, bytes of a pack file are overwritten, a repository host stops in
the middle of a backup. Every process a test starts is continued, stopped and reaped by PID in
its teardown; every mount is unmounted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from orchestrator.adapters.restic import (
    AccessDenied,
    BackupResult,
    ConnectionLost,
    IncompleteBackup,
    InputAborted,
    NoRepository,
    NoSpace,
    Repository,
    RepositoryDamaged,
    RepositoryLocked,
    Restic,
    ResticCommandError,
    Retry,
    WrongPassword,
    ssh_command,
)
from orchestrator.adapters.restic_results import CheckResult
from orchestrator.errors import ResticError
from orchestrator.process import run
from tests.helpers import wait_for
from tests.integration.restic_matrix import ResticRelease

PASSWORD = "hopnhat-test-Passw0rd-7f3a"
# what each restic release offers, from restic's CHANGELOG.md, written out here rather than
# taken from the adapter's Features so that a wrong feature check fails these tests
RETRY_LOCK = (0, 16, 0)  # --retry-lock (#719)
EXIT_CODES = {10: (0, 17, 0), 11: (0, 17, 0), 12: (0, 17, 1)}  # #956, #4959
CHECK_JSON = (0, 18, 0)  # check --json (#1378)
MiB = 1 << 20


# --- helpers --------------------------------------------------------------------------------


def make_tree(root: Path, files: int, size: int, seed: int = 7) -> Path:
    """``files`` files of about ``size`` random bytes in nested folders, an empty file and a
    symlink."""
    rng = random.Random(seed)
    for i in range(files):
        folder = root / f"d{i % 4}" / f"e{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:04d}.bin").write_bytes(rng.randbytes(size + i))
    (root / "empty").write_bytes(b"")
    (root / "link").symlink_to("d0/e0/f0000.bin")
    return root


def fill_up(release: ResticRelease, repo: Repository, tmp_path: Path, *, timeout: float,
            small_size: int, big_mib: int,
            give_up: Callable[[Retry], str | None] | None = None) -> tuple[Restic, NoSpace]:
    """Initialise ``repo``, back up a small tree (3 files of about ``small_size`` bytes) that
    fits, then a ``big_mib`` MiB file that must not: the client and the NoSpace raised,
    checked to have left the small snapshot alone (no partial snapshot)."""
    restic = release.restic(repo, timeout=timeout, give_up=give_up)
    restic.init()
    small = restic.backup([make_tree(tmp_path / "small-src", files=3, size=small_size)])
    big = tmp_path / "big-src"
    big.mkdir()
    (big / "blob").write_bytes(os.urandom(big_mib * MiB))
    with pytest.raises(NoSpace) as caught:
        restic.backup([big])
    assert [s.short_id for s in restic.snapshots()] == [small.snapshot_id]
    return restic, caught.value


def tree_digest(root: Path) -> dict[str, tuple[str, str]]:
    """Relative path → (kind, content hash or link target) for everything under ``root``."""
    found: dict[str, tuple[str, str]] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            found[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            found[rel] = ("dir", "")
        else:
            found[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def restored(target: Path, source: Path) -> Path:
    """Where restic restores ``source`` (an absolute path) under ``target``."""
    return target / source.relative_to("/")


@dataclass
class Background:
    """A restic command running in a thread; its PID comes from ``on_start``."""

    pids: list[int] = field(default_factory=list)
    result: Any = None
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self, job: Callable[[], Any]) -> None:
        def body() -> None:
            try:
                self.result = job()
            except BaseException as exc:  # handed to the test
                self.error = exc
        self.thread = threading.Thread(target=body, daemon=True)
        self.thread.start()
        wait_for("restic to start", lambda: bool(self.pids), 30, interval=0.01)

    @property
    def pid(self) -> int:
        return self.pids[-1]

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def finish(self, timeout: float = 120) -> None:
        """Continue the process if paused and wait for the thread (teardown)."""
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if self.thread is not None:
            self.thread.join(timeout)
            assert not self.thread.is_alive(), "a background restic did not finish"


def lock_files(repo_dir: Path) -> list[Path]:
    """The lock files of a local repository (restic writes a temporary file, then renames
    it to its 64-hex ID)."""
    locks = repo_dir / "locks"
    if not locks.is_dir():
        return []
    return [p for p in locks.iterdir() if len(p.name) == 64 and p.is_file()]


# --- fixtures -------------------------------------------------------------------------------


def assert_clean(release: ResticRelease, check: CheckResult) -> None:
    """``check`` found no error, read the way its version reports it: 0.18's JSON summary
    (no text at all), or 0.14's closing line."""
    if release.version >= CHECK_JSON:
        assert check.summary is not None and check.summary.num_errors == 0, check
        assert check.summary.broken_packs == ()
        assert "no errors were found" not in check.lines  # no prose: the JSON was read
    else:
        assert check.summary is None
        assert "no errors were found" in check.lines


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "secrets" / "qlvb.pw"
    path.parent.mkdir(mode=0o700)
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def repo(tmp_path: Path, password_file: Path) -> Repository:
    return Repository(str(tmp_path / "repo"), password_file, cache_dir=tmp_path / "cache",
                      name="qlvb")


@pytest.fixture
def restic(repo: Repository, restic_release: ResticRelease) -> Restic:
    r = restic_release.restic(repo, timeout=300)
    assert r.version() == restic_release.version
    assert r.init()
    return r


@pytest.fixture
def background() -> Iterator[list[Background]]:
    jobs: list[Background] = []
    yield jobs
    for job in jobs:
        job.finish()


def in_background(jobs: list[Background], restic: Restic, job: Callable[[Restic], Any],
                  **options: Any) -> Background:
    """``job`` run in a thread with a restic like ``restic`` (its binary and repository)."""
    bg = Background()
    jobs.append(bg)
    r = Restic(restic.repo, binary=restic.binary, timeout=300, on_start=bg.pids.append,
               **options)
    bg.start(lambda: job(r))
    return bg


# --- the journey ----------------------------------------------------------------------------


def test_backup_list_restore_forget_check_on_a_local_repository(
        restic: Restic, tmp_path: Path, restic_release: ResticRelease) -> None:
    assert restic.init(exist_ok=True) is None  # the fixture made it
    with pytest.raises(ResticCommandError, match="already exists"):
        restic.init()
    source = make_tree(tmp_path / "src", files=24, size=40_000)
    progress: list[dict[str, Any]] = []

    first = restic.backup([source], tags=["system=qlvb", "tier=1"], host="qlvb-db-1",
                          on_progress=progress.append)
    assert first.ok and first.snapshot_id
    assert first.files_new == 25 and first.total_files_processed == 25
    assert first.total_bytes_processed == sum(40_000 + i for i in range(24))
    # restic reports every 1/60 s: a 1 MB tree may be done before its first report (seen
    # once in three runs), so only what does come is checked here; that progress comes
    # during a long backup, test_repository_host_down_mid_backup relies on
    assert all(p["message_type"] == "status" for p in progress)

    [snapshot] = restic.snapshots()
    assert snapshot.short_id == first.snapshot_id
    assert (snapshot.hostname, snapshot.tags, snapshot.paths) == (
        "qlvb-db-1", ("system=qlvb", "tier=1"), (str(source),))

    listing = restic.listing(snapshot.id)
    files = [p for p in source.rglob("*") if p.is_file() and not p.is_symlink()]
    assert listing.files == len(files)
    assert listing.total_size == sum(p.stat().st_size for p in files)
    assert listing.others == 1  # the symlink
    assert restic.stats([snapshot.id]).total_size == listing.total_size

    target = tmp_path / "restore"
    result = restic.restore(snapshot.id, target, verify=True)
    assert result.verified_files == len(files)  # regular files
    assert tree_digest(restored(target, source)) == tree_digest(source)

    (source / "d1" / "e1" / "f0001.bin").write_bytes(b"changed")
    second = restic.backup([source], tags=["system=qlvb", "tier=1"], host="qlvb-db-1")
    assert (second.files_changed, second.files_unmodified) == (1, 24)

    forgotten = restic.forget({"last": 1}, prune=True)
    assert [s.short_id for s in forgotten.removed] == [first.snapshot_id]
    assert [s.short_id for s in forgotten.kept] == [second.snapshot_id]
    assert [s.short_id for s in restic.snapshots()] == [second.snapshot_id]

    lines: list[str] = []
    check = restic.check(read_data_subset="all", on_line=lines.append)
    assert_clean(restic_release, check)
    assert [line for line in lines if line.strip()] == list(check.lines)  # streamed live
    assert not any(line.startswith("{") for line in lines)  # text, never restic's JSON


def test_ls_streams_and_stopping_early_stops_restic(restic: Restic, tmp_path: Path,
                                                    repo: Repository) -> None:
    source = make_tree(tmp_path / "src", files=300, size=10)
    restic.backup([source])
    pids: list[int] = []
    streaming = Restic(repo, binary=restic.binary, on_start=pids.append)
    nodes = streaming.ls("latest")
    first = next(nodes)
    assert first.type == "dir"
    [pid] = pids
    nodes.close()  # the caller has seen enough: restic is stopped and reaped
    assert not Path(f"/proc/{pid}").exists()
    listing = streaming.listing("latest")
    assert (listing.files, listing.others) == (301, 1)
    assert listing.total_size == sum(10 + i for i in range(300))
    assert lock_files(Path(repo.url)) == []


def test_copy_to_a_second_repository(restic: Restic, tmp_path: Path,
                                     password_file: Path) -> None:
    source = make_tree(tmp_path / "src", files=5, size=1000)
    restic.backup([source])
    other_pw = tmp_path / "secrets" / "copy.pw"
    other_pw.write_text("another-password\n")
    copy_repo = Repository(str(tmp_path / "copy"), other_pw, name="qlvb-copy")
    copy = Restic(copy_repo, binary=restic.binary)
    copy.init(chunker_from=restic.repo)
    copy.copy(restic.repo)
    [original] = restic.snapshots()
    [copied] = copy.snapshots()
    assert (copied.tree, copied.paths, copied.time) == (original.tree, original.paths,
                                                        original.time)
    copy.copy(restic.repo)  # already there: copied once only
    assert len(copy.snapshots()) == 1


# --- faults ---------------------------------------------------------------------------------


def expected_code(release: ResticRelease, code: int) -> int:
    """The exit code ``release`` gives for a failure that restic 0.17+ exits ``code`` for
    (0.14 exits 1 for them all)."""
    return code if release.version >= EXIT_CODES[code] else 1


def test_wrong_password_is_named(restic: Restic, tmp_path: Path, repo: Repository,
                                 restic_release: ResticRelease) -> None:
    wrong = tmp_path / "secrets" / "wrong.pw"
    wrong.write_text("not-the-password\n")
    with pytest.raises(WrongPassword) as caught:
        restic_release.restic(Repository(repo.url, wrong, name="qlvb")).snapshots()
    assert str(caught.value).startswith(f"restic snapshots: repository qlvb ({repo.url}): "
                                        "wrong password")
    assert "not-the-password" not in str(caught.value) and PASSWORD not in str(caught.value)
    assert caught.value.returncode == expected_code(restic_release, 12)


def test_no_repository_is_named(tmp_path: Path, password_file: Path,
                                restic_release: ResticRelease) -> None:
    missing = Repository(str(tmp_path / "nothing-here"), password_file, name="dvc")
    with pytest.raises(NoRepository, match=r"no repository at dvc \(.*nothing-here\)") as caught:
        restic_release.restic(missing).snapshots()
    assert caught.value.returncode == expected_code(restic_release, 10)


def test_a_missing_password_file_is_named_before_restic_runs(
        repo: Repository, tmp_path: Path, restic_release: ResticRelease) -> None:
    gone = Repository(repo.url, tmp_path / "no.pw", name="qlvb")
    with pytest.raises(ResticError, match=r"password file .*no\.pw is missing"):
        restic_release.restic(gone).snapshots()


def test_unreadable_file_makes_a_partial_backup_not_a_success(restic: Restic,
                                                              tmp_path: Path) -> None:
    source = make_tree(tmp_path / "src", files=2, size=100)
    # /proc/self/mem cannot be read from offset 0: restic reports it and exits 3
    result = restic.backup(["/proc/self/mem", source])
    assert result.partial and not result.ok and result.snapshot_id
    assert any(e.startswith("/proc/self/mem") for e in result.errors)
    with pytest.raises(IncompleteBackup) as caught:
        restic.backup(["/proc/self/mem", source], partial_ok=False)
    assert caught.value.exit_code == 3
    assert caught.value.result is not None and caught.value.result.snapshot_id


def test_a_stream_becomes_a_snapshot_only_when_its_source_succeeds(
        restic: Restic, tmp_path: Path, restic_release: ResticRelease) -> None:
    """backup --stdin fed by hopnhat (every version) and --stdin-from-command (0.17+): a
    source that succeeds is one snapshot of one file; one that fails makes none."""
    payload = os.urandom(300_000)

    def feed(ok: bool) -> Callable[[IO[bytes]], bool]:
        def write(stdin: IO[bytes]) -> bool:
            stdin.write(payload)
            stdin.flush()
            return ok
        return write
    fed = restic.backup_stdin("fed.sql", ["hopnhat-dump"], "h", feed=feed(True))
    assert fed.total_bytes_processed == len(payload) and fed.snapshot_id
    with pytest.raises(InputAborted):
        restic.backup_stdin("aborted.sql", ["hopnhat-dump"], "h", feed=feed(False))
    program = ("python3", "-c", "import sys; sys.stdout.write('x' * 5000); sys.exit({})")
    if restic_release.features.stdin_from_command:
        ran = restic.backup_stdin("ran.sql", (), "h", command=(*program[:2],
                                                              program[2].format(0)))
        assert ran.total_bytes_processed == 5000 and ran.snapshot_full_id
        failing = program[2].format(3).replace("sys.exit", "sys.stderr.write("
                                                   "'pg_dump: error: gone\\n'); sys.exit")
        with pytest.raises(ResticError, match="exit status 3") as failed:
            restic.backup_stdin("failed.sql", (), "h", command=(*program[:2], failing))
        assert "subprocess python3: pg_dump: error: gone" in str(failed.value)
    made = sorted(p for s in restic.snapshots() for p in s.paths)
    assert made == (["/fed.sql", "/ran.sql"] if restic_release.features.stdin_from_command
                    else ["/fed.sql"])
    assert restic.locks() == []
    out = tmp_path / "out"
    restic.restore(fed.snapshot_id, out)
    assert (out / "fed.sql").read_bytes() == payload


def test_password_is_never_in_restics_argv(restic: Restic, repo: Repository, tmp_path: Path,
                                           background: list[Background]) -> None:
    source = make_tree(tmp_path / "big", files=40, size=2 * MiB)
    bg = in_background(background, restic, lambda r: r.backup([source]))
    cmdline = Path(f"/proc/{bg.pid}/cmdline").read_bytes()
    environ = Path(f"/proc/{bg.pid}/environ").read_bytes()
    running = bg.alive() and Path(f"/proc/{bg.pid}").exists()
    bg.finish()
    assert running, "the backup ended before its command line was read"
    argv = cmdline.decode().split("\0")
    assert "backup" in argv and repo.url in argv
    assert PASSWORD.encode() not in cmdline and str(repo.password_file).encode() not in cmdline
    env = dict(item.split("=", 1) for item in environ.decode().split("\0") if item)
    assert env["RESTIC_PASSWORD_FILE"] == str(repo.password_file)
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "RESTIC_PASSWORD_FILE", "RESTIC_CACHE_DIR"}
    assert PASSWORD.encode() not in environ
    assert isinstance(bg.result, BackupResult) and bg.result.ok


def _pause_once_locked(bg: Background, repo_dir: Path) -> None:
    wait_for("the backup's lock", lambda: bool(lock_files(repo_dir)), 30, interval=0.01)
    os.kill(bg.pid, signal.SIGSTOP)
    assert bg.alive(), "the backup ended before it could be paused"


def test_a_live_lock_is_waited_for_then_named(restic: Restic, repo: Repository, tmp_path: Path,
                                              background: list[Background],
                                              restic_release: ResticRelease) -> None:
    source = make_tree(tmp_path / "big", files=40, size=2 * MiB)
    bg = in_background(background, restic, lambda r: r.backup([source]))
    _pause_once_locked(bg, Path(repo.url))

    tries: list[int] = []
    waiting = restic_release.restic(repo, lock_wait=3, lock_poll=0.5, on_start=tries.append)
    started = time.monotonic()
    with pytest.raises(RepositoryLocked) as caught:
        waiting.check()  # needs an exclusive lock
    waited = time.monotonic() - started
    error = caught.value
    assert 3 <= waited < 3 + 30  # bounded: the last try may start just before the deadline
    if restic_release.version >= RETRY_LOCK:
        # one restic, which waited itself (--retry-lock 3s), then said so with exit 11
        assert len(tries) == 1 and error.returncode == expected_code(restic_release, 11)
    else:
        # hopnhat's own wait: restic 0.14 tried again every 0.5 s
        assert len(tries) >= 3 and error.returncode == 1
    assert error.holder is not None
    assert (error.holder.pid, error.holder.host, error.holder.user) == (
        bg.pid, socket.gethostname(), "root")
    assert error.holder.age is not None and 0 < error.holder.age < 120
    assert f"PID {bg.pid} on {socket.gethostname()} by root" in str(error)
    assert " ago)" in str(error)
    assert re.search(r"; still locked after waiting \d+ s$", str(error))
    assert error.waited >= 3

    with pytest.raises(RepositoryLocked, match=f"PID {bg.pid} .* ago"):
        restic.wait_for_unlock(max_wait=1, poll=0.2)

    os.kill(bg.pid, signal.SIGCONT)
    restic.wait_for_unlock(max_wait=120, poll=0.2)  # returns once the backup is done
    bg.finish()
    assert isinstance(bg.result, BackupResult) and bg.result.ok
    assert_clean(restic_release, restic.check())


def test_without_a_wait_a_locked_repository_fails_at_once(restic: Restic, repo: Repository,
                                                          tmp_path: Path,
                                                          background: list[Background],
                                                          restic_release: ResticRelease,
                                                          ) -> None:
    source = make_tree(tmp_path / "big", files=40, size=2 * MiB)
    bg = in_background(background, restic, lambda r: r.backup([source]))
    _pause_once_locked(bg, Path(repo.url))
    with pytest.raises(RepositoryLocked) as caught:
        restic.forget({"last": 1})
    assert caught.value.waited == 0 and "still locked" not in str(caught.value)
    assert caught.value.returncode == expected_code(restic_release, 11)
    assert caught.value.holder is not None and caught.value.holder.pid == bg.pid


def test_only_a_dead_processs_lock_is_removed(restic: Restic, repo: Repository, tmp_path: Path,
                                              background: list[Background],
                                              restic_release: ResticRelease) -> None:
    source = make_tree(tmp_path / "big", files=40, size=2 * MiB)
    repo_dir = Path(repo.url)
    dead = in_background(background, restic, lambda r: r.backup([source]))
    wait_for("the first backup's lock", lambda: bool(lock_files(repo_dir)), 30, interval=0.01)
    os.kill(dead.pid, signal.SIGKILL)  # no chance to remove its lock
    dead.finish()
    assert isinstance(dead.error, ResticCommandError)
    assert [lock.pid for lock in restic.locks()] == [dead.pid]

    live = in_background(background, restic, lambda r: r.backup([source]))
    wait_for("the second backup's lock", lambda: len(lock_files(repo_dir)) == 2, 30,
             interval=0.01)
    os.kill(live.pid, signal.SIGSTOP)

    report = restic.remove_stale_locks()
    assert report.unlock_ran
    assert [lock.pid for lock in report.removed] == [dead.pid]
    assert [(lock.pid, why) for lock, why in report.kept] == [
        (live.pid, f"process {live.pid} is alive")]
    assert [lock.pid for lock in restic.locks()] == [live.pid]

    os.kill(live.pid, signal.SIGCONT)  # restic ignores the SIGHUP unlock sent it
    live.finish()
    assert isinstance(live.result, BackupResult) and live.result.ok
    assert restic.locks() == []
    assert_clean(restic_release, restic.check())


def test_a_dead_processs_lock_in_the_way_is_removed_not_waited_for(
        restic: Restic, repo: Repository, tmp_path: Path, background: list[Background],
        restic_release: ResticRelease) -> None:
    # restic (0.16+ with --retry-lock too) waits for a dead process's lock like for a live
    # one: the adapter removes it first, and only then would let restic wait
    source = make_tree(tmp_path / "big", files=40, size=2 * MiB)
    dead = in_background(background, restic, lambda r: r.backup([source]))
    wait_for("the backup's lock", lambda: bool(lock_files(Path(repo.url))), 30, interval=0.01)
    os.kill(dead.pid, signal.SIGKILL)
    dead.finish()
    tries: list[int] = []
    cleaner = restic_release.restic(repo, timeout=300, lock_wait=120, remove_stale=True,
                                    on_start=tries.append)
    started = time.monotonic()
    assert_clean(restic_release, cleaner.check())  # needs the exclusive lock
    assert time.monotonic() - started < 60, "waited for a dead process's lock"
    assert [lock.pid for lock in cleaner.stale_removed] == [dead.pid]
    assert len(tries) == 2  # the try that met the lock, then the one after its removal
    assert lock_files(Path(repo.url)) == []


def test_nothing_is_removed_when_no_lock_is_stale(restic: Restic) -> None:
    report = restic.remove_stale_locks()
    assert (report.removed, report.unlock_ran) == ((), False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("the disk-full test mounts a tmpfs: run the tests as root")
    mount = tmp_path / "small"
    mount.mkdir()
    run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        run(["umount", str(mount)], check=True)


def test_a_full_disk_is_no_space_and_loses_nothing(small_disk: Path, password_file: Path,
                                                    tmp_path: Path,
                                                    restic_release: ResticRelease) -> None:
    repo = Repository(str(small_disk / "repo"), password_file, cache_dir=tmp_path / "cache",
                      name="qlvb")
    restic, no_space = fill_up(restic_release, repo, tmp_path, timeout=300, small_size=10_000,
                               big_mib=5)
    assert "no space left on device" in no_space.detail
    assert f"repository qlvb ({repo.url})" in str(no_space)
    assert restic.locks() == []
    assert_clean(restic_release, restic.check(read_data_subset="all"))


def test_a_corrupted_pack_fails_check_read_data(restic: Restic, repo: Repository,
                                                tmp_path: Path,
                                                restic_release: ResticRelease) -> None:
    restic.backup([make_tree(tmp_path / "src", files=8, size=200_000)])
    packs = sorted((Path(repo.url) / "data").rglob("*"), key=lambda p: p.stat().st_size)
    pack = packs[-1]  # the largest: a data pack (its header, at the end, stays intact)
    data = bytearray(pack.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)
    pack.chmod(0o600)
    pack.write_bytes(bytes(data))
    assert_clean(restic_release, restic.check())  # the structure (indexes, headers) is intact
    seen: list[str] = []
    with pytest.raises(RepositoryDamaged) as caught:
        restic.check(read_data_subset="all", on_line=seen.append)
    error = caught.value
    assert f"repository qlvb ({repo.url}) contains errors" in str(error)
    damaged = [line for line in error.problems if pack.name in line]
    assert damaged, error.problems  # both versions name the damaged pack
    assert not any("restic repair" in line or line.startswith("{") for line in error.problems)
    assert any(pack.name in line for line in seen)  # on_line saw it as text
    if restic_release.version >= CHECK_JSON:
        # 0.18's JSON: the broken pack by ID, and the problem placed in the read-data phase
        assert error.broken_packs == (pack.name,)
        assert error.read_data_problems == tuple(damaged)
        assert all(f"pack {pack.name} contains" in line for line in damaged)
    else:
        assert (error.broken_packs, error.read_data_problems) == ((), None)
        assert all("Pack ID does not match" in line for line in damaged)


# --- SFTP on a lab repository host ----------------------------------------------------------


@dataclass
class RepositoryHost:
    lab_dir: Path
    name: str
    ip: str
    known_hosts: Path
    keys: dict[str, Path]

    def repository(self, code: str, password_file: Path, key: str | None = None,
                   cache_dir: Path | None = None) -> Repository:
        from orchestrator.lab.repository import repository_url

        command = ssh_command(f"restic-{code}@{self.ip}", self.keys[key or code],
                              self.known_hosts)
        return Repository(repository_url(self.ip, code), password_file, sftp_command=command,
                          cache_dir=cache_dir, name=f"{code}@{self.name}")


def _start_host(tmp_path: Path, name: str, capacity_mb: int | None,
                ip: str | None = None) -> RepositoryHost:
    from orchestrator.adapters.ssh import ensure_keypair
    from orchestrator.lab.repository import start_repository_host

    if os.geteuid() != 0:
        pytest.fail("the SFTP tests start a lab repository host: run the tests as root")
    from orchestrator.lab.processes import ProcessTable

    lab = tmp_path / "lab"
    lab.mkdir(exist_ok=True)
    keys = {code: tmp_path / "keys" / code for code in ("root", "qlvb", "dvc")}
    public = {code: ensure_keypair(path, code).read_text().strip() for code, path in keys.items()}
    known_hosts = tmp_path / "known_hosts"
    rng = random.Random()
    while ip is None:  # a loopback address nobody else listens on
        candidate = f"127.123.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}"
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex((candidate, 22)) != 0:
                ip = candidate
    start_repository_host(lab, ProcessTable(lab), name, name, ip, "/srv/restic",
                          [public["root"]], known_hosts,
                          {"qlvb": public["qlvb"], "dvc": public["dvc"]},
                          capacity_mb=capacity_mb)
    return RepositoryHost(lab, name, ip, known_hosts, keys)


def _stop_host(host: RepositoryHost) -> None:
    from orchestrator.lab.guests import destroy_guest
    from orchestrator.lab.processes import ProcessTable, is_alive

    table = ProcessTable(host.lab_dir)
    destroy_guest(host.lab_dir, table, host.name)
    assert not [r.name for r in table.all() if is_alive(r)], "lab processes left running"


@pytest.fixture
def sftp_host(tmp_path: Path) -> Iterator[RepositoryHost]:
    host = _start_host(tmp_path, "rt-repo", capacity_mb=None)
    try:
        yield host
    finally:
        _stop_host(host)


@pytest.fixture
def full_sftp_host(tmp_path: Path) -> Iterator[RepositoryHost]:
    host = _start_host(tmp_path, "rt-full", capacity_mb=3)
    try:
        yield host
    finally:
        _stop_host(host)


@pytest.mark.lab
def test_sftp_repository_through_ssh_with_pinned_host_keys(sftp_host: RepositoryHost,
                                                           password_file: Path,
                                                           tmp_path: Path,
                                                           restic_release: ResticRelease,
                                                           ) -> None:
    repo = sftp_host.repository("qlvb", password_file, cache_dir=tmp_path / "cache")
    restic = restic_release.restic(repo, timeout=300)
    with pytest.raises(NoRepository, match=r"no repository at qlvb@rt-repo \(sftp:") as caught:
        restic.snapshots()
    assert caught.value.returncode == expected_code(restic_release, 10)
    restic.init()
    source = make_tree(tmp_path / "src", files=10, size=5000)
    result = restic.backup([source])
    assert [s.short_id for s in restic.snapshots()] == [result.snapshot_id]
    target = tmp_path / "restore"
    restic.restore("latest", target)
    assert tree_digest(restored(target, source)) == tree_digest(source)
    assert restic.listing("latest").files == 10 + 1


@pytest.mark.lab
def test_one_systems_key_cannot_open_another_systems_repository(
        sftp_host: RepositoryHost, password_file: Path, restic_release: ResticRelease) -> None:
    restic_release.restic(sftp_host.repository("dvc", password_file)).init()
    intruder = sftp_host.repository("dvc", password_file, key="qlvb")
    with pytest.raises(AccessDenied, match=r"Permission denied \(publickey\)"):
        restic_release.restic(intruder).snapshots()


@pytest.mark.lab
def test_an_unknown_host_key_is_refused(sftp_host: RepositoryHost, password_file: Path,
                                        tmp_path: Path, restic_release: ResticRelease) -> None:
    restic_release.restic(sftp_host.repository("qlvb", password_file)).init()
    stranger = RepositoryHost(sftp_host.lab_dir, sftp_host.name, sftp_host.ip,
                              tmp_path / "empty_known_hosts", sftp_host.keys)
    stranger.known_hosts.write_text("")
    # either of OpenSSH's two lines (restic may exit having copied only the first)
    with pytest.raises(AccessDenied, match=r"Host key verification failed|you have requested "
                       r"strict checking"):
        restic_release.restic(stranger.repository("qlvb", password_file)).snapshots()


@pytest.mark.lab
def test_repository_host_down_mid_backup_is_connection_lost(sftp_host: RepositoryHost,
                                                            password_file: Path,
                                                            tmp_path: Path,
                                                            restic_release: ResticRelease,
                                                            ) -> None:
    from orchestrator.lab.guests import stop_guest
    from orchestrator.lab.processes import ProcessTable

    repo = sftp_host.repository("qlvb", password_file, cache_dir=tmp_path / "cache")
    pids: list[int] = []
    restic = restic_release.restic(repo, timeout=300, on_start=pids.append)
    restic.init()
    first = restic.backup([make_tree(tmp_path / "small", files=3, size=1000)])
    big = make_tree(tmp_path / "big", files=30, size=2 * MiB, seed=9)
    paused = threading.Event()

    def progress(status: dict[str, Any]) -> None:
        # pause restic the moment it reports data read: the host then goes down under it,
        # however fast loopback is
        if status.get("bytes_done", 0) > 0 and not paused.is_set():
            os.kill(pids[-1], signal.SIGSTOP)
            paused.set()

    outcome: dict[str, BaseException | BackupResult] = {}

    def job() -> None:
        try:
            outcome["result"] = restic.backup([big], on_progress=progress)
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc
    thread = threading.Thread(target=job, daemon=True)
    thread.start()
    try:
        wait_for("the backup to start", lambda: paused.is_set() or not thread.is_alive(), 60,
                 interval=0.01)
        stop_guest(ProcessTable(sftp_host.lab_dir), sftp_host.name)
    finally:
        with contextlib.suppress(ProcessLookupError, IndexError):
            os.kill(pids[-1], signal.SIGCONT)
        thread.join(120)
    assert not thread.is_alive()
    error = outcome.get("error")
    assert isinstance(error, ConnectionLost), outcome
    interrupted = pids[-1]
    assert f"repository qlvb@rt-repo ({repo.url})" in str(error)
    with pytest.raises(ConnectionLost, match="Connection refused"):
        restic.snapshots()

    _start_host(tmp_path, sftp_host.name, capacity_mb=None, ip=sftp_host.ip)  # back again
    second = restic.backup([big])
    assert second.ok
    assert [s.short_id for s in restic.snapshots()] == [first.snapshot_id, second.snapshot_id]
    # the interrupted backup could not remove its lock; its process is gone: stale
    report = restic.remove_stale_locks()
    assert [lock.pid for lock in report.removed] == [interrupted]
    assert_clean(restic_release, restic.check())


@pytest.mark.lab
def test_a_full_repository_host_is_no_space(full_sftp_host: RepositoryHost, password_file: Path,
                                            tmp_path: Path,
                                            restic_release: ResticRelease) -> None:
    from orchestrator.lab.guests import guest_view
    from orchestrator.lab.processes import ProcessTable

    repo = full_sftp_host.repository("qlvb", password_file, cache_dir=tmp_path / "cache")
    storage = guest_view(ProcessTable(full_sftp_host.lab_dir), full_sftp_host.name,
                         "/srv/restic")
    judged: list[Retry] = []

    def full(retry: Retry) -> str | None:
        # restic 0.14 would retry the write ten times (~45 s) before NoSpace: the caller's
        # judgement stops it once not even a 4 MiB pack (restic's smallest) fits
        judged.append(retry)
        stat = os.statvfs(storage)
        free = stat.f_bavail * stat.f_frsize
        return f"{free} bytes free on the storage" if free < 4 * MiB else None
    started = time.monotonic()
    restic, no_space = fill_up(restic_release, repo, tmp_path, timeout=600, small_size=1000,
                               big_mib=6, give_up=full)
    assert time.monotonic() - started < 30
    if restic_release.version >= (0, 18, 0):
        # restic 0.18 asks the server's statvfs itself when a write fails with a bare
        # SSH_FX_FAILURE (internal/backend/sftp/sftp.go: checkNoSpace) and stops at once: no
        # retry, so no judgement was needed
        assert "sftp: no space left on device" in no_space.detail, no_space.detail
        assert judged == []
    else:
        assert "SSH_FX_FAILURE" in no_space.detail
        assert "bytes free on the storage" in str(no_space)
        assert judged and all(r.is_write for r in judged)
    assert_clean(restic_release, restic.check())
