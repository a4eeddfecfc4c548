"""Soak: a long batch of small frames through an executor, and whether memory, threads, files or speed drift.

    .venv/bin/python benchmarks/soak.py                         # 500 frames of 64x48 through the local executor
    .venv/bin/python benchmarks/soak.py --executor ray --frames 500

After frame 50 and at the last frame (both while the run is going) it records the resident memory of the
process that converts (for Ray: the driver and every worker, summed), its threads and its open file descriptors,
and the frames/s of each block of 50 frames. Printed as ratios (last / after 50), never asserted: memory within
10 % and threads and files unchanged mean nothing leaks. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import OpenImageIO as oiio

from fhdr_plugin.host.batch import DONE, LocalExecutor, plan
from fhdr_plugin.params import LdrToHdrParams

BLOCK = 50


def make_frames(folder: Path, count: int, width: int, height: int) -> str:
    """``count`` 8-bit frames with a clipped highlight that moves; returns their pattern."""
    rng = np.random.default_rng(0)
    for f in range(1, count + 1):
        img = rng.uniform(0.05, 0.8, (height, width, 3)).astype(np.float32)
        x = (f * 3) % (width - width // 4)
        img[height // 4 : height // 2, x : x + width // 4] = 1.0
        buf = oiio.ImageBuf(oiio.ImageSpec(width, height, 3, oiio.UINT8))
        buf.set_pixels(buf.roi, img)
        if not buf.write(str(folder / f"soak.{f:04d}.png")):
            raise SystemExit(buf.geterror())
    return str(folder / "soak.####.png")


def process_stats(pid: int) -> dict[str, int]:
    """Resident memory (bytes), threads and open file descriptors of process ``pid`` (Linux /proc)."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    return {
        "rss": int(fields["VmRSS"].split()[0]) * 1024,
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def snapshot(pids: set[int]) -> dict[str, int]:
    """``process_stats`` summed over the live processes of ``pids``."""
    total = {"rss": 0, "threads": 0, "fds": 0}
    for pid in pids:
        try:
            for key, value in process_stats(pid).items():
                total[key] += value
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def executor_of(name: str, params: LdrToHdrParams, workers: int):
    """The executor to soak."""
    if name == "local":
        return LocalExecutor(params)
    from fhdr_plugin.host.ray_executor import RayExecutor

    return RayExecutor(params, cpus=workers, workers=workers, quiet=True)


def run(args: argparse.Namespace) -> dict:
    """Convert the frames, taking the snapshots and block timings as results arrive."""
    params = LdrToHdrParams.from_kwargs(tile=0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        jobs = plan(make_frames(folder, args.frames, args.width, args.height), str(folder / "out.####.exr"))
        executor = executor_of(args.executor, params, args.workers)
        pids = {os.getpid()}
        marks: dict[str, dict[str, int]] = {}
        times: list[float] = []
        done = 0

        def on_result(result) -> None:
            nonlocal done
            done += 1
            if result.worker:
                pids.add(int(result.worker.rsplit(":", 1)[1]))
            if done % BLOCK == 0:
                times.append(time.perf_counter())
            if done == BLOCK:
                marks["after_50"] = snapshot(pids)
            if done == len(jobs):  # still inside the run, as at frame 50: the same threads are alive
                marks["last"] = snapshot(pids)

        start = time.perf_counter()
        results = executor.run(jobs, on_result)
        failed = [r for r in results if r.status != DONE]
        if failed:
            raise SystemExit(f"{len(failed)} frames failed: {failed[0].error}")
    blocks = np.diff([start, *times])
    rates = [float(BLOCK / b) for b in blocks]
    first, last = marks["after_50"], marks["last"]
    return {
        "executor": args.executor,
        "frames": args.frames,
        "size": f"{args.width}x{args.height}",
        "python_threads_now": threading.active_count(),
        "after_50": first,
        "last": last,
        "rss_ratio": last["rss"] / first["rss"],
        "threads_change": last["threads"] - first["threads"],
        "fds_change": last["fds"] - first["fds"],
        "frames_per_s_blocks": [round(r, 2) for r in rates],
        "throughput_ratio_last_to_second_block": rates[-1] / rates[1] if len(rates) > 1 else 1.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--executor", choices=("local", "ray"), default="local")
    ap.add_argument("--frames", type=int, default=500)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--height", type=int, default=48)
    ap.add_argument("--workers", type=int, default=2, help="ray workers (and their CPUs)")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = ap.parse_args()
    if args.frames < 2 * BLOCK:
        raise SystemExit(f"--frames must be at least {2 * BLOCK}")
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return
    mb = 1024 * 1024
    print(f"{result['executor']}: {result['frames']} frames of {result['size']}")
    print(
        f"  memory {result['after_50']['rss'] / mb:.0f} MB after 50, {result['last']['rss'] / mb:.0f} MB after "
        f"{result['frames']}: {result['rss_ratio']:.3f}x"
    )
    print(
        f"  threads {result['after_50']['threads']} -> {result['last']['threads']}, open files "
        f"{result['after_50']['fds']} -> {result['last']['fds']}"
    )
    print(f"  frames/s per block of {BLOCK}: {result['frames_per_s_blocks']}")
    print(f"  last block / second block: {result['throughput_ratio_last_to_second_block']:.2f}")


if __name__ == "__main__":
    main()
