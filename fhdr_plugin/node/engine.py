"""Running FHDR on a frame of any size: device choice, precision, and tiling with a halo.

Each tile is cut from the frame with a halo as wide as the network's receptive
radius, so the stitched result equals a full-frame pass up to float rounding,
while memory stays bounded by the tile size. Every haloed window of a frame has
the same size, so several run as one batch (on CUDA: from pinned host memory,
with non-blocking copies, the next batch queued before the last one is stitched).
A caller that uses the network's output only at some pixels (the anchored blend:
where a channel nears saturation) says which, and only the tiles that hold one
run, at the tile size that runs the fewest pixels.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext

import numpy as np
import torch

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.manifest import manifest
from fhdr_plugin.node import heap
from fhdr_plugin.node.model import CONTEXT_FACTOR, FHDR, FHDRContext, receptive_radius
from fhdr_plugin.node.weights import load_model
from fhdr_plugin.params import AUTO_TILE, PRECISIONS, EngineParams, check_choice, check_tile

log = logging.getLogger("fhdr")

BACKENDS = ("torch", "onnxruntime")
#: Seconds between progress lines while one frame's tiles run (a long single-image convert is not silent).
PROGRESS_EVERY = 10.0
#: Bytes of activation memory per pixel of a float32 tile, measured at 1 iteration (a 1080p frame takes ~6 GB).
BYTES_PER_PIXEL = 3000
MAX_TILE = 1024
MIN_TILE = 64
#: The most haloed tiles run in one batch (CUDA; the CPU gains nothing from batching and runs one at a time).
MAX_BATCH = 8
#: Smaller tile sizes tried when only some pixels are needed, and what each window costs beyond its pixels (in
#: pixels: the launch and the stitching), so that tiny tiles win only when they save real work.
SPARSE_TILES = (128, 256, 512)
WINDOW_COST = 128 * 128
#: Rows per band of the lift head's per-pixel pass.
LIFT_ROWS = 256
#: CPU flags of native bfloat16 dot products, where bfloat16 autocast pays on the CPU.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """An (H, W, C) array as a (1, C, H, W) float32 tensor on the CPU."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))[None]


def to_image(tensor: torch.Tensor) -> np.ndarray:
    """A (1, C, H, W) tensor as an (H, W, C) float32 array."""
    return tensor[0].permute(1, 2, 0).cpu().numpy().astype(np.float32, copy=False)


