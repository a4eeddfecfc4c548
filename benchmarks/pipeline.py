"""How much disk I/O the threaded sequence pipeline hides: its frames/s against the model alone on the same frames.

Three timings of the same generated LDR sequence, after one warm-up frame:

- model only: ``ldr_to_hdr`` on frames already decoded in memory, nothing written;
- serial: read, convert, write one frame after the other (what ``fhdr convert`` in a shell loop does, minus
  the start-up);
- pipeline: ``fhdr batch``'s pipeline, reading and writing in background threads.

pipeline / model-only near 1.0 means the I/O is hidden behind the model. Run from the repository root:

    .venv/bin/python benchmarks/pipeline.py --frames 8 --size 512x384
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import torch

from fhdr_plugin.host.batch import DONE, LocalExecutor, plan
from fhdr_plugin.host.registry import run_operation
from fhdr_plugin.imaging.io import read_image, write_exr
from fhdr_plugin.node.engine import engine_for
from fhdr_plugin.params import LdrToHdrParams

FORMATS = {"png": oiio.UINT8, "tif": oiio.UINT16, "exr": oiio.HALF}


def make_plate(folder: Path, count: int, width: int, height: int, ext: str) -> str:
    """``count`` noisy LDR frames with clipped highlights; returns their ``#`` pattern."""
    rng = np.random.default_rng(0)
    for f in range(1, count + 1):
        img = rng.uniform(0.05, 0.8, (height, width, 3)).astype(np.float32)
        img[height // 4 : height // 2, (f * 16) % width : (f * 16) % width + width // 5] = 1.0
        buf = oiio.ImageBuf(oiio.ImageSpec(width, height, 3, FORMATS[ext]))
        buf.set_pixels(buf.roi, img)
        if not buf.write(str(folder / f"plate.{f:04d}.{ext}")):
            raise SystemExit(buf.geterror())
    return str(folder / f"plate.#.{ext}")


def model_only(frames: list[oiio.ImageBuf], params: dict) -> float:
    """Seconds for ``ldr_to_hdr`` over decoded frames."""
    start = time.perf_counter()
    for buf in frames:
        run_operation("ldr_to_hdr", buf, **params)
    return time.perf_counter() - start


def serial(pattern: str, out: Path, count: int, params: dict) -> float:
    """Seconds to read, convert and write each frame in turn."""
    start = time.perf_counter()
    for job in plan(pattern, str(out / "serial.#.exr"), f"1-{count}"):
        write_exr(run_operation("ldr_to_hdr", read_image(job.input), **params), job.output)
    return time.perf_counter() - start


def pipelined(pattern: str, out: Path, count: int, params: dict) -> tuple[float, float, float]:
    """Seconds for the threaded pipeline, and the summed read and write seconds it overlapped with the model."""
    jobs = plan(pattern, str(out / "pipeline.#.exr"), f"1-{count}")
    start = time.perf_counter()
    results = LocalExecutor(LdrToHdrParams.from_kwargs(**params)).run(jobs)
    elapsed = time.perf_counter() - start
    if any(r.status != DONE for r in results):
        raise SystemExit(f"pipeline failed: {[r.error for r in results if r.error]}")
    return elapsed, sum(r.read_s for r in results), sum(r.write_s for r in results)


def main() -> None:
    """Run the three timings and print them (and a JSON line with --json)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=8, help="frames in the sequence")
    ap.add_argument("--size", default="512x384", help="frame size WxH")
    ap.add_argument("--format", choices=sorted(FORMATS), default="png", help="input file format")
    ap.add_argument("--device", default="", help="cuda, mps or cpu [best available]")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--tile", type=int, default=-1)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each timing; the fastest counts")
    ap.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    params = {"device": args.device, "precision": args.precision, "tile": args.tile}
    p = LdrToHdrParams.from_kwargs(**params)
    engine, meta = engine_for(p.engine)

    with tempfile.TemporaryDirectory(prefix="fhdr-bench-") as tmp:
        folder = Path(tmp)
        pattern = make_plate(folder, args.frames, width, height, args.format)
        decoded = [read_image(job.input) for job in plan(pattern, str(folder / "x.#.exr"), f"1-{args.frames}")]
        run_operation("ldr_to_hdr", decoded[0], **params)
        best: dict[str, float] = {}
        io_s = (0.0, 0.0)
        for _ in range(args.repeat):
            best["model_only"] = min(best.get("model_only", float("inf")), model_only(decoded, params))
            best["serial"] = min(best.get("serial", float("inf")), serial(pattern, folder, args.frames, params))
            seconds, read_s, write_s = pipelined(pattern, folder, args.frames, params)
            if seconds < best.get("pipeline", float("inf")):
                best["pipeline"], io_s = seconds, (read_s, write_s)

    fps = {name: args.frames / seconds for name, seconds in best.items()}
    result = {
        "frames": args.frames,
        "size": f"{width}x{height}",
        "format": args.format,
        "device": str(engine.device),
        "dtype": str(engine.dtype).removeprefix("torch."),
        "tile": engine.tile,
        "model": meta["fhdr:model"],
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "fps": {k: round(v, 3) for k, v in fps.items()},
        "pipeline_over_model_only": round(fps["pipeline"] / fps["model_only"], 3),
        "serial_over_model_only": round(fps["serial"] / fps["model_only"], 3),
        "pipeline_read_s": round(io_s[0], 3),
        "pipeline_write_s": round(io_s[1], 3),
    }
    print(f"{args.frames} frames {width}x{height} {args.format} on {result['device']} ({result['dtype']})")
    for name in ("model_only", "serial", "pipeline"):
        print(f"  {name:<11} {fps[name]:8.3f} frames/s  ({best[name]:.2f} s)")
    print(f"  pipeline / model-only: {result['pipeline_over_model_only']:.3f}")
    print(f"  serial   / model-only: {result['serial_over_model_only']:.3f}")
    print(f"  disk time overlapped in the pipeline: read {io_s[0]:.2f} s, write {io_s[1]:.2f} s")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
