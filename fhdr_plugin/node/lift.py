"""The lift head (beyond the paper): how much brighter a highlight is, from the frame's context.

FHDR sees 29 px around a pixel (54 at 2 iterations): deep inside a window, a lamp or the sun it sees flat white
and expands it like the rim. The head looks at the whole frame after the network: per pixel, the anchored
expansion's log lift, how much of the neighbourhood is clipped at radii of 2 to 64 px (the size of the clipped
area and the depth into it), the plate's brightness around it, and the lift the network gave the neighbourhood.
A small per-pixel MLP (1x1 convolutions) maps these to a log gain of the clipped channels. It is fitted on whole
frames of the training images against their truth (``training/lift.py``) and ships inside the model's weights
file (tensors ``lift.*``). Every feature is a box mean over the whole frame, so the node computes it once per
frame, after the tiled network, and the result does not depend on the tiling. TorchScript-compatible, and only
operators that libtorch 1.6 has, for the Nuke drop-in.
"""

import math

import torch
from torch import nn

from fhdr_plugin.node import maths
from fhdr_plugin.node.scale import WHITE

#: Radii (px) of the clipped-area densities, and of the plate's and the lift's neighbourhood means.
DENSITY_RADII = (2, 4, 8, 16, 32, 64)
SURROUND_RADII = (4, 16, 64)
FEATURES = 2 + len(DENSITY_RADII) + 2 * len(SURROUND_RADII)
HIDDEN = 16
#: Prefix of the head's tensors in a weights file.
PREFIX = "lift."


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean of ``x`` (N, C, H, W) over a (2r+1)² box around each pixel, the frame's edges replicated: four
    look-ups of the summed-area table, the same cost at any radius. The table is float64, so the differences of
    its large sums stay exact to float32; on Apple's MPS, which has no float64, it is summed on the CPU."""
    k = 2 * radius + 1
    padded = torch.ops.aten.replication_pad2d(x, [radius, radius, radius, radius])
    wide = padded.cpu().double() if x.device.type == "mps" else padded.double()
    table = torch.ops.aten.constant_pad_nd(wide, [1, 0, 1, 0], 0.0).cumsum(3).cumsum(2)
    h = table.shape[2] - k
    w = table.shape[3] - k
    total = table[:, :, k:, k:] - table[:, :, :h, k:] - table[:, :, k:, :w] + table[:, :, :h, :w]
    return (total / (k * k)).to(x.device, x.dtype)


def log_lift(linear: torch.Tensor, expanded: torch.Tensor) -> torch.Tensor:
    """log(luminance of ``expanded`` / luminance of ``linear``) per pixel (N, 1, H, W), 0 where not lifted."""
    plate = torch.clamp(maths.luminance(linear), min=1e-6)
    return torch.clamp(torch.log(torch.clamp(maths.luminance(expanded), min=1e-6) / plate), min=0.0)


def features(
    display: torch.Tensor,
    linear: torch.Tensor,
    expanded: torch.Tensor,
    low: float,
    high: float,
    density_radii: list[int],
    surround_radii: list[int],
) -> torch.Tensor:
    """The head's input (N, F, H, W) for a whole frame: the lift, the matte, the clipped densities at
    ``density_radii``, and the plate's display luminance and the lift around each pixel at ``surround_radii``."""
    ell = log_lift(linear, expanded)
    matte = maths.matte(display, low, high)
    bright = maths.luminance(display)
    out = [ell, matte]
    for r in density_radii:
        out.append(box_mean(matte, r))
    for r in surround_radii:
        out.append(box_mean(bright, r))
        out.append(box_mean(ell, r))
    return torch.cat(out, 1)


class Pointwise(nn.Module):
    """A 1x1 convolution (initialised as ``nn.Conv2d``'s, with its tensor names) computed in the dtype of its
    input whatever its own, so a host that casts the module to half still gets the head in float32."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cout, cin, 1, 1))
        self.bias = nn.Parameter(torch.empty(cout))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        nn.init.uniform_(self.bias, -1.0 / math.sqrt(cin), 1.0 / math.sqrt(cin))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype))


class LiftHead(nn.Module):
    """A per-pixel MLP from ``features`` to the log gain of the clipped channels (``FEATURES`` → 16 → 16 → 1)."""

    density_radii: list[int]
    surround_radii: list[int]
    white: float

    def __init__(self) -> None:
        super().__init__()
        self.density_radii = list(DENSITY_RADII)
        self.surround_radii = list(SURROUND_RADII)
        self.white = WHITE
        self.fc1 = Pointwise(FEATURES, HIDDEN)
        self.fc2 = Pointwise(HIDDEN, HIDDEN)
        self.out = Pointwise(HIDDEN, 1)
        nn.init.zeros_(self.out.weight)  # starts as no change
        nn.init.zeros_(self.out.bias)

    def features(
        self, display: torch.Tensor, linear: torch.Tensor, expanded: torch.Tensor, low: float, high: float
    ) -> torch.Tensor:
        """The head's input (N, ``FEATURES``, H, W) for a whole frame (``features`` at the head's radii)."""
        return features(display, linear, expanded, low, high, self.density_radii, self.surround_radii)

    def gain(self, feats: torch.Tensor) -> torch.Tensor:
        """The log gain (N, 1, H, W) of each pixel's features."""
        return self.out(torch.relu(self.fc2(torch.relu(self.fc1(feats)))))

    def apply(
        self,
        display: torch.Tensor,
        linear: torch.Tensor,
        expanded: torch.Tensor,
        gain: torch.Tensor,
        low: float,
        high: float,
    ) -> torch.Tensor:
        """``expanded`` with each channel raised by ``gain`` as far as that channel is blended, never darker than
        the plate: a channel the plate did not clip stays the measured value, and so does one above white (an
        input that is already HDR measured it)."""
        ldr = torch.where(linear <= self.white, torch.ones_like(linear), torch.zeros_like(linear))
        weight = maths.blend_weight(display, low, high) * ldr
        return torch.max(expanded * torch.exp(gain * weight), linear)

    def forward(
        self, display: torch.Tensor, linear: torch.Tensor, expanded: torch.Tensor, low: float, high: float
    ) -> torch.Tensor:
        """The anchored expansion ``expanded`` of a whole frame (N, 3, H, W), lifted from the frame's context."""
        feats = self.features(display, linear, expanded, low, high)
        return self.apply(display, linear, expanded, self.gain(feats), low, high)
