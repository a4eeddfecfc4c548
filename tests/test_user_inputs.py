"""Inputs a user will try: odd channel layouts, bit depths and frame shapes, bad paths and settings, a damaged
installation. Each converts, or fails with one line that names the problem and says what to do, leaving no partial
file and any earlier output as it was. (Missing files, directories as input, bad iterations, devices and
compressions are in test_cli.py and test_io.py.)"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
from conftest import ROOT, exercised, write_image
from forked_cli import run_forked
from helpers import FHDR, pixels

import fhdr_plugin
from fhdr_plugin.errors import FhdrError
from fhdr_plugin.host.pipeline import convert_file
from fhdr_plugin.imaging import color
from fhdr_plugin.imaging.io import as_stored, read_image
from fhdr_plugin.manifest import manifest as read_manifest
from fhdr_plugin.params import LdrToHdrParams

DEFAULT_MODEL = read_manifest().default_model

GOOD = b"a good output of an earlier run"
FAST = {"tile": 256}


def picture(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Values on the 8-bit grid (so 8- and 16-bit files hold the same picture), with a clipped highlight."""
    img = np.random.default_rng(seed).integers(20, 200, (height, width, channels)) / 255.0
    img[: max(1, height // 3), : max(1, width // 3)] = 1.0
    return img.astype(np.float32)


def unchanged(folder: Path, out: Path, before: list[str]) -> None:
    """The earlier output is as it was, and nothing (no temporary file either) was added to ``folder``."""
    assert out.read_bytes() == GOOD
    assert sorted(p.name for p in folder.iterdir()) == before


@pytest.mark.parametrize("shape", [(1, 1), (1, 200), (200, 1)])
def test_tiny_and_thin_frames(tmp_path: Path, shape: tuple[int, int]) -> None:
    src = write_image(tmp_path / "in.png", picture(*shape))
    convert_file(src, tmp_path / "out.exr", LdrToHdrParams.from_kwargs(**FAST))
    exercised("user inputs converted")
    out = pixels(tmp_path / "out.exr")
    linear = color.convert(pixels(src), "srgb_tx", "lin_rec709")
    assert out.shape == (*shape, 3)
    assert np.isfinite(out).all() and (out >= linear - 1e-2).all()


STRAIGHT = {"oiio:UnassociatedAlpha": 1}
RGBA = ("R", "G", "B", "A")
#: A faint pixel of a straight PNG: bright but below white, at alpha 20/255.
FAINT, FAINT_ALPHA = 250 / 255, 20 / 255


def rgba_plate(hidden: float) -> np.ndarray:
    """``picture`` with straight alpha: transparent on the right (its colour ``hidden``), faint in a band."""
    img = np.concatenate([picture(32, 32), np.ones((32, 32, 1), np.float32)], axis=-1)
    img[:, 24:, :3], img[:, 24:, 3] = hidden, 0.0
    img[20:28, 4:20, :3], img[20:28, 4:20, 3] = FAINT, FAINT_ALPHA
    return img


def test_straight_colour_under_zero_alpha_never_changes_the_visible_pixels(tmp_path: Path) -> None:
    outs = []
    for hidden in (0.0, 1.0):  # black, or white (clipped, so the network would take it for a highlight)
        src = write_image(tmp_path / f"h{hidden}.png", rgba_plate(hidden), channelnames=RGBA, attrs=STRAIGHT)
        convert_file(src, tmp_path / f"h{hidden}.exr", LdrToHdrParams.from_kwargs(**FAST))
        outs.append(pixels(tmp_path / f"h{hidden}.exr"))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert outs[0][:, 24:, :3].max() == 0.0
    assert outs[0][:10, :10, :3].max() > 1.0  # the clipped corner was reconstructed


def test_an_imagebuf_of_a_png_gives_what_the_command_line_gives(tmp_path: Path) -> None:
    src = write_image(tmp_path / "soft.png", rgba_plate(0.0), channelnames=RGBA, attrs=STRAIGHT)
    expected = pixels(fhdr_plugin.ldr_to_hdr(read_image(src), **FAST))
    got = pixels(fhdr_plugin.ldr_to_hdr(oiio.ImageBuf(str(src)), **FAST))  # premultiplied by OIIO, in 8 bits
    np.testing.assert_array_equal(got, expected)
    faint = color.convert(np.full((1, 1, 3), FAINT, np.float32), "srgb_tx", "lin_rec709") * FAINT_ALPHA
    np.testing.assert_allclose(got[20:28, 4:20, :3], np.broadcast_to(faint, (8, 16, 3)), rtol=1e-3)
    assert as_stored(oiio.ImageBuf(str(src))).spec().get_int_attribute("oiio:UnassociatedAlpha") == 1
    edited = oiio.ImageBuf(str(src))
    edited.setpixel(0, 0, (0.0, 0.0, 0.0, 1.0))
    assert as_stored(edited) is edited  # a host's own pixels are what it converts


def test_an_imagebuf_of_a_multi_part_exr_converts_the_part_the_command_line_converts(tmp_path: Path) -> None:
    path = tmp_path / "parts.exr"
    depth = oiio.ImageSpec(32, 24, 1, oiio.FLOAT)
    depth.channelnames, depth["name"] = ("Z",), "depth"
    beauty = oiio.ImageSpec(32, 24, 3, oiio.HALF)
    beauty["name"] = "beauty"
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), [depth, beauty]), out.geterror()
    assert out.write_image(np.full((24, 32, 1), 7.0, np.float32)), out.geterror()
    assert out.open(str(path), beauty, "AppendSubimage"), out.geterror()
    assert out.write_image(np.clip(picture(24, 32) * 1.3, 0, None)), out.geterror()
    out.close()
    expected = pixels(fhdr_plugin.ldr_to_hdr(read_image(path), **FAST))
    got = fhdr_plugin.ldr_to_hdr(oiio.ImageBuf(str(path)), **FAST)
    assert tuple(got.spec().channelnames) == ("R", "G", "B")
    np.testing.assert_array_equal(pixels(got), expected)


