"""Colour-space conversion through OpenColorIO, by way of OIIO's ``colorconvert``.

``$OCIO`` names the config when set; otherwise OIIO's built-in config is used.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os

import numpy as np
import OpenImageIO as oiio

from fhdr_plugin.errors import FhdrError

#: The display-referred space the network sees (sRGB-encoded Rec.709).
MODEL_SPACE = "srgb_tx"
#: The linear space of the network's output (Rec.709 primaries).
LINEAR_SPACE = "lin_rec709"
#: OIIO's built-in config, whatever ``$OCIO`` says.
BUILTIN = "ocio://default"
#: Rec.709 luminance weights (of linear R, G, B).
REC709_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
#: Linear spaces (colour interop IDs) by the primaries and white point (xy) that an EXR's ``chromaticities`` declare.
CHROMATICITIES = {
    "lin_rec709_scene": (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290),
    "lin_ap1_scene": (0.713, 0.293, 0.165, 0.830, 0.128, 0.044, 0.32168, 0.33767),
    "lin_ap0_scene": (0.7347, 0.2653, 0.0, 1.0, 0.0001, -0.077, 0.32168, 0.33767),
    "lin_rec2020_scene": (0.708, 0.292, 0.170, 0.797, 0.131, 0.046, 0.3127, 0.3290),
    "lin_p3d65_scene": (0.680, 0.320, 0.265, 0.690, 0.150, 0.060, 0.3127, 0.3290),
    "lin_adobergb_scene": (0.64, 0.33, 0.21, 0.71, 0.15, 0.06, 0.3127, 0.3290),
}
#: CIE XYZ primaries; its white point is E by definition, but files write various ones, so only these are compared.
XYZ_PRIMARIES = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
XYZ_SPACE = "lin_ciexyzd65_scene"
#: Exif's ColorSpace for anything but sRGB ("uncalibrated"; Adobe RGB cameras write it).
EXIF_UNCALIBRATED = 0xFFFF
#: The names the README uses, listed first when a name is unknown.
COMMON_NAMES = (LINEAR_SPACE, MODEL_SPACE, "ACEScg")

log = logging.getLogger("fhdr")


@functools.lru_cache(maxsize=4)
def _config(ocio: str) -> oiio.ColorConfig:
    cfg = oiio.ColorConfig(ocio)
    message = cfg.geterror()
    if message:
        raise FhdrError(f"OCIO config {ocio or '(built-in)'}: {' '.join(message.split())}")
    return cfg


def config() -> oiio.ColorConfig:
    """The OCIO config in force: ``$OCIO`` if set, else OIIO's built-in one."""
    return _config(os.environ.get("OCIO", ""))


def colorspace_names() -> list[str]:
    """Every colour-space name of the config, aliases included."""
    cfg = config()
    names = list(cfg.getColorSpaceNames())
    for n in list(names):
        names.extend(a for a in cfg.getAliases(n) if a not in names)
    return names


def resolve(name: str) -> str:
    """The config's canonical name for ``name`` as OIIO's ``colorconvert`` reads it (names, aliases, roles:
    ``linear`` is linear Rec.709, as in oiiotool); an FhdrError listing close matches and the valid names if it is
    unknown."""
    canonical = known(name)
    if canonical is None:
        raise FhdrError(f"unknown colour space {name!r}; {suggestions(name)}")
    return canonical


def known(name: str) -> str | None:
    """The canonical name of ``name`` in the config in force, None if it has none."""
    cfg = config()
    canonical = cfg.resolve(name)
    if canonical not in cfg.getColorSpaceNames():
        canonical = cfg.getColorSpaceNameByRole(name)
    return canonical if canonical in cfg.getColorSpaceNames() else None


def suggestions(name: str) -> str:
    """Close matches of ``name`` (whatever its case: OCIO's names are case-insensitive), then the common names,
    then every canonical name of the config."""
    cfg = config()
    by_lower: dict[str, str] = {}
    for n in colorspace_names():
        by_lower.setdefault(n.lower(), n)
    close = [by_lower[n] for n in difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)]
    common = [n for n in COMMON_NAMES if cfg.resolve(n) in cfg.getColorSpaceNames()]
    rest = [n for n in cfg.getColorSpaceNames() if n not in common]
    text = f"did you mean {', '.join(close)}? " if close else ""
    return text + f"valid names: {', '.join(common)}, then {', '.join(rest)}"


def input_space(name: str, spec: oiio.ImageSpec) -> str:
    """The canonical input space: ``name`` if given, else the file's (``default_input_space``); logged once."""
    space = resolve(name) if name else default_input_space(spec)
    _announce(name, space)
    if not name and spec.get_int_attribute("Exif:ColorSpace", 1) == EXIF_UNCALIBRATED:
        _warn_uncalibrated(space)
    return space


