"""The estate lock (orchestrator.estate_lock): who holds it, waiting for it, taking over the
lock of a process that is gone, its files' permissions, hostile names shown safely."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from orchestrator.errors import EXIT_FAILURE, EstateLockedError, HopnhatError
from orchestrator.estate_lock import Holder, hold, lock_path, read_holder


def _dead_pid() -> int:
    """The PID of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_holder_is_recorded_while_held_and_cleared_after(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOPNHAT_OPERATOR", "ana")
    with hold(tmp_path, "apply") as me:
        recorded = read_holder(tmp_path)
        assert recorded == me
        assert (me.operator, me.command, me.pid, me.host) == (
            "ana", "apply", os.getpid(), socket.gethostname())
        assert me.since.endswith("+00:00")
        assert set(json.loads(lock_path(tmp_path).read_text())) == {
            "operator", "command", "pid", "host", "since"}
    assert read_holder(tmp_path) is None
    assert lock_path(tmp_path).read_text() == ""


def test_a_second_holder_is_refused_at_once_naming_the_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOPNHAT_OPERATOR", "ana")
    with hold(tmp_path, "apply") as first:
        started = time.monotonic()
        with pytest.raises(EstateLockedError) as caught, hold(tmp_path, "destroy"):
            pytest.fail("a second holder got the lock")
        assert time.monotonic() - started < 1.0
    text = str(caught.value)
    assert caught.value.exit_code == EXIT_FAILURE
    for part in ("operator 'ana'", "running 'apply'", f"PID {first.pid}",
                 f"host {first.host}", f"since {first.since}", "--lock-timeout"):
        assert part in text


def test_a_waiter_gets_the_lock_when_the_holder_lets_go(tmp_path: Path) -> None:
    held, release = threading.Event(), threading.Event()

    def first() -> None:
        with hold(tmp_path, "configure"):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    assert held.wait(10)
    waits: list[Holder | None] = []
    threading.Timer(0.5, release.set).start()
    started = time.monotonic()
    with hold(tmp_path, "apply", timeout=10, poll=0.05, on_wait=waits.append) as me:
        waited = time.monotonic() - started
        assert read_holder(tmp_path) == me
    thread.join(10)
    assert 0.4 < waited < 5
    assert len(waits) == 1 and waits[0] is not None and waits[0].command == "configure"


def test_a_waiter_gives_up_after_its_timeout(tmp_path: Path) -> None:
    with hold(tmp_path, "apply"):
        started = time.monotonic()
        with pytest.raises(EstateLockedError, match=r"after waiting 0\.3 s"), \
                hold(tmp_path, "apply", timeout=0.3, poll=0.05):
            pass
        assert 0.3 <= time.monotonic() - started < 2


def test_the_lock_of_a_process_killed_while_holding_it_is_taken_over(tmp_path: Path) -> None:
    code = ("import os, signal, sys; from pathlib import Path; "
            "from orchestrator.estate_lock import hold\n"
            "with hold(Path(sys.argv[1]), 'migrate cutover'):\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    killed = subprocess.run([sys.executable, "-c", code, str(tmp_path)], timeout=60,
                            check=False)
    assert killed.returncode == -9
    left = read_holder(tmp_path)
    assert left is not None and left.command == "migrate cutover"
    taken: list[Holder] = []
    with hold(tmp_path, "apply", on_takeover=taken.append) as me:
        assert me.command == "apply"
    assert [h.command for h in taken] == ["migrate cutover"]
    assert taken[0].process_gone()


def test_a_record_left_without_a_lock_is_taken_over_and_a_live_one_is_not(
        tmp_path: Path) -> None:
    stale = Holder("bob", "retire", _dead_pid(), socket.gethostname(), "2025-01-01T00:00:00")
    lock_path(tmp_path).write_text(json.dumps(stale.as_dict()))
    taken: list[Holder] = []
    with hold(tmp_path, "apply", on_takeover=taken.append):
        pass
    assert taken == [stale] and stale.process_gone()
    with hold(tmp_path, "apply", on_takeover=taken.append):  # let go cleanly last time
        pass
    assert taken == [stale]


def test_a_held_lock_whose_recorded_process_is_gone_says_so(tmp_path: Path) -> None:
    import fcntl

    gone = Holder("bob", "apply", _dead_pid(), socket.gethostname(), "2025-01-01T00:00:00")
    with lock_path(tmp_path).open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(json.dumps(gone.as_dict()))
        handle.flush()
        with pytest.raises(EstateLockedError, match="its process is gone, yet the lock is "
                           "still held"), hold(tmp_path, "apply"):
            pass


def test_a_missing_state_folder_is_made_0700_and_the_lock_file_is_0600(
        tmp_path: Path) -> None:
    state = tmp_path / "new" / "state"
    old = os.umask(0)
    try:
        with hold(state, "apply"):
            assert stat.S_IMODE(state.stat().st_mode) == 0o700
            assert stat.S_IMODE(lock_path(state).stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_a_lock_file_readable_by_others_is_made_0600(tmp_path: Path) -> None:
    lock_path(tmp_path).write_text("")
    lock_path(tmp_path).chmod(0o644)
    with hold(tmp_path, "apply"):
        assert stat.S_IMODE(lock_path(tmp_path).stat().st_mode) == 0o600


def test_a_symlink_in_place_of_the_lock_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("keep me")
    lock_path(tmp_path).symlink_to(target)
    with pytest.raises(HopnhatError, match="cannot be opened"), hold(tmp_path, "apply"):
        pass
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("operator", [
    "\x1b[2J\x1b[Hestate danang is valid", "ana\nerror: fake line", "\u202egnp.exe",
    "x" * 5000])
def test_a_hostile_operator_name_is_shown_escaped_and_cut(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, operator: str) -> None:
    monkeypatch.setenv("HOPNHAT_OPERATOR", operator)
    with hold(tmp_path, "apply"), pytest.raises(EstateLockedError) as caught, \
            hold(tmp_path, "apply"):
        pass
    text = str(caught.value)
    assert not any(ch in text for ch in "\x1b\n\u202e")
    assert len(text) < 600


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"operator": "a"}',
                                  '{"operator": "a", "command": "c", "pid": true, '
                                  '"host": "h", "since": "s"}'])
def test_a_record_that_is_not_a_holder_reads_as_none(text: str) -> None:
    assert Holder.from_text(text) is None