def test_a_float_aov_stays_float_in_a_half_output_and_a_new_matte_replaces_the_old(tmp_path: Path) -> None:
    depth = np.full((24, 32, 1), 3000.123, np.float32)
    img = np.concatenate([picture(24, 32), np.ones((24, 32, 1), np.float32), depth], axis=-1)
    spec = oiio.ImageSpec(32, 24, 5, oiio.FLOAT)  # held as float, written per channel
    spec.channelnames, spec.alpha_channel = ("R", "G", "B", "A", "Z"), 3
    spec.channelformats = (oiio.HALF,) * 4 + (oiio.FLOAT,)
    buf = oiio.ImageBuf(spec)
    buf.set_pixels(buf.roi, img)
    assert buf.write(str(tmp_path / "aov.exr")), buf.geterror()
    params = LdrToHdrParams.from_kwargs(matte=True, input_colorspace="srgb_tx", **FAST)
    convert_file(tmp_path / "aov.exr", tmp_path / "once.exr", params)
    once = oiio.ImageBuf(str(tmp_path / "once.exr"))
    names = ("R", "G", "B", "A", "Z", "fhdr.matte")
    assert once.spec().channelnames == names
    assert [str(f) for f in once.spec().channelformats] == ["half"] * 4 + ["float", "half"]
    np.testing.assert_array_equal(pixels(once)[..., 4], depth[..., 0])  # the float depth, not rounded to half
    convert_file(tmp_path / "once.exr", tmp_path / "twice.exr", params)
    assert oiio.ImageBuf(str(tmp_path / "twice.exr")).spec().channelnames == names


