"""Print what ``make demo`` reconstructed: the output's peak and how much of the input's clipped area rose above 1.0.

.venv/bin/python samples/summary.py samples/quarry_ldr.png out/quarry_hdr.exr
"""

from __future__ import annotations

import sys

import numpy as np
import OpenImageIO as oiio

from fhdr_plugin.imaging.color import REC709_LUMA


def rgb(path: str) -> np.ndarray:
    """The first three channels of ``path`` as float (H, W, 3); exits with OIIO's message when it cannot read."""
    buf = oiio.ImageBuf(path)
    pixels = buf.get_pixels(oiio.FLOAT)
    if buf.has_error or pixels is None:
        sys.exit(f"{path}: cannot read: {buf.geterror()}")
    return np.asarray(pixels).reshape(buf.spec().height, buf.spec().width, -1)[..., :3]


def main(ldr_path: str, hdr_path: str) -> None:
    ldr, hdr = rgb(ldr_path), rgb(hdr_path)
    clipped = ldr.max(axis=-1) >= 1.0
    luma = hdr @ REC709_LUMA
    print(f"{hdr_path}: peak {hdr.max():.2f} (1.0 = the input's white)")
    if clipped.any():
        print(
            f"  {clipped.mean():.1%} of the input is clipped; there the output's mean luminance is "
            f"{luma[clipped].mean():.2f} and {np.mean(luma[clipped] > 1.0):.0%} of it rose above 1.0"
        )


if __name__ == "__main__":
    main(*sys.argv[1:3])
