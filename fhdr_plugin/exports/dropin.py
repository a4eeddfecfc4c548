"""The Nuke drop-in: ``fhdr convert``'s anchored result as one scripted TorchScript module, scene-linear in and out.

Nuke's Inference node hands a module the working space's scene-linear RGB (1, 3, H, W), float32 or half, and
takes back what it returns. ``SceneLinearFhdr`` does the whole node inside: the working space's primaries to
linear Rec.709 (a matrix chosen at export, since the module cannot call OCIO), the sRGB encoding the network
sees (clipped to [0, 1]), FHDR, the decoding of its output (``encoding.py``), the anchored blend, the model's
lift head on the frame Nuke hands it (``lift.py``), the strength, and back to the working space; with ``matte``
the blend weight follows as a fourth channel. Like the node, it runs the network only on the tiles whose core holds
a pixel the anchored blend takes from it (``windows``), each with a halo of the network's receptive radius, so a
frame costs what its highlights cost and the pixels are those of the whole frame run at once. It is scripted,
not traced, so any frame size runs, and uses only operators that libtorch 1.6 has (see ``LIBTORCH_1_6_OPS``).
"""

import copy
import io
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fhdr_plugin.exports.export import METADATA_FILE, at_least_two, export_metadata, portable_copy
from fhdr_plugin.imaging import color
from fhdr_plugin.imaging.io import make_folder, write_bytes_atomic
from fhdr_plugin.node import maths, pyramid
from fhdr_plugin.node.encoding import decoding
from fhdr_plugin.node.engine import SPARSE_TILES, WINDOW_COST
from fhdr_plugin.node.lift import LiftHead
from fhdr_plugin.node.model import FHDR, receptive_radius
from fhdr_plugin.params import BlendParams, type_name

#: The aten operators the scripted module may call: all in libtorch 1.6 (Nuke 13), the oldest build it targets.
LIBTORCH_1_6_OPS = frozenset(
    f"aten::{name}"
    for name in (
        "Bool",
        "Float",
        "__getitem__",
        "_set_item",
        "add",
        "append",
        "avg_pool2d",
        "cat",
        "clamp",
        "constant_pad_nd",
        "conv2d",
        "copy_",
        "cpu",
        "cumsum",
        "div",
        "detach",
        "eq",
        "exp",
        "expm1",
        "gt",
        "le",
        "len",
        "log",
        "log1p",
        "lt",
        "max",
        "max_pool2d",
        "mul",
        "ne",
        "neg",
        "ones_like",
        "pow",
        "reflection_pad2d",
        "relu",
        "replication_pad2d",
        "reshape",
        "select",
        "size",
        "slice",
        "stack",
        "sub",
        "sum",
        "tanh",
        "to",
        "where",
        "zeros",
        "zeros_like",
    )
)

#: The module's knobs: the number fields of the blend's parameters, at their defaults for a lossless plate (Nuke
#: hands the module pixels, not a file: set ``blend_low`` to ``params.LOSSY_BLEND_LOW`` for a JPEG plate). Its
#: choices, such as ``mode``, are fixed at export: the drop-in returns the anchored result.
KNOBS = {
    f.name: getattr(BlendParams().for_plate(lossy=False), f.name)
    for f in BlendParams.fields()
    if type_name(f) in ("float", "int")
}


def primaries_matrix(src: str, dst: str) -> list[float]:
    """The 3×3 matrix (row-major) that OCIO's conversion of linear ``src`` to linear ``dst`` applies."""
    basis = np.eye(3, dtype=np.float32)[None]
    return [float(v) for v in color.convert(basis, src, dst)[0].T.ravel()]


def _mix(rgb: torch.Tensor, m: list[float]) -> torch.Tensor:
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    return torch.cat(
        [m[0] * r + m[1] * g + m[2] * b, m[3] * r + m[4] * g + m[5] * b, m[6] * r + m[7] * g + m[8] * b], 1
    )


