"""Model-only speed and memory of FHDR against a naive full-frame float32 pass, measured in one run.

    python -m benchmarks                      # 512² and 1080p, 1 iteration, every device, float32 and bfloat16
    python -m benchmarks --sizes 512,1080p,4k --iterations 1,2 --precisions float32,bfloat16,float16

Every configuration runs in a fresh process (``benchmarks/model_speed.py``), so its peak memory is its own.
The naive baseline is skipped, with its estimated memory, where it would not fit. Results are printed (and
written as JSON with ``--json``), never asserted. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from benchmarks.flops import DESIGN_MACS, conv_macs_per_pixel, counted_flops_per_pixel, gemm_peak
from benchmarks.model_speed import parse_size
from fhdr_plugin.node.engine import BYTES_PER_PIXEL, available_memory, cpu_has_bf16
from training.metrics import mu_psnr

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"512": "512x512", "1080p": "1920x1080", "4k": "3840x2160"}
#: Share of free memory a naive pass may take before it is reported as out of memory instead of run.
NAIVE_MEMORY_SHARE = 0.8
GB = 1e9


@dataclass
class Row:
    """One measured (or skipped) configuration and what is compared with it."""

    size: str
    iterations: int
    device: str
    run: str
    result: dict | None = None
    note: str = ""
    compared: dict = field(default_factory=dict)


def device_names() -> list[str]:
    """cpu, and cuda when available."""
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def cpu_name() -> str:
    """The CPU's model name (Linux), else what platform reports."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def naive_estimate(rows: list[Row], size: str, iterations: int, device: str) -> float:
    """Bytes a naive pass at ``size`` needs: scaled from a smaller naive run of this session, else from
    the engine's per-pixel figure."""
    width, height = parse_size(size)
    for row in rows:
        if row.run == "naive" and row.result and row.iterations == iterations and row.device == device:
            r = row.result
            measured = r["cuda_peak"] if device.startswith("cuda") else r["peak_rss"] - r["idle_rss"]
            per_pixel = measured / (np.prod(parse_size(row.size)))
            return per_pixel * width * height + (0 if device.startswith("cuda") else r["idle_rss"])
    return BYTES_PER_PIXEL * (1 + 0.5 * (iterations - 1)) * width * height


def measure(row: Row, args: argparse.Namespace, save: Path) -> None:
    """Run one configuration in a fresh process and keep its JSON result (or why it failed)."""
    command = [sys.executable, "-m", "benchmarks.model_speed", "--size", row.size, "--run", row.run]
    command += ["--iterations", str(row.iterations), "--device", row.device, "--save", str(save)]
    command += ["--repeats", str(args.repeats), "--min-seconds", str(args.min_seconds)]
    if args.tile is not None:
        command += ["--tile", str(args.tile)]
    if args.compile:
        command.append("--compile")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode == 0:
        row.result = json.loads(done.stdout.strip().splitlines()[-1])
    elif done.returncode < 0:
        row.note = f"killed by signal {-done.returncode} (out of memory?)"
    else:
        row.note = f"failed: {(done.stderr.strip().splitlines() or ['?'])[-1][:80]}"


def runs_for(device: str, args: argparse.Namespace) -> list[str]:
    """The engine runs of one device: torch at each precision, ONNX Runtime float32 on the CPU."""
    runs = [f"torch:{p}" for p in args.precisions]
    if "onnxruntime" in args.backends and device == "cpu" and "float32" in args.precisions:
        runs.append("onnxruntime:float32")
    return runs


def benchmark(args: argparse.Namespace) -> list[Row]:
    """Measure every configuration; outputs are compared with the engine's float32 torch result."""
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="fhdr-bench-") as tmp:
        for device in args.devices:
            for iterations in args.iterations:
                for size in args.sizes:
                    group: dict[str, Path] = {}
                    first = len(rows)
                    plan = (["naive"] if args.naive else []) + runs_for(device, args)
                    for run in plan:
                        row = Row(size, iterations, device, run)
                        need = naive_estimate(rows, size, iterations, device) if run == "naive" else 0.0
                        free = available_memory(torch.device(device))
                        if need > NAIVE_MEMORY_SHARE * free:
                            row.note = f"n/a (out of memory: est. {need / GB:.1f} GB, {free / GB:.1f} GB free)"
                        else:
                            save = Path(tmp) / f"{len(rows)}.npy"
                            measure(row, args, save)
                            if row.result:
                                group[run] = save
                        rows.append(row)
                        print(f"  measured {size} it={iterations} {device} {run}: {summary(row)}", flush=True)
                    compare(rows[first:], group)
    return rows


def compare(rows: list[Row], group: dict[str, Path]) -> None:
    """mu-PSNR and the largest difference of each output of one size against the float32 torch engine's."""
    if "torch:float32" not in group:
        return
    reference = np.load(group["torch:float32"])
    for row in rows:
        if row.run in group and row.run != "torch:float32" and row.result:
            out = np.load(group[row.run])
            row.compared = {"mu_psnr": mu_psnr(out, reference), "max_abs": float(np.abs(out - reference).max())}
    for path in group.values():
        path.unlink()


def summary(row: Row) -> str:
    if not row.result:
        return row.note
    r = row.result
    return f"{r['seconds']:.2f} s/frame, {r['mpx_per_s']:.3f} MP/s, peak {memory(r) / GB:.2f} GB"


def memory(result: dict) -> float:
    """The peak memory that matters on the device: CUDA's allocation there, the process's RSS on the CPU."""
    return result["cuda_peak"] if result["cuda_peak"] is not None else result["peak_rss"]


