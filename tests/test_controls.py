"""Compositor's controls on a real plate: the reconstruction matte and the expansion strength."""

import numpy as np
import OpenImageIO as oiio
import pytest
from conftest import write_image
from helpers import pixels
from typer.testing import CliRunner

import fhdr_plugin
from fhdr_plugin.host.cli import app
from fhdr_plugin.imaging import color
from fhdr_plugin.node.operation import MATTE_CHANNEL
from fhdr_plugin.params import BlendParams

FAST = {"precision": "float32", "tile": 0}


@pytest.fixture(scope="module")
def plate(sample_ldr) -> np.ndarray:
    """A 96×128 crop of the sample with clipped sky and well-exposed rock, sRGB code values in [0, 1]."""
    rgb = np.asarray(oiio.ImageBuf(str(sample_ldr)).get_pixels(oiio.FLOAT))[40:136, 100:228, :3]
    assert (rgb.max(axis=-1) > 0.99).mean() > 0.05 and (rgb.max(axis=-1) < 0.9).mean() > 0.5
    return np.ascontiguousarray(rgb)


LOSSLESS = BlendParams().for_plate(lossy=False)  # the plates here are PNG and EXR


def smoothstep_weight(
    display: np.ndarray, low: float = LOSSLESS.blend_low, high: float = LOSSLESS.blend_high
) -> np.ndarray:
    t = np.clip((display.max(axis=-1) - low) / (high - low), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def convert(tmp_path, src, *args: str) -> oiio.ImageBuf:
    out = tmp_path / f"out{''.join(args)}.exr"
    result = CliRunner().invoke(app, ["convert", str(src), str(out), "--float", "--precision", "float32", *args])
    assert result.exit_code == 0, result.output
    return oiio.ImageBuf(str(out))


@pytest.mark.parametrize("kind", ["rgb", "rgba", "many"])
def test_convert_matte_writes_the_blend_weight_beside_every_input_channel(tmp_path, plate, kind):
    h, w, _ = plate.shape
    alpha = np.ones((h, w, 1), np.float32)
    if kind == "rgb":
        src = write_image(tmp_path / "plate.png", plate)
        names = ["R", "G", "B"]
    elif kind == "rgba":
        src = write_image(tmp_path / "plate.png", np.concatenate([plate, alpha], -1), channelnames="RGBA")
        names = ["R", "G", "B", "A"]
    else:
        depth = np.linspace(1, 9, h * w, dtype=np.float32).reshape(h, w, 1)
        extra = np.concatenate([alpha, depth, depth * 2, depth * 3], -1)
        names = ["R", "G", "B", "A", "Z", "N.x", "N.y"]
        linear = color.convert(plate, "srgb_tx", "lin_rec709")
        src = write_image(tmp_path / "plate.exr", np.concatenate([linear, extra], -1), oiio.FLOAT, names)
    out = convert(tmp_path, src, "--matte")
    plain = pixels(convert(tmp_path, src))
    got = pixels(out)
    assert out.spec().channelnames == (*names, MATTE_CHANNEL)
    matte = got[..., -1]
    assert matte.min() == 0.0 and matte.max() == 1.0
    assert np.abs(matte - smoothstep_weight(plate)).max() < 2e-3
    assert np.array_equal(got[..., :-1], plain)


def test_strength_zero_is_the_linearised_input_and_larger_strengths_raise_the_highlights(plate):
    buf = oiio.ImageBuf(oiio.ImageSpec(plate.shape[1], plate.shape[0], 3, oiio.FLOAT))
    buf.set_pixels(buf.roi, plate)
    buf.specmod().attribute("oiio:ColorSpace", "srgb_tx")
    linear = color.convert(plate, "srgb_tx", "lin_rec709")
    outs = {s: pixels(fhdr_plugin.ldr_to_hdr(buf, strength=s, **FAST)) for s in (0.0, 0.5, 1.0, 2.0)}
    default = pixels(fhdr_plugin.ldr_to_hdr(buf, **FAST))
    reconstructed = smoothstep_weight(plate) > 0
    assert np.abs(outs[0.0] - linear).max() < 1e-5
    assert np.array_equal(outs[1.0], default)
    assert np.array_equal(outs[2.0][~reconstructed], linear[~reconstructed].astype(np.float32))
    means = [outs[s][reconstructed].mean() for s in sorted(outs)]
    assert all(a < b for a, b in zip(means, means[1:], strict=False)), means
    for low, high in zip(sorted(outs), sorted(outs)[1:], strict=False):
        assert (outs[high] >= outs[low] - 1e-6).all(), (low, high)
    lum = {s: outs[s] @ np.array([0.2126, 0.7152, 0.0722], np.float32) for s in outs}
    lifted = lum[1.0] > 1.001 * lum[0.0]
    assert lifted.sum() > 100
    for s in (0.5, 2.0):
        expected = lum[0.0][lifted] * (lum[1.0][lifted] / lum[0.0][lifted]) ** s
        assert np.allclose(lum[s][lifted], expected, rtol=1e-4), s


@pytest.mark.parametrize("value", ["-0.5", "nan", "9"])
def test_a_bad_strength_is_one_clear_line(tmp_path, ldr_png, value):
    result = CliRunner().invoke(app, ["convert", str(ldr_png), str(tmp_path / "o.exr"), "--strength", value])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert "strength must be 0-4" in result.output


def test_the_blend_ramp_follows_how_the_plate_was_stored(tmp_path, plate):
    png = write_image(tmp_path / "plate.png", plate)
    jpg = write_image(tmp_path / "plate.jpg", plate, attrs={"compression": "jpeg:95"})
    (tmp_path / "png").mkdir(), (tmp_path / "jpg").mkdir()
    out_png, out_jpg = convert(tmp_path / "png", png), convert(tmp_path / "jpg", jpg)
    assert out_png.spec().get_string_attribute("fhdr:blend") == "0.996-1"
    assert out_jpg.spec().get_string_attribute("fhdr:blend") == "0.95-1"  # the codec moved the near-white values
    chosen = convert(tmp_path, jpg, "--blend-low", "0.99")
    assert chosen.spec().get_string_attribute("fhdr:blend") == "0.99-1"
    # every channel the PNG did not clip is a measurement, 254 of 255 included: it comes out as the plate
    display = pixels(oiio.ImageBuf(str(png)))
    linear = color.convert(display, "srgb_tx", "lin_rec709")
    kept = (display < 1.0) & (display.max(axis=-1, keepdims=True) >= 1.0)
    assert kept.sum() > 100
    change = np.abs(pixels(out_png) - linear)[kept] / np.maximum(linear[kept], 1e-4)
    assert change.mean() < 1e-3 and change.max() < 0.02
    # while the clipped channels are reconstructed
    assert pixels(out_png)[display >= 1.0].mean() > 1.1
