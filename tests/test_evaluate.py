"""`python -m training evaluate` end to end on one small real HDR image, synthesised and paired."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
from conftest import shared, write_image
from typer.testing import CliRunner

from fhdr_plugin.imaging import color
from training import data
from training.__main__ import app
from training.baselines import BASELINES
from training.evaluate import (
    BARELY_PIXELS,
    BARELY_TRUTH,
    CAMERA,
    INPUT_SPACE,
    SHEET_CELL,
    SHEET_STOPS,
    barely_case,
    enlarged,
    synthetic_cases,
)
from training.metrics import clipped_ratio

pytestmark = pytest.mark.usefixtures("one_thread")

METHODS = ["fhdr_anchored", "fhdr_raw", *BASELINES]


@pytest.fixture(scope="module")
def hdr_folder(tmp_path_factory) -> Path:
    """A 96x192 region of a real HDR image (with lamps) as an EXR."""
    image = data.read_rgb(shared("hdr-train/polyhaven512_lobby.exr"))[60:156, 100:292]
    folder = tmp_path_factory.mktemp("hdr")
    write_image(folder / "lobby.exr", image, oiio.HALF)
    return folder


def run(*args: str) -> str:
    result = CliRunner().invoke(app, ["evaluate", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_synthetic_cases_are_deterministic(hdr_folder: Path):
    a = list(synthetic_cases([hdr_folder / "lobby.exr"], (0.02, 0.08), seed=0))
    b = list(synthetic_cases([hdr_folder / "lobby.exr"], (0.02, 0.08), seed=0))
    assert [c.name for c in a] == ["lobby@2.0%", "lobby@8.0%"]
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.ldr, y.ldr) and np.array_equal(x.hdr, y.hdr)
    assert a[0].clipped.mean() == pytest.approx(0.02, abs=0.003)
    assert a[1].clipped.mean() == pytest.approx(0.08, abs=0.005)


def test_zoomed_cases_are_the_same_views_enlarged_and_clipped_as_much(hdr_folder: Path):
    plain = list(synthetic_cases([hdr_folder / "lobby.exr"], (0.02,), seed=0))[0]
    zoomed = list(synthetic_cases([hdr_folder / "lobby.exr"], (0.02,), seed=0, zoom=2.5))[0]
    h, w = plain.hdr.shape[:2]
    assert zoomed.hdr.shape == (round(h * 2.5), round(w * 2.5), 3)
    assert zoomed.clipped.mean() == pytest.approx(0.02, abs=0.003)
    ramp = np.broadcast_to(np.linspace(0.0, 8.0, 40, dtype=np.float32)[None, :, None], (10, 40, 3))
    wide = enlarged(ramp, 2.0)
    assert wide.shape == (20, 80, 3) and wide.mean() == pytest.approx(ramp.mean(), rel=1e-3)
    assert np.all(np.diff(wide[..., 0], axis=1) >= 0)  # bilinear: no ringing past the truth
    assert enlarged(ramp, 1.0) is ramp


def test_barely_clipped_case_is_a_sky_just_above_white():
    sky = np.tile(np.linspace(0.05, 1.0, 256, dtype=np.float32), (128, 1))
    case = barely_case("sky", np.repeat(sky[..., None], 3, -1), (0,), CAMERA)
    assert case is not None and case.barely and case.name.endswith(" barely")
    linear = color.convert(case.ldr, INPUT_SPACE, color.LINEAR_SPACE)
    assert case.clipped.sum() >= BARELY_PIXELS
    assert 1.0 <= clipped_ratio(case.hdr, linear, case.clipped) <= BARELY_TRUTH


def test_a_sun_has_no_barely_clipped_case():
    y, x = np.mgrid[:128, :256]
    r = np.hypot(y - 64.0, x - 128.0)
    hdr = np.where(r < 12, 1000.0 * np.exp(-r / 2), 0.1).astype(np.float32)
    assert barely_case("sun", np.repeat(hdr[..., None], 3, -1), (0,), CAMERA) is None


def test_evaluate_synthesised_and_paired(hdr_folder: Path, tmp_path: Path):
    out = run(
        "--data", str(hdr_folder), "--val", "lobby", "--fractions", "0.02,0.08", "--threads", "1", "--no-views",
        "--json", str(tmp_path / "scores.json"), "--sheet", str(tmp_path / "sheet.png"),
    )  # fmt: skip
    for method in METHODS:
        assert method in out
    assert "PU21-PSNR" in out and "2 cases (1 images)" in out

    doc = json.loads((tmp_path / "scores.json").read_text())
    assert set(doc["mean"]) == set(METHODS)
    assert [(c["image"], c["fraction"]) for c in doc["cases"]] == [("lobby", 0.02), ("lobby", 0.08)]
    for case in doc["cases"]:
        assert case["fraction"] <= case["clipped"] <= case["fraction"] * 1.1 + 0.001
        assert case["size"] == [192, 96]
        for method in METHODS:
            scores = case["scores"][method]
            assert all(v is not None and math.isfinite(v) for v in scores.values()), method
            assert 0 < scores["mu_ssim_all"] <= 1
        # the camera is plain sRGB, so the linearised input is already on the ground truth's scale
        assert case["scores"]["linearised"]["scale"] == pytest.approx(1.0, abs=0.01)
        assert case["scores"]["fhdr_anchored"]["scale"] == pytest.approx(1.0, abs=0.01)
        # below the clip level the linearised input is the truth up to 8 bits: clipped pixels hold the error
        lin = case["scores"]["linearised"]
        assert lin["mu_psnr_all"] > lin["mu_psnr_clipped"] + 10

    assert "truth x" in out and "lobby@2.0%" in out  # the per-case table
    assert sum(line.startswith(("PASS", "FAIL")) for line in out.splitlines()) == 8  # the acceptance checks
    assert "lift" in out and "kept ch" in out and "inner out/truth" in out
    for case in doc["cases"]:
        assert case["truth_ratio"] > 1.0 and case["ratio"] >= 1.0  # anchored never darkens the clipped pixels

    sheet = oiio.ImageBuf(str(tmp_path / "sheet.png"))
    assert sheet.spec().width == 3 * len(SHEET_STOPS) * SHEET_CELL
    assert sheet.spec().height == 2 * round(96 * SHEET_CELL / 192)  # two rows of the image's aspect

    # the same two cases as a paired folder: the same scores for the methods that do not depend on the HDR's scale
    for i, case in enumerate(synthetic_cases([hdr_folder / "lobby.exr"], (0.02, 0.08), seed=0, views=False)):
        (tmp_path / "pairs" / "LDR").mkdir(parents=True, exist_ok=True)
        (tmp_path / "pairs" / "HDR").mkdir(parents=True, exist_ok=True)
        data.write_ldr(case.ldr, tmp_path / "pairs" / "LDR" / f"c{i}.png")
        write_image(tmp_path / "pairs" / "HDR" / f"c{i}.exr", case.hdr * 5.0, oiio.FLOAT)
    run("--paired", str(tmp_path / "pairs"), "--threads", "1", "--json", str(tmp_path / "paired.json"))
    paired = json.loads((tmp_path / "paired.json").read_text())
    assert [c["image"] for c in paired["cases"]] == ["c0", "c1"]
    for syn, pair in zip(doc["cases"], paired["cases"], strict=True):
        for method in METHODS:
            assert pair["scores"][method]["mu_psnr_all"] == pytest.approx(syn["scores"][method]["mu_psnr_all"], abs=0.1)
            assert pair["scores"][method]["pu21_psnr_clipped"] == pytest.approx(
                syn["scores"][method]["pu21_psnr_clipped"], abs=0.1
            )


@pytest.mark.parametrize("command", ["evaluate", "validate"])
def test_scoring_commands_reject_unknown_stems(hdr_folder: Path, command: str):
    result = CliRunner().invoke(app, [command, "--data", str(hdr_folder), "--val", "lobby,nowhere"])
    assert result.exit_code != 0
    assert "nowhere" in result.output


@pytest.mark.parametrize("extra", [["--jpeg", "90"], ["--strength", "2"], ["--checkpoint", "x.pt"]])
def test_validate_records_only_a_shipped_model_at_the_node_blend(extra: list[str]):
    result = CliRunner().invoke(app, ["validate", "--record", *extra])
    assert result.exit_code == 2 and "--record scores a shipped model" in result.output
