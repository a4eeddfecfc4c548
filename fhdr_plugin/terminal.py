"""Whether a progress bar can be drawn on a stream."""

from __future__ import annotations

import os
from typing import TextIO


def bar_fits(stream: TextIO) -> bool:
    """True on a terminal that reports a width; a terminal of zero width (``script``, some CI consoles) and
    anything that is not a terminal get one line per frame instead."""
    try:
        return stream.isatty() and os.get_terminal_size(stream.fileno()).columns > 0
    except (OSError, ValueError, AttributeError):
        return False
