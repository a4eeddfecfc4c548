"""Every torch function of the node's maths (``maths.py``) against its numpy twin, on the same arrays."""

import numpy as np
import pytest
import torch

from fhdr_plugin.imaging import color
from fhdr_plugin.node import encoding, maths, scale
from fhdr_plugin.params import BlendParams

RNG = np.random.default_rng(7)
#: Display-referred plates (H, W, 3) with every region: blacks, mid-tones, the blend ramp, clipped channels.
DISPLAY = np.concatenate(
    [RNG.uniform(0.0, 1.0, (8, 16, 3)), RNG.uniform(0.9, 1.0, (8, 16, 3)), np.ones((2, 16, 3))], axis=0
).astype(np.float32)
META = {"fhdr:encoding": "mu-law", "fhdr:headroom": "256", "fhdr:mu": "5000"}


def nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)[None]))


def hwc(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).numpy()


def linear_of(display: np.ndarray) -> np.ndarray:
    return color.convert(display, color.MODEL_SPACE, color.LINEAR_SPACE)


@pytest.mark.parametrize("meta", [META, {"fhdr:headroom": "16"}], ids=["mu-law", "linear"])
def test_decode_and_encode_match_the_numpy_twins(meta):
    y = RNG.uniform(0.0, 1.0, (4, 5, 3)).astype(np.float32)
    headroom, mu = encoding.decoding(meta)
    hdr = maths.decode(nchw(y), headroom, mu)
    np.testing.assert_allclose(hwc(hdr), encoding.decode(y, meta), rtol=1e-5, atol=1e-7)
    kind = meta.get("fhdr:encoding", "linear")
    np.testing.assert_allclose(
        hwc(maths.encode(hdr, headroom, mu)), encoding.encode(hwc(hdr), headroom, kind), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(hwc(maths.encode(hdr, headroom, mu)), y, atol=1e-5)


def test_srgb_matches_the_ocio_conversion_the_node_uses():
    linear = linear_of(DISPLAY)
    np.testing.assert_allclose(hwc(maths.srgb_decode(nchw(DISPLAY))), linear, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(hwc(maths.srgb_encode(nchw(linear))), DISPLAY, atol=1e-4)


def test_luminance_matches_rec709():
    rgb = RNG.uniform(0.0, 5.0, (3, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(hwc(maths.luminance(nchw(rgb)))[..., 0], rgb @ color.REC709_LUMA, rtol=1e-6)


@pytest.mark.parametrize(("low", "high"), [(0.95, 1.0), (0.8, 0.99)])
def test_blend_weight_matte_and_anchored_match_the_numpy_twins(low, high):
    weight = scale.blend_weight(DISPLAY, low, high)
    assert weight.shape == DISPLAY.shape and 0.0 < weight.mean() < 1.0
    np.testing.assert_allclose(hwc(maths.blend_weight(nchw(DISPLAY), low, high)), weight, atol=1e-6)
    np.testing.assert_allclose(hwc(maths.matte(nchw(DISPLAY), low, high)), scale.matte(DISPLAY, low, high), atol=1e-6)
    linear = linear_of(DISPLAY)
    predicted = (linear * RNG.uniform(0.5, 8.0, linear.shape)).astype(np.float32)
    want = scale.anchored(linear, DISPLAY, predicted, low, high)
    got = maths.anchored(nchw(linear), nchw(DISPLAY), nchw(predicted), low, high)
    np.testing.assert_allclose(hwc(got), want, rtol=1e-6, atol=1e-7)


def test_anchored_keeps_every_channel_the_plate_did_not_clip():
    display = np.array([[[1.0, 0.6, 0.2], [1.0, 1.0, 0.9], [0.3, 0.3, 1.0]]], np.float32)
    linear = linear_of(display)
    out = scale.anchored(linear, display, linear * 10.0, 0.95, 1.0)
    unclipped = display < 0.95
    np.testing.assert_array_equal(out[unclipped], linear[unclipped])
    np.testing.assert_allclose(out[~unclipped], linear[~unclipped] * 10.0, rtol=1e-6)


@pytest.mark.parametrize("strength", [0.0, 0.5, 1.0, 2.5])
def test_strengthen_matches_the_numpy_twin(strength):
    linear = linear_of(DISPLAY)
    expanded = scale.anchored(linear, DISPLAY, linear * 6.0, 0.95, 1.0)
    want = scale.strengthen(linear, expanded, strength)
    got = maths.strengthen(nchw(linear), nchw(expanded), strength)
    np.testing.assert_allclose(hwc(got), want, rtol=1e-5, atol=1e-6)
    if strength == 0.0:
        np.testing.assert_allclose(want, linear, atol=1e-6)


@pytest.mark.parametrize(
    "params", [BlendParams(), BlendParams(mode="raw"), BlendParams(blend_low=0.8, strength=1.7)], ids=str
)
def test_the_blend_and_its_matte_match_the_numpy_twins(params):
    linear = linear_of(DISPLAY)
    predicted = (linear * RNG.uniform(0.5, 8.0, linear.shape)).astype(np.float32)
    plate = params.for_plate(lossy=False)  # the numbers the node hands maths.blend for a lossless plate
    got = maths.blend(nchw(linear), nchw(DISPLAY), nchw(predicted), **vars(plate))
    np.testing.assert_allclose(hwc(got), scale.blend(linear, DISPLAY, predicted, params), rtol=1e-5, atol=1e-6)
    matte = maths.matte_of(nchw(DISPLAY), plate.mode, plate.blend_low, plate.blend_high)
    np.testing.assert_allclose(hwc(matte), scale.matte_of(DISPLAY, params), atol=1e-6)


def test_finite_clears_nan_and_clamps_to_half_range():
    x = torch.tensor([float("nan"), -1.0, 2.0, 1e6])
    assert maths.finite(x).tolist() == [0.0, 0.0, 2.0, 65504.0]


def test_every_function_scripts():
    for fn in (maths.decode, maths.encode, maths.srgb_encode, maths.anchored, maths.strengthen, maths.matte):
        torch.jit.script(fn)
    torch.jit.script(maths.blend)
    torch.jit.script(maths.matte_of)
    torch.jit.script(maths.finite)
