"""The ``ldr_to_hdr`` operation: an LDR ImageBuf in, a scene-linear HDR ImageBuf out.

unpack → to model space (OCIO) → infer (FHDR, tiled) → scale → to output space (OCIO) → pack with provenance
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import OpenImageIO as oiio

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.imaging import color
from fhdr_plugin.imaging.channels import Layout, layout
from fhdr_plugin.imaging.color import REC709_LUMA
from fhdr_plugin.imaging.io import (
    as_stored,
    channel_formats,
    check_buffer,
    from_array,
    precision,
    stored_lossily,
    to_array,
)
from fhdr_plugin.node import pyramid, scale
from fhdr_plugin.node.encoding import decode
from fhdr_plugin.node.engine import Engine, engine_for, to_image, to_tensor
from fhdr_plugin.params import BlendParams, LdrToHdrParams
from fhdr_plugin.version import __version__

__all__ = ["LdrToHdrParams", "Plate", "apply", "finish", "predict_linear", "prepare", "reconstruct"]

log = logging.getLogger("fhdr")

HALF_MAX = 65504.0
#: The channel ``matte`` adds to the output.
MATTE_CHANNEL = "fhdr.matte"
#: Attributes that describe the input file's encoding, not the image, and so are not carried to the output.
DROPPED_ATTRIBUTES = (
    "oiio:BitsPerSample",
    "oiio:UnassociatedAlpha",
    "oiio:Gamma",
    "oiio:ColorSpace",
    "colorInteropID",
    "compression",
    "chromaticities",
)


def _finite_nonnegative(x: np.ndarray) -> np.ndarray:
    return np.clip(np.nan_to_num(x, nan=0.0, posinf=HALF_MAX, neginf=0.0), 0.0, HALF_MAX)


def straight_alpha(setting: str, spec: oiio.ImageSpec) -> bool:
    """True when the colour of an image with ``spec`` is straight (not premultiplied) by its ``alpha`` setting;
    ``auto``: as its ``oiio:UnassociatedAlpha`` says (``io.read_image`` keeps a PNG's colour as stored)."""
    if setting == "auto":
        return spec.get_int_attribute("oiio:UnassociatedAlpha", 0) != 0
    return setting == "straight"


def unpack(pixels: np.ndarray, chans: Layout, straight: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Finite, non-negative colour (H, W, 3), unpremultiplied when there is alpha and the colour is
    premultiplied, and the alpha (H, W, 1). Straight colour under zero alpha is undefined (a PNG may hold
    anything there), so it is taken as black, what a premultiplied file holds: the visible pixels never depend
    on it."""
    rgb = _finite_nonnegative(pixels[..., list(chans.rgb)])
    if chans.alpha is None:
        return rgb, None
    alpha = np.clip(np.nan_to_num(pixels[..., chans.alpha : chans.alpha + 1]), 0.0, 1.0)
    if straight:
        return np.where(alpha > 0, rgb, 0.0).astype(np.float32), alpha
    return np.where(alpha > 0, rgb / np.maximum(alpha, 1e-12), rgb), alpha


def premultiply(rgb: np.ndarray, alpha: np.ndarray | None, straight: bool) -> np.ndarray:
    """The output colour premultiplied, as EXR holds it; where a premultiplied input has zero alpha, its colour
    (an emission) is kept."""
    if alpha is None:
        return rgb
    return rgb * alpha if straight else np.where(alpha > 0, rgb * alpha, rgb)


def note_hdr_input(rgb: np.ndarray, where: str, params: LdrToHdrParams) -> None:
    """Warn, in one line naming ``where``, when the colour as stored is already HDR (above 1.0), saying what is
    done."""
    peak = float(_finite_nonnegative(rgb).max(initial=0.0))
    if peak <= 1.0:
        return
    done = (
        "the output keeps every input value (never darker) and raises only the pixels near white"
        if params.blend.mode == "anchored"
        else "raw mode replaces it with the network's output"
    )
    log.warning(
        "%s: the input is already HDR (values up to %.4g); converted as an LDR plate anyway: the network sees it "
        "clipped at 1.0 and %s",
        where,
        peak,
        done,
    )


def to_model_space(rgb: np.ndarray, src_space: str) -> tuple[np.ndarray, np.ndarray]:
    """The input linearised (Rec.709) and display-referred in [0, 1], the space the network sees."""
    linear = color.convert(rgb, src_space, color.LINEAR_SPACE)
    display = np.clip(color.to_model_space(rgb, src_space, linear), 0.0, 1.0)
    return linear, display


def reconstruct(
    engine: Engine,
    meta: dict[str, str],
    linear: np.ndarray,
    display: np.ndarray,
    params: LdrToHdrParams,
    predicted: np.ndarray | None = None,
) -> np.ndarray:
    """Linear HDR (H, W, 3) from the linearised and the display-referred input: the network's ``predict`` (or
    ``predicted``, when the caller has it), then scaled (lifted by the model's lift head, when it has one, and
    refined from coarser levels, ``expand``)."""
    blend = params.blend.for_plate(lossy=False)
    if predicted is None:
        predicted = predict(engine, meta, display, blend)
    if blend.mode == "raw":
        return predicted
    return scale.strengthen(linear, expand(engine, meta, linear, display, blend, predicted), blend.strength)


def expand(
    engine: Engine,
    meta: dict[str, str],
    linear: np.ndarray,
    display: np.ndarray,
    blend: BlendParams,
    predicted: np.ndarray,
) -> np.ndarray:
    """The anchored expansion of the plate (``scale.expand``) by the network's decoded ``predicted``; with
    ``blend.coarse``, while the plate holds a clipped area deeper than the network sees, refined from the
    expansion of the plate at half resolution (``pyramid``), computed the same way."""
    expanded = scale.expand(linear, display, predicted, blend, engine.lift)
    if not blend.coarse:
        return expanded
    d, li = to_tensor(display), to_tensor(linear)
    weight = pyramid.weight(d, blend.blend_low, blend.blend_high, engine.halo)
    if not pyramid.deeper(weight):
        return expanded
    half_d, half_li = pyramid.coarser(d, li)
    half_display, half_linear = to_image(half_d), to_image(half_li)
    half = expand(engine, meta, half_linear, half_display, blend, predict(engine, meta, half_display, blend))
    refined = pyramid.refine(
        d, li, to_tensor(expanded), weight, half_li, to_tensor(half), blend.blend_low, blend.blend_high
    )
    return to_image(refined)


def predict(engine: Engine, meta: dict[str, str], display: np.ndarray, blend: BlendParams) -> np.ndarray:
    """The network's decoded linear prediction (H, W, 3) of the display-referred input, on the tiles whose pixels
    ``blend`` uses (elsewhere 0); the model's lift head plays no part in it."""
    return decode(engine.run(display, scale.needed(display, blend)), meta)


def to_output_space(hdr: np.ndarray, out_space: str) -> np.ndarray:
    """Linear Rec.709 HDR in ``out_space``, finite and within half-float range."""
    return _finite_nonnegative(color.convert(_finite_nonnegative(hdr), color.LINEAR_SPACE, out_space))


def lifted(engine: Engine, params: LdrToHdrParams) -> bool:
    """Whether the model's lift head runs for ``params``: anchored mode, context on, and a model that has one."""
    return params.blend.mode == "anchored" and params.blend.context and engine.lift is not None


def provenance(engine: Engine, meta: dict[str, str], params: LdrToHdrParams, src_space: str) -> dict[str, str]:
    """The ``fhdr:`` attributes that say how an output was made."""
    return {
        "fhdr:model": meta["fhdr:model"],
        "fhdr:iterations": str(engine.iterations),
        "fhdr:precision": engine.describe()["dtype"],
        "fhdr:mode": params.blend.mode,
        "fhdr:blend": f"{params.blend.blend_low:g}-{params.blend.blend_high:g}",
        "fhdr:strength": f"{params.blend.strength:g}",
        "fhdr:context": "lift head" if lifted(engine, params) else "off",
        "fhdr:coarse": "on" if params.blend.mode == "anchored" and params.blend.coarse else "off",
        "fhdr:input_colorspace": src_space,
    }


def predict_linear(rgb: np.ndarray, src_space: str, params: LdrToHdrParams) -> tuple[np.ndarray, dict[str, str]]:
    """Linear Rec.709 HDR (H, W, 3) for colour ``rgb`` in ``src_space``, and the provenance attributes; an array
    has no file, so an automatic ``blend_low`` is a lossless plate's."""
    params = dataclasses.replace(params, blend=params.blend.for_plate(lossy=False))
    engine, meta = engine_for(params.engine)
    linear, display = to_model_space(rgb, src_space)
    return reconstruct(engine, meta, linear, display, params), provenance(engine, meta, params, src_space)


def pack(
    buf: oiio.ImageBuf,
    pixels: np.ndarray,
    chans: Layout,
    out_rgb: np.ndarray,
    attributes: dict[str, str],
    source: str,
    extra: np.ndarray | None = None,
) -> oiio.ImageBuf:
    """The input's pixels with the new colour (luminance for a grey image), as float, with the input's windows
    and metadata less its encoding's, and ``attributes``; ``extra`` (H, W, 1) is appended as ``MATTE_CHANNEL``
    (or replaces the input's). The spec's channel formats say what each channel needs when written: float for
    the colour, every other channel its input's precision (``precision``)."""
    out = pixels.copy()
    if chans.grey:
        out[..., chans.rgb[0]] = out_rgb @ REC709_LUMA
    else:
        out[..., list(chans.rgb)] = out_rgb
    out_spec = oiio.ImageSpec(buf.spec())
    formats = [precision(f) for f in channel_formats(buf.spec())]
    for i in {*chans.rgb}:
        formats[i] = oiio.FLOAT
    out_spec.set_format(oiio.FLOAT)
    if extra is not None:
        names = tuple(out_spec.channelnames)
        if MATTE_CHANNEL in names:  # the input's own matte, from an earlier run: replaced
            out[..., names.index(MATTE_CHANNEL)] = extra[..., 0]
        else:
            out = np.concatenate([out, extra], axis=-1)
            formats.append(oiio.HALF)
            out_spec.nchannels = len(names) + 1
            out_spec.channelnames = (*names, MATTE_CHANNEL)
    out_spec.channelformats = tuple(formats)
    for name in DROPPED_ATTRIBUTES:
        out_spec.erase_attribute(name)
    primaries = color.chromaticities_of(attributes["oiio:ColorSpace"])
    if primaries:
        out_spec.attribute("chromaticities", oiio.TypeDesc("float[8]"), primaries)
    for key, value in attributes.items():
        out_spec.attribute(key, value)
    return from_array(out, out_spec, f"{source}: output")


@dataclasses.dataclass(frozen=True)
class Plate:
    """An input ImageBuf unpacked for the node: its pixels and channel layout, the parameters for this plate, its
    colour spaces, its colour (straight) and alpha, and that colour linearised and display-referred."""

    buf: oiio.ImageBuf
    source: str
    pixels: np.ndarray
    chans: Layout
    params: LdrToHdrParams
    src_space: str
    out_space: str
    straight: bool
    alpha: np.ndarray | None
    linear: np.ndarray
    display: np.ndarray


def prepare(buf: oiio.ImageBuf, params: LdrToHdrParams, source: str = "image") -> Plate:
    """Check and unpack ``buf`` into the node's model space (the first half of ``apply``)."""
    check_buffer(buf)
    buf = as_stored(buf)
    spec = buf.spec()
    if spec.depth > 1:
        raise FhdrError(f"{source}: volume images (depth {spec.depth}) are not supported")
    chans = layout(spec, source)
    pixels = to_array(buf, source)
    params = dataclasses.replace(params, blend=params.blend.for_plate(stored_lossily(spec)))
    src_space = color.input_space(params.input_colorspace, spec)
    out_space = color.resolve(params.output_colorspace)
    straight = straight_alpha(params.alpha, spec)
    rgb, alpha = unpack(pixels, chans, straight)
    note_hdr_input(pixels[..., list(chans.rgb)], buf.name or source, params)
    linear, display = to_model_space(rgb, src_space)
    return Plate(buf, source, pixels, chans, params, src_space, out_space, straight, alpha, linear, display)


def finish(
    plate: Plate, hdr: np.ndarray, engine: Engine, meta: dict[str, str], notes: dict[str, str] | None = None
) -> oiio.ImageBuf:
    """The output ImageBuf of ``plate`` for its linear HDR ``hdr`` (the second half of ``apply``), with the
    provenance attributes and ``notes`` (more ``fhdr:`` attributes)."""
    out_rgb = premultiply(to_output_space(hdr, plate.out_space), plate.alpha, plate.straight)
    attributes = {
        "oiio:ColorSpace": plate.out_space,
        "fhdr:version": __version__,
        "fhdr:output_colorspace": plate.out_space,
        **provenance(engine, meta, plate.params, plate.src_space),
        **(notes or {}),
    }
    extra = scale.matte_of(plate.display, plate.params.blend) if plate.params.matte else None
    return pack(plate.buf, plate.pixels, plate.chans, out_rgb, attributes, plate.source, extra)


def apply(buf: oiio.ImageBuf, params: LdrToHdrParams, source: str = "image") -> oiio.ImageBuf:
    """Run ``ldr_to_hdr`` on ``buf``; alpha and every other channel pass through, windows and metadata survive."""
    plate = prepare(buf, params, source)
    engine, meta = engine_for(plate.params.engine)
    hdr = reconstruct(engine, meta, plate.linear, plate.display, plate.params)
    return finish(plate, hdr, engine, meta)
