"""fhdr hook script for any Python host (a compositing app's script editor, a pipeline tool, a farm wrapper).

Load it with ``exec(open(path).read())`` or put its folder on ``sys.path`` and ``import generic_host``. It needs the
``fhdr_plugin`` package importable in the host's Python (install fhdr into that interpreter, or add the venv's
site-packages to ``sys.path``).

    hdr = ldr_to_hdr_file("plate.0001.png", "plate.0001.exr", output_colorspace="ACEScg")
    rgb_hdr = ldr_to_hdr_array(rgb, input_colorspace="srgb_tx")
    operations()                           # {name: description} of every registered operation, plugins' too
    out = run_on_array("ldr_to_hdr", rgb)  # any registered operation by name
"""

from __future__ import annotations

import numpy as np
import OpenImageIO as oiio

import fhdr_plugin
from fhdr_plugin.io import WriteOptions, read_image, to_array, write_exr
from fhdr_plugin.registry import registry


def ldr_to_hdr_buf(buf: oiio.ImageBuf, operation: str = "ldr_to_hdr", **params: object) -> oiio.ImageBuf:
    """Run a registered fhdr operation on an ImageBuf."""
    return fhdr_plugin.run_operation(operation, buf, **params)


def operations() -> dict[str, str]:
    """The registered operations (the built-in ones and every plugin's) with their descriptions."""
    return {name: op.description for name, op in sorted(registry().operations.items())}


def run_on_array(operation: str, pixels: np.ndarray, **params: object) -> np.ndarray:
    """Run the registered operation ``operation`` on an (H, W, C) array (C = 1, 3 or 4 with alpha last);
    returns its result as a float32 (H, W, C) array."""
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    h, w, c = pixels.shape
    spec = oiio.ImageSpec(w, h, c, oiio.FLOAT)
    if c == 4:
        spec.channelnames = ("R", "G", "B", "A")
        spec.alpha_channel = 3
    buf = oiio.ImageBuf(spec)
    buf.set_pixels(buf.roi, np.ascontiguousarray(pixels, dtype=np.float32))
    return to_array(ldr_to_hdr_buf(buf, operation, **params))


def ldr_to_hdr_array(pixels: np.ndarray, **params: object) -> np.ndarray:
    """Run ``ldr_to_hdr`` on an (H, W, C) array (C = 1, 3 or 4 with alpha last); returns float32 (H, W, C)."""
    return run_on_array("ldr_to_hdr", pixels, **params)


def ldr_to_hdr_file(src: str, dst: str, half: bool = True, **params: object) -> str:
    """Convert the image file ``src`` into the scene-linear EXR ``dst`` (written atomically); returns ``dst``."""
    write_exr(ldr_to_hdr_buf(read_image(src), **params), dst, WriteOptions(half=half))
    return dst