def peak_fraction(row: Row, peaks: dict[tuple[str, str], float]) -> str:
    """Useful FLOP/s (conv multiply-adds x 2 per frame pixel) as a share of the measured GEMM peak."""
    r = row.result
    peak = peaks.get((row.device, r["dtype"]))
    if not peak:
        return "-"
    flops = 2 * conv_macs_per_pixel(row.iterations) * r["mpx_per_s"] * 1e6
    return f"{100 * flops / peak:.0f}%"


def naive_of(rows: list[Row], row: Row) -> dict | None:
    """The naive baseline's result for ``row``'s size, iteration count and device, if it ran."""
    key = (row.size, row.iterations, row.device)
    return next(
        (n.result for n in rows if n.run == "naive" and n.result and (n.size, n.iterations, n.device) == key), None
    )


def table(rows: list[Row], peaks: dict[tuple[str, str], float]) -> list[str]:
    """The results as aligned text lines, each speed and memory beside the naive baseline's."""
    header = ("size", "it", "device", "run", "tile", "s/frame", "MP/s", "x naive", "peak GB", "x naive", "% peak")
    cells = [header + ("mu-PSNR", "max|d|")]
    notes = {}
    for row in rows:
        first = (row.size, str(row.iterations), row.device, row.run)
        if not row.result:
            notes[len(cells)] = first
            cells.append(first + ("",) * (len(cells[0]) - len(first)))
            continue
        r, naive, c = row.result, naive_of(rows, row), row.compared
        cells.append(
            first
            + (
                str(r["tile"] or "full"),
                f"{r['seconds']:.2f}",
                f"{r['mpx_per_s']:.3f}",
                f"{r['mpx_per_s'] / naive['mpx_per_s']:.2f}" if naive else "n/a",
                f"{memory(r) / GB:.2f}",
                f"{memory(r) / memory(naive):.2f}" if naive else "n/a",
                peak_fraction(row, peaks),
                f"{c['mu_psnr']:.1f}" if c else "",
                f"{c['max_abs']:.1e}" if c else "",
            )
        )
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in cells]
    for index, first in notes.items():
        lead = "  ".join(cell.ljust(w) for cell, w in zip(first, widths, strict=False))
        lines[index] = f"{lead}  {rows[index - 1].note}"
    return lines


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="512,1080p", help="comma-separated: 512, 1080p, 4k or WxH")
    ap.add_argument("--iterations", default="1", help="comma-separated feedback iteration counts")
    ap.add_argument("--precisions", default="float32,bfloat16", help="comma-separated engine precisions")
    ap.add_argument("--devices", default=",".join(device_names()), help="comma-separated devices")
    ap.add_argument("--backends", default="torch,onnxruntime", help="torch and/or onnxruntime (CPU, float32)")
    ap.add_argument("--no-naive", dest="naive", action="store_false", help="skip the naive baseline")
    ap.add_argument("--tile", type=int, default=None, help="engine tile size [from free memory]")
    ap.add_argument("--compile", action="store_true", help="torch.compile the network in the engine runs")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per configuration, at most")
    ap.add_argument("--min-seconds", type=float, default=10.0, help="stop repeating once this much is timed")
    ap.add_argument("--peak", default="", help="datasheet peaks for '%% peak', e.g. float32=224e9,bfloat16=448e9")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    args = ap.parse_args()
    args.sizes = sorted((SIZES.get(s, s) for s in args.sizes.split(",")), key=lambda s: np.prod(parse_size(s)))
    args.iterations = [int(i) for i in args.iterations.split(",")]
    args.precisions = args.precisions.split(",")
    args.devices = args.devices.split(",")
    args.backends = args.backends.split(",")
    args.peak = {k: float(v) for k, v in (item.split("=") for item in args.peak.split(",") if item)}
    if "onnxruntime" in args.backends and not all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnxscript")):
        print("onnxruntime or onnxscript not installed: the ONNX Runtime backend is skipped (pip install 'fhdr[onnx]')")
        args.backends.remove("onnxruntime")
    return args


def main() -> None:
    """Print the compute per pixel, the measured peaks, then every configuration beside the naive baseline."""
    args = parse_args()
    ort = importlib.util.find_spec("onnxruntime")
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores, native bfloat16: {cpu_has_bf16()}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f}")
    if ort:
        import onnxruntime

        print(f"onnxruntime {onnxruntime.__version__}")
    for iterations in args.iterations:
        macs, flops = conv_macs_per_pixel(iterations), counted_flops_per_pixel(iterations)
        design = DESIGN_MACS.get(iterations)
        check = "" if design is None else f"; DESIGN §2: {design:,} ({'agrees' if design == macs else 'DIFFERS'})"
        print(f"{iterations} iteration(s): {macs:,} conv MACs/px, torch's counter {flops:,} FLOPs/px{check}")
    dtypes = {("naive" if r == "naive" else r.split(":")[1]) for d in args.devices for r in runs_for(d, args)}
    dtypes = {"float32" if d == "naive" else d for d in dtypes} | {"float32"}
    keys = [(d, t) for d in args.devices for t in sorted(dtypes)]
    peaks = {(d, t): gemm_peak(torch.device(d), getattr(torch, t)) for d, t in keys}
    rows = benchmark(args)
    for (device, dtype), before in list(peaks.items()):
        peaks[device, dtype] = args.peak.get(dtype) or max(
            before, gemm_peak(torch.device(device), getattr(torch, dtype))
        )
        source = "given" if dtype in args.peak else "best GEMM measured before and after the runs"
        print(f"peak {device} {dtype}: {peaks[device, dtype] / 1e9:.0f} GFLOP/s ({source})")
    print()
    for line in table(rows, peaks):
        print(line)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f} (other work on the machine slows every row alike)")
    if args.json:
        args.json.write_text(json.dumps([row.__dict__ for row in rows], indent=1))


if __name__ == "__main__":
    main()
