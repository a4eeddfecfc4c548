"""Self-contained exports of a model: TorchScript (for Nuke's Inference node) and ONNX.

Both take one tensor, RGB (N, 3, H, W) display-referred in [0, 1] (values outside are clamped, NaN reads as 0),
and return linear HDR RGB of the same shape: the network's output decoded as the weights' metadata says
(``fhdr:encoding``, ``fhdr:headroom``, ``fhdr:mu``; see ``encoding.py``), so a diffuse white stays near 1.0.
Height and width are free in both, down to one pixel (the last row or column is repeated, as the node does).
"""

from __future__ import annotations

import copy
import io
import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.imaging.io import make_folder, write_bytes_atomic
from fhdr_plugin.node import maths
from fhdr_plugin.node.encoding import decoding
from fhdr_plugin.node.model import FHDR
from fhdr_plugin.params import FORMATS
from fhdr_plugin.version import __version__

#: The format each file extension means.
EXTENSIONS = {".pt": "torchscript", ".torchscript": "torchscript", ".onnx": "onnx"}
#: The lowest opset torch's ONNX exporter writes.
ONNX_OPSET = 18
#: The shape of the example frame the exports are traced with; any other height and width run as well.
EXAMPLE_SHAPE = (1, 3, 64, 64)
#: The file inside a TorchScript archive that holds the export's metadata.
METADATA_FILE = "fhdr.json"


class LinearHdr(nn.Module):
    """FHDR as one tensor in, one out: display-referred LDR in [0, 1] to linear HDR (the decoded output).

    ``mu`` 0: the output times ``headroom``; otherwise the output is μ-law encoded (``encoding.decode``).
    """

    def __init__(self, model: FHDR, headroom: float, mu: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.headroom = float(headroom)
        self.mu = float(mu)
        self.eval()

    def forward(self, ldr: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) LDR in [0, 1] to (N, 3, H, W) linear HDR, in the input's dtype."""
        x = at_least_two(torch.clamp(torch.nan_to_num(ldr, nan=0.0), 0.0, 1.0))
        hdr = maths.decode(self.model(x).float(), self.headroom, self.mu)
        return hdr[:, :, : ldr.shape[2], : ldr.shape[3]].type_as(ldr)


@torch.jit.script_if_tracing
def at_least_two(x: torch.Tensor) -> torch.Tensor:
    """``x`` with its last row or column repeated up to 2 × 2, as the node pads a frame one pixel high or wide
    (the network's reflection padding needs two); traced into the TorchScript export as a scripted function."""
    h, w = x.shape[2], x.shape[3]
    if torch.jit.is_scripting():  # TorchScript: an op older libtorch builds know (see _ReflectionPad)
        if h < 2 or w < 2:
            x = torch.ops.aten.replication_pad2d(x, [0, max(0, 2 - w), 0, max(0, 2 - h)])
        return x
    # torch.export (ONNX): sizes free from 1 up, without a branch on them.
    return torch.nn.functional.pad(x, [0, torch.sym_max(0, 2 - w), 0, torch.sym_max(0, 2 - h)], mode="replicate")


class _ReflectionPad(nn.Module):
    """Reflection padding traced as ``aten::reflection_pad2d``, an op older libtorch builds (Nuke 14, 15) know."""

    def __init__(self, padding: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.padding = list(padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten.reflection_pad2d(x, self.padding)


def plain_copy(model: FHDR) -> FHDR:
    """A copy of ``model`` on the CPU in the default memory layout (channels-last weights upset torch.export)."""
    return copy.deepcopy(model).cpu().to(memory_format=torch.contiguous_format).eval()


def portable_copy(model: FHDR) -> FHDR:
    """A copy of ``model`` whose padding traces to ops that libtorch 1.12 has (``nn.ReflectionPad2d`` does not)."""
    model = plain_copy(model)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.ReflectionPad2d):
                setattr(parent, name, _ReflectionPad(tuple(child.padding)))
    return model


def export_metadata(model: FHDR, meta: dict[str, str]) -> dict[str, str]:
    """What an exported file records about itself: the weights' metadata plus the export's contract."""
    return {
        **meta,
        "fhdr:iterations": str(model.iterations),
        "fhdr:export_version": __version__,
        "fhdr:export_input": "RGB (N, 3, H, W) float, display-referred (sRGB-encoded) in [0, 1]",
        "fhdr:export_output": (
            "RGB (N, 3, H, W) float, linear Rec.709: the network's output decoded "
            f"({meta.get('fhdr:encoding', 'linear')}, headroom {meta['fhdr:headroom']})"
        ),
    }


def torchscript_bytes(model: FHDR, meta: dict[str, str]) -> bytes:
    """A traced TorchScript archive of ``LinearHdr``, with the export's metadata in ``fhdr.json``."""
    wrapper = LinearHdr(portable_copy(model), *decoding(meta))
    with torch.inference_mode(False), torch.no_grad():
        traced = torch.jit.trace(wrapper, torch.rand(EXAMPLE_SHAPE), check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer, _extra_files={METADATA_FILE: json.dumps(export_metadata(model, meta))})
    return buffer.getvalue()


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Keep the ONNX exporter's progress notes and warnings about absent optional packages off the console."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def onnx_bytes(model: FHDR, headroom: float, metadata: dict[str, str] | None = None, mu: float = 0.0) -> bytes:
    """An ONNX model of ``LinearHdr``: input ``ldr``, output ``hdr``, dynamic batch, height and width."""
    try:
        import onnxscript  # noqa: F401  (torch's exporter needs it)
    except ImportError as exc:
        raise FhdrError(f"ONNX export needs the onnx extra: pip install 'fhdr[onnx]' ({exc.name} is missing)") from exc
    wrapper = LinearHdr(plain_copy(model), headroom, mu)
    dims = {
        0: torch.export.Dim("batch", min=1),
        2: torch.export.Dim("height", min=1),
        3: torch.export.Dim("width", min=1),
    }
    with _quiet_exporter(), torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(
            wrapper,
            (torch.rand(EXAMPLE_SHAPE),),
            input_names=["ldr"],
            output_names=["hdr"],
            opset_version=ONNX_OPSET,
            dynamo=True,
            dynamic_shapes={"ldr": dims},
            external_data=False,
            verbose=False,
        )
    proto = program.model_proto
    for key, value in (metadata or {}).items():
        proto.metadata_props.add(key=key, value=value)
    return proto.SerializeToString()


def format_for(path: Path, fmt: str = "") -> str:
    """The export format of ``path``: ``fmt`` if given (refused when the extension says another), else the one
    its extension names."""
    implied = EXTENSIONS.get(path.suffix.lower(), "")
    known = ", ".join(f"{ext} ({name})" for ext, name in EXTENSIONS.items())
    if fmt and fmt not in FORMATS:
        raise FhdrError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    if fmt and implied and fmt != implied:
        raise FhdrError(f"{path}: the extension {path.suffix} means {implied}, not {fmt}; rename it or drop --format")
    if not fmt and not implied:
        raise FhdrError(f"{path}: cannot tell the format from the extension ({known}); give --format")
    return fmt or implied


def export_model(model: FHDR, meta: dict[str, str], fmt: str, path: Path) -> None:
    """Write ``model`` as a self-contained ``fmt`` file (one of FORMATS) to ``path``."""
    if fmt not in FORMATS:
        raise FhdrError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    make_folder(path.parent)
    if fmt == "torchscript":
        data = torchscript_bytes(model, meta)
    else:
        headroom, mu = decoding(meta)
        data = onnx_bytes(model, headroom, export_metadata(model, meta), mu)
    write_bytes_atomic(path, data)
