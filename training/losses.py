"""The paper's loss: L1 on mu-law tone-mapped images, plus an optional VGG19 perceptual term."""

from __future__ import annotations

import math

import torch
from torch import nn

MU = 5000.0


def mu_law(x: torch.Tensor, mu: float = MU) -> torch.Tensor:
    """mu-law tone mapping of an image in [0, 1]."""
    return torch.log1p(mu * x.clamp(min=0.0)) / math.log1p(mu)


class FHDRLoss(nn.Module):
    """L1(mu(out), mu(gt)) + ``vgg_weight`` * perceptual, averaged over every iteration's output."""

    def __init__(self, perceptual: nn.Module | None = None, vgg_weight: float = 10.0) -> None:
        super().__init__()
        self.perceptual = perceptual
        self.vgg_weight = vgg_weight

    def forward(self, outputs: list[torch.Tensor], gt: torch.Tensor) -> torch.Tensor:
        """The loss of a list of iteration outputs against one target."""
        mgt = mu_law(gt)
        total = gt.new_zeros(())
        for out in outputs:
            mout = mu_law(out)
            total = total + nn.functional.l1_loss(mout, mgt)
            if self.perceptual is not None:
                total = total + self.vgg_weight * self.perceptual(mout, mgt)
        return total / len(outputs)
