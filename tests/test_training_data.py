"""The training data pipeline: reading, the paired layout, LDR synthesis, crops and augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
from conftest import shared, write_image

from fhdr_plugin.node.encoding import decode, encode
from training import data
from training.data import HDRCrops, PairedCrops, Synthesis

CAMERA = Synthesis.plain()


def scene(h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    """A smooth HDR scene with a bright light: linear values from ~0.02 to ~40."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = 0.05 + 0.6 * np.stack((x, y, 0.5 * (x + y)), axis=-1) + rng.uniform(0, 0.02, (h, w, 3))
    light = 40.0 * np.exp(-((x - 0.6) ** 2 + (y - 0.3) ** 2) / 0.005)
    return (base + light[..., None]).astype(np.float32)


def write_pair(root: Path, stem: str, hdr: np.ndarray, exposure: float, ldr_ext: str = ".png") -> None:
    """An 8-bit sRGB LDR of ``hdr * exposure`` and the HDR at its own scale, as ``root/LDR`` + ``root/HDR``."""
    (root / "LDR").mkdir(parents=True, exist_ok=True)
    (root / "HDR").mkdir(parents=True, exist_ok=True)
    write_image(root / "LDR" / f"{stem}{ldr_ext}", data.srgb_encode(hdr * exposure))
    write_image(root / "HDR" / f"{stem}.exr", hdr, oiio.FLOAT)


@pytest.mark.parametrize(("suffix", "fmt"), [(".exr", oiio.HALF), (".exr", oiio.FLOAT), (".hdr", oiio.FLOAT)])
def test_hdr_is_read_in_rgb_order(tmp_path: Path, suffix: str, fmt):
    pixels = np.zeros((4, 5, 3), np.float32)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 1.0, 2.0, 4.0
    path = write_image(tmp_path / f"rgb{suffix}", pixels, fmt)
    got = data.read_rgb(path)
    assert got.shape == (4, 5, 3)
    assert got[2, 3] == pytest.approx([1.0, 2.0, 4.0])


def test_real_hdr_reads_as_rgb():
    got = data.read_rgb(shared("hdr-train/polyhaven512_lobby.exr"))
    assert got.shape == (256, 512, 3) and got.dtype == np.float32
    assert np.isfinite(got).all()


def test_paired_files_match_by_stem(tmp_path: Path):
    for stem in ("b", "a"):
        write_pair(tmp_path, stem, scene(), 1.0)
    (tmp_path / "LDR" / "notes.txt").write_text("not an image")
    pairs = data.paired_files(tmp_path)
    assert [(a.name, b.name) for a, b in pairs] == [("a.png", "a.exr"), ("b.png", "b.exr")]


def test_paired_files_reject_a_mismatched_stem(tmp_path: Path):
    write_pair(tmp_path, "a", scene(), 1.0)
    write_pair(tmp_path, "b", scene(), 1.0)
    (tmp_path / "LDR" / "b.png").rename(tmp_path / "LDR" / "c.png")
    with pytest.raises(ValueError, match=r"LDR c\.png is paired with HDR b\.exr"):
        data.paired_files(tmp_path)


def test_paired_files_reject_unequal_counts(tmp_path: Path):
    write_pair(tmp_path, "a", scene(), 1.0)
    write_pair(tmp_path, "b", scene(), 1.0)
    (tmp_path / "HDR" / "b.exr").unlink()
    with pytest.raises(ValueError, match="2 LDR files but 1 HDR files"):
        data.paired_files(tmp_path)


def test_load_pair_aligns_the_hdr_to_the_ldr_white(tmp_path: Path):
    hdr = scene()
    write_pair(tmp_path, "a", hdr, exposure=3.7)
    ldr, rel = data.load_pair(tmp_path / "LDR" / "a.png", tmp_path / "HDR" / "a.exr")
    assert ldr.shape == rel.shape == hdr.shape
    assert ldr.max() == 1.0 and ldr.min() >= 0.0
    assert np.median(rel / hdr) == pytest.approx(3.7, rel=0.01)
    # the light is far above the LDR's white, and survives in the aligned HDR
    assert rel.max() > 100


