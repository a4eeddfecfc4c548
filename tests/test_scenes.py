"""Scenes: files that show the same scene stay on one side of every split."""

from pathlib import Path

import pytest
import typer

from training.__main__ import DEFAULT_VAL, split_images
from training.scenes import folds, scene_of, shared_scenes

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hdr-train"


def test_a_scene_is_one_whatever_its_source_or_size():
    assert scene_of("polyhaven512_night") == scene_of("polyhaven1k_night") == "night"
    assert scene_of("polyhaven1k_royal_esplanade") == scene_of("polyhaven512_esplanade")
    assert scene_of("polyhaven_studio_small_05") == scene_of("polyhaven512_studio")
    assert scene_of("polyhaven1k_quarry_01") != scene_of("polyhaven_quarry_02")


def test_folds_hold_whole_scenes_stably_and_about_evenly(tmp_path):
    names = [f"polyhaven512_s{i}" for i in range(60)] + [f"polyhaven1k_s{i}" for i in range(60)]
    files = [tmp_path / f"{n}.exr" for n in names]
    parts = folds(files, 5)
    assert sorted(sum(parts, [])) == sorted(files)
    for i, part in enumerate(parts):
        assert not shared_scenes(part, [f for f in files if f not in part]), f"a scene's two files across fold {i}"
        assert 6 <= len(part) // 2 <= 20, len(part)
    fewer = folds(files[:90], 5)
    assert all(set(a) <= set(b) for a, b in zip(fewer, parts, strict=True)), "removing files moved other scenes"
    with pytest.raises(ValueError, match="at least 2"):
        folds(files, 1)


@pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data/hdr-train")
def test_the_validation_split_keeps_each_scene_on_one_side():
    train, val = split_images(DATA, set(DEFAULT_VAL.split(",")))
    assert len(val) == len(DEFAULT_VAL.split(",")) and not shared_scenes(train, val)
    with pytest.raises(typer.BadParameter, match="night on both sides"):
        split_images(DATA, {"polyhaven512_night"})
