"""What running only the needed tiles saves in the Nuke drop-in: seconds per frame of the scripted module with its
tiles on and with the whole frame run at once (``sparse`` 0), for the default model, in one run.

The same two plates as ``sparse_tiles.py`` (the shipped sample resized, and the same plate 1.6x brighter), handed
to the module as Nuke would: scene-linear Rec.709 (1, 3, H, W) float32. Each configuration runs ``--repeat`` + 1
times (the first warms up), the fastest counting; times are printed against the whole frame. Run from the
repository root:

    .venv/bin/python benchmarks/dropin_tiles.py --size 1920x1080 --repeat 1
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch
from context_cost import frame_args, plates
from model_speed import parse_size

from fhdr_plugin.exports.dropin import SceneLinearFhdr
from fhdr_plugin.imaging import color
from fhdr_plugin.manifest import manifest
from fhdr_plugin.node.weights import load_model


def seconds(module: torch.jit.ScriptModule, x: torch.Tensor, sparse: int) -> float:
    """Seconds of one call of ``module`` on ``x`` with its ``sparse`` switch set."""
    module.sparse = sparse
    start = time.perf_counter()
    with torch.inference_mode():
        module(x)
    return time.perf_counter() - start


def main() -> None:
    args = frame_args(__doc__.splitlines()[0]).parse_args()
    width, height = parse_size(args.size)
    name = manifest().default_model
    module = torch.jit.script(SceneLinearFhdr(*load_model(manifest().model(name))))
    result = {"size": f"{width}x{height}", "model": name, "torch_threads": torch.get_num_threads(), "plates": {}}
    for pname, display in plates(width, height).items():
        linear = color.convert(display, "srgb_tx", color.LINEAR_SPACE)
        x = torch.from_numpy(np.ascontiguousarray(linear.transpose(2, 0, 1)[None], dtype=np.float32))
        whole, tiles = (min(seconds(module, x, s) for _ in range(args.repeat + 1)) for s in (0, 1))
        print(f"{pname} plate, {width}x{height}, {name}: whole frame {whole:.2f} s, needed tiles {tiles:.2f} s")
        print(f"  needed tiles / whole frame: {tiles / whole:.2f}x")
        result["plates"][pname] = round(tiles / whole, 3)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
