"""Ctrl-C and SIGTERM during a long run: both stop it like Ctrl-C, or, while a clean-up
runs, both only say so; afterwards each signal has the handler it had before."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from orchestrator.interrupts import interrupts, only_said


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_stop_a_run_like_ctrl_c(sig: signal.Signals) -> None:
    with pytest.raises(KeyboardInterrupt), interrupts():
        os.kill(os.getpid(), sig)


def test_sigint_stops_a_run_even_when_it_was_ignored() -> None:
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(KeyboardInterrupt), interrupts():
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_while_a_clean_up_runs_the_signals_only_say_so(
        capfd: pytest.CaptureFixture[str]) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with interrupts(), only_said("tearing down; please wait"):
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
    assert capfd.readouterr().err.count("tearing down; please wait") == 2
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_outside_the_main_thread_the_handlers_are_left_alone() -> None:
    seen: list[object] = []

    def body() -> None:
        with interrupts():
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    worker = threading.Thread(target=body)
    worker.start()
    worker.join()
    assert seen == [before]
