"""What running only the needed tiles saves: the node's seconds per frame with every tile and with the tiles whose
pixels the anchored blend uses, for each shipped model, in one run.

Two plates: the shipped sample resized (a sun and its sky clipped: the common case of a few highlights) and the
same plate 1.6x brighter in display values (clipping spread over much of the frame: the case that saves least).
"every tile" is also what any plate with a pixel near white in every tile costs. Each configuration runs
``--repeat`` + 1 times (the first warms up), the fastest counting; every time is printed against ``fhdr-i1`` with
every tile and the system allocator (``FHDR_CPU_HEAP=system``, ``fhdr_plugin/node/heap.py``): the node before the
large-highlights work, timed in a child process started by this run. Run from the repository root:

    .venv/bin/python benchmarks/sparse_tiles.py --size 1920x1080 --repeat 1
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
from context_cost import frame_args, plates
from model_speed import parse_size

from fhdr_plugin.imaging import color
from fhdr_plugin.manifest import manifest
from fhdr_plugin.node import scale
from fhdr_plugin.node.encoding import decode
from fhdr_plugin.node.engine import Engine
from fhdr_plugin.node.operation import LdrToHdrParams, reconstruct
from fhdr_plugin.node.weights import load_model
from fhdr_plugin.params import BlendParams

MODELS = ("fhdr-i1", "fhdr-i2")
BASELINE = ("fhdr-i1", "every tile")
#: The flag that makes this script time the baseline alone and print its seconds per plate as JSON.
BASELINE_FLAG = "--baseline-only"


def seconds(engine: Engine, meta: dict[str, str], display: np.ndarray, sparse: bool) -> float:
    """Seconds of the node's reconstruction of ``display`` (the network, decoded, blended and lifted): its own
    ``reconstruct`` with ``sparse``, else the same steps with the network on every tile."""
    start = time.perf_counter()
    linear = color.convert(display, "srgb_tx", color.LINEAR_SPACE)
    if sparse:
        reconstruct(engine, meta, linear, display, LdrToHdrParams())
    else:
        scale.blend(linear, display, decode(engine.run(display), meta), LdrToHdrParams().blend, engine.lift)
    return time.perf_counter() - start


def baseline(size: str, repeat: int) -> dict[str, float]:
    """Seconds per plate of ``BASELINE`` with the system allocator, timed in a child process."""
    command = [sys.executable, __file__, "--size", size, "--repeat", str(repeat), BASELINE_FLAG]
    env = {**os.environ, "FHDR_CPU_HEAP": "system"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    ap = frame_args(__doc__.splitlines()[0])
    ap.add_argument(BASELINE_FLAG, action="store_true", help="time the baseline alone (the child process)")
    args = ap.parse_args()
    width, height = parse_size(args.size)
    alone = args.baseline_only
    models = MODELS[:1] if alone else MODELS
    modes = ("every tile",) if alone else ("every tile", "needed tiles")
    loaded = {name: load_model(manifest().model(name)) for name in models}
    engines = {name: Engine(net, "cpu") for name, (net, _) in loaded.items()}
    base = {} if alone else baseline(args.size, args.repeat)
    result = {"size": f"{width}x{height}", "torch_threads": torch.get_num_threads(), "plates": {}}
    for pname, display in plates(width, height).items():
        times = {}
        for model in models:
            for mode in modes:
                runs = (
                    seconds(engines[model], loaded[model][1], display, mode == "needed tiles")
                    for _ in range(args.repeat + 1)
                )
                times[(model, mode)] = min(runs)
        if alone:
            base[pname] = times[BASELINE]
            continue
        needed = scale.needed(display, BlendParams().for_plate(lossy=False))
        print(f"{pname} plate, {width}x{height}, {needed.mean():.1%} of the pixels need the network:")
        print(f"  {'fhdr-i1':8s} {'every tile, system allocator':40s} {base[pname]:7.2f} s/frame   1.00x")
        for (model, mode), t in times.items():
            print(f"  {model:8s} {mode:40s} {t:7.2f} s/frame  {t / base[pname]:5.2f}x")
        result["plates"][pname] = {
            "needed_share": round(float(needed.mean()), 4),
            **{f"{m} {mode}": round(t / base[pname], 3) for (m, mode), t in times.items()},
        }
    if alone:
        print(json.dumps(base))
    elif args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
