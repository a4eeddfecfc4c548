"""One model-only measurement, run in a fresh process so that its peak memory is its own.

``python -m benchmarks.model_speed --size 1920x1080 --run torch:bfloat16`` prints one JSON line: seconds
per frame, megapixels per second, the process's resident memory before the first pass and its peak (and
CUDA's peak allocation), and the tile size. The frame is the shipped sample mirrored out to the requested
size, in memory (no file I/O).

Runs: ``naive`` is one full-frame float32 eager pass in the default memory layout, the way the paper's code
runs the network; ``torch:<precision>`` and ``onnxruntime:float32`` go through ``fhdr_plugin.node.engine.Engine``
(tiles with a halo, channels-last, autocast).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import torch

from fhdr_plugin.manifest import manifest
from fhdr_plugin.node.engine import Engine, select_device
from fhdr_plugin.node.weights import load_model
from fhdr_plugin.params import AUTO_TILE

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "quarry_ldr.png"


def parse_size(text: str) -> tuple[int, int]:
    """(width, height) of 'WxH'."""
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def sample_frame(width: int, height: int) -> np.ndarray:
    """The shipped sample LDR image mirrored out (or cropped) to (height, width, 3) float32 in [0, 1]."""
    rgb = np.asarray(oiio.ImageBuf(str(SAMPLE)).get_pixels(oiio.FLOAT), dtype=np.float32)[..., :3]
    while rgb.shape[0] < height or rgb.shape[1] < width:
        pad_y, pad_x = min(rgb.shape[0], max(0, height - rgb.shape[0])), min(rgb.shape[1], max(0, width - rgb.shape[1]))
        rgb = np.pad(rgb, ((0, pad_y), (0, pad_x), (0, 0)), mode="symmetric")
    return np.ascontiguousarray(rgb[:height, :width])


def rss_bytes() -> int:
    """The current resident set size of this process."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def peak_rss_bytes() -> int:
    """The highest resident set size this process has had (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def naive_runner(model: torch.nn.Module, device: torch.device):
    """A function running one full-frame float32 eager pass in the default layout, numpy in and out."""
    model = model.eval().to(device)

    @torch.no_grad()
    def run(frame: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(frame.transpose(2, 0, 1).copy())[None].to(device)
        return model(x)[0].permute(1, 2, 0).cpu().numpy()

    return run


def measure(args: argparse.Namespace) -> dict:
    """Time ``args.run`` on one frame; see the module docstring."""
    width, height = parse_size(args.size)
    device = select_device(args.device)
    model, _ = load_model(manifest().model(), args.iterations)
    frame = sample_frame(width, height)
    warm = frame[: min(height, 256), : min(width, 256)]
    if args.run == "naive":
        run, tile, dtype = naive_runner(model, device), 0, "float32"
    else:
        backend, precision = args.run.split(":")
        engine = Engine(model, str(device), precision, args.tile, backend=backend, compile=args.compile)
        run, tile, dtype = engine.run, engine.tile, str(engine.dtype).removeprefix("torch.")
        if args.compile:
            warm = frame
    idle = rss_bytes()
    run(warm)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    out = None
    while len(times) < args.repeats and (not times or sum(times) < args.min_seconds):
        start = time.perf_counter()
        out = run(frame)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    if args.save:
        np.save(args.save, out)
    seconds = float(np.median(times))
    return {
        "run": args.run,
        "size": f"{width}x{height}",
        "iterations": args.iterations,
        "device": str(device),
        "dtype": dtype,
        "tile": tile,
        "repeats": len(times),
        "seconds": seconds,
        "mpx_per_s": width * height / seconds / 1e6,
        "idle_rss": idle,
        "peak_rss": peak_rss_bytes(),
        "cuda_peak": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    """Measure one configuration and print it as a JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="512x512", help="frame size WxH")
    ap.add_argument("--iterations", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--run", default="torch:float32", help="naive, torch:<precision> or onnxruntime:float32")
    ap.add_argument("--tile", type=int, default=AUTO_TILE, help="engine tile size [from free memory]")
    ap.add_argument("--compile", action="store_true", help="torch.compile the network")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes at most")
    ap.add_argument("--min-seconds", type=float, default=15.0, help="stop repeating once this much is timed")
    ap.add_argument("--save", default="", help="write the output frame to this .npy file")
    print(json.dumps(measure(ap.parse_args())))


if __name__ == "__main__":
    main()
