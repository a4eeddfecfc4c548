"""The terminal and the signals a farm sends: whether a progress bar can be drawn, SIGTERM as an interrupt."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

#: Exit status of a run stopped by SIGINT (Ctrl-C) or by SIGTERM: 128 + the signal's number, as a shell says.
INTERRUPTED_EXIT = 128 + signal.SIGINT
TERMINATED_EXIT = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM (how farms cancel a task), raised in the main thread; a KeyboardInterrupt, so that every step
    stops on it as on Ctrl-C, but the command exits with 143 rather than 130."""


def bar_fits(stream: TextIO) -> bool:
    """True on a terminal that reports a width; a terminal of zero width (``script``, some CI consoles) and
    anything that is not a terminal get one line per frame instead."""
    try:
        return stream.isatty() and os.get_terminal_size(stream.fileno()).columns > 0
    except (OSError, ValueError, AttributeError):
        return False


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Raise ``Terminated`` on SIGTERM while the block runs in the main thread (elsewhere: nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
