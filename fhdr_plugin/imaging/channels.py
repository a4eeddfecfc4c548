"""Finding the colour and alpha channels of an image, whatever it holds besides them."""

from __future__ import annotations

from dataclasses import dataclass

import OpenImageIO as oiio

from fhdr_plugin.errors import FhdrError


@dataclass(frozen=True)
class Layout:
    """Indices of the R, G, B channels (one index three times for a grey image) and of alpha."""

    rgb: tuple[int, int, int]
    alpha: int | None

    @property
    def grey(self) -> bool:
        """True when the colour is one luminance channel."""
        return len(set(self.rgb)) == 1


def layout(spec: oiio.ImageSpec, where: str = "image") -> Layout:
    """Named R, G, B channels; else a Y channel; else the first three (or the only) non-alpha channels."""
    upper = [n.upper() for n in spec.channelnames]
    alpha = spec.alpha_channel if spec.alpha_channel >= 0 else None
    if all(c in upper for c in ("R", "G", "B")):
        return Layout((upper.index("R"), upper.index("G"), upper.index("B")), alpha)
    if {"C", "M", "K"} <= set(upper):
        raise FhdrError(f"{where}: CMYK images are not supported; convert to RGB first")
    if "RY" in upper or "BY" in upper:
        raise FhdrError(f"{where}: luminance/chroma (Y, RY, BY) images are not supported; convert to RGB first")
    if "Y" in upper:
        y = upper.index("Y")
        return Layout((y, y, y), alpha)
    colour = [i for i in range(spec.nchannels) if i != alpha]
    if len(colour) >= 3:
        return Layout((colour[0], colour[1], colour[2]), alpha)
    if len(colour) == 1:
        return Layout((colour[0],) * 3, alpha)
    raise FhdrError(
        f"{where}: cannot tell the colour channels among {', '.join(spec.channelnames)}; "
        "give it R, G, B (or Y) channels"
    )