def test_load_pair_rejects_different_sizes(tmp_path: Path):
    write_pair(tmp_path, "a", scene(), 1.0)
    write_image(tmp_path / "HDR" / "a.exr", scene(32, 32), oiio.FLOAT)
    with pytest.raises(ValueError, match="a pair must have one size"):
        data.load_pair(tmp_path / "LDR" / "a.png", tmp_path / "HDR" / "a.exr")


def test_paired_crops_keep_input_and_target_aligned(tmp_path: Path):
    syn = Synthesis(headroom=16.0, encoding="linear")
    write_pair(tmp_path, "a", scene(seed=1), exposure=2.0)
    write_pair(tmp_path, "b", scene(80, 64, seed=2), exposure=0.5)
    crops = PairedCrops.from_folder(tmp_path, 24, syn, seed=5)
    for _ in range(10):
        ldr, tgt = crops.sample()
        assert ldr.shape == tgt.shape == (24, 24, 3)
        assert ldr.dtype == tgt.dtype == np.float32
        assert tgt.min() >= 0.0 and tgt.max() <= 1.0
        # the same pixels under the same flip and rotation: the linearised input matches the target below white
        ok = data.well_exposed(ldr)
        assert np.allclose(data.srgb_decode(ldr)[ok], tgt[ok] * syn.headroom, rtol=0.03, atol=2e-3)
    ldr, tgt = crops.batch(3)
    assert ldr.shape == tgt.shape == (3, 3, 24, 24)
    again = PairedCrops.from_folder(tmp_path, 24, syn, seed=5)
    for _ in range(10):  # the samples drawn above, then the same batch
        again.sample()
    assert np.array_equal(again.batch(3)[0], ldr)


def test_paired_crops_reject_pairs_smaller_than_the_crop(tmp_path: Path):
    pair = (np.zeros((16, 40, 3), np.float32), np.zeros((16, 40, 3), np.float32))
    with pytest.raises(ValueError, match="smaller than the 32-pixel crop"):
        PairedCrops([pair], 32, Synthesis(), 0)


def test_srgb_decode_inverts_encode():
    x = np.linspace(0.0, 1.0, 101)
    assert data.srgb_decode(data.srgb_encode(x)) == pytest.approx(x, abs=1e-12)
    assert data.srgb_encode(np.array([0.0, 0.0031308, 0.18, 1.0])) == pytest.approx(
        [0.0, 0.04045, 0.46135, 1.0], abs=1e-4
    )


@pytest.mark.parametrize("fraction", [0.005, 0.02, 0.08, 0.25])
def test_exposure_clips_the_requested_fraction(fraction: float):
    hdr = np.maximum(data.read_rgb(shared("hdr-train/polyhaven512_lobby.exr")), 0.0)
    rel = data.expose(hdr, fraction)
    assert np.mean(rel.max(-1) > 1.0) == pytest.approx(fraction, abs=0.001)
    ldr = data.synthesise(rel, np.random.default_rng(0), CAMERA)
    clipped = np.mean(ldr.max(-1) >= 1.0)
    # 8-bit quantisation rounds values just below white up to 255 as well
    assert fraction <= clipped <= fraction * 1.1 + 0.001


def test_exposure_of_a_black_image_is_none():
    assert data.expose(np.zeros((8, 8, 3), np.float32), 0.05) is None


def test_synthesis_is_deterministic_and_quantised():
    rel = data.expose(scene(), 0.05)
    syn = Synthesis()
    a = data.synthesise(rel, np.random.default_rng(7), syn)
    b = data.synthesise(rel, np.random.default_rng(7), syn)
    c = data.synthesise(rel, np.random.default_rng(8), syn)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32 and a.min() >= 0.0 and a.max() == 1.0
    codes = a * 255
    assert np.allclose(codes, np.round(codes), atol=1e-4)
    assert len(np.unique(np.round(codes))) > 50