def select_device(name: str | None = None) -> torch.device:
    """``name`` if given, else CUDA, then MPS, then CPU."""
    if name:
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise FhdrError(f"unknown device {name!r}: {exc}") from exc
        if device.type not in ("cuda", "mps", "cpu"):
            raise FhdrError(f"device {name!r}: fhdr runs on cuda, mps or cpu")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise FhdrError(f"device {name!r} requested but CUDA is not available")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise FhdrError(f"device {name!r} requested but this machine has {count} CUDA device(s)")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise FhdrError(f"device {name!r} requested but MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bfloat16 dot products (AVX512-BF16 or AMX-BF16; Linux's /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The compute dtype for ``precision`` on ``device``.

    ``auto``: bfloat16 on CUDA and on CPUs with native bfloat16 (measured: 60 dB mu-PSNR against float32 on the
    sample, see benchmarks/README.md), float32 elsewhere.
    """
    check_choice("precision", precision, PRECISIONS)
    if precision == "auto":
        fast_bf16 = device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())
        return torch.bfloat16 if fast_bf16 else torch.float32
    return getattr(torch, precision)


def available_memory(device: torch.device) -> int:
    """Free memory in bytes on ``device`` (host memory for the CPU and MPS)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def auto_tile(device: torch.device, iterations: int, budget_fraction: float = 0.25) -> int:
    """The largest tile (a multiple of 64, at most MAX_TILE) whose haloed pass fits a share of free memory."""
    budget = available_memory(device) * budget_fraction
    side = int(math.sqrt(budget / (BYTES_PER_PIXEL * (1 + 0.5 * (iterations - 1))))) - 2 * receptive_radius(iterations)
    return max(MIN_TILE, min(MAX_TILE, side // 64 * 64))


def auto_batch(device: torch.device, iterations: int, window_pixels: int, dtype: torch.dtype) -> int:
    """Haloed windows per batch: 1 off CUDA; on CUDA as many as fit half the free memory (at most MAX_BATCH)."""
    if device.type != "cuda":
        return 1
    per_window = window_pixels * BYTES_PER_PIXEL * (1 + 0.5 * (iterations - 1)) * (0.5 if dtype != torch.float32 else 1)
    return max(1, min(MAX_BATCH, int(available_memory(device) * 0.5 // per_window)))


def _spans(length: int, tile: int, halo: int, uniform: bool) -> Iterator[tuple[slice, slice]]:
    """(window, core within the window) along one axis: equal cores of at most ``tile`` pixels cover ``length``,
    each window adds ``halo`` pixels of context or stops at the frame's edge. ``uniform``: every window has the
    same size, shifted inward at the frame's edges, so that windows can be batched."""
    core = math.ceil(length / math.ceil(length / tile))
    window = min(length, core + 2 * halo)
    for start in range(0, length, core):
        stop = min(start + core, length)
        if uniform:
            src = min(max(0, start - halo), length - window)
            end = src + window
        else:
            src, end = max(0, start - halo), min(length, stop + halo)
        yield slice(src, end), slice(start - src, stop - src)


def tiles(
    height: int, width: int, tile: int, halo: int, uniform: bool = False
) -> Iterator[tuple[slice, slice, slice, slice]]:
    """(src_y, src_x, core_y, core_x) slices: the haloed region to run, and the core to keep within it; the
    cores cover the frame exactly once. ``uniform``: every haloed region has the same size (for batching)."""
    for sy, cy in _spans(height, tile, halo, uniform):
        for sx, cx in _spans(width, tile, halo, uniform):
            yield sy, sx, cy, cx


class Engine:
    """FHDR on one device, with a fixed precision and tile size; call ``run`` on (H, W, 3) arrays in [0, 1].

    ``tile``: pixels per tile, 0 for none, ``AUTO_TILE`` from free memory. ``batch``: haloed tiles per batch
    (None: from free memory on CUDA, 1 elsewhere). ``compile``: run the network through ``torch.compile`` (pays
    on CUDA for long sequences; the first frame of each window size compiles). ``backend="onnxruntime"``: float32
    on the CPU through ONNX Runtime (needs the ``onnx`` extra).
    """

    def __init__(
        self,
        model: FHDR,
        device: str | None = None,
        precision: str = "auto",
        tile: int = AUTO_TILE,
        channels_last: bool = True,
        batch: int | None = None,
        compile: bool = False,
        backend: str = "torch",
    ) -> None:
        check_choice("backend", backend, BACKENDS)
        self.device = select_device(device)
        self.backend = backend
        if backend == "onnxruntime":
            if self.device.type != "cpu" or precision not in ("auto", "float32"):
                raise FhdrError("the onnxruntime backend runs float32 on the CPU only")
            precision = "float32"
        self.dtype = resolve_precision(precision, self.device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.eval().to(self.device, memory_format=self.memory_format)
        self.iterations = model.iterations
        self.halo = receptive_radius(self.iterations)
        check_tile(tile)
        if batch is not None and batch < 1:
            raise FhdrError(f"batch must be at least 1, got {batch}")
        self.tile = auto_tile(self.device, self.iterations) if tile == AUTO_TILE else tile
        window = ((self.tile or MAX_TILE) + 2 * self.halo) ** 2
        self.context = isinstance(model, FHDRContext)
        if self.context and backend != "torch":
            raise FhdrError(f"the {backend} backend runs the paper's FHDR only, not {model.architecture}")
        # A context model's windows take windows of the frame's coarse pass, whose sizes differ: one at a time.
        self.batch = 1 if self.context else batch or auto_batch(self.device, self.iterations, window, self.dtype)
        self.pinned = self.device.type == "cuda"
        if self.device.type == "cpu":
            heap.keep_freed_blocks()
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.forward = torch.compile(self.model, dynamic=False) if compile else self.model
        self.session = _onnx_session(self.model) if backend == "onnxruntime" else None

    def _autocast(self):
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @torch.inference_mode()
    def _coarse(self, ldr: np.ndarray) -> torch.Tensor | None:
        """The context pass of the whole frame (a context model only), computed once and cut per window."""
        if not self.context:
            return None
        with self._autocast():
            return self.model.context.coarse(self._on_device(ldr))

    def _on_device(self, image: np.ndarray) -> torch.Tensor:
        """An (H, W, C) frame as a (1, C, H, W) tensor on the engine's device."""
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].to(self.device)

    @staticmethod
    def _coarse_window(coarse: torch.Tensor, wy: slice, wx: slice) -> tuple[torch.Tensor, list[int]]:
        """The part of the frame's coarse pass that window (wy, wx) needs (one coarse pixel more on each side, for
        the bilinear upsampling), and the window's offset into it."""
        f = CONTEXT_FACTOR
        y0, x0 = max(0, wy.start // f - 1), max(0, wx.start // f - 1)
        y1, x1 = min(coarse.shape[2], -(-wy.stop // f) + 1), min(coarse.shape[3], -(-wx.stop // f) + 1)
        return coarse[:, :, y0:y1, x0:x1], [wy.start - f * y0, wx.start - f * x0]

    @torch.inference_mode()
    def _launch(
        self, ldr: np.ndarray, windows: list[tuple[slice, slice]], coarse: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.cuda.Event | None]:
        """Queue one batch of windows (host NHWC in, host NHWC out); returns the output and an event to wait on.
        ``coarse``: a context model's pass over the whole frame."""
        sy, sx = windows[0]
        shape = (len(windows), sy.stop - sy.start, sx.stop - sx.start, 3)
        host = torch.empty(shape, dtype=torch.float32, pin_memory=self.pinned)
        staged = host.numpy()
        for i, (wy, wx) in enumerate(windows):
            staged[i] = ldr[wy, wx]
        if self.session is not None:
            nchw = np.ascontiguousarray(staged.transpose(0, 3, 1, 2))
            return torch.from_numpy(self.session.run(None, {"ldr": nchw})[0]).permute(0, 2, 3, 1), None
        # An NHWC array seen as NCHW is channels-last already.
        x = host.to(self.device, non_blocking=self.pinned).permute(0, 3, 1, 2)
        x = x.contiguous(memory_format=self.memory_format)
        with self._autocast():
            if coarse is None:
                y = self.forward(x)
            else:
                y = self.model.forward_all(x, *self._coarse_window(coarse, *windows[0]), last_only=True)[-1]
            y = y.float().permute(0, 2, 3, 1)
        if not self.pinned:
            return y, None
        out = torch.empty(y.shape, dtype=torch.float32, pin_memory=True)
        out.copy_(y, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        return out, event

    @staticmethod
    def _collect(launched: tuple[torch.Tensor, torch.cuda.Event | None]) -> np.ndarray:
        out, event = launched
        if event is not None:
            event.synchronize()
        return out.numpy()

    def jobs(self, height: int, width: int, needed: np.ndarray | None = None) -> list:
        """The haloed tiles (``tiles``) that ``run`` runs: every one at this engine's tile size, or, with
        ``needed`` (H, W) bool, those whose core holds a needed pixel, at the tile size (this engine's or a smaller
        one of ``SPARSE_TILES``) that runs the fewest pixels."""
        size = self.tile or max(height, width)
        uniform = self.batch > 1
        if needed is None:
            return list(tiles(height, width, size, self.halo, uniform))
        best: tuple[int, list] | None = None
        for t in sorted({size, *(s for s in SPARSE_TILES if s < size)}, reverse=True):
            jobs = [j for j in tiles(height, width, t, self.halo, uniform) if needed[j[0], j[1]][j[2], j[3]].any()]
            cost = sum((sy.stop - sy.start) * (sx.stop - sx.start) + WINDOW_COST for sy, sx, _, _ in jobs)
            if best is None or cost < best[0]:
                best = (cost, jobs)
        return best[1]

    def run(self, ldr: np.ndarray, needed: np.ndarray | None = None) -> np.ndarray:
        """The network's output (H, W, 3) float32 in [0, 1] for an LDR frame (H, W, 3) in [0, 1]. ``needed`` (H, W)
        bool: the pixels the caller uses; the tiles without one do not run, and the output is 0 there."""
        if ldr.ndim != 3 or ldr.shape[2] != 3:
            raise FhdrError(f"the network takes (H, W, 3) images, got shape {ldr.shape}")
        ldr = np.clip(np.nan_to_num(ldr.astype(np.float32, copy=False)), 0.0, 1.0)
        h, w, _ = ldr.shape
        if needed is not None and needed.shape != (h, w):
            raise FhdrError(f"the needed pixels' mask has shape {needed.shape}, the frame {(h, w)}")
        if h < 2 or w < 2:
            padded = np.pad(ldr, ((0, max(0, 2 - h)), (0, max(0, 2 - w)), (0, 0)), mode="edge")
            return self.run(padded)[:h, :w]
        jobs = self.jobs(h, w, needed)
        out = np.zeros((h, w, 3), dtype=np.float32)
        if not jobs:
            return out
        coarse = self._coarse(ldr)
        pending = None
        start = last = time.monotonic()
        for i in range(0, len(jobs), self.batch):
            chunk = jobs[i : i + self.batch]
            launched = self._launch(ldr, [(sy, sx) for sy, sx, _, _ in chunk], coarse)
            if pending is not None:
                self._stitch(out, *pending)
            pending = (chunk, launched)
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY:
                last = now
                left = (now - start) / (i + len(chunk)) * (len(jobs) - i - len(chunk))
                log.info("%dx%d: %d of %d tiles, about %.0f s left", w, h, i + len(chunk), len(jobs), left)
        self._stitch(out, *pending)
        return out

    def _stitch(self, out: np.ndarray, chunk: list, launched: tuple[torch.Tensor, torch.cuda.Event | None]) -> None:
        result = self._collect(launched)
        for (sy, sx, cy, cx), tile_out in zip(chunk, result, strict=True):
            out[sy, sx][cy, cx] = tile_out[cy, cx]

    @property
    def lift(self) -> Callable[[np.ndarray, np.ndarray, np.ndarray, float, float], np.ndarray] | None:
        """The model's lift head on whole (H, W, 3) frames, as ``scale.blend`` calls it; None when it has none."""
        return self._lift if self.model.lift is not None else None

    @torch.inference_mode()
    def _lift(
        self, display: np.ndarray, linear: np.ndarray, expanded: np.ndarray, low: float, high: float
    ) -> np.ndarray:
        """The anchored expansion of a whole frame lifted by the model's lift head, in float32; the per-pixel part
        runs on bands of ``LIFT_ROWS`` rows, so its memory stays bounded on large frames."""
        head = self.model.lift
        d, li, e = (self._on_device(a) for a in (display, linear, expanded))
        feats = head.features(d, li, e, low, high)
        gain = torch.cat([head.gain(feats[:, :, i : i + LIFT_ROWS]) for i in range(0, feats.shape[2], LIFT_ROWS)], 2)
        return head.apply(d, li, e, gain, low, high)[0].permute(1, 2, 0).cpu().numpy()

    def describe(self) -> dict[str, str]:
        """The device, compute dtype and tile size this engine runs with."""
        return {"device": str(self.device), "dtype": str(self.dtype).removeprefix("torch."), "tile": str(self.tile)}


@functools.lru_cache(maxsize=4)
def engine_for(params: EngineParams) -> tuple[Engine, dict[str, str]]:
    """The engine (and its weights' metadata) of ``params``, loaded once per process for each combination."""
    net, meta = load_model(manifest().model(params.weights.model or None), params.weights.iterations or None)
    return Engine(net, params.device or None, params.precision, params.tile), meta


def describe_engine(params: EngineParams) -> dict[str, str]:
    """Load the engine of ``params`` (once per process) and say which model, device, dtype and tile it runs."""
    engine, meta = engine_for(params)
    return {"model": meta["fhdr:model"], **engine.describe()}


def _onnx_session(model: FHDR):
    """An ONNX Runtime CPU session of ``model``'s raw output, using as many threads as torch."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise FhdrError("the onnxruntime backend needs the onnx extra: pip install 'fhdr[onnx]'") from exc
    from fhdr_plugin.exports.export import onnx_bytes

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(onnx_bytes(model, 1.0), options, providers=["CPUExecutionProvider"])
