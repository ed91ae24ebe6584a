"""Ctrl-C and SIGTERM while a long run goes on: the one place that swaps their handlers.

:func:`interrupts` makes both stop the run like Ctrl-C (a drill, a migration: their own
clean-up, then exit 130); :func:`only_said` makes both only print a line while a clean-up
that must finish runs (a drill's teardown). Handlers can be set in the main thread only:
elsewhere the block runs with the signals as they are.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

Handler = Callable[[int, FrameType | None], None]
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_signals_to(handler: Handler) -> Iterator[None]:
    """SIGINT and SIGTERM go to ``handler`` for the block, then back to the handlers they
    had (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, before in old.items():
            signal.signal(sig, before)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    del signum, frame
    raise KeyboardInterrupt


@contextmanager
def interrupts() -> Iterator[None]:
    """SIGINT and SIGTERM both raise KeyboardInterrupt in the block — even when hopnhat was
    started with SIGINT ignored (a background job of a script)."""
    with stop_signals_to(_interrupt):
        yield


@contextmanager
def only_said(message: str) -> Iterator[None]:
    """SIGINT and SIGTERM only write ``message`` on stderr while the block runs."""
    line = f"\n{message}\n".encode()

    def say(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        os.write(2, line)

    with stop_signals_to(say):
        yield
