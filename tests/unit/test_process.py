"""The subprocess door's streaming run: lines as they come, stderr kept, silence bounded;
several streamed programs ended by one call."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from orchestrator.errors import CommandError
from orchestrator.process import Completed, Running, stream

PY = sys.executable


def test_lines_arrive_while_the_command_still_runs(tmp_path: Path) -> None:
    # the command prints its second line only once the caller has heard the first (it waits
    # for the flag the caller's on_line sets): lines held back until the end would make it
    # give up waiting and print "late" instead
    flag = tmp_path / "heard"
    script = ("import os, sys, time\nprint('first', flush=True)\n"
              "deadline = time.monotonic() + 30\n"
              "while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:\n"
              "    time.sleep(0.01)\n"
              "print('second' if os.path.exists(sys.argv[1]) else 'late', flush=True)\n"
              "sys.stderr.write('oops\\n')\nsys.exit(3)")
    seen: list[str] = []

    def heard(line: str) -> None:
        seen.append(line)
        flag.touch()

    done = stream([PY, "-c", script, str(flag)], on_line=heard)
    assert seen == ["first", "second"]
    assert (done.returncode, done.stdout, done.stderr) == (3, "first\nsecond\n", "oops\n")


def test_a_silent_command_is_stopped_and_named() -> None:
    started = time.monotonic()
    with pytest.raises(CommandError, match=r"no output for 1 s"):
        stream([PY, "-c", "import time\nprint('x', flush=True)\ntime.sleep(30)"],
               silence_timeout=1.0)
    assert time.monotonic() - started < 10


def test_a_talkative_command_is_not_stopped_by_the_silence_bound() -> None:
    script = "import time\nfor i in range(6):\n    print(i, flush=True)\n    time.sleep(0.3)"
    done = stream([PY, "-c", script], silence_timeout=1.0)
    assert done.returncode == 0 and done.stdout.split() == [str(i) for i in range(6)]


def test_a_missing_program_is_named() -> None:
    with pytest.raises(CommandError, match="no-such-program-here: program not found"):
        stream(["no-such-program-here"])


def test_on_start_gets_the_process_to_end_it() -> None:
    procs = []

    def started(proc: object) -> None:
        procs.append(proc)
        proc.kill()  # type: ignore[attr-defined]
    done = stream([PY, "-c", "import time\ntime.sleep(30)"], on_start=started)
    assert len(procs) == 1 and done.returncode < 0


def test_running_kills_every_program_still_running_and_any_started_after() -> None:
    running = Running()
    ended: list[Completed] = []
    up = threading.Semaphore(0)

    def one() -> None:
        ended.append(stream([PY, "-c", "import time\nprint('up', flush=True)\ntime.sleep(60)"],
                            on_start=running.started, on_line=lambda _: up.release()))
        running.forget_ended()

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert up.acquire(timeout=30)  # both run
    running.kill_all()
    for thread in threads:
        thread.join(timeout=30)
    assert [done.returncode < 0 for done in ended] == [True, True]
    late = stream([PY, "-c", "import time\ntime.sleep(60)"], on_start=running.started)
    assert late.returncode < 0  # started after kill_all: killed at once
