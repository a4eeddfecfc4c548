"""The training loss: the paper's L1 on μ-law, measured on what the node returns.

The node's default (anchored) output keeps the linearised input where the plate is well exposed and uses the
network only in the channels that near saturation: linear + w · max(predicted − linear, 0), with w the per-channel
blend weight. The loss computes that output with ``fhdr_plugin.node.maths.blend`` (the node's maths in torch) from a
``BlendParams``, the node's own defaults unless told otherwise, with the ramp the node picks for each sample's
plate (a JPEG one's wider: ``BlendParams.for_plate``). Two losses are offered, both L1 on μ-law values of
HDR / headroom:

- ``composite`` (the default): w × L1 of that anchored composite, plus (1 − focus) × L1 of the raw output, which
  keeps the raw mode well-behaved and gives a gradient where the composite has none (a prediction below the
  input). Raising a well-measured near-white pixel costs as much as it does in the node's output.
- ``weighted``: L1 of the raw output with each pixel weighted 1 − focus + focus × w.

With ``over`` > 1 the composite's error above the truth (an over-lift) weighs ``over`` times one below it, so
the network predicts a lower quantile of what a clipped area may hold rather than its median: the fit-lift head's
``--over-weight``, moved into the network.

Both add ``keep`` × L1 between the composite and the linearised plate over the channels the camera measured (below
white in the plate and in the truth) that the blend ramp reaches: the node must return those as the plate, so the
network learns to predict no lift there, and so learns a colour for the clipped channels that fits the kept ones.

With ``frames`` > 1 the batch holds shots of that many consecutive crops (``training.data.HDRCrops.shot``: one
scene, sub-pixel shifts, new noise and JPEG), and ``consistency`` × L1 of the change of the composite's error from
each shot's first frame to its others, over the blended channels, asks for a reconstruction that stays put where
the truth does (the flicker of ``benchmarks/temporal.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from fhdr_plugin.node import maths
from fhdr_plugin.node.encoding import MU
from fhdr_plugin.params import BlendParams

LOSSES = ("composite", "weighted")


class FHDRLoss(nn.Module):
    """The ``kind`` loss (see the module), plus ``vgg_weight`` × perceptual, averaged over the iterations' outputs.

    ``encoding`` and ``headroom`` say how the network's output and the target encode HDR relative to white
    (``fhdr_plugin.node.encoding``).
    """

    def __init__(
        self,
        perceptual: nn.Module | None = None,
        vgg_weight: float = 10.0,
        encoding: str = "mu-law",
        headroom: float = 256.0,
        focus: float = 0.9,
        blend: BlendParams | None = None,
        kind: str = "composite",
        keep: float = 0.0,
        consistency: float = 0.0,
        frames: int = 1,
        over: float = 1.0,
    ) -> None:
        super().__init__()
        if kind not in LOSSES:
            raise ValueError(f"unknown loss {kind!r}; known: {', '.join(LOSSES)}")
        self.perceptual = perceptual
        self.vgg_weight = vgg_weight
        self.encoding = encoding
        self.headroom = headroom
        self.focus = focus
        self.blend = blend or BlendParams()
        self.kind = kind
        self.keep = keep
        self.consistency = consistency
        self.frames = frames
        self.over = over

    def tone(self, x: torch.Tensor) -> torch.Tensor:
        """μ-law values of a network output or target."""
        return x if self.encoding == "mu-law" else maths.encode(x, 1.0, MU)

    def per_plate(self, make: Callable[[BlendParams], torch.Tensor], lossy: torch.Tensor | None = None) -> torch.Tensor:
        """``make(blend)`` with the blend the node uses for each sample's plate (``BlendParams.for_plate``): a
        lossy one's where ``lossy`` (N,) is true, a lossless one's elsewhere."""
        lossless, coded = self.blend.for_plate(lossy=False), self.blend.for_plate(lossy=True)
        if lossy is None or coded == lossless or not bool(lossy.any()):
            return make(lossless)
        return torch.where(lossy.view(-1, 1, 1, 1), make(coded), make(lossless))

    def composite(self, out: torch.Tensor, ldr: torch.Tensor, lossy: torch.Tensor | None = None) -> torch.Tensor:
        """μ-law values of the node's output for network output ``out`` (``maths.blend`` with ``self.blend``)."""
        predicted = maths.decode(out, self.headroom, MU if self.encoding == "mu-law" else 0.0)
        linear = maths.srgb_decode(ldr)
        node = self.per_plate(lambda b: maths.blend(linear, ldr, predicted, **vars(b)), lossy)
        return maths.encode(node, self.headroom, MU)

    def measured(self, gt: torch.Tensor, ldr: torch.Tensor) -> torch.Tensor:
        """1 for the channels the camera measured (below white in the plate and in the truth), 0 elsewhere."""
        truth = maths.decode(gt, self.headroom, MU) if self.encoding == "mu-law" else gt * self.headroom
        return ((ldr < 1.0 - 0.5 / 255.0) & (truth < 1.0)).to(gt.dtype)

    def steady(self, node: torch.Tensor, tgt: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """L1 of the change of the composite's error from each shot's first frame, over the blended channels."""
        n, c, h, w = node.shape
        err = (node - tgt).reshape(n // self.frames, self.frames, c, h, w)
        blended = weight.reshape(err.shape).amax(dim=1, keepdim=True)
        return (blended * (err[:, 1:] - err[:, :1]).abs()).sum() / (n * c * h * w)

    def term(
        self,
        out: torch.Tensor,
        tgt: torch.Tensor,
        ldr: torch.Tensor,
        weight: torch.Tensor,
        kept: torch.Tensor,
        lossy: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The L1 part for one output (plain means, so that slices of a batch under DDP average to it)."""
        raw = (self.tone(out) - tgt).abs()
        composite = self.kind == "composite" or self.keep or self.consistency
        node = self.composite(out, ldr, lossy) if composite else raw
        if self.kind == "weighted":
            l1 = (raw * (1.0 - self.focus + self.focus * weight)).mean()
        else:
            err = node - tgt
            l1 = (weight * torch.where(err > 0, self.over * err, -err)).mean() + (1.0 - self.focus) * raw.mean()
        if self.keep:
            plate = maths.encode(maths.srgb_decode(ldr), self.headroom, MU)
            l1 = l1 + self.keep * (kept * (node - plate).abs()).mean()
        if self.consistency and self.frames > 1:
            l1 = l1 + self.consistency * self.steady(node, tgt, weight)
        return l1

    def forward(
        self, outputs: list[torch.Tensor], gt: torch.Tensor, ldr: torch.Tensor, lossy: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The loss of a list of iteration outputs against one target, for the LDR input they came from;
        ``lossy`` (N,): which samples' plates were stored lossily (JPEG), whose blend the node widens."""
        tgt = self.tone(gt)
        weight = self.per_plate(lambda b: maths.blend_weight(ldr, b.blend_low, b.blend_high), lossy)
        kept = self.measured(gt, ldr) * (weight > 0).to(gt.dtype)
        total = gt.new_zeros(())
        for out in outputs:
            out = out.float()
            total = total + self.term(out, tgt, ldr, weight, kept, lossy)
            if self.perceptual is not None:
                total = total + self.vgg_weight * self.perceptual(self.tone(out), tgt)
        return total / len(outputs)