def test_plain_camera_synthesis_is_srgb_of_the_clipped_scene():
    rel = data.expose(scene(), 0.05)
    ldr = data.synthesise(rel, np.random.default_rng(0), CAMERA)
    assert np.abs(ldr - data.srgb_encode(np.clip(rel, 0, 1))).max() <= 0.5 / 255 + 1e-6


def test_target_is_relative_to_white_over_the_headroom():
    rel = np.array([[[0.0, 1.0, 8.0], [16.0, 32.0, -1.0]]], np.float32)
    assert data.target(rel, Synthesis(headroom=16.0, encoding="linear")) == pytest.approx(
        np.array([[[0.0, 1 / 16, 0.5], [1.0, 1.0, 0.0]]])
    )


def test_mu_law_target_decodes_back_to_the_hdr():
    rel = np.array([[[0.0, 0.01, 1.0], [7.5, 200.0, 300.0]]], np.float32)
    tgt = data.target(rel, Synthesis(headroom=256.0))
    assert tgt.min() >= 0.0 and tgt.max() == pytest.approx(1.0)
    meta = {"fhdr:headroom": "256", "fhdr:encoding": "mu-law", "fhdr:mu": "5000"}
    assert decode(tgt, meta) == pytest.approx(np.minimum(rel, 256.0), rel=1e-4, abs=1e-6)
    # white sits a third of the way up, so the LDR range and eight stops of highlights share the output
    assert 0.3 < tgt[0, 0, 2] < 0.4


def test_augment_shapes_and_values():
    img = np.arange(5 * 7 * 3, dtype=np.float32).reshape(5, 7, 3)
    rng = np.random.default_rng(0)
    shapes = set()
    for _ in range(40):
        out = data.augment(img, rng)
        shapes.add(out.shape)
        assert np.array_equal(np.sort(out, axis=None), np.sort(img, axis=None))
        assert np.array_equal(out[..., 0] + 1, out[..., 1])  # channels travel together
    assert shapes == {(5, 7, 3), (7, 5, 3)}


def test_hdr_crops_shapes_and_determinism():
    hdr = data.read_rgb(shared("hdr-train/polyhaven512_lobby.exr"))
    syn = Synthesis()
    a = HDRCrops([hdr], 32, syn, seed=3)
    ldr, tgt = a.sample()
    assert ldr.shape == tgt.shape == (32, 32, 3)
    assert ldr.dtype == tgt.dtype == np.float32
    assert ldr.min() >= 0.0 and ldr.max() <= 1.0 and tgt.min() >= 0.0 and tgt.max() <= 1.0
    bl, bt = a.batch(4)
    assert bl.shape == bt.shape == (4, 3, 32, 32)
    assert bl.flags.c_contiguous and bt.flags.c_contiguous
    b = HDRCrops([hdr], 32, syn, seed=3)
    b.sample()
    assert all(np.array_equal(x, y) for x, y in zip(b.batch(4), (bl, bt), strict=True))
    assert not np.array_equal(HDRCrops([hdr], 32, syn, seed=4).batch(4)[0], bl)


def test_whole_image_exposure_with_crops_centred_on_the_highlights():
    hdr = data.read_rgb(shared("hdr-train/polyhaven512_lobby.exr"))
    focused = HDRCrops([hdr], 32, Synthesis(focus=1.0), seed=0)
    anywhere = HDRCrops([hdr], 32, Synthesis(focus=0.0), seed=0)
    hit = [focused.sample()[0].max() >= 1.0 for _ in range(40)]
    missed = [anywhere.sample()[0].max() < 1.0 for _ in range(40)]
    assert all(hit)  # every focused crop holds clipped pixels
    assert sum(missed) > 10  # the exposure is the whole image's: most random crops clip nothing
    assert [lv.image.shape[:2] for lv in focused.levels[0]] == [(256, 512), (128, 256), (64, 128)]


