"""The ldr_to_hdr node on real images: scale, channels, windows, metadata, colour spaces."""

import numpy as np
import OpenImageIO as oiio
import pytest
from conftest import shared, write_image
from helpers import pixels

import fhdr_plugin
from fhdr_plugin.errors import FhdrError
from fhdr_plugin.imaging import color
from fhdr_plugin.imaging.io import read_image
from fhdr_plugin.manifest import manifest
from fhdr_plugin.node.encoding import decode
from fhdr_plugin.node.engine import engine_for
from fhdr_plugin.node.operation import LdrToHdrParams
from fhdr_plugin.node.weights import load_model


def test_sample_expands_clipped_highlights_and_keeps_the_rest(sample_ldr):
    src = read_image(sample_ldr)
    out = fhdr_plugin.ldr_to_hdr(src, tile=128)
    hdr = pixels(out)
    ldr = pixels(src)
    linear = color.convert(ldr, "srgb_tx", "lin_rec709")
    clipped = ldr.max(axis=-1) >= 254.5 / 255
    well_exposed = ldr.max(axis=-1) < 0.85
    assert clipped.sum() > 100
    assert np.median(hdr[clipped].max(axis=-1)) > 1.0
    assert np.abs(hdr[well_exposed] - linear[well_exposed]).max() < 1e-3
    assert (hdr >= linear - 1e-3).all()
    assert np.isfinite(hdr).all() and hdr.min() >= 0


def test_raw_mode_returns_the_decoded_network_output(sample_ldr):
    buf = read_image(sample_ldr)
    out = pixels(fhdr_plugin.ldr_to_hdr(buf, mode="raw", tile=128))
    assert out.shape == (256, 512, 3)
    engine, meta = engine_for(LdrToHdrParams.from_kwargs(mode="raw", tile=128).engine)
    display = pixels(buf)[..., :3]
    assert np.allclose(out, decode(engine.run(display), meta), rtol=1e-3, atol=1e-3)
    assert out.max() <= float(meta["fhdr:headroom"]) * (1 + 1e-3) and out.min() >= 0.0


def test_provenance_attributes(sample_ldr):
    spec = fhdr_plugin.ldr_to_hdr(read_image(sample_ldr), tile=128).spec()
    assert spec.get_string_attribute("fhdr:model") == manifest().default_model
    assert spec.get_string_attribute("fhdr:iterations") == load_model(manifest().model())[1]["fhdr:iterations"]
    assert spec.get_string_attribute("fhdr:precision") in ("float32", "bfloat16")
    f32 = fhdr_plugin.ldr_to_hdr(read_image(sample_ldr), tile=128, precision="float32").spec()
    assert f32.get_string_attribute("fhdr:precision") == "float32"
    assert spec.get_string_attribute("fhdr:version") == fhdr_plugin.__version__
    assert spec.get_string_attribute("fhdr:input_colorspace") == color.resolve("srgb_tx")
    assert spec.get_string_attribute("fhdr:output_colorspace") == color.resolve("lin_rec709")
    assert spec.get_string_attribute("oiio:ColorSpace") == color.resolve("lin_rec709")


def test_acescg_output_differs_by_the_primaries_conversion(sample_ldr):
    buf = read_image(sample_ldr)
    rec709 = pixels(fhdr_plugin.ldr_to_hdr(buf, tile=128))
    aces = pixels(fhdr_plugin.ldr_to_hdr(buf, tile=128, output_colorspace="ACEScg"))
    expected = np.clip(color.convert(rec709, "lin_rec709", "ACEScg"), 0, None)
    assert np.abs(aces - expected).max() < 1e-3
    assert np.abs(aces - rec709).max() > 1e-2


def test_windows_and_metadata_survive():
    src = read_image(shared("exr-suite/DisplayWindow/t05.exr"))
    src.specmod().attribute("Artist", "compositor")
    out = fhdr_plugin.ldr_to_hdr(src, input_colorspace="srgb_tx", tile=128)
    a, b = src.spec(), out.spec()
    assert (b.x, b.y, b.width, b.height) == (a.x, a.y, a.width, a.height)
    assert (b.full_x, b.full_y, b.full_width, b.full_height) == (a.full_x, a.full_y, a.full_width, a.full_height)
    assert b.get_string_attribute("Artist") == "compositor"


def test_alpha_and_other_channels_pass_through():
    src = read_image(shared("exr-suite/Beachball/singlepart.0001.exr"))
    out = fhdr_plugin.ldr_to_hdr(src, tile=256)
    a, b = pixels(src), pixels(out)
    assert out.spec().channelnames == src.spec().channelnames
    rgb = [src.spec().channelindex(c) for c in "RGB"]
    others = [i for i in range(src.spec().nchannels) if i not in rgb]
    np.testing.assert_array_equal(a[..., others], b[..., others])
    assert (src.spec().x, src.spec().y) == (out.spec().x, out.spec().y)


def test_premultiplied_colour_is_unpremultiplied_around_the_network(tmp_path):
    img = np.zeros((32, 32, 4), np.float32)
    img[..., :3] = 0.4
    img[..., 3] = 1.0
    img[:, 16:, :3] = 0.2
    img[:, 16:, 3] = 0.5
    buf = read_image(write_image(tmp_path / "a.exr", img, oiio.FLOAT, ["R", "G", "B", "A"]))
    out = pixels(fhdr_plugin.ldr_to_hdr(buf, input_colorspace="lin_rec709"))
    np.testing.assert_allclose(out[:, 20:, :3], out[:, :12, :3] * 0.5, atol=1e-3)
    np.testing.assert_array_equal(out[..., 3], img[..., 3])


