"""The CPU engine's heap: the network's large activations reuse freed memory instead of fresh pages.

glibc maps every block above its mmap threshold (32 MB at most) afresh from the kernel and unmaps it when freed,
so at 1080p each layer's output arrives as new zeroed pages: more than half of a CPU frame's time went to page
faults. Raising the mmap and trim thresholds keeps freed blocks in the heap for the next layer and the next tile,
and the network runs about twice as fast; the heap holds on to about the peak of one tile's pass between frames.
The settings are process-wide and taken once, by the first CPU engine; set ``FHDR_CPU_HEAP=system`` to leave the
allocator as it is (a host that tunes its own). Elsewhere than glibc nothing changes.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os

log = logging.getLogger("fhdr")

#: The environment variable that leaves the allocator alone when set to "system".
ENV = "FHDR_CPU_HEAP"
#: glibc's mallopt parameters and the largest value they take.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
LARGEST = 2**31 - 1


@functools.cache
def keep_freed_blocks() -> bool:
    """Raise glibc's mmap and trim thresholds, once per process; whether they are raised."""
    if os.environ.get(ENV, "").lower() == "system":
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: musl's and others' mallopt differ)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    raised = bool(mallopt(M_MMAP_THRESHOLD, LARGEST)) and bool(mallopt(M_TRIM_THRESHOLD, LARGEST))
    log.debug("CPU heap: freed blocks %s", "kept for reuse" if raised else "returned to the system")
    return raised
