"""fhdr hook script for any Python host (a compositing app's script editor, a pipeline tool, a farm wrapper).

Load it with ``exec(open(path).read())`` or put its folder on ``sys.path`` and ``import generic_host``. It needs the
``fhdr_plugin`` package importable in the host's Python (install fhdr into that interpreter, or add the venv's
site-packages to ``sys.path``).

    hdr = ldr_to_hdr_file("plate.0001.png", "plate.0001.exr", output_colorspace="ACEScg")
    results = ldr_to_hdr_sequence("plate.####.png", "hdr/plate.####.exr", frames="1001-1100", steady=2)
    rgb_hdr = ldr_to_hdr_array(uint8_rgb)                            # code values, read as sRGB
    rgb_hdr = ldr_to_hdr_array(float_rgb, input_colorspace="srgb_tx")  # float: say what the values are
    operations()                           # {name: description} of every registered operation, plugins' too
    out = run_on_array("ldr_to_hdr", rgb)  # any registered operation by name

Arrays are read as fhdr reads a file of the same type: ``uint8`` and ``uint16`` arrays are code values of their
bit depth (0-255, 0-65535), sRGB-encoded unless ``input_colorspace`` says otherwise; float arrays carry no
encoding, so ``ldr_to_hdr_array`` needs ``input_colorspace`` for them (``srgb_tx`` for display values in [0, 1],
such as a PNG read as float; ``lin_rec709`` for scene-linear values). With alpha, integer arrays hold straight
colour, as a PNG does and as PIL, imageio and OpenCV return it, and float arrays premultiplied colour, as an EXR
does; ``alpha="straight"`` or ``alpha="premultiplied"`` says otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import OpenImageIO as oiio

import fhdr_plugin
from fhdr_plugin.host.batch import FrameResult, LocalExecutor, run_batch
from fhdr_plugin.host.pipeline import convert_file
from fhdr_plugin.host.registry import registry
from fhdr_plugin.imaging.io import WriteOptions, to_array
from fhdr_plugin.node.steady import check_radius
from fhdr_plugin.params import LdrToHdrParams


def ldr_to_hdr_buf(buf: oiio.ImageBuf, operation: str = "ldr_to_hdr", **params: object) -> oiio.ImageBuf:
    """Run a registered fhdr operation on an ImageBuf."""
    return fhdr_plugin.run_operation(operation, buf, **params)


def operations() -> dict[str, str]:
    """The registered operations (the built-in ones and every plugin's) with their descriptions."""
    return {name: op.description for name, op in sorted(registry().operations.items())}


#: The pixel type of an ImageBuf made from an array of each dtype.
PIXEL_TYPES = {
    np.dtype(np.uint8): oiio.UINT8,
    np.dtype(np.uint16): oiio.UINT16,
    np.dtype(np.float16): oiio.HALF,
    np.dtype(np.float32): oiio.FLOAT,
    np.dtype(np.float64): oiio.FLOAT,
}


def run_on_array(operation: str, pixels: np.ndarray, **params: object) -> np.ndarray:
    """Run the registered operation ``operation`` on an (H, W, C) array (C = 1, 3 or 4 with alpha last), read as
    a file of its type (integer: code values of its bit depth, straight alpha; float: premultiplied, in the
    ``input_colorspace`` given, which an operation that has that parameter requires); returns its result as a
    float32 (H, W, C) array."""
    if not isinstance(pixels, np.ndarray):
        raise fhdr_plugin.FhdrError(f"{operation}: takes a numpy array, not {type(pixels).__name__}")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 3, 4) or 0 in pixels.shape:
        raise fhdr_plugin.FhdrError(f"{operation}: takes an (H, W, C) array with C = 1, 3 or 4, not {pixels.shape}")
    if pixels.dtype not in PIXEL_TYPES:
        raise fhdr_plugin.FhdrError(f"arrays of {pixels.dtype} are not supported; give uint8, uint16 or float")
    takes_space = "input_colorspace" in registry().get(operation).params.names()
    if pixels.dtype.kind == "f" and takes_space and not params.get("input_colorspace"):
        raise fhdr_plugin.FhdrError(
            f"{operation}: a float array needs input_colorspace: srgb_tx for display values in [0, 1] "
            "(e.g. a PNG read as float), lin_rec709 for scene-linear ones"
        )
    h, w, c = pixels.shape
    pixel_type = PIXEL_TYPES[pixels.dtype]
    spec = oiio.ImageSpec(w, h, c, pixel_type)
    if c == 4:
        spec.channelnames = ("R", "G", "B", "A")
        spec.alpha_channel = 3
        if pixels.dtype.kind == "u":
            spec.attribute("oiio:UnassociatedAlpha", 1)  # straight, as a PNG's code values are
    buf = oiio.ImageBuf(spec)
    data = pixels if pixel_type != oiio.FLOAT else pixels.astype(np.float32, copy=False)
    if not buf.set_pixels(buf.roi, np.ascontiguousarray(data)):
        raise fhdr_plugin.FhdrError(f"cannot use the array: {buf.geterror()}")
    return to_array(ldr_to_hdr_buf(buf, operation, **params))


def ldr_to_hdr_array(pixels: np.ndarray, **params: object) -> np.ndarray:
    """Run ``ldr_to_hdr`` on an (H, W, C) array (C = 1, 3 or 4 with alpha last); returns float32 (H, W, C).
    Integer arrays are sRGB code values unless ``input_colorspace`` is given; float arrays need it."""
    return run_on_array("ldr_to_hdr", pixels, **params)


def ldr_to_hdr_file(src: str, dst: str, half: bool = True, **params: object) -> str:
    """Convert the image file ``src`` into the scene-linear EXR ``dst`` as ``fhdr convert`` does (written
    atomically; an output that is not an .exr or would overwrite ``src`` is refused); returns ``dst``."""
    checked = registry().params("ldr_to_hdr", **params)
    convert_file(Path(src), Path(dst), checked, WriteOptions(half=half))
    return dst


def ldr_to_hdr_sequence(
    src: str, dst: str, frames: str = "", steady: int = 0, half: bool = True, **params: object
) -> list[FrameResult]:
    """Convert the frames of the pattern ``src`` (``fhdr batch``'s: ``plate.####.png``, ``%04d``, a glob) into
    the EXR pattern ``dst`` as ``fhdr batch`` does, ``frames`` an oiiotool range (default: those on disk), each
    frame steadied by ``steady`` frames either side (``--steady``; 0: alone); one result per frame, a frame that
    fails recorded (``status``, ``error``) while the others carry on."""
    settings = LdrToHdrParams.from_kwargs(**params)
    check_radius(steady, settings.blend.mode)
    recorded = {**settings.to_dict(), "half": half, "steady": steady}
    executor = LocalExecutor(settings, WriteOptions(half=half))
    return run_batch(executor, src, dst, recorded, frames=frames, steady=steady, quiet=True)
