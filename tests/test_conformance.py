"""Every file of the OpenEXR conformance suite (../shared/data/exr-suite) through ``fhdr convert``.

The suite is listed when the tests are collected, so files added to it are covered. Every file runs through
``pipeline.convert_file`` with the shipped network in this process, a few also through the real command line, and
every damaged file through the real command line in a forked child with a time limit.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
from conftest import SHARED_DATA, exercised
from forked_cli import run_forked
from helpers import FHDR, pixels

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.host.pipeline import convert_file
from fhdr_plugin.imaging import color
from fhdr_plugin.imaging.channels import layout
from fhdr_plugin.manifest import manifest
from fhdr_plugin.node import operation as node
from fhdr_plugin.params import LdrToHdrParams

SUITE = SHARED_DATA / "exr-suite"
DAMAGED_TIMEOUT_S = 60
#: Files refused on purpose (OIIO cannot read subsampled chroma), with the words of the refusal.
REFUSED = {"Chromaticities/Rec709_YC.exr": "subsampled chroma", "Chromaticities/XYZ_YC.exr": "subsampled chroma"}
#: Input spaces the files declare through their chromaticities; the others are linear Rec.709.
DECLARED_SPACES = {"Chromaticities/XYZ.exr": "lin_ciexyzd65_scene"}
#: Attributes that describe the file rather than the image, which the EXR writer sets anew.
FILE_ATTRIBUTES = {"compression", "oiio:SourcePath", "oiio:subimages", "oiio:RowsPerChunk", "chromaticities"}
#: Through the real command and network: an RGBA file, a display window around negative coordinates, multi-part.
REAL_RUNS = ["TestImages/stripes.exr", "DisplayWindow/t07.exr", "Beachball/multipart.0001.exr"]


def suite(damaged: bool) -> list[str]:
    """The suite's damaged files, or all the others, relative to it; none when the suite is absent."""
    if not SUITE.is_dir():
        return []
    files = sorted(str(p.relative_to(SUITE)) for p in SUITE.rglob("*") if p.is_file())
    return [f for f in files if f.startswith("Damaged/") == damaged]


ABSENT = [pytest.param(None, marks=pytest.mark.skip(reason=f"{SUITE} not available"))]


def attributes(spec: oiio.ImageSpec) -> dict:
    return {a.name: spec.getattribute(a.name) for a in spec.extra_attribs}


def expected_linear(rgb: np.ndarray, alpha: np.ndarray | None, space: str) -> tuple[np.ndarray, np.ndarray]:
    """What anchoring keeps where the input is well exposed (premultiplied like the input), and where that is."""
    clean = np.clip(np.nan_to_num(rgb, nan=0.0, posinf=node.HALF_MAX, neginf=0.0), 0.0, node.HALF_MAX)
    if alpha is not None:
        clean = np.where(alpha > 0, clean / np.maximum(alpha, 1e-12), clean)
    linear = np.clip(color.convert(clean, space, color.LINEAR_SPACE), 0.0, node.HALF_MAX)
    display = np.clip(color.convert(clean, space, color.MODEL_SPACE), 0.0, 1.0)
    well_exposed = display.max(axis=-1) < 0.85
    if alpha is not None:
        linear = np.where(alpha > 0, linear * alpha, linear)
    return linear, well_exposed


def check_conversion(relative: str, out: Path, model: str) -> None:
    """``out`` is ``relative``'s first part, converted: windows, channels, metadata, non-colour channels and the
    well-exposed colour kept, provenance added, every colour value finite, >= 0 and <= 65504."""
    src, dst = oiio.ImageBuf(str(SUITE / relative)), oiio.ImageBuf(str(out))
    a, b = src.spec(), dst.spec()
    assert (b.x, b.y, b.width, b.height) == (a.x, a.y, a.width, a.height)
    assert (b.full_x, b.full_y, b.full_width, b.full_height) == (a.full_x, a.full_y, a.full_width, a.full_height)
    assert b.channelnames == a.channelnames and b.format == oiio.HALF
    before, after = attributes(a), attributes(b)
    kept = {k: v for k, v in before.items() if k not in FILE_ATTRIBUTES | set(node.DROPPED_ATTRIBUTES)}
    kept = {k: v for k, v in kept.items() if not k.startswith("thumbnail_")}
    assert {k: after.get(k) for k in kept} == kept
    space = color.resolve(DECLARED_SPACES.get(relative, color.LINEAR_SPACE))
    assert after["fhdr:model"] == model and after["fhdr:version"]
    assert after["fhdr:input_colorspace"] == space
    assert color.resolve(after["oiio:ColorSpace"]) == after["fhdr:output_colorspace"] == color.resolve("lin_rec709")

    chans = layout(a)
    colour = sorted(set(chans.rgb))
    x, y = pixels(src), pixels(dst)
    others = [i for i in range(a.nchannels) if i not in colour]
    np.testing.assert_array_equal(y[..., others], x[..., others])
    out_colour = y[..., colour]
    assert np.isfinite(out_colour).all() and out_colour.min() >= 0 and out_colour.max() <= node.HALF_MAX
    alpha = None if chans.alpha is None else np.clip(np.nan_to_num(x[..., [chans.alpha]]), 0.0, 1.0)
    linear, well_exposed = expected_linear(x[..., list(chans.rgb)], alpha, space)
    if chans.grey:
        linear = (linear @ node.REC709_LUMA)[..., None]
    tolerance = 2e-3 * linear + 1e-4
    assert (np.abs(out_colour - linear)[well_exposed] <= tolerance[well_exposed]).all(), "well-exposed colour changed"
    assert (out_colour >= linear - tolerance).all(), "darker than the input"


