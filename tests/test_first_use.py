"""What a pipeline TD meets on first use (issue 12): each case gives a correct result or one clear line, through
the real command line in a subprocess where the command line is involved."""

from __future__ import annotations

import fcntl
import json
import os
import re
import struct
import subprocess
import termios
from pathlib import Path

import helpers
import numpy as np
import OpenImageIO as oiio
import pytest
import torch
from conftest import ROOT, write_image
from helpers import FHDR, fhdr, pixels

import fhdr_plugin
from fhdr_plugin.errors import FhdrError
from fhdr_plugin.imaging import color
from fhdr_plugin.manifest import manifest
from fhdr_plugin.node.weights import load_model
from fhdr_plugin.params import LdrToHdrParams

FAST = ["--tile", "0", "--precision", "float32"]
README = (ROOT / "README.md").read_text()


def one_error_line(run: subprocess.CompletedProcess) -> str:
    assert run.returncode == 1, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fhdr: error: "), run.stderr
    return lines[0]


def plate(tmp_path: Path, name: str = "plate.png") -> Path:
    """One 56x40 frame of the plate, its values up to 0.86 (into the blend ramp)."""
    [path] = helpers.plate(tmp_path, [3], name, shape=(40, 56), low=20 / 255, high=220 / 255)
    return path


# 1. iterations other than the trained count
def test_other_iterations_are_refused_naming_the_trained_count(tmp_path):
    line = one_error_line(
        fhdr("convert", plate(tmp_path), tmp_path / "o.exr", "--model", "fhdr-i1", "--iterations", "2")
    )
    assert "fhdr-i1 was trained with 1 iteration" in line and not (tmp_path / "o.exr").exists()
    line = one_error_line(fhdr("export", tmp_path / "m.pt", "--model", "fhdr-i1", "--iterations", "4"))
    assert "fhdr-i1 was trained with 1 iteration" in line and not (tmp_path / "m.pt").exists()
    assert "--iterations 2" not in (ROOT / "docs" / "nuke-inference.md").read_text()


def test_export_names_its_iterations_and_infers_the_format(tmp_path):
    run = fhdr("export", tmp_path / "m.pt")
    assert run.returncode == 0, run.stderr
    iterations = load_model(manifest().model())[1]["fhdr:iterations"]
    assert "torchscript" in run.stderr and f"{manifest().default_model}, {iterations} iteration" in run.stderr
    extra = {"fhdr.json": ""}
    torch.jit.load(str(tmp_path / "m.pt"), _extra_files=extra)
    assert json.loads(extra["fhdr.json"])["fhdr:iterations"] == iterations


# 8. the export format follows the extension
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "onnx", "m.pt"], "the extension .pt means torchscript, not onnx"),
        (["--format", "torchscript", "m.onnx"], "the extension .onnx means onnx, not torchscript"),
        (["m.bin"], "cannot tell the format from the extension"),
    ],
)
def test_export_refuses_a_format_its_extension_contradicts(tmp_path, args, message):
    line = one_error_line(fhdr("export", *[tmp_path / a if "." in a else a for a in args]))
    assert message in line
    assert not list(tmp_path.iterdir())


# 2. a declared colour space the config cannot resolve
def log_dpx(tmp_path: Path) -> Path:
    return write_image(
        tmp_path / "log.dpx",
        np.full((24, 32, 3), 0.45, np.float32),
        fmt=oiio.UINT16,
        attrs={"oiio:ColorSpace": "KodakLog", "oiio:BitsPerSample": 10},
    )


def test_an_unknown_declared_space_fails_naming_it(tmp_path):
    src = log_dpx(tmp_path)
    assert oiio.ImageBuf(str(src)).spec().get_string_attribute("dpx:Transfer") == "Logarithmic"
    line = one_error_line(fhdr("convert", src, tmp_path / "o.exr", *FAST))
    assert "'KodakLog'" in line and "--input-colorspace" in line and "lin_rec709, srgb_tx, ACEScg" in line
    run = fhdr("convert", src, tmp_path / "o.exr", "--input-colorspace", "srgb_tx", *FAST)
    assert run.returncode == 0, run.stderr


