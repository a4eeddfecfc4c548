"""Colour-space conversion through OpenColorIO, by way of OIIO's ``colorconvert``.

``$OCIO`` names the config when set; otherwise OIIO's built-in config is used.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import OpenImageIO as oiio

from fhdr_plugin.errors import FhdrError

#: The display-referred space the network sees (sRGB-encoded Rec.709).
MODEL_SPACE = "srgb_tx"
#: The linear space of the network's output (Rec.709 primaries).
LINEAR_SPACE = "lin_rec709"


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
    """The config's canonical name for ``name``; an FhdrError listing the valid names if it is unknown."""
    cfg = config()
    canonical = cfg.getColorSpaceNameByRole(name) or cfg.resolve(name)
    if canonical not in cfg.getColorSpaceNames():
        valid = ", ".join(cfg.getColorSpaceNames())
        raise FhdrError(f"unknown colour space {name!r}; valid names: {valid}")
    return canonical


def default_input_space(spec: oiio.ImageSpec) -> str:
    """The file's declared space (``oiio:ColorSpace``), else sRGB for integer pixels and linear for float."""
    declared = spec.get_string_attribute("oiio:ColorSpace")
    if declared:
        try:
            return resolve(declared)
        except FhdrError:
            pass
    if spec.format.basetype in (oiio.HALF, oiio.FLOAT, oiio.DOUBLE):
        return resolve(LINEAR_SPACE)
    return resolve(MODEL_SPACE)


def convert(rgb: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Convert an (H, W, 3) float32 array from colour space ``src`` to ``dst``."""
    src, dst = resolve(src), resolve(dst)
    if src == dst:
        return rgb
    h, w, _ = rgb.shape
    buf = oiio.ImageBuf(oiio.ImageSpec(w, h, 3, oiio.FLOAT))
    buf.set_pixels(oiio.ROI(0, w, 0, h, 0, 1, 0, 3), np.ascontiguousarray(rgb, dtype=np.float32))
    out = oiio.ImageBufAlgo.colorconvert(buf, src, dst, False, colorconfig=os.environ.get("OCIO", ""))
    if out.has_error:
        raise FhdrError(f"colour conversion {src} -> {dst} failed: {out.geterror()}")
    return np.asarray(out.get_pixels(oiio.FLOAT), dtype=np.float32).reshape(h, w, 3)
