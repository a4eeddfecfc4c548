"""The training loss: the paper's L1 on μ-law, measured on what the node returns.

The node's default (anchored) output keeps the linearised input where the plate is well exposed and uses the
network only where the plate's max channel nears saturation: linear + w · max(predicted − linear, 0), with w the
blend weight (``fhdr_plugin.scale``). Two losses are offered, both L1 on μ-law values of HDR / headroom:

- ``composite`` (the default): w × L1 of that anchored composite, plus (1 − focus) × L1 of the raw output, which
  keeps the raw mode well-behaved and gives a gradient where the composite has none (a prediction below the
  input). Raising a well-measured near-white pixel costs as much as it does in the node's output.
- ``weighted``: L1 of the raw output with each pixel weighted 1 − focus + focus × w.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fhdr_plugin.encoding import MU

LOSSES = ("composite", "weighted")


def mu_law(x: torch.Tensor, mu: float = MU) -> torch.Tensor:
    """mu-law tone mapping of an image in [0, 1]."""
    return torch.log1p(mu * x.clamp(min=0.0, max=1.0)) / math.log1p(mu)


def srgb_decode(encoded: torch.Tensor) -> torch.Tensor:
    """sRGB values in [0, 1] to linear: the node's linearisation of its display-referred input."""
    x = encoded.clamp(0.0, 1.0)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def blend_weight(ldr: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """(N, 1, H, W) weight of the anchored blend for LDR (N, 3, H, W): the torch twin of ``scale.blend_weight``."""
    t = ((ldr.amax(dim=1, keepdim=True) - low) / max(high - low, 1e-6)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class FHDRLoss(nn.Module):
    """The ``kind`` loss (see the module), plus ``vgg_weight`` × perceptual, averaged over the iterations' outputs.

    ``encoding`` and ``headroom`` say how the network's output and the target encode HDR relative to white
    (``fhdr_plugin.encoding``).
    """

    def __init__(
        self,
        perceptual: nn.Module | None = None,
        vgg_weight: float = 10.0,
        encoding: str = "mu-law",
        headroom: float = 256.0,
        focus: float = 0.9,
        blend: tuple[float, float] = (0.9, 1.0),
        kind: str = "composite",
    ) -> None:
        super().__init__()
        if kind not in LOSSES:
            raise ValueError(f"unknown loss {kind!r}; known: {', '.join(LOSSES)}")
        self.perceptual = perceptual
        self.vgg_weight = vgg_weight
        self.encoding = encoding
        self.headroom = headroom
        self.focus = focus
        self.blend = blend
        self.kind = kind

    def tone(self, x: torch.Tensor) -> torch.Tensor:
        """μ-law values of a network output or target."""
        return x if self.encoding == "mu-law" else mu_law(x)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        """Linear HDR relative to white of a network output (``encoding.decode`` in torch)."""
        if self.encoding == "mu-law":
            return torch.expm1(x * math.log1p(MU)) / MU * self.headroom
        return x * self.headroom

    def composite(self, out: torch.Tensor, ldr: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """μ-law values of the node's anchored output for network output ``out``."""
        lin = srgb_decode(ldr)
        return mu_law((lin + weight * torch.relu(self.linear(out) - lin)) / self.headroom)

    def term(self, out: torch.Tensor, tgt: torch.Tensor, ldr: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The L1 part for one output (plain means, so that slices of a batch under DDP average to it)."""
        raw = (self.tone(out) - tgt).abs()
        if self.kind == "weighted":
            return (raw * (1.0 - self.focus + self.focus * weight)).mean()
        return (weight * (self.composite(out, ldr, weight) - tgt).abs()).mean() + (1.0 - self.focus) * raw.mean()

    def forward(self, outputs: list[torch.Tensor], gt: torch.Tensor, ldr: torch.Tensor) -> torch.Tensor:
        """The loss of a list of iteration outputs against one target, for the LDR input they came from."""
        tgt = self.tone(gt)
        weight = blend_weight(ldr, *self.blend)
        total = gt.new_zeros(())
        for out in outputs:
            out = out.float()
            total = total + self.term(out, tgt, ldr, weight)
            if self.perceptual is not None:
                total = total + self.vgg_weight * self.perceptual(self.tone(out), tgt)
        return total / len(outputs)
