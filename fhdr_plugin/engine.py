"""Running FHDR on a frame of any size: device choice, precision, and tiling with a halo.

Each tile is cut from the frame with a halo as wide as the network's receptive
radius, so the stitched result equals a full-frame pass up to float rounding,
while memory stays bounded by the tile size.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import nullcontext

import numpy as np
import torch

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.model import FHDR, receptive_radius

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
#: Bytes of activation memory per pixel of a float32 tile, measured at 1 iteration (a 1080p frame takes ~6 GB).
BYTES_PER_PIXEL = 3000
MAX_TILE = 1024
MIN_TILE = 64


def select_device(name: str | None = None) -> torch.device:
    """``name`` if given, else CUDA, then MPS, then CPU."""
    if name:
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise FhdrError(f"unknown device {name!r}: {exc}") from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise FhdrError(f"device {name!r} requested but CUDA is not available")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise FhdrError(f"device {name!r} requested but MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The compute dtype for ``precision`` on ``device`` (``auto``: bfloat16 on CUDA, float32 elsewhere)."""
    if precision not in PRECISIONS:
        raise FhdrError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
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


def tiles(height: int, width: int, tile: int, halo: int) -> Iterator[tuple[slice, slice, slice, slice]]:
    """(src_y, src_x, core_y, core_x) slices: the haloed region to run, and the core to keep within it."""
    for y0 in range(0, height, tile):
        y1 = min(y0 + tile, height)
        sy0, sy1 = max(0, y0 - halo), min(height, y1 + halo)
        for x0 in range(0, width, tile):
            x1 = min(x0 + tile, width)
            sx0, sx1 = max(0, x0 - halo), min(width, x1 + halo)
            yield (
                slice(sy0, sy1),
                slice(sx0, sx1),
                slice(y0 - sy0, y1 - sy0),
                slice(x0 - sx0, x1 - sx0),
            )


class Engine:
    """FHDR on one device, with a fixed precision and tile size; call ``run`` on (H, W, 3) arrays in [0, 1]."""

    def __init__(
        self,
        model: FHDR,
        device: str | None = None,
        precision: str = "auto",
        tile: int | None = None,
        channels_last: bool = True,
    ) -> None:
        self.device = select_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.eval().to(self.device, memory_format=self.memory_format)
        self.iterations = model.iterations
        self.halo = receptive_radius(self.iterations)
        if tile is not None and tile < 0:
            raise FhdrError(f"tile size must be 0 (no tiling) or positive, got {tile}")
        self.tile = auto_tile(self.device, self.iterations) if tile is None else tile

    def _autocast(self):
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @torch.inference_mode()
    def _infer(self, ldr: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(ldr.transpose(2, 0, 1)))[None]
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        with self._autocast():
            y = self.model(x)
        return y[0].float().permute(1, 2, 0).cpu().numpy()

    def run(self, ldr: np.ndarray) -> np.ndarray:
        """The network's output (H, W, 3) float32 in [0, 1] for an LDR frame (H, W, 3) in [0, 1]."""
        if ldr.ndim != 3 or ldr.shape[2] != 3:
            raise FhdrError(f"the network takes (H, W, 3) images, got shape {ldr.shape}")
        ldr = np.clip(np.nan_to_num(ldr.astype(np.float32, copy=False)), 0.0, 1.0)
        h, w, _ = ldr.shape
        if h < 2 or w < 2:
            padded = np.pad(ldr, ((0, max(0, 2 - h)), (0, max(0, 2 - w)), (0, 0)), mode="edge")
            return self._infer(padded)[:h, :w]
        if self.tile == 0 or (h <= self.tile and w <= self.tile):
            return self._infer(ldr)
        out = np.empty((h, w, 3), dtype=np.float32)
        for sy, sx, cy, cx in tiles(h, w, self.tile, self.halo):
            out[sy, sx][cy, cx] = self._infer(ldr[sy, sx])[cy, cx]
        return out
