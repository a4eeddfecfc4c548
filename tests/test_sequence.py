"""Frame patterns, oiiotool-style ranges and farm chunks, checked against oiiotool itself where it has an opinion."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.imaging.sequence import (
    MAX_FRAMES,
    FramePattern,
    GlobPattern,
    chunk,
    format_frames,
    parse_chunk,
    parse_frames,
    parse_pattern,
)

OIIOTOOL = Path(sys.executable).with_name("oiiotool")


def oiiotool(*args: str, cwd: Path | None = None) -> str:
    """Run the oiiotool next to this Python; its stdout."""
    if not OIIOTOOL.exists():
        pytest.skip(f"{OIIOTOOL} not installed")
    done = subprocess.run([str(OIIOTOOL), *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    ("text", "prefix", "suffix", "padding"),
    [
        ("shot.####.exr", "shot.", ".exr", 4),
        ("shot.#.exr", "shot.", ".exr", 4),
        ("shot.##.exr", "shot.", ".exr", 2),
        ("shot.######.exr", "shot.", ".exr", 6),
        ("shot.@@@.exr", "shot.", ".exr", 3),
        ("shot.@.exr", "shot.", ".exr", 1),
        ("shot.%04d.exr", "shot.", ".exr", 4),
        ("shot.%d.exr", "shot.", ".exr", 1),
        ("plates/a_b.v2/shot_####_grade.tif", "plates/a_b.v2/shot_", "_grade.tif", 4),
        ("####.png", "", ".png", 4),
    ],
)
def test_frame_fields(text: str, prefix: str, suffix: str, padding: int) -> None:
    assert parse_pattern(text) == FramePattern(text, prefix, suffix, padding)


def test_paths_are_padded_and_keep_the_sign() -> None:
    p = parse_pattern("out/shot.####.exr")
    assert p.path(7) == Path("out/shot.0007.exr")
    assert p.path(12345) == Path("out/shot.12345.exr")
    assert p.path(-1) == Path("out/shot.-001.exr")
    assert parse_pattern("s.%d.exr").path(42) == Path("s.42.exr")


@pytest.mark.parametrize("text", ["shot.*.png", "shot.????.png", "shot.[0-9]*.png", "*/shot.*.png"])
def test_globs(text: str) -> None:
    assert parse_pattern(text) == GlobPattern(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("shot.exr", "no frame number"),
        ("shot.####.%04d.exr", "more than one"),
        ("shot.##.@@.exr", "more than one"),
        ("sh_####/frame.exr", "not in a folder"),
        ("shot.####.*.exr", "not both"),
    ],
)
def test_bad_patterns(text: str, message: str) -> None:
    with pytest.raises(FhdrError, match=message):
        parse_pattern(text)


@pytest.mark.parametrize(("ours", "theirs"), [("f.#.exr", "f.#.exr"), ("f.@@@.exr", "f.@@@.exr"), ("f.%03d.exr", None)])
def test_names_match_what_oiiotool_writes(tmp_path: Path, ours: str, theirs: str | None) -> None:
    oiiotool("--frames", "-1,0,9-11", "--create", "4x4", "3", "-o", theirs or ours, cwd=tmp_path)
    written = sorted(p.name for p in tmp_path.iterdir())
    pattern = parse_pattern(str(tmp_path / ours))
    assert sorted(pattern.path(f).name for f in (-1, 0, 9, 10, 11)) == written
    assert list(pattern.on_disk()) == [-1, 0, 9, 10, 11]


def test_on_disk_ignores_other_padding_and_other_names(tmp_path: Path) -> None:
    for name in ("s.0001.exr", "s.0002.exr", "s.03.exr", "s.00004.exr", "s.12345.exr", "t.0005.exr", "s.0006.exr.bak"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "s.0007.exr").mkdir()
    found = parse_pattern(str(tmp_path / "s.####.exr")).on_disk()
    assert found == {1: tmp_path / "s.0001.exr", 2: tmp_path / "s.0002.exr", 12345: tmp_path / "s.12345.exr"}


def test_on_disk_of_a_missing_folder_is_empty(tmp_path: Path) -> None:
    assert parse_pattern(str(tmp_path / "nowhere" / "s.####.exr")).on_disk() == {}


def test_glob_frames_are_the_last_number_of_the_stem(tmp_path: Path) -> None:
    for name in ("take2_v3.0010.mp4", "take2_v3.0011.mp4", "take2_v3.12.mp4", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    found = parse_pattern(str(tmp_path / "take2_v3.*.mp4")).on_disk()
    assert found == {
        10: tmp_path / "take2_v3.0010.mp4",
        11: tmp_path / "take2_v3.0011.mp4",
        12: tmp_path / "take2_v3.12.mp4",
    }


def test_glob_frames_keep_a_pre_rolls_minus_after_a_separator(tmp_path: Path) -> None:
    for name in ("a.-001.png", "a.0001.png", "b-0002.png", "c_-3.png"):
        (tmp_path / name).write_bytes(b"")
    found = parse_pattern(str(tmp_path / "a.*.png")).on_disk()
    assert found == {-1: tmp_path / "a.-001.png", 1: tmp_path / "a.0001.png"}
    assert list(parse_pattern(str(tmp_path / "b*.png")).on_disk()) == [2]  # a hyphen after a letter joins words
    assert list(parse_pattern(str(tmp_path / "c_*.png")).on_disk()) == [-3]


def test_at_signs_and_glob_characters_in_folders_are_literal(tmp_path: Path) -> None:
    folder = tmp_path / "user@farm" / "v[2]"
    folder.mkdir(parents=True)
    (folder / "plate.0003.png").write_bytes(b"")
    pattern = parse_pattern(str(folder / "plate.####.png"))
    assert pattern.path(3) == folder / "plate.0003.png" and list(pattern.on_disk()) == [3]


def test_glob_rejects_ambiguous_and_unnumbered_names(tmp_path: Path) -> None:
    (tmp_path / "a.1.png").write_bytes(b"")
    (tmp_path / "a.01.png").write_bytes(b"")
    with pytest.raises(FhdrError, match="both frame 1"):
        parse_pattern(str(tmp_path / "a.*.png")).on_disk()
    (tmp_path / "b.png").write_bytes(b"")
    with pytest.raises(FhdrError, match="no frame number"):
        parse_pattern(str(tmp_path / "b*.png")).on_disk()


@pytest.mark.parametrize(
    ("spec", "frames"),
    [
        ("7", [7]),
        ("1001-1004", [1001, 1002, 1003, 1004]),
        ("1001-1016x4", [1001, 1005, 1009, 1013]),
        ("1,5,9-12", [1, 5, 9, 10, 11, 12]),
        ("10-1x3", [10, 7, 4, 1]),
        ("1-10y3", [2, 3, 5, 6, 8, 9]),
        ("-5--3", [-5, -4, -3]),
        ("-2-1", [-2, -1, 0, 1]),
        ("1-3,2,3-5", [1, 2, 3, 4, 5]),
        (" 1, 3 ", [1, 3]),
        ("4-4x9", [4]),
    ],
)
def test_ranges(spec: str, frames: list[int]) -> None:
    assert parse_frames(spec) == frames


@pytest.mark.parametrize("spec", ["1001-1100x4", "1,5,9-12", "10-1x3", "1-10y3", "-5--3", "-2-1", "1-20x7,3"])
def test_ranges_agree_with_oiiotool(spec: str) -> None:
    theirs = [int(n) for n in oiiotool("--frames", spec, "--echo", "{FRAME_NUMBER}").split()]
    assert parse_frames(spec) == list(dict.fromkeys(theirs))


@pytest.mark.parametrize("spec", ["", "1-", "-", "a", "1-10x0", "1,,2", "1-10x", "1-10z2", "1:10", "1-10x-2"])
def test_bad_ranges(spec: str) -> None:
    with pytest.raises(FhdrError, match="bad frame range"):
        parse_frames(spec)


def test_absurd_ranges_are_refused() -> None:
    with pytest.raises(FhdrError, match="more than"):
        parse_frames(f"1-{MAX_FRAMES + 1}")


@pytest.mark.parametrize(
    ("frames", "text"),
    [([], ""), ([5], "5"), ([3, 1, 2, 7, 9, 10, 11], "1-3,7,9-11"), ([-2, -1, 0, 4], "-2-0,4"), ([1, 1, 2], "1-2")],
)
def test_format_frames_reads_back(frames: list[int], text: str) -> None:
    assert format_frames(frames) == text
    assert sorted(set(frames)) == (sorted(parse_frames(text)) if text else [])


def test_chunk_spec() -> None:
    assert parse_chunk("3/10") == (3, 10)
    assert parse_chunk(" 1 / 1 ") == (1, 1)
    for bad in ("0/4", "5/4", "1/0", "1", "a/b", "1/2/3", "-1/4"):
        with pytest.raises(FhdrError, match="bad chunk"):
            parse_chunk(bad)


def test_chunks_cover_every_frame_once_in_order() -> None:
    for length in range(0, 30):
        frames = list(range(1001, 1001 + length * 2, 2))
        for count in range(1, 12):
            parts = [chunk(frames, i, count) for i in range(1, count + 1)]
            assert [f for part in parts for f in part] == frames
            sizes = [len(part) for part in parts]
            assert max(sizes) - min(sizes) <= 1
            assert sizes == sorted(sizes, reverse=True)


def test_chunk_examples() -> None:
    frames = list(range(1, 11))
    assert [chunk(frames, i, 3) for i in (1, 2, 3)] == [[1, 2, 3, 4], [5, 6, 7], [8, 9, 10]]
    assert chunk([1, 2], 3, 3) == []