def test_source_crops_centre_on_the_lights():
    # a low sun: its disc is a few of the clipped pixels, far brighter than the glare and sky around it
    hdr = data.read_rgb(shared("hdr-train/polyhaven512_sunset.exr"))
    lights = HDRCrops([hdr], 32, Synthesis(focus=1.0, source=1.0), seed=0)
    clipped = HDRCrops([hdr], 32, Synthesis(focus=1.0), seed=0)
    bright = encode(np.float32(50.0), 256.0, "mu-law")  # 50x white in the target's encoding

    def share(crops: HDRCrops) -> float:
        return float(np.mean([crops.sample()[1].max() > bright for _ in range(40)]))

    assert share(lights) > 2 * share(clipped) > 0


def test_downscale_keeps_the_light():
    hdr = data.read_rgb(shared("hdr-train/polyhaven512_lobby.exr"))
    small = data.downscale(hdr, 4)
    assert small.shape == (64, 128, 3)
    assert small.mean() == pytest.approx(hdr.mean(), rel=1e-4)


def test_camera_family_curves_noise_and_jpeg():
    rel = data.expose(scene(), 0.05)
    plain = data.synthesise(rel, np.random.default_rng(0), CAMERA)
    jpeg = data.synthesise(rel, np.random.default_rng(0), Synthesis.plain(jpeg=1.0))
    assert jpeg.shape == plain.shape and jpeg.min() >= 0.0 and jpeg.max() <= 1.0
    assert 0 < np.abs(jpeg - plain).mean() < 0.02  # compressed, but the same picture
    curved = [data.synthesise(rel, np.random.default_rng(i), Synthesis(jpeg=0.0)) for i in range(8)]
    assert len({round(float(c.mean()), 6) for c in curved}) == 8  # each camera renders the scene differently
    x = np.linspace(0.0, 4.0, 401)
    rolled = data.shoulder(x, 0.7)
    assert np.array_equal(rolled[x <= 0.7], x[x <= 0.7])
    assert np.all(np.diff(rolled) > 0) and rolled.max() < 1.0


def test_a_shot_is_one_scene_through_one_camera_shifted_and_renoised():
    hdr = data.read_rgb(shared("hdr-train/polyhaven512_lobby.exr"))
    crops = HDRCrops([hdr], 32, Synthesis(noise=0.01, jpeg=0.0, focus=1.0), seed=5)
    (ldr_a, tgt_a), (ldr_b, tgt_b) = crops.shot(2)
    assert ldr_a.shape == ldr_b.shape == tgt_a.shape == tgt_b.shape == (32, 32, 3)
    assert not np.array_equal(tgt_a, tgt_b)  # shifted by a fraction of a pixel
    assert np.corrcoef(tgt_a.ravel(), tgt_b.ravel())[0, 1] > 0.9  # but the same picture
    assert not np.array_equal(ldr_a, ldr_b)
    ldr, tgt = crops.batch(4, frames=2)
    assert ldr.shape == tgt.shape == (4, 3, 32, 32)
    with pytest.raises(ValueError, match="whole shots"):
        crops.batch(3, frames=2)


def test_a_shift_resamples_between_pixels():
    img = np.arange(12, dtype=np.float32).reshape(3, 4, 1)
    assert np.array_equal(data.subpixel_shift(img, 0.0, 0.0), img[:2, :3])
    assert np.allclose(data.subpixel_shift(img, 0.5, 0.5), (img[:2, :3] + img[1:, 1:] + img[:2, 1:] + img[1:, :3]) / 4)


def test_one_camera_renders_the_same_curve_with_new_noise():
    rel = data.expose(scene(), 0.05)
    camera = data.Camera.draw(np.random.default_rng(2), Synthesis(noise=0.01, jpeg=0.0, shoulder=0.0))
    a, b = (camera.render(rel, np.random.default_rng(s)) for s in (0, 1))
    assert not np.array_equal(a, b)
    assert np.abs(a - b).mean() < 0.01
    clean = data.Camera(gamma=camera.gamma, contrast=camera.contrast).render(rel, np.random.default_rng(0))
    assert np.abs(a - clean).mean() < 0.01  # the noise is the only difference
