"""Ctrl-C and SIGTERM as a flag the training loop polls, so a run saves before it stops."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["StopFlag", "stop_on_signals"]


class StopFlag:
    """Set by SIGINT/SIGTERM inside :func:`stop_on_signals`; the training loop polls it."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None


@contextmanager
def stop_on_signals(signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[StopFlag]:
    """Turn Ctrl-C / SIGTERM into a flag, so the loop can save a checkpoint and return cleanly.

    A second signal of the same kind falls through to the previous handler (a second
    Ctrl-C still interrupts at once). Outside the main thread (where Python cannot install
    handlers) the flag simply never gets set.
    """
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {}

    def handler(signum: int, frame: Any) -> None:
        if flag:
            signal.signal(signum, previous[signum])
            signal.raise_signal(signum)
        flag.signal = signum

    for sig in signals:
        previous[sig] = signal.signal(sig, handler)
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