class SceneLinearFhdr(nn.Module):
    """Working-space scene-linear RGB (N, 3, H, W) in, the same size out (N, 4 with ``matte``): the anchored node.

    Knobs (plain attributes, shown by Nuke): ``KNOBS``, the blend's parameters, and ``coarse`` (0/1: the coarser
    levels of large highlights, the node's ``--coarse``); ``mode`` and ``matte`` (0/1) are fixed at export, since
    the node's result and its output channels are.
    """

    headroom: float
    mu: float
    mode: str
    matte: int
    context: int
    coarse: int
    sparse: int
    halo: int
    tiles: list[int]
    window_cost: int
    to_rec709: list[float]
    from_rec709: list[float]

    def __init__(self, model: FHDR, meta: dict[str, str], working_space: str = "lin_rec709", matte: bool = False):
        super().__init__()
        self.net = portable_copy(model)
        self.headroom, self.mu = decoding(meta)
        for name, value in KNOBS.items():
            setattr(self, name, value)
        self.mode = "anchored"
        self.matte = int(matte)
        self.context = int(model.lift is not None)
        self.coarse = int(BlendParams().coarse)
        self.sparse = int(type(model) is FHDR)  # a context pass needs the whole frame
        self.halo = receptive_radius(model.iterations)
        self.tiles = sorted(SPARSE_TILES)
        self.window_cost = WINDOW_COST
        self.lift = copy.deepcopy(model.lift).float() if model.lift is not None else LiftHead()
        self.to_rec709 = primaries_matrix(working_space, color.LINEAR_SPACE)
        self.from_rec709 = primaries_matrix(color.LINEAR_SPACE, working_space)
        self.eval()

    def windows(self, display: torch.Tensor) -> list[list[int]]:
        """The regions the network runs on for ``display`` (N, 3, H, W), as [y0, y1, x0, x1] of a tile's core and
        [wy0, wy1, wx0, wx1] of its haloed window: in anchored mode only the tiles whose core holds a pixel with a
        channel above ``blend_low``, at the tile size (of ``tiles``) that runs the fewest pixels, each window
        counted with ``window_cost`` more; the whole frame as one region when that costs less or in raw mode."""
        height, width = display.shape[2], display.shape[3]
        whole = [[0, height, 0, width, 0, height, 0, width]]
        if self.mode == "raw" or self.sparse == 0:
            return whole
        need = (torch.max(torch.max(display, 1, keepdim=True)[0], 0, keepdim=True)[0] > self.blend_low).float()
        best = 0
        cost = float(height * width)
        for t in self.tiles:
            side = min(t + 2 * self.halo, height) * min(t + 2 * self.halo, width)
            count = float(torch.max_pool2d(need, [t, t], [t, t], [0, 0], [1, 1], True).sum())
            if count * float(side + self.window_cost) < cost:
                best, cost = t, count * float(side + self.window_cost)
        if best == 0:
            return whole
        flags = torch.max_pool2d(need, [best, best], [best, best], [0, 0], [1, 1], True)
        out: list[list[int]] = []
        for i in range(flags.shape[2]):
            for j in range(flags.shape[3]):
                if bool(flags[0, 0, i, j] > 0.0):
                    y0, x0 = i * best, j * best
                    y1, x1 = min(y0 + best, height), min(x0 + best, width)
                    wy0, wx0 = max(0, y0 - self.halo), max(0, x0 - self.halo)
                    wy1, wx1 = min(height, y1 + self.halo), min(width, x1 + self.halo)
                    out.append([y0, y1, x0, x1, wy0, wy1, wx0, wx1])
        return out

    def network(self, display: torch.Tensor) -> torch.Tensor:
        """The network's output (float32) on the cores of ``windows``, 0 elsewhere (where the blend does not use it)."""
        dtype = self.net.feb1[1].weight.dtype
        regions = self.windows(display)
        out = torch.zeros(display.shape, dtype=torch.float32, device=display.device)
        for r in regions:
            result = self.net(at_least_two(display[:, :, r[4] : r[5], r[6] : r[7]].to(dtype))).float()
            out[:, :, r[0] : r[1], r[2] : r[3]] = result[:, :, r[0] - r[4] : r[1] - r[4], r[2] - r[6] : r[3] - r[6]]
        return out

    def expand(self, display: torch.Tensor, linear: torch.Tensor) -> torch.Tensor:
        """The anchored expansion of one level of the plate, lifted by the lift head when the model has one."""
        predicted = maths.decode(self.network(display), self.headroom, self.mu)
        hdr = maths.anchored(linear, display, predicted, self.blend_low, self.blend_high)
        if self.context:
            hdr = self.lift(display, linear, hdr, self.blend_low, self.blend_high)
        return hdr

    def levels(self, display: torch.Tensor, linear: torch.Tensor) -> torch.Tensor:
        """The anchored expansion of the plate, refined from coarser levels while one holds a clipped area deeper
        than the network sees (``coarse``, as the node's ``operation.expand``)."""
        displays = [display]
        linears = [linear]
        weights: list[torch.Tensor] = []
        deeper = self.coarse != 0
        while deeper:
            weight = pyramid.weight(displays[-1], self.blend_low, self.blend_high, self.halo)
            deeper = pyramid.deeper(weight)
            if deeper:
                weights.append(weight)
                half_display, half_linear = pyramid.coarser(displays[-1], linears[-1])
                displays.append(half_display)
                linears.append(half_linear)
        hdr = self.expand(displays[-1], linears[-1])
        for i in range(len(weights)):
            k = len(weights) - 1 - i
            level = self.expand(displays[k], linears[k])
            hdr = pyramid.refine(
                displays[k], linears[k], level, weights[k], linears[k + 1], hdr, self.blend_low, self.blend_high
            )
        return hdr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Working-space RGB (N, 3, H, W) to the node's anchored HDR in the working space, in the input's dtype."""
        linear = _mix(maths.finite(x.float()), self.to_rec709)
        display = maths.srgb_encode(linear)
        if self.mode == "raw":
            hdr = maths.decode(self.network(display), self.headroom, self.mu)
        else:
            hdr = maths.strengthen(linear, self.levels(display, linear), self.strength)
        out = maths.finite(_mix(maths.finite(hdr), self.from_rec709))
        if self.matte:
            out = torch.cat([out, maths.matte_of(display, self.mode, self.blend_low, self.blend_high)], 1)
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
    make_folder(path.parent)
    data = nuke_bytes(model, meta, working_space, matte)
    write_bytes_atomic(path, data)