@functools.lru_cache(maxsize=64)
def _warn_uncalibrated(space: str) -> None:
    log.warning(
        "the file's Exif says its colours are not sRGB (uncalibrated: Adobe RGB, say); they are read as %s: "
        "name the space with --input-colorspace (input_colorspace) if that is wrong",
        space,
    )


@functools.lru_cache(maxsize=64)
def _announce(given: str, space: str) -> None:
    if given and given != space:
        log.info("input colour space %r is %s in this config", given, space)
    else:
        log.debug("input colour space: %s", space)


def default_input_space(spec: oiio.ImageSpec) -> str:
    """The file's declared space (``oiio:ColorSpace``), else sRGB for integer pixels, and for float the space
    its ``chromaticities`` name, else linear Rec.709. A declared space the config cannot resolve is an FhdrError."""
    declared = spec.get_string_attribute("oiio:ColorSpace")
    if declared:
        try:
            return resolve(declared)
        except FhdrError:
            raise FhdrError(
                f"the file declares the colour space {declared!r} (oiio:ColorSpace), which the OCIO config "
                f"{os.environ.get('OCIO') or '(built-in)'} does not know; name the space with --input-colorspace "
                f"(input_colorspace) or use a config that has it; {suggestions(declared)}"
            ) from None
    if spec.format.basetype not in (oiio.HALF, oiio.FLOAT, oiio.DOUBLE):
        if known(MODEL_SPACE) is None:
            raise FhdrError(
                f"the file does not declare its colour space, and the OCIO config {os.environ.get('OCIO')} has "
                f"no {MODEL_SPACE} (sRGB-encoded Rec.709), fhdr's default for integer pixels; name the space with "
                f"--input-colorspace (input_colorspace)"
            )
        return resolve(MODEL_SPACE)
    chromaticities = spec.getattribute("chromaticities")
    return resolve(space_of_chromaticities(chromaticities) if chromaticities else LINEAR_SPACE)


def chromaticities_of(space: str) -> tuple[float, ...] | None:
    """The chromaticities of ``space`` if it is one of the linear spaces of ``CHROMATICITIES``, else None."""
    canonical, cfg = resolve(space), config()
    return next((xy for name, xy in CHROMATICITIES.items() if cfg.resolve(name) == canonical), None)


def space_of_chromaticities(xy: tuple[float, ...], tolerance: float = 2e-3) -> str:
    """The linear space whose primaries and white are ``xy`` (rx, ry, gx, gy, bx, by, wx, wy); an FhdrError if
    none is known."""
    if np.allclose(xy[:6], XYZ_PRIMARIES, rtol=0, atol=tolerance):
        return XYZ_SPACE
    for name, known in CHROMATICITIES.items():
        if np.allclose(xy, known, rtol=0, atol=tolerance):
            return name
    shown = ", ".join(f"{v:.4g}" for v in xy)
    raise FhdrError(
        f"the image's chromaticities ({shown}) match no colour space fhdr knows; "
        "name its space with input_colorspace (--input-colorspace)"
    )


def convert(rgb: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Convert an (H, W, 3) float32 array from colour space ``src`` to ``dst``."""
    return _colorconvert(rgb, resolve(src), resolve(dst), os.environ.get("OCIO", ""))


def to_model_space(rgb: np.ndarray, src: str, linear: np.ndarray) -> np.ndarray:
    """``rgb`` in ``src`` as the network sees it, sRGB-encoded Rec.709 (``MODEL_SPACE``): through the config in
    force, or, when it has no such space (nuke-default, ACES 1.x), from ``linear`` (``rgb`` in ``LINEAR_SPACE``)
    through the encoding of OIIO's built-in config, which is fixed maths."""
    if known(MODEL_SPACE) is not None:
        return convert(rgb, src, MODEL_SPACE)
    builtin = _config(BUILTIN)
    return _colorconvert(linear, builtin.resolve(LINEAR_SPACE), builtin.resolve(MODEL_SPACE), BUILTIN)


def _colorconvert(rgb: np.ndarray, src: str, dst: str, ocio: str) -> np.ndarray:
    if src == dst:
        return rgb
    h, w, _ = rgb.shape
    buf = oiio.ImageBuf(oiio.ImageSpec(w, h, 3, oiio.FLOAT))
    buf.set_pixels(oiio.ROI(0, w, 0, h, 0, 1, 0, 3), np.ascontiguousarray(rgb, dtype=np.float32))
    out = oiio.ImageBufAlgo.colorconvert(buf, src, dst, False, colorconfig=ocio)
    if out.has_error:
        raise FhdrError(f"colour conversion {src} -> {dst} failed: {out.geterror()}")
    return np.asarray(out.get_pixels(oiio.FLOAT), dtype=np.float32).reshape(h, w, 3)
