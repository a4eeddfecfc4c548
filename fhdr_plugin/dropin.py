"""The Nuke drop-in: ``fhdr convert``'s anchored result as one scripted TorchScript module, scene-linear in and out.

Nuke's Inference node hands a module the working space's scene-linear RGB (1, 3, H, W), float32 or half, and
takes back what it returns. ``SceneLinearFhdr`` does the whole node inside: the working space's primaries to
linear Rec.709 (a matrix chosen at export, since the module cannot call OCIO), the sRGB encoding the network
sees (clipped to [0, 1]), FHDR, the decoding of its output (``encoding.py``), the anchored blend, the strength,
and back to the working space; with ``matte`` the blend weight follows as a fourth channel. It is scripted,
not traced, so any frame size runs, and uses only operators that libtorch 1.6 has (see ``LIBTORCH_1_6_OPS``).
"""

import io
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fhdr_plugin import color
from fhdr_plugin.encoding import decoding
from fhdr_plugin.export import METADATA_FILE, export_metadata, plain_copy
from fhdr_plugin.io import write_bytes_atomic
from fhdr_plugin.model import FHDR
from fhdr_plugin.params import LdrToHdrParams

#: The aten operators the scripted module may call: all in libtorch 1.6 (Nuke 13), the oldest build it targets.
LIBTORCH_1_6_OPS = frozenset(
    f"aten::{name}"
    for name in (
        "Bool",
        "__getitem__",
        "_set_item",
        "add",
        "append",
        "cat",
        "clamp",
        "conv2d",
        "div",
        "eq",
        "expm1",
        "gt",
        "le",
        "max",
        "mul",
        "ne",
        "neg",
        "ones_like",
        "pow",
        "reflection_pad2d",
        "relu",
        "slice",
        "sub",
        "tanh",
        "to",
        "where",
        "zeros_like",
    )
)

_DEFAULTS = LdrToHdrParams()


def primaries_matrix(src: str, dst: str) -> list[float]:
    """The 3×3 matrix (row-major) that OCIO's conversion of linear ``src`` to linear ``dst`` applies."""
    basis = np.eye(3, dtype=np.float32)[None]
    return [float(v) for v in color.convert(basis, src, dst)[0].T.ravel()]


def _mix(rgb: torch.Tensor, m: list[float]) -> torch.Tensor:
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    return torch.cat(
        [m[0] * r + m[1] * g + m[2] * b, m[3] * r + m[4] * g + m[5] * b, m[6] * r + m[7] * g + m[8] * b], 1
    )


def _luminance(rgb: torch.Tensor) -> torch.Tensor:
    """Rec.709 luminance (N, 1, H, W), as ``scale.strengthen`` weighs it."""
    return 0.2126 * rgb[:, 0:1] + 0.7152 * rgb[:, 1:2] + 0.0722 * rgb[:, 2:3]


def _finite(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.where(x == x, x, torch.zeros_like(x)), 0.0, 65504.0)