#: A config with a Cineon log space that answers to OIIO's name for a log DPX, "KodakLog".
CINEON_CONFIG = """ocio_profile_version: 2.1
roles: {default: lin_rec709, scene_linear: lin_rec709, data: raw}
file_rules:
  - !<Rule> {name: Default, colorspace: lin_rec709}
displays:
  sRGB:
    - !<View> {name: Raw, colorspace: raw}
colorspaces:
  - !<ColorSpace> {name: lin_rec709}
  - !<ColorSpace> {name: raw, isdata: true}
  - !<ColorSpace>
    name: srgb_tx
    to_scene_reference: !<ExponentWithLinearTransform> {gamma: 2.4, offset: 0.055}
  - !<ColorSpace>
    name: Cineon
    aliases: [KodakLog]
    to_scene_reference: !<LogAffineTransform>
      {base: 10, lin_side_slope: 0.9892, lin_side_offset: 0.0108, log_side_slope: 0.29326, log_side_offset: 0.66960,
       direction: inverse}
"""


def test_a_declared_space_the_config_knows_is_converted(tmp_path):
    config = tmp_path / "cineon.ocio"
    config.write_text(CINEON_CONFIG)
    src = log_dpx(tmp_path)  # code value 460 of 1023
    run = fhdr("convert", src, tmp_path / "o.exr", *FAST, env={"OCIO": str(config)})
    assert run.returncode == 0, run.stderr
    assert oiio.ImageBuf(str(tmp_path / "o.exr")).spec().get_string_attribute("fhdr:input_colorspace") == "Cineon"
    cineon = (10 ** ((460 - 685) / 300) - 0.0108) / 0.9892
    np.testing.assert_allclose(pixels(tmp_path / "o.exr"), cineon, rtol=0.01)


# 3. arrays in the generic host script
def generic_host() -> dict:
    import runpy

    return runpy.run_path(str(ROOT / "hooks" / "generic_host.py"))


def test_arrays_are_read_as_fhdr_convert_reads_the_same_file(tmp_path):
    src = plate(tmp_path)
    run = fhdr("convert", src, tmp_path / "ref.exr", "--float", *FAST)
    assert run.returncode == 0, run.stderr
    reference = pixels(tmp_path / "ref.exr")
    code = np.asarray(oiio.ImageBuf(str(src)).get_pixels(oiio.UINT8)).reshape(reference.shape)
    host, params = generic_host(), {"tile": 0, "precision": "float32"}
    close = {"rtol": 1e-5, "atol": 1e-4}  # the two runs tile differently: float rounding
    np.testing.assert_allclose(host["ldr_to_hdr_array"](code, **params), reference, **close)
    np.testing.assert_allclose(host["ldr_to_hdr_array"](code.astype(np.uint16) * 257, **params), reference, **close)
    display = code.astype(np.float32) / 255.0
    with pytest.raises(FhdrError, match="a float array needs input_colorspace"):
        host["ldr_to_hdr_array"](display, **params)
    with pytest.raises(FhdrError, match="ldr_to_hdr: a float array needs input_colorspace"):
        host["run_on_array"]("ldr_to_hdr", display, **params)
    from_float = host["ldr_to_hdr_array"](display, input_colorspace="srgb_tx", **params)
    np.testing.assert_allclose(from_float, reference, **close)
    assert "uint8" in README and "a float array needs" in README.replace("\n", " ")
    for bad in (code[0, :, 0], code[None], code[..., :2], code.tolist()):
        with pytest.raises(FhdrError, match="takes a"):
            host["ldr_to_hdr_array"](bad, **params)


# 4. short colour-space names
def documented_short_names() -> dict[str, str]:
    """The README's table of short names: | `name` | `canonical name` | … |"""
    section = README[README.index("Short names") :]
    rows = re.findall(r"^ *\| `([^`]+)` \| `([^`]+)` \|", section, flags=re.MULTILINE)
    return dict(rows)


