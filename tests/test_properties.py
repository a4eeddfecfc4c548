"""Properties of ``ldr_to_hdr`` over frame sizes, channel layouts, windows, tile sizes and parameters.

Examples are few and derandomized, so that a CI run on two cores stays short and any failure reproduces; raise
``max_examples`` locally to search further. A tile's halo (29 px at one iteration) makes every tile of these small
frames nearly the whole frame, so tiles of 32 and 48 px (up to 9 tiles) keep the tiled runs affordable.
"""

from __future__ import annotations

import numpy as np
import OpenImageIO as oiio
from conftest import exercised
from helpers import pixels
from hypothesis import given, settings
from hypothesis import strategies as st

import fhdr_plugin
from fhdr_plugin.node import operation as node

EXTRA_CHANNELS = ("Z", "N.x", "N.y", "mask", "velocity.u")
BASES = (("Y",), ("Y", "A"), ("R", "G", "B"), ("R", "G", "B", "A"))
COLOUR = {"R", "G", "B", "Y"}
SETTINGS = settings(max_examples=20, deadline=None, derandomize=True, database=None)


@st.composite
def frames(draw: st.DrawFn) -> oiio.ImageBuf:
    """A frame of 1-80 px a side, colour (grey or RGB, with or without alpha) among named extra channels in any
    order, 8-bit or half, with a data window anywhere in its display window; values include clipped whites."""
    height, width = draw(st.integers(1, 80)), draw(st.integers(1, 80))
    extras = draw(st.lists(st.sampled_from(EXTRA_CHANNELS), max_size=2, unique=True))
    names = draw(st.permutations(draw(st.sampled_from(BASES)) + tuple(extras)))
    fmt = draw(st.sampled_from((oiio.UINT8, oiio.HALF)))
    spec = oiio.ImageSpec(width, height, len(names), fmt)
    spec.channelnames = tuple(names)
    spec.alpha_channel = names.index("A") if "A" in names else -1
    spec.x, spec.y = draw(st.integers(-20, 20)), draw(st.integers(-20, 20))
    spec.full_x, spec.full_y, spec.full_width, spec.full_height = 0, 0, 100, 90
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = rng.uniform(0.0, 1.0, (height, width, len(names))).astype(np.float32)
    values[rng.uniform(size=(height, width)) < 0.2] = 1.0
    buf = oiio.ImageBuf(spec)
    buf.set_pixels(buf.roi, values)
    return buf


params = st.fixed_dictionaries(
    {
        "mode": st.sampled_from(("anchored", "raw")),
        "output_colorspace": st.sampled_from(("lin_rec709", "ACEScg")),
        "blend_low": st.floats(0.5, 0.95),
        "tile": st.sampled_from((-1, 0, 32, 64)),
    }
)


@SETTINGS
@given(frames(), params)
def test_output_matches_the_input_in_shape_and_non_colour_channels(src: oiio.ImageBuf, kwargs: dict) -> None:
    out = fhdr_plugin.ldr_to_hdr(src, **kwargs)
    exercised("property examples (shape, channels, range)")
    a, b = src.spec(), out.spec()
    assert (b.x, b.y, b.width, b.height, b.nchannels) == (a.x, a.y, a.width, a.height, a.nchannels)
    assert (b.full_x, b.full_y, b.full_width, b.full_height) == (a.full_x, a.full_y, a.full_width, a.full_height)
    assert b.channelnames == a.channelnames
    colour = [i for i, n in enumerate(a.channelnames) if n in COLOUR]
    others = [i for i in range(a.nchannels) if i not in colour]
    x, y = pixels(src), pixels(out)
    np.testing.assert_array_equal(y[..., others], x[..., others])
    assert np.isfinite(y).all() and y[..., colour].min() >= 0 and y[..., colour].max() <= node.HALF_MAX


@settings(SETTINGS, max_examples=15)
@given(frames(), st.sampled_from((32, 48)), st.sampled_from(("anchored", "raw")))
def test_tiled_equals_untiled(src: oiio.ImageBuf, tile: int, mode: str) -> None:
    whole = pixels(fhdr_plugin.ldr_to_hdr(src, tile=0, mode=mode, precision="float32"))
    tiled = pixels(fhdr_plugin.ldr_to_hdr(src, tile=tile, mode=mode, precision="float32"))
    exercised("property examples (tiled = untiled)")
    np.testing.assert_allclose(tiled, whole, rtol=1e-3, atol=1e-3)
