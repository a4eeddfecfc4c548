"""Large highlights seen whole: the frame at half, quarter, ... resolution (beyond the paper).

The network sees ``receptive_radius`` pixels around a pixel and the lift head 64; on a 2K or 4K plate the inside
of a window or a flame lies further from its edge than that, where both see flat white. So while a level of the
plate holds a clipped area deeper than the network sees (``weight``), the node also expands the plate at half
that resolution (box-averaged in linear light), computed as at full resolution, and a level is raised deep
inside its clipped areas towards the coarser level's log lift where that is higher (``refine``): the coarser
level sees the whole area and its surroundings. Near the areas' edges a level keeps its own, which sees the
details the coarser level averaged away. A plate whose clipped areas are all shallower is left exactly as the
single pass gives it. These functions are the node's and the Nuke drop-in's one implementation:
TorchScript-compatible, with only operators that libtorch 1.6 has.
"""

import torch

from fhdr_plugin.node import maths
from fhdr_plugin.node.lift import box_mean, log_lift
from fhdr_plugin.node.scale import WHITE

#: The share of a pixel's neighbourhood (within its network's receptive radius) that is clipped where the coarser
#: level starts to count (at the straight edge of a large area about half of it is), and where it has taken over;
#: chosen on the training scenes' views enlarged 2.5 times (training/README.md, "The coarser levels").
DEEP_START = 0.3
DEEP_FULL = 0.8
#: The smallest side a coarser level may have, in pixels.
MIN_SIDE = 96


def halve(x: torch.Tensor) -> torch.Tensor:
    """``x`` (N, C, H, W) at half resolution, each pixel the mean of a 2x2 block; a block cut by an odd last row
    or column is the mean of the pixels it has."""
    return torch.nn.functional.avg_pool2d(x, [2, 2], [2, 2], [0, 0], True)


def double(x: torch.Tensor) -> torch.Tensor:
    """``x`` (N, C, H, W) at twice its resolution, bilinearly, the edges replicated: what
    ``interpolate(scale_factor=2, mode="bilinear", align_corners=False)`` gives, written with operators libtorch
    1.6 has (each new pixel is 3/4 of its source pixel and 1/4 of the next one towards it)."""
    n, c, h, w = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    p = torch.ops.aten.replication_pad2d(x, [1, 1, 1, 1])
    centre = 0.75 * p[:, :, 1:-1]
    rows = torch.stack([centre + 0.25 * p[:, :, :-2], centre + 0.25 * p[:, :, 2:]], 3).reshape(n, c, 2 * h, w + 2)
    middle = 0.75 * rows[:, :, :, 1:-1]
    cols = [middle + 0.25 * rows[:, :, :, :-2], middle + 0.25 * rows[:, :, :, 2:]]
    return torch.stack(cols, 4).reshape(n, c, 2 * h, 2 * w)


def coarser(display: torch.Tensor, linear: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The plate (display-referred and linear) at half resolution, averaged in linear light as a sensor with
    half as many pixels would see it: an area stays clipped where all four pixels were."""
    return maths.srgb_encode(halve(maths.srgb_decode(display))), halve(linear)


def weight(
    display: torch.Tensor, low: float, high: float, radius: int, start: float = DEEP_START, full: float = DEEP_FULL
) -> torch.Tensor:
    """How far each pixel (N, 1, H, W) takes the coarser level's lift: 0 where less than ``start`` of the
    (2 ``radius`` + 1)² box around it is clipped (the anchored blend's matte), rising smoothly to 1 where ``full``
    is."""
    clipped = box_mean(maths.matte(display, low, high), radius)
    t = torch.clamp((clipped - start) / (full - start), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def deeper(weight: torch.Tensor, min_side: int = MIN_SIDE) -> bool:
    """Whether a level with this ``weight`` needs a coarser one: some clipped area lies deeper than it sees, and
    half of the level is at least ``min_side`` pixels on each side."""
    return bool(weight.max() > 0.0) and 2 * min_side <= min(weight.shape[2], weight.shape[3])


def refine(
    display: torch.Tensor,
    linear: torch.Tensor,
    expanded: torch.Tensor,
    weight: torch.Tensor,
    coarse_linear: torch.Tensor,
    coarse_expanded: torch.Tensor,
    low: float,
    high: float,
    white: float = WHITE,
) -> torch.Tensor:
    """The expansion ``expanded`` of a level raised, by ``weight``, towards the next coarser level's log lift
    (upsampled bilinearly) where that is higher, on the channels the anchored blend reconstructs: a channel the
    plate did not clip, or one above white, stays the measured value. Where the coarser level sees less lift, the
    level keeps its own (at the training views' scale a coarser level sees an area smaller than the network was
    trained on, and lowering to it made a church window dimmer inside than at its rim)."""
    coarse = double(log_lift(coarse_linear, coarse_expanded))[:, :, : linear.shape[2], : linear.shape[3]]
    gain = weight * torch.clamp(coarse - log_lift(linear, expanded), min=0.0)
    ldr = torch.where(linear <= white, torch.ones_like(linear), torch.zeros_like(linear))
    return expanded * torch.exp(gain * maths.blend_weight(display, low, high) * ldr)