def test_short_names_resolve_as_documented_and_are_logged(tmp_path):
    table = documented_short_names()
    assert {"linear", "lin_rec709", "srgb_tx", "sRGB", "ACEScg", "scene_linear"} <= set(table)
    for short, canonical in table.items():
        assert color.resolve(short) == canonical, short
    run = fhdr("convert", plate(tmp_path), tmp_path / "o.exr", "--input-colorspace", "linear", *FAST)
    assert run.returncode == 0, run.stderr
    assert "'linear' is Linear Rec.709 (sRGB)" in run.stderr
    spec = oiio.ImageBuf(str(tmp_path / "o.exr")).spec()
    assert spec.get_string_attribute("fhdr:input_colorspace") == "Linear Rec.709 (sRGB)"


def test_a_jpeg_whose_exif_says_not_srgb_is_read_as_srgb_with_a_warning(tmp_path):
    buf = oiio.ImageBuf(str(plate(tmp_path)))
    buf.specmod().attribute("Exif:ColorSpace", 0xFFFF)  # uncalibrated: what an Adobe RGB camera writes
    buf.specmod().erase_attribute("oiio:ColorSpace")  # else the writer declares sRGB in the Exif
    assert buf.write(str(tmp_path / "adobe.jpg")), buf.geterror()
    run = fhdr("convert", tmp_path / "adobe.jpg", tmp_path / "o.exr", *FAST)
    assert run.returncode == 0, run.stderr
    assert "Exif says its colours are not sRGB" in run.stderr and "--input-colorspace" in run.stderr
    named = fhdr("convert", tmp_path / "adobe.jpg", tmp_path / "n.exr", "--input-colorspace", "srgb_tx", *FAST)
    assert named.returncode == 0 and "Exif" not in named.stderr, named.stderr


def test_colour_space_errors_list_the_readmes_names_first(tmp_path):
    line = one_error_line(fhdr("convert", plate(tmp_path), tmp_path / "o.exr", "--input-colorspace", "lin_rec"))
    assert "did you mean lin_rec709" in line
    assert line.index("lin_rec709, srgb_tx, ACEScg") < line.index("ACES2065-1")


# 10, 11. the install and the README
def make_dry_run(target: str) -> str:
    run = subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_make_demo_installs_only_the_product_and_make_test_adds_dev():
    for target in ("install", "demo"):
        assert "pip install --quiet -e ." in make_dry_run(target)
        assert "[dev]" not in make_dry_run(target)
    assert "-e '.[dev]'" in make_dry_run("test")
    assert README.startswith("# fhdr\n\n```sh\nmake demo ")
    for target in ("demo", "test"):  # its time and its venv's size, in one sentence
        assert re.search(rf"`make {target}`[^.]*(\d+ MB[^.]*\d+ s|\d+ s[^.]*\d+ MB)", README.replace("\n", " "))


def test_the_documented_activation_puts_fhdr_and_oiiotool_on_the_path():
    for doc in (README, (ROOT / "docs" / "oiiotool-chain.md").read_text()):
        assert "source .venv/bin/activate" in doc
    if not (ROOT / ".venv" / "bin" / "activate").exists():
        pytest.skip("no .venv at the repository root")
    run = subprocess.run(
        ["bash", "-c", "source .venv/bin/activate && command -v fhdr oiiotool"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")},
    )
    assert run.returncode == 0, run.stderr
    assert [Path(p).name for p in run.stdout.split()] == ["fhdr", "oiiotool"]
    assert all(Path(p).parent.parent.name == ".venv" for p in run.stdout.split())


# 13. tile size
def test_readme_documents_the_tile_trade_off_and_the_auto_choice():
    from fhdr_plugin.node import engine

    text = README.replace("\n", " ")
    assert "--tile 0" in text and "--tile 64" in text
    assert f"{engine.MIN_TILE}" in text and f"{engine.MAX_TILE}" in text
    assert "a quarter of the free memory" in text


# 14. a terminal of zero width
def test_a_zero_width_terminal_gets_one_line_per_frame(tmp_path):
    for frame in (1, 2):
        plate(tmp_path, f"in.{frame:04d}.png")
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    args = ["batch", tmp_path / "in.####.png", tmp_path / "out.####.exr", *FAST]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*FHDR, *map(str, args)], stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    output = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    assert proc.wait(timeout=300) == 0, output
    text = output.decode()
    for frame in (1, 2):
        assert re.search(rf"frame {frame} done: .*out\.{frame:04d}\.exr", text), text


