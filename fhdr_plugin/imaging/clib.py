"""What C libraries (libpng) print on file descriptor 2, kept off the terminal.

OIIO reports their errors through ``geterror()`` as well, so their own lines only repeat it, unprefixed.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("fhdr")
#: A line of a C library's own: ``libpng error: …``, ``libpng warning: …``.
LIBRARY_LINE = re.compile(rb"^lib\w+ (error|warning): ")
_LOCK = threading.Lock()


@contextmanager
def library_messages(where: str) -> Iterator[None]:
    """Run the block with fd 2 captured: library warnings become one ``fhdr:`` log line each naming ``where``,
    library errors are dropped (OIIO's message carries them), anything else is written back as it was."""
    with _LOCK, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            _replay(sink.read(), where)


def _replay(captured: bytes, where: str) -> None:
    others = []
    for line in captured.splitlines(keepends=True):
        found = LIBRARY_LINE.match(line)
        if not found:
            others.append(line)
        elif found.group(1) == b"warning":
            log.warning("%s: %s", where, line.decode(errors="replace").strip())
    if others:
        os.write(2, b"".join(others))
