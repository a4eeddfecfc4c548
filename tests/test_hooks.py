"""The generic host script, loaded the way a host loads it."""

import runpy

import helpers
import numpy as np
import OpenImageIO as oiio
import pytest
from conftest import ROOT

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.manifest import manifest

#: Display 0.5 in sRGB, linearised.
SRGB_HALF_LINEAR = ((0.5 + 0.055) / 1.055) ** 2.4


def load_generic_host() -> dict:
    return runpy.run_path(str(ROOT / "hooks" / "generic_host.py"))


def test_generic_host_converts_a_file(sample_ldr, tmp_path):
    host = load_generic_host()
    out = host["ldr_to_hdr_file"](str(sample_ldr), str(tmp_path / "q.exr"), tile=256)
    buf = oiio.ImageBuf(out)
    assert buf.spec().get_string_attribute("fhdr:model") == manifest().default_model
    assert np.asarray(buf.get_pixels(oiio.FLOAT)).max() > 1.0


def test_generic_host_converts_an_array_with_alpha():
    host = load_generic_host()
    rgba = np.full((20, 30, 4), 0.5, np.float32)  # premultiplied: display 0.5, alpha 0.5
    rgba[..., :3] = 0.25
    rgba[5:10, 5:10, :3] = 0.5  # display white, clipped
    out = host["ldr_to_hdr_array"](rgba, input_colorspace="srgb_tx")
    assert out.shape == (20, 30, 4)
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])
    np.testing.assert_allclose(out[15:, 15:, :3], 0.5 * SRGB_HALF_LINEAR, rtol=1e-3)
    patch = out[5:10, 5:10, :3]  # the linearised white is 0.5 once premultiplied: never darker, raised on average
    assert patch.min() >= 0.5 - 1e-4 and patch.mean() > 0.5 * 1.05


def test_an_rgba_code_value_array_is_straight_as_a_png_holds_it(tmp_path):
    host = load_generic_host()
    img = np.random.default_rng(3).integers(30, 220, (24, 32, 4)).astype(np.uint8)
    img[4:12, 4:12, :3] = 255
    img[..., 3] = np.linspace(10, 255, 32).astype(np.uint8)  # from nearly clear to opaque
    spec = oiio.ImageSpec(32, 24, 4, oiio.UINT8)
    spec.attribute("oiio:UnassociatedAlpha", 1)
    png = oiio.ImageBuf(spec)
    png.set_pixels(png.roi, img)
    assert png.write(str(tmp_path / "a.png")), png.geterror()
    expected = host["ldr_to_hdr_file"](str(tmp_path / "a.png"), str(tmp_path / "a.exr"), half=False, tile=0)
    np.testing.assert_array_equal(host["ldr_to_hdr_array"](img, tile=0), oiio.ImageBuf(expected).get_pixels())


def test_generic_host_refuses_what_fhdr_convert_refuses(sample_ldr, tmp_path):
    host = load_generic_host()
    with pytest.raises(FhdrError, match="the output must be an .exr file"):
        host["ldr_to_hdr_file"](str(sample_ldr), str(tmp_path / "q.png"))
    exr = tmp_path / "plate.exr"
    exr.write_bytes(b"not converted")
    with pytest.raises(FhdrError, match="would overwrite the input"):
        host["ldr_to_hdr_file"](str(exr), str(exr))
    assert exr.read_bytes() == b"not converted" and not (tmp_path / "q.png").exists()


def test_generic_host_runs_an_operation_by_name():
    host = load_generic_host()
    assert "ldr_to_hdr" in host["operations"]()
    gray = np.full((12, 16), 0.4, np.float32)
    gray[2:6, 2:6] = 1.0
    out = host["run_on_array"]("ldr_to_hdr", gray, input_colorspace="srgb_tx", tile=0)
    assert out.shape == (12, 16, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out[8:, 8:], ((0.4 + 0.055) / 1.055) ** 2.4, rtol=1e-3)
    assert out[2:6, 2:6].min() > 1.0  # the clipped patch rises above the linearised white
    with pytest.raises(FhdrError, match="unknown operation 'sharpen'"):
        host["run_on_array"]("sharpen", gray)


def test_generic_host_converts_a_sequence_steadied_and_reports_a_bad_frame(tmp_path):
    host = load_generic_host()
    helpers.plate(tmp_path, (1, 2, 3))
    (tmp_path / "plate.0004.png").write_bytes(b"not a png")
    sequence, plates = host["ldr_to_hdr_sequence"], str(tmp_path / "plate.####.png")
    results = sequence(plates, str(tmp_path / "h.####.exr"), steady=1)
    assert [(r.frame, r.status) for r in results] == [(1, "done"), (2, "done"), (3, "done"), (4, "failed")]
    assert "plate.0004.png" in results[3].error
    spec = oiio.ImageBuf(str(tmp_path / "h.0002.exr")).spec()
    assert spec.get_string_attribute("fhdr:steady") == "1 frame either side, 2 found"
    with pytest.raises(FhdrError, match="not --mode raw"):
        host["ldr_to_hdr_sequence"](
            str(tmp_path / "plate.####.png"), str(tmp_path / "r.####.exr"), steady=1, mode="raw"
        )
    assert not list(tmp_path.glob("r.*"))
