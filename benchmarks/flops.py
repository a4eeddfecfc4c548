"""The network's compute per pixel, counted from the model, and the device's measured matrix-multiply peak."""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fhdr_plugin.node.model import FHDR

#: DESIGN.md §2: multiply-adds per pixel at 1 and 2 iterations, checked against the counts below.
DESIGN_MACS = {1: 570_752, 2: 1_102_912}


def conv_macs_per_pixel(iterations: int, side: int = 32) -> int:
    """Multiply-adds per output pixel of every convolution, counted with forward hooks on a ``side``² frame."""
    model = FHDR(iterations).eval()
    total = 0

    def count(module: nn.Conv2d, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += output.numel() * (module.in_channels // module.groups) * kh * kw

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.inference_mode():
        model(torch.rand(1, 3, side, side))
    for handle in handles:
        handle.remove()
    return total // (side * side)


def counted_flops_per_pixel(iterations: int, side: int = 32) -> int:
    """FLOPs per pixel as torch's own FLOP counter sees them (2 per multiply-add, convolutions only)."""
    model = FHDR(iterations).eval()
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.rand(1, 3, side, side))
    return counter.get_total_flops() // (side * side)


def gemm_peak(device: torch.device, dtype: torch.dtype, size: int = 2048, seconds: float = 1.5) -> float:
    """The best FLOP/s of a square matrix multiply in ``dtype`` on ``device``: the reference for '% of peak'."""
    a = torch.rand(size, size, device=device).to(dtype)
    b = torch.rand(size, size, device=device).to(dtype)
    best = 0.0
    deadline = time.perf_counter() + seconds
    with torch.inference_mode():
        torch.mm(a, b)
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            torch.mm(a, b)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = max(best, 2 * size**3 / (time.perf_counter() - start))
    return best
