"""FHDR: the feedback network of Khan, Khanna and Raman (GlobalSIP 2019).

The network maps a display-referred LDR image in [0, 1] to an HDR estimate in
[0, 1] (scaled by the training headroom, see ``weights.py``). One feedback block
is applied ``iterations`` times with shared weights; every hidden state is reset
at the start of each ``forward`` call, so results never depend on earlier calls.
The module is scriptable (``torch.jit.script``), as the Nuke drop-in needs.
"""

from __future__ import annotations

import torch
from torch import nn

from fhdr_plugin.node.lift import LiftHead

FEATURES = 64
GROWTH = 32
DENSE_LAYERS = 4
DRDB_COUNT = 3
PARAMETER_COUNT = 571_267


def receptive_radius(iterations: int) -> int:
    """Pixels of context one output pixel depends on, in each direction."""
    return 29 + 25 * (iterations - 1)


def _conv(cin: int, cout: int, k: int, *, dilation: int = 1, bias: bool = True, pad: bool = True) -> nn.Conv2d:
    padding = dilation * (k // 2) if pad else 0
    return nn.Conv2d(cin, cout, k, padding=padding, dilation=dilation, bias=bias)


class DenseLayer(nn.Module):
    """A dilated 3x3 conv whose output is appended to its input."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.conv = _conv(cin, GROWTH, 3, dilation=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, torch.relu(self.conv(x))), dim=1)


class DRDB(nn.Module):
    """Dilated residual dense block with its own hidden state (no residual add, as in the paper's code)."""

    def __init__(self) -> None:
        super().__init__()
        self.compress = _conv(2 * FEATURES, FEATURES, 1)
        self.dense = nn.Sequential(*(DenseLayer(FEATURES + i * GROWTH) for i in range(DENSE_LAYERS)))
        self.fuse = _conv(FEATURES + DENSE_LAYERS * GROWTH, FEATURES, 1, bias=False)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.compress(torch.cat((x, hidden), dim=1)))
        return torch.relu(self.fuse(self.dense(y)))


class FeedbackBlock(nn.Module):
    """The block applied once per iteration; state is passed in and out explicitly."""

    def __init__(self) -> None:
        super().__init__()
        self.compress_in = _conv(2 * FEATURES, FEATURES, 1)
        self.drdbs = nn.ModuleList(DRDB() for _ in range(DRDB_COUNT))
        self.gff = _conv(FEATURES, FEATURES, 3)

    def forward(
        self, x: torch.Tensor, hidden: torch.Tensor, states: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One pass: the block's output and the DRDBs' new states (``states`` empty: each starts from its input)."""
        y = torch.relu(self.compress_in(torch.cat((x, hidden), dim=1)))
        first = len(states) == 0
        new: list[torch.Tensor] = []
        for i, drdb in enumerate(self.drdbs):
            y = drdb(y, y if first else states[i])
            new.append(y)
        return torch.relu(self.gff(y)), new


class FHDR(nn.Module):
    """FHDR with ``iterations`` feedback passes (1-4); 571,267 parameters for any count."""

    #: The architecture's name, as the weights' metadata records it (``fhdr:architecture``).
    architecture = "fhdr"

    def __init__(self, iterations: int = 1) -> None:
        super().__init__()
        if not 1 <= iterations <= 4:
            raise ValueError(f"iterations must be 1-4, got {iterations}")
        self.iterations = iterations
        self.feb1 = nn.Sequential(nn.ReflectionPad2d(1), _conv(3, FEATURES, 3, pad=False))
        self.feb2 = _conv(FEATURES, FEATURES, 3)
        self.feedback = FeedbackBlock()
        self.hrb1 = _conv(FEATURES, FEATURES, 3)
        self.hrb2 = nn.Sequential(nn.ReflectionPad2d(1), _conv(FEATURES, 3, 3, pad=False))
        #: The lift head the node runs on the whole frame after the network (``lift.py``); None: none fitted.
        self.lift: LiftHead | None = None

    def add_lift(self) -> LiftHead:
        """Give the model a lift head (starting as no change) and return it."""
        self.lift = LiftHead()
        return self.lift

    def head_input(self, ldr: torch.Tensor, coarse: torch.Tensor | None, offset: list[int]) -> torch.Tensor | None:
        """What the reconstruction adds to its input besides the features (none in the paper's network)."""
        return None

    def forward_all(
        self,
        ldr: torch.Tensor,
        coarse: torch.Tensor | None = None,
        offset: list[int] | None = None,
        last_only: bool = False,
    ) -> list[torch.Tensor]:
        """Every iteration's output, each (N, 3, H, W) in [0, 1], from LDR (N, 3, H, W) in [0, 1]; with
        ``last_only`` the last one alone (inference skips the earlier iterations' reconstruction).

        ``coarse`` and ``offset`` serve tiled inference of a model with a context pass (``FHDRContext``).
        """
        x = ldr * 2.0 - 1.0
        f1 = torch.relu(self.feb1(x))
        f2 = torch.relu(self.feb2(f1))
        extra = self.head_input(ldr, coarse, [0, 0] if offset is None else offset)
        if extra is not None:
            f1 = f1 + extra
        hidden = f2
        states: list[torch.Tensor] = []
        outputs: list[torch.Tensor] = []
        first_output = self.iterations - 1 if last_only else 0
        for step in range(self.iterations):
            if step > 0:  # no gradient through the recurrence, as the reference
                hidden = hidden.detach()
                states = [h.detach() for h in states]
            hidden, states = self.feedback(f2, hidden, states)
            if first_output <= step:
                y = torch.relu(self.hrb1(hidden + f1))
                # The head runs in float32 even under autocast: (tanh + 1) / 2 in bfloat16 loses the dark values.
                outputs.append((torch.tanh(self.hrb2(y).float()) + 1.0) * 0.5)
        return outputs

    def forward(self, ldr: torch.Tensor) -> torch.Tensor:
        """The last iteration's output, (N, 3, H, W) in [0, 1]."""
        return self.forward_all(ldr, last_only=True)[-1]


CONTEXT_FACTOR = 4
CONTEXT_FEATURES = 32
CONTEXT_DILATIONS = (1, 2, 4, 8)


class ContextPass(nn.Module):
    """Features of the whole frame at 1/4 resolution, seen over a radius of about 70 full-resolution pixels.

    ``coarse`` runs once per frame on the box-downscaled plate; ``upsample`` gives any window of it at full
    resolution (bilinear), the same values whether the frame is processed whole or in tiles.
    """

    def __init__(self) -> None:
        super().__init__()
        self.factor = CONTEXT_FACTOR
        self.stem = _conv(3, CONTEXT_FEATURES, 3)
        self.body = nn.ModuleList(_conv(CONTEXT_FEATURES, CONTEXT_FEATURES, 3, dilation=d) for d in CONTEXT_DILATIONS)
        self.out = _conv(CONTEXT_FEATURES, FEATURES, 1)
        nn.init.zeros_(self.out.weight)  # starts as the paper's network: the context adds nothing until trained
        nn.init.zeros_(self.out.bias)

    def coarse(self, ldr: torch.Tensor) -> torch.Tensor:
        """(N, 64, ceil(H/4), ceil(W/4)) features of LDR (N, 3, H, W) in [0, 1]."""
        x = torch.nn.functional.avg_pool2d(ldr * 2.0 - 1.0, self.factor, ceil_mode=True)
        x = torch.relu(self.stem(x))
        for conv in self.body:
            x = torch.relu(conv(x))
        return self.out(x)

    def upsample(self, coarse: torch.Tensor, offset: list[int], height: int, width: int) -> torch.Tensor:
        """The (N, 64, height, width) full-resolution window starting ``offset`` (y, x) pixels into the area
        that ``coarse`` covers."""
        fine = torch.nn.functional.interpolate(
            coarse, scale_factor=float(self.factor), mode="bilinear", align_corners=False
        )
        return fine[:, :, offset[0] : offset[0] + height, offset[1] : offset[1] + width]


class FHDRContext(FHDR):
    """FHDR with a coarse context pass (beyond the paper): features of the frame at 1/4 resolution, trained
    jointly, added to the global skip so the reconstruction sees how large and how bright a highlight's
    surroundings are (the multi-scale idea of HDRUNet and ExpandNet's global branch)."""

    architecture = "fhdr-context"

    def __init__(self, iterations: int = 1) -> None:
        super().__init__(iterations)
        self.context = ContextPass()

    def head_input(self, ldr: torch.Tensor, coarse: torch.Tensor | None, offset: list[int]) -> torch.Tensor | None:
        """The context at full resolution: of ``ldr`` itself, or the window ``offset`` into a frame's ``coarse``."""
        if coarse is None:
            coarse = self.context.coarse(ldr)
        return self.context.upsample(coarse, offset, ldr.shape[2], ldr.shape[3])


ARCHITECTURES = {FHDR.architecture: FHDR, FHDRContext.architecture: FHDRContext}


def build(architecture: str, iterations: int) -> FHDR:
    """The network named ``architecture`` (``fhdr``, ``fhdr-context``) with ``iterations`` feedback passes."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](iterations)