class SceneLinearFhdr(nn.Module):
    """Working-space scene-linear RGB (N, 3, H, W) in, the same size out (N, 4 with ``matte``): the anchored node.

    Knobs (plain attributes, shown by Nuke): ``strength``, ``blend_low``, ``blend_high``; ``matte`` (0/1) is
    fixed at export, since the node's output channels are.
    """

    iterations: int
    headroom: float
    mu: float
    log1p_mu: float
    strength: float
    blend_low: float
    blend_high: float
    matte: int
    to_rec709: list[float]
    from_rec709: list[float]

    def __init__(self, model: FHDR, meta: dict[str, str], working_space: str = "lin_rec709", matte: bool = False):
        super().__init__()
        net = plain_copy(model)
        self.feb1 = net.feb1[1]
        self.feb2 = net.feb2
        self.compress_in = net.feedback.compress_in
        self.drdbs = net.feedback.drdbs
        self.gff = net.feedback.gff
        self.hrb1 = net.hrb1
        self.hrb2 = net.hrb2[1]
        self.iterations = net.iterations
        headroom, mu = decoding(meta)
        self.headroom = headroom
        self.mu = mu
        self.log1p_mu = float(np.log1p(mu))
        self.strength = _DEFAULTS.strength
        self.blend_low = _DEFAULTS.blend_low
        self.blend_high = _DEFAULTS.blend_high
        self.matte = int(matte)
        self.to_rec709 = primaries_matrix(working_space, color.LINEAR_SPACE)
        self.from_rec709 = primaries_matrix(color.LINEAR_SPACE, working_space)
        self.eval()

    def network(self, ldr: torch.Tensor) -> torch.Tensor:
        """FHDR's last iteration, (N, 3, H, W) in [0, 1] as float32, from display-referred LDR in [0, 1]."""
        x = ldr * 2.0 - 1.0
        f1 = torch.relu(self.feb1(torch.ops.aten.reflection_pad2d(x, [1, 1, 1, 1])))
        f2 = torch.relu(self.feb2(f1))
        hidden = f2
        states: list[torch.Tensor] = []
        for step in range(self.iterations):
            y = torch.relu(self.compress_in(torch.cat([f2, hidden], 1)))
            for i, drdb in enumerate(self.drdbs):
                y = drdb(y, y if step == 0 else states[i])
                if step == 0:
                    states.append(y)
                else:
                    states[i] = y
            hidden = torch.relu(self.gff(y))
        y = torch.relu(self.hrb1(hidden + f1))
        return (torch.tanh(self.hrb2(torch.ops.aten.reflection_pad2d(y, [1, 1, 1, 1])).float()) + 1.0) * 0.5

    def decode(self, y: torch.Tensor) -> torch.Tensor:
        """Linear HDR relative to white from the network's output (``encoding.decode``)."""
        if self.mu > 0:
            return torch.expm1(torch.clamp(y, 0.0, 1.0) * self.log1p_mu) / self.mu * self.headroom
        return y * self.headroom

    def strengthen(self, linear: torch.Tensor, expanded: torch.Tensor) -> torch.Tensor:
        """``scale.strengthen``: the luminance scaled in log space, the expansion's colour kept."""
        lum_lin = _luminance(linear)
        lum_exp = _luminance(expanded)
        lifted = lum_exp > lum_lin
        base = torch.where(lifted, torch.clamp(lum_lin, min=1e-6), torch.ones_like(lum_lin))
        gain = torch.where(
            lifted, torch.pow(torch.clamp(lum_exp, min=1e-6) / base, self.strength), torch.ones_like(base)
        )
        span = torch.where(lifted, lum_exp - lum_lin, torch.ones_like(lum_lin))
        fraction = torch.where(lifted, (base * gain - lum_lin) / span, torch.zeros_like(lum_lin))
        return linear + fraction * (expanded - linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Working-space RGB (N, 3, H, W) to the node's anchored HDR in the working space, in the input's dtype."""
        linear = _mix(_finite(x.float()), self.to_rec709)
        v = torch.clamp(linear, 0.0031308, 65504.0)
        display = torch.where(linear <= 0.0031308, 12.92 * linear, 1.055 * torch.pow(v, 1.0 / 2.4) - 0.055)
        display = torch.clamp(display, 0.0, 1.0)
        predicted = self.decode(self.network(display.to(x.dtype)))
        peak = torch.max(display, 1, keepdim=True)[0]
        t = torch.clamp((peak - self.blend_low) / max(self.blend_high - self.blend_low, 1e-6), 0.0, 1.0)
        w = t * t * (3.0 - 2.0 * t)
        hdr = linear + w * torch.clamp(predicted - linear, min=0.0)
        if self.strength != 1.0:
            hdr = self.strengthen(linear, hdr)
        out = _finite(_mix(_finite(hdr), self.from_rec709))
        if self.matte:
            out = torch.cat([out, w], 1)
        return out.to(x.dtype)


def nuke_bytes(model: FHDR, meta: dict[str, str], working_space: str = "lin_rec709", matte: bool = False) -> bytes:
    """A scripted TorchScript archive of ``SceneLinearFhdr``, with the export's metadata in ``fhdr.json``."""
    space = color.resolve(working_space)
    module = torch.jit.script(SceneLinearFhdr(model, meta, space, matte))
    channels = "RGB and fhdr.matte (N, 4, H, W)" if matte else "RGB (N, 3, H, W)"
    info = {
        **export_metadata(model, meta),
        "fhdr:export_host": "nuke",
        "fhdr:working_space": space,
        "fhdr:export_input": f"RGB (N, 3, H, W) float32 or half, scene-linear {space}",
        "fhdr:export_output": f"{channels}, scene-linear {space}: fhdr convert's anchored result",
    }
    buffer = io.BytesIO()
    torch.jit.save(module, buffer, _extra_files={METADATA_FILE: json.dumps(info)})
    return buffer.getvalue()


def export_nuke(
    model: FHDR, meta: dict[str, str], path: Path, working_space: str = "lin_rec709", matte: bool = False
) -> None:
    """Write the Nuke drop-in of ``model`` to ``path``."""
    data = nuke_bytes(model, meta, working_space, matte)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, data)