def test_16_bit_png_and_tiff_give_the_8_bit_result(tmp_path: Path) -> None:
    img = picture(24, 32)
    outputs = []
    for fmt, name in ((oiio.UINT8, "in8.png"), (oiio.UINT16, "in16.png"), (oiio.UINT16, "in16.tif")):
        src = write_image(tmp_path / name, img, fmt)
        convert_file(src, tmp_path / f"{name}.exr", LdrToHdrParams.from_kwargs(**{**FAST, "precision": "float32"}))
        exercised("user inputs converted")
        spec = oiio.ImageBuf(str(tmp_path / f"{name}.exr")).spec()
        assert spec.get_string_attribute("fhdr:input_colorspace") == color.resolve("srgb_tx")
        outputs.append(pixels(tmp_path / f"{name}.exr"))
    for other in outputs[1:]:
        np.testing.assert_allclose(other, outputs[0], rtol=2e-3, atol=1e-4)
    assert outputs[0].max() > 1.0


def test_grey_with_alpha_keeps_its_alpha(tmp_path: Path) -> None:
    img = picture(16, 20, 2)
    src = write_image(tmp_path / "ga.png", img)
    assert oiio.ImageBuf(str(src)).spec().channelnames == ("Y", "A")
    convert_file(src, tmp_path / "out.exr", LdrToHdrParams.from_kwargs(**FAST))
    exercised("user inputs converted")
    out = oiio.ImageBuf(str(tmp_path / "out.exr"))
    assert out.spec().channelnames == ("Y", "A")
    np.testing.assert_allclose(pixels(tmp_path / "out.exr")[..., 1], pixels(src)[..., 1], atol=1e-3)


def test_cmyk_tiff_is_converted_as_the_rgb_oiio_reads(tmp_path: Path) -> None:
    spec = oiio.ImageSpec(20, 16, 4, oiio.UINT8)
    spec.channelnames = ("C", "M", "Y", "K")
    spec.attribute("tiff:ColorSpace", "CMYK")
    buf = oiio.ImageBuf(spec)
    buf.set_pixels(buf.roi, np.random.default_rng(2).uniform(0, 0.5, (16, 20, 4)).astype(np.float32))
    assert buf.write(str(tmp_path / "cmyk.tif")), buf.geterror()
    convert_file(tmp_path / "cmyk.tif", tmp_path / "out.exr", LdrToHdrParams.from_kwargs(**FAST))
    exercised("user inputs converted")
    out = oiio.ImageBuf(str(tmp_path / "out.exr")).spec()
    assert out.channelnames == ("R", "G", "B") and (out.width, out.height) == (20, 16)


def two_unnamed_channels(folder: Path) -> Path:
    return write_image(folder / "two.tif", picture(8, 8, 2))


def cmyk_channels(folder: Path) -> Path:
    return write_image(folder / "cmyk.exr", picture(8, 8, 4), oiio.HALF, ["C", "M", "Y", "K"])


def odd_primaries(folder: Path) -> Path:
    spec = oiio.ImageSpec(8, 8, 3, oiio.HALF)
    spec.attribute("chromaticities", oiio.TypeDesc("float[8]"), (0.7, 0.3, 0.2, 0.7, 0.1, 0.1, 0.31, 0.33))
    buf = oiio.ImageBuf(spec)
    buf.set_pixels(buf.roi, picture(8, 8))
    assert buf.write(str(folder / "odd.exr")), buf.geterror()
    return folder / "odd.exr"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (two_unnamed_channels, r"two\.tif: .*cannot tell the colour channels among R, G; give it R, G, B \(or Y\)"),
        (cmyk_channels, r"cmyk\.exr: .*CMYK images are not supported; convert to RGB first"),
        (odd_primaries, r"odd\.exr: .*chromaticities \(0\.7, 0\.3, .*name its space with input_colorspace"),
    ],
)
def test_unusable_channels_and_primaries_are_refused(tmp_path: Path, make, message: str) -> None:
    src = make(tmp_path)
    out = tmp_path / "out.exr"
    out.write_bytes(GOOD)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(FhdrError, match=message):
        convert_file(src, out, LdrToHdrParams.from_kwargs(**FAST))
    exercised("user inputs refused")
    unchanged(tmp_path, out, before)


