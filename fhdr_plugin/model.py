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

    def forward_all(self, ldr: torch.Tensor) -> list[torch.Tensor]:
        """Every iteration's output, each (N, 3, H, W) in [0, 1], from LDR (N, 3, H, W) in [0, 1]."""
        x = ldr * 2.0 - 1.0
        f1 = torch.relu(self.feb1(x))
        f2 = torch.relu(self.feb2(f1))
        hidden = f2
        states: list[torch.Tensor] = []
        outputs: list[torch.Tensor] = []
        for step in range(self.iterations):
            if step > 0:  # no gradient through the recurrence, as the reference
                hidden = hidden.detach()
                states = [h.detach() for h in states]
            hidden, states = self.feedback(f2, hidden, states)
            y = torch.relu(self.hrb1(hidden + f1))
            # The head runs in float32 even under autocast: (tanh + 1) / 2 in bfloat16 loses the dark values.
            outputs.append((torch.tanh(self.hrb2(y).float()) + 1.0) * 0.5)
        return outputs

    def forward(self, ldr: torch.Tensor) -> torch.Tensor:
        """The last iteration's output, (N, 3, H, W) in [0, 1]."""
        return self.forward_all(ldr)[-1]
