"""Which HDR files show the same scene, and the splits that keep every scene on one side."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

#: Prefixes naming where a file came from (``../shared/data/hdr-train``), not what it shows.
SOURCE_PREFIX = re.compile(r"^(polyhaven(1k|512|crop)?|openexr|pfstools|usd)_")
#: Scenes the data holds under two names (its README): the later name → the first.
SAME_SCENE = {
    "royal_esplanade": "esplanade",
    "venice_sunset": "venice",
    "brown_photostudio_06": "brown_photostudio_01",
    "studio_small_05": "studio",
    "studio_small_08": "studio",
}


def scene_of(stem: str) -> str:
    """The scene an HDR file's stem shows: its name without the source prefix, with the data's aliases merged
    (``polyhaven512_night`` and ``polyhaven1k_night`` are one scene)."""
    name = SOURCE_PREFIX.sub("", stem.lower())
    return SAME_SCENE.get(name, name)


def shared_scenes(a: list[Path], b: list[Path]) -> list[str]:
    """The scenes that files of both ``a`` and ``b`` show, sorted."""
    return sorted({scene_of(f.stem) for f in a} & {scene_of(f.stem) for f in b})


def folds(files: list[Path], k: int) -> list[list[Path]]:
    """``files`` split by scene into ``k`` folds, a scene's fold chosen by a hash of its name (so a scene's fold
    does not change when files are added or removed); a fold may be empty."""
    if k < 2:
        raise ValueError(f"{k} fold(s): needs at least 2")
    fold = {f: zlib.crc32(scene_of(f.stem).encode()) % k for f in files}
    return [[f for f in files if fold[f] == i] for i in range(k)]
