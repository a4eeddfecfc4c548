"""The training loss: the paper's L1 on μ-law, weighted towards the pixels the node takes from the network.

The node's default (anchored) output keeps the linearised input where the plate is well exposed and uses the
network only where the plate's max channel nears saturation (``fhdr_plugin.scale.blend_weight``). The loss
weighs each pixel by ``1 - focus + focus * blend weight``, so the clipped pixels dominate while the rest still
keeps the raw output well-behaved. With a ``mu-law`` output encoding the network's output and target are
μ-law values already and the L1 is taken on them directly.
"""

from __future__ import annotations

import math

import torch
from torch import nn

MU = 5000.0


def mu_law(x: torch.Tensor, mu: float = MU) -> torch.Tensor:
    """mu-law tone mapping of an image in [0, 1]."""
    return torch.log1p(mu * x.clamp(min=0.0)) / math.log1p(mu)


def blend_weight(ldr: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """(N, 1, H, W) weight of the anchored blend for LDR (N, 3, H, W): the torch twin of ``scale.blend_weight``."""
    t = ((ldr.amax(dim=1, keepdim=True) - low) / max(high - low, 1e-6)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class FHDRLoss(nn.Module):
    """Weighted L1 on μ-law values, plus ``vgg_weight`` × perceptual, averaged over every iteration's output."""

    def __init__(
        self,
        perceptual: nn.Module | None = None,
        vgg_weight: float = 10.0,
        encoding: str = "mu-law",
        focus: float = 0.9,
        blend: tuple[float, float] = (0.9, 1.0),
    ) -> None:
        super().__init__()
        self.perceptual = perceptual
        self.vgg_weight = vgg_weight
        self.tone = (lambda x: x) if encoding == "mu-law" else mu_law
        self.focus = focus
        self.blend = blend

    def pixel_weights(self, ldr: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) weights of the L1 term, from the LDR input."""
        return 1.0 - self.focus + self.focus * blend_weight(ldr, *self.blend)

    def forward(self, outputs: list[torch.Tensor], gt: torch.Tensor, ldr: torch.Tensor) -> torch.Tensor:
        """The loss of a list of iteration outputs against one target, for the LDR input they came from."""
        tgt = self.tone(gt)
        weights = self.pixel_weights(ldr)
        total = gt.new_zeros(())
        for out in outputs:
            mout = self.tone(out.float())
            # A plain mean (not normalised by the batch's weights), so that slices of a batch under DDP average to it.
            total = total + ((mout - tgt).abs() * weights).mean()
            if self.perceptual is not None:
                total = total + self.vgg_weight * self.perceptual(mout, tgt)
        return total / len(outputs)