@pytest.mark.parametrize("relative", suite(damaged=False) or ABSENT)
def test_suite_file_converts(relative: str, tmp_path: Path, caplog) -> None:
    out = tmp_path / "out.exr"
    exercised("exr-suite files converted in-process")
    if relative in REFUSED:
        with pytest.raises(FhdrError, match=REFUSED[relative]) as refusal:
            convert_file(SUITE / relative, out, LdrToHdrParams.from_kwargs(tile=256))
        assert str(SUITE / relative) in str(refusal.value) and "convert it to RGB" in str(refusal.value)
        assert list(tmp_path.iterdir()) == []
        return
    with caplog.at_level(logging.WARNING, logger="fhdr"):
        convert_file(SUITE / relative, out, LdrToHdrParams.from_kwargs(tile=256))
    parts = oiio.ImageBuf(str(SUITE / relative)).nsubimages
    if parts > 1:
        assert f"{parts} parts; converting only part 0 (" in caplog.text
    check_conversion(relative, out, manifest().default_model)
    assert [p.name for p in tmp_path.iterdir()] == ["out.exr"]


def test_xyz_primaries_are_converted_to_rec709(tmp_path: Path) -> None:
    """XYZ.exr and Rec709.exr hold the same picture in two sets of primaries: honouring the chromaticities
    attribute makes their outputs agree, and the output declares the Rec.709 primaries it holds."""
    outputs = []
    for name in ("Rec709", "XYZ"):
        src = SUITE / f"Chromaticities/{name}.exr"
        if not src.exists():
            pytest.skip(f"{src} not available")
        convert_file(src, tmp_path / f"{name}.exr", LdrToHdrParams.from_kwargs(tile=256))
        outputs.append(oiio.ImageBuf(str(tmp_path / f"{name}.exr")))
    rec709, xyz = (pixels(b) for b in outputs)
    assert np.median(np.abs(xyz - rec709)) < 0.01 * np.median(rec709)
    assert outputs[1].spec().getattribute("chromaticities") == pytest.approx(color.CHROMATICITIES["lin_rec709_scene"])


@pytest.mark.parametrize("relative", REAL_RUNS)
def test_real_command_and_network(relative: str, tmp_path: Path) -> None:
    src = SUITE / relative
    if not src.exists():
        pytest.skip(f"{src} not available")
    out = tmp_path / "out.exr"
    run = subprocess.run([*FHDR, "convert", src, out, "--tile", "256"], capture_output=True, text=True, timeout=600)
    exercised("exr-suite files through the real command and network")
    assert run.returncode == 0, run.stderr
    lines = run.stderr.strip().splitlines()
    assert lines[-1] == f"fhdr: wrote {out}"
    if "multipart" in relative:
        assert "10 parts; converting only part 0 (rgba_right), the first with colour" in run.stderr
    check_conversion(relative, out, manifest().default_model)
    assert [p.name for p in tmp_path.iterdir()] == ["out.exr"]


def test_every_damaged_file_fails_cleanly(tmp_path: Path) -> None:
    """Each damaged file through ``fhdr convert`` (forked from one process, so each is cheap): exit code 1, one
    clear line naming the file, no signal, no hang, nothing written."""
    damaged = suite(damaged=True)
    if not damaged:
        pytest.skip(f"{SUITE / 'Damaged'} not available")
    inputs = [SUITE / f for f in damaged]
    commands = [["convert", src, tmp_path / f"out{i}.exr", "--tile", "256"] for i, src in enumerate(inputs)]
    records = run_forked(commands, DAMAGED_TIMEOUT_S)
    assert [r["args"][1] for r in records] == [str(src) for src in inputs]
    exercised("exr-suite damaged files through fhdr convert (forked)", len(records))
    problems = []
    for r in records:
        lines = r["stderr"].strip().splitlines()
        clear = len(lines) == 1 and lines[0].startswith(f"fhdr: error: {r['args'][1]}: ")
        if r["status"] != 1 or not clear or r["seconds"] > DAMAGED_TIMEOUT_S:
            problems.append(f"{r['args'][1]}: status {r['status']} after {r['seconds']:.1f} s: {r['stderr']}")
    assert problems == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("index", [0, 1, 2])
def test_damaged_files_through_the_real_command(index: int, tmp_path: Path) -> None:
    damaged = suite(damaged=True)
    if not damaged:
        pytest.skip(f"{SUITE / 'Damaged'} not available")
    src = SUITE / damaged[index * len(damaged) // 3]
    out = tmp_path / "out.exr"
    out.write_bytes(b"a good frame")
    run = subprocess.run([*FHDR, "convert", src, out], capture_output=True, text=True, timeout=DAMAGED_TIMEOUT_S)
    exercised("exr-suite damaged files through the real command")
    assert run.returncode == 1, run.stderr
    assert run.stderr.startswith(f"fhdr: error: {src}: ") and len(run.stderr.strip().splitlines()) == 1
    assert out.read_bytes() == b"a good frame"
    assert [p.name for p in tmp_path.iterdir()] == ["out.exr"]
