"""The node's maths in torch: the twin of ``encoding.py`` and ``scale.py`` for tensors (N, C, H, W).

One implementation for everything that runs the node's maths on tensors: the training loss (so it scores exactly
what the node returns), the exports and the Nuke drop-in. Every function is TorchScript-compatible and calls only
operators that old libtorch builds have (``dropin.LIBTORCH_1_6_OPS``); ``tests/test_maths.py`` compares each with
its numpy twin on the same arrays.
"""

from __future__ import annotations

import math

import torch


def decode(y: torch.Tensor, headroom: float, mu: float) -> torch.Tensor:
    """Linear HDR relative to white from the network's [0, 1] output (``encoding.decode``; ``mu`` 0: linear)."""
    if mu > 0.0:
        return torch.expm1(torch.clamp(y, 0.0, 1.0) * math.log1p(mu)) / mu * headroom
    return y * headroom


def encode(hdr_rel: torch.Tensor, headroom: float, mu: float) -> torch.Tensor:
    """The network's [0, 1] encoding of HDR relative to white, the inverse of ``decode`` (``encoding.encode``)."""
    x = torch.clamp(hdr_rel / headroom, 0.0, 1.0)
    if mu > 0.0:
        return torch.log1p(mu * x) / math.log1p(mu)
    return x


def srgb_encode(linear: torch.Tensor) -> torch.Tensor:
    """Linear values to the sRGB encoding the network sees, clipped to [0, 1]."""
    x = torch.clamp(linear, 0.0, 1.0)
    v = torch.clamp(x, 0.0031308, 1.0)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * torch.pow(v, 1.0 / 2.4) - 0.055)


def srgb_decode(display: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values in [0, 1] to linear: the node's linearisation of a display-referred plate."""
    x = torch.clamp(display, 0.0, 1.0)
    v = torch.clamp(x, 0.04045, 1.0)
    return torch.where(x <= 0.04045, x / 12.92, torch.pow((v + 0.055) / 1.055, 2.4))


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """Rec.709 luminance (N, 1, H, W) of linear RGB (N, 3, H, W): ``color.REC709_LUMA``, written out for TorchScript."""
    return 0.2126 * rgb[:, 0:1] + 0.7152 * rgb[:, 1:2] + 0.0722 * rgb[:, 2:3]


def blend_weight(display: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Per-channel weight (N, 3, H, W) of the anchored blend (``scale.blend_weight``): 0 below ``low``, 1 at
    ``high``."""
    t = torch.clamp((display - low) / max(high - low, 1e-6), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def matte(display: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """How much of each pixel came from the network (N, 1, H, W): the largest channel weight (``scale.matte``)."""
    return torch.max(blend_weight(display, low, high), 1, keepdim=True)[0]


def anchored(
    linear: torch.Tensor, display: torch.Tensor, predicted: torch.Tensor, low: float, high: float
) -> torch.Tensor:
    """The linear plate, each channel raised towards the prediction as that channel nears saturation."""
    return linear + blend_weight(display, low, high) * torch.clamp(predicted - linear, min=0.0)


def strengthen(linear: torch.Tensor, expanded: torch.Tensor, strength: float) -> torch.Tensor:
    """The expansion of ``linear`` into ``expanded`` at ``strength``, scaled in log space (``scale.strengthen``)."""
    if strength == 1.0:
        return expanded
    lum_lin = luminance(linear)
    lum_exp = luminance(expanded)
    lifted = lum_exp > lum_lin
    ones = torch.ones_like(lum_lin)
    base = torch.where(lifted, torch.clamp(lum_lin, min=1e-6), ones)
    gain = torch.where(lifted, torch.pow(torch.clamp(lum_exp, min=1e-6) / base, strength), ones)
    span = torch.where(lifted, lum_exp - lum_lin, ones)
    fraction = torch.where(lifted, (base * gain - lum_lin) / span, torch.zeros_like(lum_lin))
    return linear + fraction * (expanded - linear)


def blend(
    linear: torch.Tensor,
    display: torch.Tensor,
    predicted: torch.Tensor,
    mode: str,
    blend_low: float,
    blend_high: float,
    strength: float,
    context: bool = True,
    coarse: bool = True,
) -> torch.Tensor:
    """The node's output for the plate and the network's decoded prediction (``scale.blend``), the fields of
    ``params.BlendParams`` passed by name, less the lift head and the coarser levels: they need the whole frame
    (``lift.LiftHead`` and ``pyramid``, which the node and the Nuke drop-in run on the anchored expansion), so with
    crops, as in the loss, ``context`` and ``coarse`` have nothing to act on and the network is trained for their
    input."""
    if mode == "raw":
        return predicted
    return strengthen(linear, anchored(linear, display, predicted, blend_low, blend_high), strength)


def matte_of(display: torch.Tensor, mode: str, blend_low: float, blend_high: float) -> torch.Tensor:
    """How much of each pixel came from the network (N, 1, H, W) (``scale.matte_of``): 1 in raw mode."""
    if mode == "raw":
        return torch.ones_like(display[:, 0:1])
    return matte(display, blend_low, blend_high)


def finite(x: torch.Tensor) -> torch.Tensor:
    """``x`` with NaN as 0, clamped to [0, 65504] (the largest half float)."""
    return torch.clamp(torch.where(x == x, x, torch.zeros_like(x)), 0.0, 65504.0)