def test_odd_primaries_convert_once_the_space_is_named(tmp_path: Path) -> None:
    src = odd_primaries(tmp_path)
    convert_file(src, tmp_path / "out.exr", LdrToHdrParams.from_kwargs(**{**FAST, "input_colorspace": "ACEScg"}))
    exercised("user inputs converted")
    spec = oiio.ImageBuf(str(tmp_path / "out.exr")).spec()
    assert spec.get_string_attribute("fhdr:input_colorspace") == color.resolve("ACEScg")


def test_command_line_mistakes_are_one_line(tmp_path: Path) -> None:
    """Through the real ``main()``: usage errors and bad settings, one line each, and no output touched."""
    src = write_image(tmp_path / "in.png", picture(8, 8))
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "plate.0001.exr").write_bytes(GOOD)
    (tmp_path / "notes.txt").write_text("shot notes\n")
    out = tmp_path / "out.exr"
    out.write_bytes(GOOD)
    (tmp_path / "link.png").symlink_to(src)
    cases = [
        (["convert", src, out, "--sparkle", "2"], 2, "No such option: --sparkle (see 'fhdr convert --help')"),
        (["blur", src, out], 2, "No such command 'blur'. (see 'fhdr --help')"),
        (["convert", src, out, "--mode", "loud"], 2, "Invalid value for '--mode'"),
        (["convert", src, out, "--tile", "big"], 2, "Invalid value for '--tile'"),
        (["convert", src], 2, "Missing argument 'output'."),
        (["convert", src, out, "--input-colorspace", "bogus"], 1, "unknown colour space 'bogus'; valid names: "),
        (["convert", src, tmp_path / "afile" / "o.exr"], 1, f"output folder {tmp_path / 'afile'} is not a folder"),
        (["convert", tmp_path / "notes.txt", out], 1, "notes.txt: cannot read: not an image format"),
        (["convert", src, tmp_path / "in.png.exr", "--precision", "float64"], 2, "Invalid value for '--precision'"),
        (["batch", tmp_path / "plate.####.exr", tmp_path / "plate.####.exr"], 1, "would overwrite the input"),
        (
            ["batch", tmp_path / "plate.####.exr", tmp_path / "plate.####.exr", "--frames", "0-1", "--skip-existing"],
            1,
            "plate.0001.exr: the output would overwrite the input",
        ),
        (["batch", tmp_path / "plate.####.exr", tmp_path / "afile/h.####.exr"], 1, "afile is not a folder"),
        (["batch", tmp_path, tmp_path / "h.####.exr"], 1, "no frame number in the name (use #, @, %04d or a glob"),
        (["batch", tmp_path / "shot.####.png", tmp_path / "h.####.exr"], 1, "no frames match"),
        (["batch", src, out, "--frames"], 2, "Option '--frames' requires an argument. (see 'fhdr batch --help')"),
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    records = run_forked([args for args, _, _ in cases], 120)
    exercised("command-line mistakes (forked)", len(records))
    for (args, code, message), record in zip(cases, records, strict=True):
        lines = record["stderr"].strip().splitlines()
        assert record["status"] == code, (args, record)
        assert len(lines) == 1 and lines[0].startswith("fhdr: error: ") and message in lines[0], (args, record)
    assert "ACEScg" in records[5]["stderr"]
    unchanged(tmp_path, out, before)
    assert (tmp_path / "plate.0001.exr").read_bytes() == GOOD


def test_output_through_a_link_to_the_input_is_refused(tmp_path: Path) -> None:
    src = write_image(tmp_path / "plate.exr", picture(8, 8), oiio.HALF)
    original = src.read_bytes()
    (tmp_path / "alias.exr").symlink_to(src)
    with pytest.raises(FhdrError, match="would overwrite the input"):
        convert_file(src, tmp_path / "alias.exr", LdrToHdrParams.from_kwargs(**FAST))
    exercised("user inputs refused")
    assert src.read_bytes() == original


def test_output_that_is_a_directory(tmp_path: Path) -> None:
    src = write_image(tmp_path / "in.png", picture(8, 8))
    (tmp_path / "out.exr").mkdir()
    with pytest.raises(FhdrError, match=r"out\.exr: is a directory"):
        convert_file(src, tmp_path / "out.exr", LdrToHdrParams.from_kwargs(**FAST))
    exercised("user inputs refused")
    assert list((tmp_path / "out.exr").iterdir()) == []


def test_full_disk_keeps_the_earlier_output(tmp_path: Path) -> None:
    """With a file-size limit (as on a full disk), the command fails in one line and the old output stays."""
    src = write_image(tmp_path / "in.png", picture(64, 96))
    out = tmp_path / "out.exr"
    out.write_bytes(GOOD)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    run = subprocess.run(
        [*FHDR, "convert", src, out, "--float", "--compression", "none", "--tile", "256"],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit,
    )
    exercised("user inputs refused")
    assert run.returncode == 1, run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith(f"fhdr: error: {out}: cannot write: ")
    unchanged(tmp_path, out, ["in.png", "out.exr"])


@pytest.fixture
def installed_copy(tmp_path: Path) -> Path:
    """A copy of the installation (package, weights and manifest) to damage; put it first on PYTHONPATH."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "fhdr_plugin", site / "fhdr_plugin", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "plugin.toml", site / "plugin.toml")
    return site


def run_copy(site: Path, *args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([*FHDR, *map(str, args)], capture_output=True, text=True, timeout=300, env=env, cwd=site)


def test_tampered_weights_stop_the_command(installed_copy: Path, tmp_path: Path) -> None:
    weights = installed_copy / "fhdr_plugin" / "models" / f"{DEFAULT_MODEL}.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    src = write_image(tmp_path / "in.png", picture(8, 8))
    out = tmp_path / "out.exr"
    out.write_bytes(GOOD)
    run = run_copy(installed_copy, "convert", src, out)
    exercised("damaged installations")
    assert run.returncode == 1, run.stderr
    (line,) = run.stderr.strip().splitlines()
    assert str(weights) in line and "sha256" in line and "reinstall fhdr" in line
    unchanged(tmp_path, out, ["in.png", "out.exr", "site"])


def test_models_lists_every_model_and_names_the_damaged_one(installed_copy: Path) -> None:
    other = next(name for name in read_manifest().models if name != DEFAULT_MODEL)
    weights = installed_copy / "fhdr_plugin" / "models" / f"{other}.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"?")
    run = run_copy(installed_copy, "models")
    assert run.returncode == 1
    listed = [line.split(":")[0] for line in run.stdout.splitlines() if not line.startswith(" ")]
    assert listed == [f"{n} (default)" if n == DEFAULT_MODEL else n for n in read_manifest().models]
    assert "  fhdr:iterations: " in run.stdout  # the sound model's metadata
    errors = run.stderr.strip().splitlines()
    assert str(weights) in errors[0] and "sha256" in errors[0]
    assert errors[-1] == f"fhdr: error: 1 of {len(read_manifest().models)} models cannot be used: {other}"


def test_bad_manifest_stops_every_command(installed_copy: Path, tmp_path: Path) -> None:
    manifest = installed_copy / "plugin.toml"
    manifest.write_text(manifest.read_text().replace(f'default_model = "{DEFAULT_MODEL}"', 'default_model = "fhdr-i9"'))
    src = write_image(tmp_path / "in.png", picture(8, 8))
    for args in (["convert", src, tmp_path / "out.exr"], ["ops"], ["models"]):
        run = run_copy(installed_copy, *args)
        exercised("damaged installations")
        assert run.returncode == 1, (args, run.stderr)
        (line,) = run.stderr.strip().splitlines()
        assert line.startswith("fhdr: error: ")
        assert line.endswith(f"{manifest}: default_model 'fhdr-i9' is not among [models]"), line
    assert not (tmp_path / "out.exr").exists()
