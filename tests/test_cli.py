"""The fhdr command line, run as a user runs it: a real subprocess."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
from conftest import ROOT, shared
from helpers import fhdr

from fhdr_plugin.manifest import manifest


def test_convert_writes_an_hdr_exr_with_provenance(sample_ldr, tmp_path):
    out = tmp_path / "q.exr"
    run = fhdr("convert", sample_ldr, out, "--tile", "256")
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    buf = oiio.ImageBuf(str(out))
    spec = buf.spec()
    assert spec.format == oiio.HALF
    assert spec.get_string_attribute("fhdr:model") == manifest().default_model
    peak = np.asarray(buf.get_pixels(oiio.FLOAT)).max()
    assert peak > 1.0
    # make demo's summary of the same output: its peak, and most of the clipped area raised above white
    summary = subprocess.run(
        [sys.executable, "samples/summary.py", sample_ldr, out], capture_output=True, text=True, cwd=ROOT
    )
    assert summary.returncode == 0, summary.stderr
    assert f"peak {peak:.2f}" in summary.stdout
    risen = int(summary.stdout.split("% of it rose above 1.0")[0].rsplit(" ", 1)[1])
    assert risen >= 50
    oiiotool = Path(sys.executable).parent / "oiiotool"
    if oiiotool.exists():
        info = subprocess.run([oiiotool, "--info", "-v", out], capture_output=True, text=True)
        assert info.returncode == 0 and "fhdr:iterations" in info.stdout


def test_float_output_and_compression(sample_ldr, tmp_path):
    out = tmp_path / "q.exr"
    run = fhdr("--quiet", "convert", sample_ldr, out, "--float", "--compression", "piz", "--mode", "raw")
    assert run.returncode == 0 and run.stderr == ""
    spec = oiio.ImageBuf(str(out)).spec()
    assert spec.format == oiio.FLOAT and spec.get_string_attribute("compression") == "piz"
    assert spec.get_string_attribute("fhdr:mode") == "raw"


def test_errors_are_one_line_with_a_non_zero_exit(tmp_path, sample_ldr):
    (tmp_path / "afile").write_text("in the way of an output folder")
    cases = [
        (["convert", tmp_path / "missing.png", tmp_path / "o.exr"], "missing.png: no such file"),
        (["convert", tmp_path, tmp_path / "o.exr"], "is a directory"),
        (["convert", sample_ldr, tmp_path / "o.png"], "must be an .exr"),
        (["convert", sample_ldr, tmp_path / "o.exr", "--output-colorspace", "bogus"], "valid names"),
        (["convert", sample_ldr, tmp_path / "o.exr", "--iterations", "9"], "iterations must be 1-4"),
        (["convert", sample_ldr, tmp_path / "afile" / "o.exr"], "is not a folder"),
        (["convert", sample_ldr, tmp_path / "o.exr", "--device", "cuda:7"], "device"),
    ]
    for args, message in cases:
        run = fhdr(*args)
        assert run.returncode == 1, (args, run.stderr)
        assert message in run.stderr, (args, run.stderr)
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert "Traceback" not in run.stderr
    assert not (tmp_path / "o.exr").exists()


def test_damaged_input_leaves_the_existing_output_alone(tmp_path):
    damaged = shared("exr-suite/Damaged/asan_heap-oob_4cb169_255_cc7ac9cde4b8634b31cb41c8fe89b92d_exr")
    out = tmp_path / "o.exr"
    out.write_bytes(b"good frame")
    run = fhdr("convert", damaged, out)
    assert run.returncode == 1 and "cannot read" in run.stderr
    assert out.read_bytes() == b"good frame"
    assert [p.name for p in tmp_path.iterdir()] == ["o.exr"]


def test_output_equal_to_input_is_refused(tmp_path):
    src = tmp_path / "plate.exr"
    shutil.copy(shared("exr-suite/DisplayWindow/t01.exr"), src)
    before = src.read_bytes()
    run = fhdr("convert", src, src)
    assert run.returncode == 1 and "overwrite the input" in run.stderr
    assert src.read_bytes() == before


def test_debug_shows_the_traceback(tmp_path):
    run = fhdr("--debug", "convert", tmp_path / "missing.png", tmp_path / "o.exr")
    assert run.returncode != 0 and "Traceback" in run.stderr


def test_version_ops_models_hooks():
    from fhdr_plugin.version import __version__

    assert fhdr("--version").stdout.strip() == f"fhdr {__version__}"
    ops = fhdr("ops").stdout
    assert "ldr_to_hdr" in ops and "output_colorspace" in ops and "anchored|raw" in ops
    models = fhdr("models").stdout
    assert (
        f"{manifest().default_model} (default)" in models
        and "fhdr:headroom" in models
        and "fhdr:perceptual_loss" in models
    )
    hooks = fhdr("hooks").stdout
    assert "generic_host.py" in hooks and "NUKE_PATH" in hooks