def test_grey_image_stays_grey(tmp_path):
    grey = np.linspace(0, 1, 24 * 24, dtype=np.float32).reshape(24, 24, 1)
    buf = read_image(write_image(tmp_path / "g.png", grey))
    out = fhdr_plugin.ldr_to_hdr(buf)
    assert out.nchannels == 1
    assert pixels(out).max() >= 1.0


def test_non_finite_input_gives_finite_output():
    out = pixels(fhdr_plugin.ldr_to_hdr(read_image(shared("exr-suite/TestImages/BrightRingsNanInf.exr")), tile=256))
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 65504


def test_unknown_parameter_and_bad_values(ldr_png):
    buf = read_image(ldr_png)
    with pytest.raises(FhdrError, match="unknown parameter.*loudness"):
        fhdr_plugin.ldr_to_hdr(buf, loudness=2)
    with pytest.raises(FhdrError, match="mode must be"):
        fhdr_plugin.ldr_to_hdr(buf, mode="loud")
    with pytest.raises(FhdrError, match="iterations must be 1-4"):
        fhdr_plugin.ldr_to_hdr(buf, iterations=7)
    with pytest.raises(FhdrError, match="output_colorspace must name a colour space"):
        LdrToHdrParams.from_kwargs(output_colorspace="")
    with pytest.raises(FhdrError, match="valid names"):
        fhdr_plugin.ldr_to_hdr(buf, output_colorspace="not-a-space")


#: A config shaped like Nuke's nuke-default: no srgb_tx, linear Rec.709 called ``linear``.
NUKE_STYLE_CONFIG = """ocio_profile_version: 2
roles: {default: raw, reference: linear, scene_linear: linear, color_picking: sRGB, data: raw}
displays:
  default:
    - !<View> {name: sRGB, colorspace: sRGB}
colorspaces:
  - !<ColorSpace> {name: linear}
  - !<ColorSpace>
    name: sRGB
    to_reference: !<ExponentWithLinearTransform> {gamma: 2.4, offset: 0.055}
  - !<ColorSpace> {name: raw, isdata: true}
"""


def test_a_config_without_the_models_space_converts_the_spaces_it_names(monkeypatch, tmp_path, sample_ldr):
    buf = read_image(sample_ldr)
    reference = pixels(fhdr_plugin.ldr_to_hdr(buf, tile=128))
    config = tmp_path / "nuke-style.ocio"
    config.write_text(NUKE_STYLE_CONFIG)
    monkeypatch.setenv("OCIO", str(config))
    out = fhdr_plugin.ldr_to_hdr(buf, input_colorspace="sRGB", output_colorspace="linear", tile=128)
    assert out.spec().get_string_attribute("fhdr:output_colorspace") == "linear"
    np.testing.assert_allclose(pixels(out), reference, rtol=0.02, atol=1e-4)  # the same sRGB curve, two configs
    untagged = oiio.ImageBuf(oiio.ImageSpec(8, 8, 3, oiio.UINT8))
    with pytest.raises(FhdrError, match="has no srgb_tx .*--input-colorspace"):
        fhdr_plugin.ldr_to_hdr(untagged)


def test_linear_means_linear_rec709_as_in_oiio(tmp_path):
    assert color.resolve("linear") == color.resolve("lin_rec709") != color.resolve("scene_linear")
    plate = np.full((16, 16, 3), 0.25, dtype=np.float32)
    plate[4:8, 4:8] = 1.5
    buf = oiio.ImageBuf(oiio.ImageSpec(16, 16, 3, oiio.FLOAT))
    buf.set_pixels(oiio.ROI(0, 16, 0, 16, 0, 1, 0, 3), plate)
    buf.specmod().attribute("oiio:ColorSpace", "linear")  # as OIIO's own colorconvert to "linear" tags it
    out = fhdr_plugin.ldr_to_hdr(buf, tile=0)
    assert out.spec().get_string_attribute("fhdr:input_colorspace") == color.resolve("lin_rec709")
    np.testing.assert_allclose(pixels(out)[0, 0], 0.25, rtol=1e-5)


def test_the_output_declares_its_own_space_not_the_inputs(tmp_path, ldr_png):
    acescg = tmp_path / "acescg.exr"
    buf = oiio.ImageBufAlgo.colorconvert(read_image(ldr_png), "srgb_tx", "ACEScg")
    assert buf.write(str(acescg), oiio.HALF), buf.geterror()
    assert oiio.ImageBuf(str(acescg)).spec().get_string_attribute("colorInteropID") == "lin_ap1_scene"
    out = tmp_path / "out.exr"
    assert fhdr_plugin.ldr_to_hdr(read_image(acescg), tile=0).write(str(out))
    spec = oiio.ImageBuf(str(out)).spec()
    assert color.config().equivalent(spec.get_string_attribute("oiio:ColorSpace"), "lin_rec709")
    assert spec.get_string_attribute("colorInteropID") == "lin_rec709_scene"


def test_ocio_environment_variable_is_honoured(monkeypatch, ldr_png):
    monkeypatch.setenv("OCIO", "/nonexistent/config.ocio")
    with pytest.raises(FhdrError, match="OCIO config /nonexistent"):
        fhdr_plugin.ldr_to_hdr(read_image(ldr_png))
