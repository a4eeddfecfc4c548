"""Large highlights from coarser levels: the pyramid's maths, and the node and the Nuke drop-in on a real plate
enlarged so that its sky lies deeper than the network sees."""

import numpy as np
import OpenImageIO as oiio
import pytest
import torch
from conftest import write_image
from typer.testing import CliRunner

from fhdr_plugin.exports.dropin import SceneLinearFhdr
from fhdr_plugin.host.cli import app
from fhdr_plugin.imaging import color
from fhdr_plugin.manifest import manifest
from fhdr_plugin.node import pyramid
from fhdr_plugin.node.lift import log_lift
from fhdr_plugin.node.model import receptive_radius
from fhdr_plugin.node.weights import load_model
from fhdr_plugin.params import BlendParams

RAMP = BlendParams().for_plate(lossy=False)


def test_halve_averages_each_2x2_block_and_an_odd_last_row_or_column_by_the_pixels_it_has():
    x = torch.arange(15, dtype=torch.float32).reshape(1, 1, 3, 5)
    want = [[(0 + 1 + 5 + 6) / 4, (2 + 3 + 7 + 8) / 4, (4 + 9) / 2], [(10 + 11) / 2, (12 + 13) / 2, 14]]
    np.testing.assert_allclose(pyramid.halve(x)[0, 0].numpy(), want)


def test_double_is_bilinear_upsampling_by_two():
    x = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    want = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(pyramid.double(x), want, rtol=0, atol=1e-6)


def test_the_weight_rises_from_an_areas_edge_to_one_deep_inside_and_small_frames_stop():
    display = torch.full((1, 3, 200, 300), 0.5)
    display[:, :, 20:180, 20:280] = 1.0  # clipped, 80 px deep at most
    w = pyramid.weight(display, RAMP.blend_low, RAMP.blend_high, 29)[0, 0]
    assert w[100, 150] == 1.0 and 0.0 < w[100, 20] < 0.5 and w[5, 5] == 0.0
    assert pyramid.deeper(w[None, None]) and not pyramid.deeper(w[None, None, :190, :190])
    assert not pyramid.deeper(torch.zeros(1, 1, 400, 400))


def test_refine_raises_only_clipped_channels_towards_a_brighter_coarse_lift():
    linear = torch.tensor([1.0, 1.0, 0.45]).reshape(1, 3, 1, 1).repeat(1, 1, 4, 4)
    display = torch.tensor([1.0, 1.0, 0.7]).reshape(1, 3, 1, 1).repeat(1, 1, 4, 4)  # blue was not clipped
    expanded = linear * torch.tensor([2.0, 2.0, 1.0]).reshape(1, 3, 1, 1)
    coarse_linear = linear[:, :, :2, :2]
    weight = torch.ones(1, 1, 4, 4)
    low, high = RAMP.blend_low, RAMP.blend_high
    brighter = coarse_linear * torch.tensor([8.0, 8.0, 1.0]).reshape(1, 3, 1, 1)
    out = pyramid.refine(display, linear, expanded, weight, coarse_linear, brighter, low, high)
    torch.testing.assert_close(out[:, 2], linear[:, 2])  # the measured channel stays
    gain = torch.exp(log_lift(coarse_linear, brighter) - log_lift(linear, expanded)[:, :, :2, :2])
    torch.testing.assert_close(out[:, :2, :2, :2], expanded[:, :2, :2, :2] * gain)
    flat = pyramid.refine(display, linear, expanded, weight, coarse_linear, coarse_linear * 0.5, low, high)
    torch.testing.assert_close(flat, expanded)  # a coarse level that sees less lift changes nothing
    half = pyramid.refine(display, linear, expanded, weight * 0.5, coarse_linear, brighter, low, high)
    torch.testing.assert_close(half[:, :2, :2, :2], expanded[:, :2, :2, :2] * gain.sqrt())


@pytest.fixture(scope="module")
def enlarged(sample_ldr, tmp_path_factory):
    """The sample's sun and sky, enlarged twice with OIIO as a plate with more pixels sees them: its clipped sky
    lies deeper than the default model sees."""
    src = oiio.ImageBuf(str(sample_ldr))
    crop = oiio.ImageBufAlgo.cut(src, oiio.ROI(140, 364, 40, 200, 0, 1, 0, 3))
    big = oiio.ImageBufAlgo.resize(crop, roi=oiio.ROI(0, 448, 0, 320, 0, 1, 0, 3))
    assert not (src.has_error or crop.has_error or big.has_error), big.geterror()
    rgb = np.round(np.clip(big.get_pixels(oiio.FLOAT), 0.0, 1.0) * 255.0) / 255.0
    return write_image(tmp_path_factory.mktemp("plate") / "enlarged.png", rgb), rgb.astype(np.float32)


def convert(png, out, *args: str) -> tuple[np.ndarray, oiio.ImageSpec]:
    result = CliRunner().invoke(app, ["convert", str(png), str(out), "--float", "--precision", "float32", *args])
    assert result.exit_code == 0, result.output
    buf = oiio.ImageBuf(str(out))
    return np.asarray(buf.get_pixels(oiio.FLOAT))[..., :3], buf.spec()


def test_the_node_lifts_deep_inside_large_highlights_from_coarser_levels_and_nothing_else(tmp_path, enlarged):
    png, rgb = enlarged
    on, on_spec = convert(png, tmp_path / "on.exr")
    off, off_spec = convert(png, tmp_path / "off.exr", "--no-coarse")
    assert on_spec.get_string_attribute("fhdr:coarse") == "on"
    assert off_spec.get_string_attribute("fhdr:coarse") == "off"
    halo = receptive_radius(int(on_spec.get_string_attribute("fhdr:iterations")))
    display = torch.from_numpy(rgb.transpose(2, 0, 1).copy())[None]
    weight = pyramid.weight(display, RAMP.blend_low, RAMP.blend_high, halo)[0, 0].numpy()
    assert pyramid.deeper(torch.from_numpy(weight)[None, None]), "the plate must hold a deep highlight"
    assert (on >= off * (1 - 1e-6)).all(), "never dimmer than the single pass"
    brighter = (on / np.maximum(off, 1e-6)).max(axis=-1) > 1.05
    assert brighter.sum() > 100 and (weight[brighter] > 0).all(), "brighter deep inside, and only there"
    np.testing.assert_array_equal(on[weight == 0], off[weight == 0])
    linear = color.convert(rgb, "srgb_tx", color.LINEAR_SPACE)
    kept = rgb < RAMP.blend_low
    np.testing.assert_allclose(on[kept], linear[kept], rtol=1e-5, atol=1e-6)
    assert (on >= linear * (1 - 1e-5)).all(), "never darker than the plate"


def test_the_dropin_refines_large_highlights_as_the_node_does(tmp_path, enlarged):
    png, rgb = enlarged
    reference, _ = convert(png, tmp_path / "ref.exr", "--tile", "0")
    model, meta = load_model(manifest().model(None))
    module = torch.jit.script(SceneLinearFhdr(model, meta))
    linear = color.convert(rgb, "srgb_tx", color.LINEAR_SPACE)
    with torch.inference_mode():
        out = module(torch.from_numpy(np.ascontiguousarray(linear.transpose(2, 0, 1)))[None])[0]
    np.testing.assert_allclose(out.permute(1, 2, 0).numpy(), reference, rtol=1e-3, atol=1e-5)
    module.coarse = 0
    with torch.inference_mode():
        single = module(torch.from_numpy(np.ascontiguousarray(linear.transpose(2, 0, 1)))[None])[0]
    assert (out > single * 1.05).any(), "the coarse levels ran"
