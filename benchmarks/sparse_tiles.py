"""What running only the needed tiles saves: the node's seconds per frame with every tile and with the tiles whose
pixels the anchored blend uses, for each shipped model, in one run.

Two plates: the shipped sample resized (a sun and its sky clipped: the common case of a few highlights) and the
same plate 1.6x brighter in display values (clipping spread over much of the frame: the case that saves least).
Each configuration runs ``--repeat`` + 1 times (the first warms up), the fastest counting; every time is printed
against ``fhdr-i1`` with every tile, the node before this change. Run from the repository root:

    .venv/bin/python benchmarks/sparse_tiles.py --size 1920x1080 --repeat 1
"""

from __future__ import annotations

import json
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


def main() -> None:
    args = frame_args(__doc__.splitlines()[0]).parse_args()
    width, height = parse_size(args.size)
    loaded = {name: load_model(manifest().model(name)) for name in MODELS}
    engines = {name: Engine(net, "cpu") for name, (net, _) in loaded.items()}
    metas = {name: meta for name, (_, meta) in loaded.items()}
    result = {"size": f"{width}x{height}", "torch_threads": torch.get_num_threads(), "plates": {}}
    for pname, display in plates(width, height).items():
        needed = scale.needed(display, BlendParams().for_plate(lossy=False))
        times = {
            (model, mode): min(
                seconds(engines[model], metas[model], display, mode == "needed tiles") for _ in range(args.repeat + 1)
            )
            for model in MODELS
            for mode in ("every tile", "needed tiles")
        }
        base = times[BASELINE]
        print(f"{pname} plate, {width}x{height}, {needed.mean():.1%} of the pixels need the network:")
        for (model, mode), t in times.items():
            print(f"  {model:8s} {mode:12s} {t:7.2f} s/frame  {t / base:5.2f}x")
        result["plates"][pname] = {
            "needed_share": round(float(needed.mean()), 4),
            **{f"{m} {mode}": round(t / base, 3) for (m, mode), t in times.items()},
        }
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
