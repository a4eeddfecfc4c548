"""What the large-highlight context costs: the node's seconds per frame with the lift head and the coarser levels.

The same plate (the shipped sample, resized) goes through ``predict_linear`` with both off (``--no-context
--no-coarse``: the network and the anchored blend, the node as it was before the head), with the lift head alone
(``--no-coarse``), and with both (the default), each ``--repeat`` + 1 times (the first warms up); the fastest
counts. The ratios to the first are their price on this machine. Run from the repository root:

    .venv/bin/python benchmarks/context_cost.py --size 1920x1080 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import OpenImageIO as oiio
import torch
from model_speed import SAMPLE, parse_size

from fhdr_plugin.node.engine import engine_for
from fhdr_plugin.node.operation import predict_linear
from fhdr_plugin.params import LdrToHdrParams


def plate(width: int, height: int) -> np.ndarray:
    """The shipped sample resized to ``width`` x ``height``, display-referred in [0, 1]."""
    src = oiio.ImageBuf(str(SAMPLE))
    resized = oiio.ImageBufAlgo.resize(src, roi=oiio.ROI(0, width, 0, height, 0, 1, 0, 3))
    if resized.has_error or src.has_error:
        raise SystemExit(f"{SAMPLE}: {src.geterror() or resized.geterror()}")
    return np.clip(resized.get_pixels(oiio.FLOAT), 0.0, 1.0)


def plates(width: int, height: int) -> dict[str, np.ndarray]:
    """The tile benchmarks' two plates: ``plate`` (a few highlights) and the same 1.6x brighter in display values
    (clipping spread over much of the frame: the case that saves least)."""
    sample = plate(width, height)
    return {"sample": sample, "bright": np.clip(sample * 1.6, 0.0, 1.0).astype(np.float32)}


def frame_args(description: str) -> argparse.ArgumentParser:
    """A parser with the frame-time benchmarks' options: ``--size``, ``--repeat`` and ``--json``."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--size", default="1920x1080", help="frame size WxH")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs of each; the fastest counts")
    ap.add_argument("--json", action="store_true", help="also print the result as one JSON line")
    return ap


def seconds(rgb: np.ndarray, params: LdrToHdrParams) -> float:
    """Seconds of one ``predict_linear`` of ``rgb``."""
    start = time.perf_counter()
    predict_linear(rgb, "srgb_tx", params)
    return time.perf_counter() - start


def main() -> None:
    ap = frame_args(__doc__.splitlines()[0])
    ap.add_argument("--model", default="", help="shipped model name [default: the default model]")
    args = ap.parse_args()
    width, height = parse_size(args.size)
    rgb = plate(width, height)
    settings = {"off": (False, False), "head": (True, False), "on": (True, True)}
    runs = {
        name: LdrToHdrParams.from_kwargs(model=args.model, context=context, coarse=coarse)
        for name, (context, coarse) in settings.items()
    }
    engine, meta = engine_for(runs["on"].engine)
    if engine.lift is None:
        raise SystemExit(f"{meta['fhdr:model']} has no lift head: the head's cost cannot be measured")
    best = {name: min(seconds(rgb, p) for _ in range(args.repeat + 1)) for name, p in runs.items()}
    result = {
        "size": f"{width}x{height}",
        "model": meta["fhdr:model"],
        "device": engine.describe()["device"],
        "dtype": engine.describe()["dtype"],
        "torch_threads": torch.get_num_threads(),
        **{f"seconds_{name}": round(value, 3) for name, value in best.items()},
        "head_over_off": round(best["head"] / best["off"], 3),
        "on_over_off": round(best["on"] / best["off"], 3),
    }
    print(f"{result['size']} {result['model']} on {result['device']} ({result['dtype']}):")
    print(
        f"  both off {best['off']:.2f} s/frame, lift head {best['head']:.2f} s/frame, lift head and coarser levels "
        f"{best['on']:.2f} s/frame"
    )
    print(f"  head / off: {result['head_over_off']:.3f}, both / off: {result['on_over_off']:.3f}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