# 15. a truncated PNG
def test_a_truncated_png_gives_one_line(tmp_path):
    good = plate(tmp_path, "good.png").read_bytes()
    bad = tmp_path / "bad.png"
    bad.write_bytes(good[: len(good) // 2])
    line = one_error_line(fhdr("convert", bad, tmp_path / "o.exr"))
    assert str(bad) in line and "libpng" not in line


# 16. an unreadable ImageBuf through the Python API
def test_the_api_names_a_file_it_cannot_read(tmp_path, capfd):
    missing = tmp_path / "missing.png"
    with pytest.raises(FhdrError, match=f"cannot read {re.escape(str(missing))}: no such file"):
        fhdr_plugin.ldr_to_hdr(oiio.ImageBuf(str(missing)))
    bad = tmp_path / "bad.png"
    bad.write_bytes(plate(tmp_path, "good.png").read_bytes()[:200])
    with pytest.raises(FhdrError, match=f"cannot read {re.escape(str(bad))}: "):
        fhdr_plugin.ldr_to_hdr(oiio.ImageBuf(str(bad)))
    err = capfd.readouterr().err
    assert "libpng" not in err and "pending error" not in err


# 7. every node parameter is a command-line option
def test_every_node_parameter_is_an_option_of_convert_and_batch(tmp_path):
    wide = {"COLUMNS": "300"}
    for command in ("convert", "batch"):
        shown = fhdr(command, "--help", env=wide).stdout
        for p in LdrToHdrParams.describe():
            assert f"--{p.name.replace('_', '-')}" in shown, (command, p.name)
    src = plate(tmp_path)
    # The blend alone (--no-context): a lower ramp blends more of the network in, never less.
    runs = (("default.exr", ["--no-context"]), ("low.exr", ["--no-context", "--blend-low", "0.8"]), ("context.exr", []))
    for name, extra in runs:
        run = fhdr("convert", src, tmp_path / name, "--float", *FAST, *extra)
        assert run.returncode == 0, run.stderr
    default, low = pixels(tmp_path / "default.exr"), pixels(tmp_path / "low.exr")
    peak = pixels(src).max(axis=-1)
    np.testing.assert_array_equal(low[peak < 0.8], default[peak < 0.8])
    ramp = (peak > 0.8) & (peak < 0.9)
    assert (np.abs(low - default).max(axis=-1)[ramp] > 1e-3).sum() >= 5  # where the network lifts above the plate
    assert (low >= default - 1e-6).all()
    # The lift head changes the clipped pixels only.
    context = pixels(tmp_path / "context.exr")
    np.testing.assert_array_equal(context[peak < 0.99], default[peak < 0.99])
    assert not np.array_equal(context, default)


# 9. convert and batch create the output folder
def test_convert_and_batch_create_the_output_folder(tmp_path):
    out = tmp_path / "new" / "deep" / "o.exr"
    run = fhdr("convert", plate(tmp_path), out, *FAST)
    assert run.returncode == 0, run.stderr
    assert oiio.ImageBuf(str(out)).spec().get_string_attribute("fhdr:model")
    for frame in (1, 2):
        plate(tmp_path, f"in.{frame:04d}.png")
    run = fhdr("batch", tmp_path / "in.####.png", tmp_path / "hdr" / "v1" / "out.####.exr", *FAST)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in (tmp_path / "hdr" / "v1").iterdir()) == ["out.0001.exr", "out.0002.exr"]
    (tmp_path / "afile").write_text("in the way")
    line = one_error_line(fhdr("convert", plate(tmp_path), tmp_path / "afile" / "sub" / "o.exr", *FAST))
    assert f"output folder {tmp_path / 'afile'} is not a folder" in line


# 5. an input that is already HDR
def test_an_hdr_input_is_named_in_one_warning(tmp_path):
    img = np.full((24, 32, 3), 0.18, np.float32)
    img[4:8, 4:8] = 927.0
    src = write_image(tmp_path / "hdr.exr", img, fmt=oiio.HALF)
    run = fhdr("convert", src, tmp_path / "o.exr", *FAST)
    assert run.returncode == 0, run.stderr
    [line] = [x for x in run.stderr.splitlines() if "already HDR" in x]
    assert f"{src}: the input is already HDR (values up to 927)" in line
    assert "keeps every input value" in line
    np.testing.assert_allclose(pixels(tmp_path / "o.exr")[4:8, 4:8], 927.0, rtol=1e-3)
    raw = fhdr("convert", src, tmp_path / "raw.exr", "--mode", "raw", *FAST)
    assert "raw mode replaces it with the network's output" in raw.stderr
    ldr = fhdr("convert", plate(tmp_path), tmp_path / "ldr.exr", *FAST)
    assert ldr.returncode == 0 and "already HDR" not in ldr.stderr


# 6. premultiplied and straight alpha
def rgba(colour: np.ndarray, alpha: float) -> np.ndarray:
    return np.concatenate([colour, np.full((*colour.shape[:2], 1), alpha, np.float32)], axis=-1)


def test_alpha_follows_the_file_or_the_alpha_option(tmp_path):
    colour = pixels(plate(tmp_path))
    straight, premultiplied = rgba(colour, 0.5), rgba(colour * 0.5, 0.5)
    as_stored = {"oiio:UnassociatedAlpha": 1}
    rgba_names = ("R", "G", "B", "A")
    files = {
        "straight.png": write_image(tmp_path / "straight.png", straight, oiio.UINT16, rgba_names, as_stored),
        "premult.png": write_image(tmp_path / "premult.png", premultiplied, oiio.UINT16, rgba_names, as_stored),
        "premult.exr": write_image(tmp_path / "premult.exr", premultiplied, oiio.FLOAT, rgba_names),
    }
    runs = {
        "reference": (plate(tmp_path), []),
        "straight.png": (files["straight.png"], []),
        "premult.png": (files["premult.png"], ["--alpha", "premultiplied"]),
        "premult.exr": (files["premult.exr"], ["--input-colorspace", "srgb_tx"]),
        "straight.exr": (
            write_image(tmp_path / "straight.exr", straight, oiio.FLOAT, rgba_names),
            ["--alpha", "straight", "--input-colorspace", "srgb_tx"],
        ),
    }
    out = {}
    for name, (src, extra) in runs.items():
        run = fhdr("convert", src, tmp_path / f"{name}.out.exr", "--float", *FAST, *extra)
        assert run.returncode == 0, run.stderr
        out[name] = pixels(tmp_path / f"{name}.out.exr")
    expected = out["reference"] * 0.5
    for name in ("straight.png", "premult.png", "premult.exr", "straight.exr"):
        np.testing.assert_allclose(out[name][..., :3], expected, rtol=1e-3, atol=1e-3, err_msg=name)
        np.testing.assert_array_equal(out[name][..., 3], np.float32(pixels(runs[name][0])[0, 0, 3]))
    doubled = fhdr("convert", files["premult.png"], tmp_path / "doubled.exr", "--float", *FAST)
    assert doubled.returncode == 0, doubled.stderr
    assert np.abs(pixels(tmp_path / "doubled.exr")[..., :3] - expected).max() > 0.05
    assert "--alpha" in README and "premultiplied" in README
