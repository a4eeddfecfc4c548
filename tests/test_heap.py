"""The CPU engine keeps freed activation memory in the heap (glibc), unless FHDR_CPU_HEAP=system says not to."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest
from conftest import ROOT

#: Builds a CPU engine, then counts the page faults of a 64 MB block after three like it were used and freed.
SCRIPT = """
import resource, torch
from fhdr_plugin.node import heap
from fhdr_plugin.node.engine import Engine
from fhdr_plugin.node.model import FHDR
Engine(FHDR(1), "cpu", tile=0)
for _ in range(3):
    torch.empty(64 << 20, dtype=torch.uint8).fill_(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.empty(64 << 20, dtype=torch.uint8).fill_(1)
print(heap.keep_freed_blocks(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def run_script(setting: str) -> tuple[str, int]:
    env = {**os.environ, "FHDR_CPU_HEAP": setting}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    kept, faults = done.stdout.split()
    return kept, int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the heap is tuned on glibc only")
def test_a_cpu_engine_lets_a_freed_block_be_reused_without_new_pages():
    kept, faults = run_script("")
    assert kept == "True"
    assert faults < (64 << 20) // os.sysconf("SC_PAGE_SIZE") // 20  # 64 MB afresh is 16,384 pages of 4 KB


def test_fhdr_cpu_heap_system_leaves_the_allocator_alone():
    kept, _ = run_script("system")
    assert kept == "False"
