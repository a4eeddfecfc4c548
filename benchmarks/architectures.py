"""The time a frame takes through each network architecture, as a ratio to the paper's FHDR, measured in one run.

    .venv/bin/python benchmarks/architectures.py                    # 1920x1080, the engine's defaults
    .venv/bin/python benchmarks/architectures.py --size 1024x676 --repeats 5

Each architecture runs through the node's engine (tiled, the precision ``auto`` picks) on the same random frame;
the timings alternate between the architectures, so load that comes and goes on a shared machine falls on each
alike, and the fastest pass of each counts. Printed, never asserted. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from fhdr_plugin.node.engine import Engine
from fhdr_plugin.node.model import ARCHITECTURES, build
from fhdr_plugin.params import AUTO_TILE


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1920x1080", help="frame size WxH")
    ap.add_argument("--iterations", type=int, default=1)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--tile", type=int, default=AUTO_TILE)
    ap.add_argument("--repeats", type=int, default=3, help="timed passes of each architecture")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    frame = np.random.default_rng(0).uniform(0.0, 1.0, (height, width, 3)).astype(np.float32)
    torch.manual_seed(0)
    engines = {name: Engine(build(name, args.iterations), "cpu", args.precision, args.tile) for name in ARCHITECTURES}
    for engine in engines.values():
        engine.run(frame[:128, :128])  # warm-up
    best = dict.fromkeys(engines, float("inf"))
    for _ in range(args.repeats):
        for name, engine in engines.items():
            start = time.perf_counter()
            engine.run(frame)
            best[name] = min(best[name], time.perf_counter() - start)
    reference = best["fhdr"]
    result = {
        "size": args.size,
        "precision": next(iter(engines.values())).describe()["dtype"],
        "threads": torch.get_num_threads(),
        "seconds": best,
        "ratio_to_fhdr": {name: seconds / reference for name, seconds in best.items()},
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.size}, {result['precision']}, {result['threads']} threads, fastest of {args.repeats}:")
    for name, seconds in best.items():
        print(f"  {name:14s} {seconds:7.2f} s  {seconds / reference:.2f}x fhdr")


if __name__ == "__main__":
    main()
