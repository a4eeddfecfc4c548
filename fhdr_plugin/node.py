"""The ``ldr_to_hdr`` operation: an LDR ImageBuf in, a scene-linear HDR ImageBuf out.

read → to model space (OCIO) → infer (FHDR, tiled) → scale → to output space (OCIO) → ImageBuf
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields

import numpy as np
import OpenImageIO as oiio

from fhdr_plugin import color, scale
from fhdr_plugin.channels import layout
from fhdr_plugin.encoding import decode
from fhdr_plugin.engine import Engine
from fhdr_plugin.errors import FhdrError
from fhdr_plugin.manifest import manifest
from fhdr_plugin.version import __version__
from fhdr_plugin.weights import load_model

HALF_MAX = 65504.0
REC709_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
#: Attributes that describe the input file's encoding, not the image, and so are not carried to the output.
DROPPED_ATTRIBUTES = (
    "oiio:BitsPerSample",
    "oiio:UnassociatedAlpha",
    "oiio:Gamma",
    "oiio:ColorSpace",
    "compression",
    "chromaticities",
)


@dataclass(frozen=True)
class LdrToHdrParams:
    """Parameters of ``ldr_to_hdr``; their defaults are declared in plugin.toml as well."""

    input_colorspace: str = ""
    output_colorspace: str = "lin_rec709"
    mode: str = "anchored"
    iterations: int = 0
    model: str = ""
    device: str = ""
    precision: str = "auto"
    tile: int = -1
    blend_low: float = 0.9
    blend_high: float = 1.0

    @classmethod
    def from_kwargs(cls, **params: object) -> LdrToHdrParams:
        """Parameters from keyword arguments, rejecting unknown names and bad values."""
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise FhdrError(f"ldr_to_hdr: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(known)}")
        p = cls(**params)  # type: ignore[arg-type]
        if p.mode not in scale.MODES:
            raise FhdrError(f"ldr_to_hdr: mode must be one of {', '.join(scale.MODES)}, got {p.mode!r}")
        if p.iterations and not 1 <= p.iterations <= 4:
            raise FhdrError(f"ldr_to_hdr: iterations must be 1-4 (0 for the model's own), got {p.iterations}")
        if not 0.0 <= p.blend_low < p.blend_high <= 1.0:
            raise FhdrError("ldr_to_hdr: need 0 <= blend_low < blend_high <= 1")
        return p


@functools.lru_cache(maxsize=4)
def engine_for(model: str, iterations: int, device: str, precision: str, tile: int) -> tuple[Engine, dict[str, str]]:
    """A cached engine (and its weights' metadata) for one combination of settings."""
    spec = manifest().model(model or None)
    net, meta = load_model(spec, iterations or None)
    meta = {**meta, "fhdr:model": spec.name}
    return Engine(net, device or None, precision, None if tile < 0 else tile), meta


def reconstruct(
    engine: Engine, meta: dict[str, str], linear: np.ndarray, display: np.ndarray, params: LdrToHdrParams
) -> np.ndarray:
    """Linear HDR (H, W, 3) from the linearised and the display-referred input: the network, decoded, then scaled."""
    predicted = decode(engine.run(display), meta)
    if params.mode == "anchored":
        return scale.anchored(linear, display, predicted, params.blend_low, params.blend_high)
    return predicted


def predict_linear(rgb: np.ndarray, src_space: str, params: LdrToHdrParams) -> tuple[np.ndarray, dict[str, str]]:
    """Linear Rec.709 HDR (H, W, 3) for colour ``rgb`` in ``src_space``, and the provenance attributes."""
    engine, meta = engine_for(params.model, params.iterations, params.device, params.precision, params.tile)
    linear = color.convert(rgb, src_space, color.LINEAR_SPACE)
    display = np.clip(color.convert(rgb, src_space, color.MODEL_SPACE), 0.0, 1.0)
    hdr = reconstruct(engine, meta, linear, display, params)
    provenance = {
        "fhdr:model": meta["fhdr:model"],
        "fhdr:iterations": str(engine.iterations),
        "fhdr:mode": params.mode,
        "fhdr:input_colorspace": src_space,
    }
    return hdr, provenance


def _finite_nonnegative(x: np.ndarray) -> np.ndarray:
    return np.clip(np.nan_to_num(x, nan=0.0, posinf=HALF_MAX, neginf=0.0), 0.0, HALF_MAX)


def apply(buf: oiio.ImageBuf, params: LdrToHdrParams, source: str = "image") -> oiio.ImageBuf:
    """Run ``ldr_to_hdr`` on ``buf``; alpha and every other channel pass through, windows and metadata survive."""
    spec = buf.spec()
    if spec.depth > 1:
        raise FhdrError(f"{source}: volume images (depth {spec.depth}) are not supported")
    chans = layout(spec, source)
    pixels = np.asarray(buf.get_pixels(oiio.FLOAT), dtype=np.float32)
    if buf.has_error:
        raise FhdrError(f"{source}: cannot read pixels: {buf.geterror()}")
    pixels = pixels.reshape(spec.height, spec.width, spec.nchannels)
    src_space = color.resolve(params.input_colorspace) if params.input_colorspace else color.default_input_space(spec)
    out_space = color.resolve(params.output_colorspace)

    rgb = _finite_nonnegative(pixels[..., list(chans.rgb)])
    alpha = None
    if chans.alpha is not None:
        alpha = np.clip(np.nan_to_num(pixels[..., chans.alpha : chans.alpha + 1]), 0.0, 1.0)
        rgb = np.where(alpha > 0, rgb / np.maximum(alpha, 1e-12), rgb)
    hdr, provenance = predict_linear(rgb, src_space, params)
    out_rgb = _finite_nonnegative(color.convert(_finite_nonnegative(hdr), color.LINEAR_SPACE, out_space))
    if alpha is not None:
        out_rgb = np.where(alpha > 0, out_rgb * alpha, out_rgb)

    out = pixels.copy()
    if chans.grey:
        out[..., chans.rgb[0]] = out_rgb @ REC709_LUMA
    else:
        out[..., list(chans.rgb)] = out_rgb
    out_spec = oiio.ImageSpec(spec)
    out_spec.set_format(oiio.FLOAT)
    for name in DROPPED_ATTRIBUTES:
        out_spec.erase_attribute(name)
    out_spec.attribute("oiio:ColorSpace", out_space)
    primaries = color.chromaticities_of(out_space)
    if primaries:
        out_spec.attribute("chromaticities", oiio.TypeDesc("float[8]"), primaries)
    out_spec.attribute("fhdr:version", __version__)
    out_spec.attribute("fhdr:output_colorspace", out_space)
    for key, value in provenance.items():
        out_spec.attribute(key, value)
    result = oiio.ImageBuf(out_spec)
    if not result.set_pixels(result.roi, out) or result.has_error:
        raise FhdrError(f"{source}: cannot build the output image: {result.geterror()}")
    return result
