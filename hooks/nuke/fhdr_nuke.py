"""The Nuke side of fhdr without Nuke: Read-node knob values in, an EXR sequence and the new Read's knobs out.

``menu.py`` reads the knobs of the selected Read node, calls ``plan`` and ``convert`` here, and creates a Read
node from ``read_knobs`` and ``read_colorspaces``. Nothing here imports ``nuke``, so all of it runs in tests.

Nuke writes frame numbers as a run of ``#`` (one digit per ``#``: ``plate.####.png``) or printf style
(``plate.%04d.png``); fhdr's patterns are printf style, so a ``#`` run becomes ``%0Nd`` on the way in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhdr_plugin import color
from fhdr_plugin.errors import FhdrError
from fhdr_plugin.node import LdrToHdrParams
from fhdr_plugin.pipeline import convert_file
from fhdr_plugin.sequence import format_frames, parse_pattern

#: The folder, beside the input, that receives the EXRs.
OUTPUT_FOLDER = "fhdr"
#: Nuke-default's name for scene-linear Rec.709 (its configs with OCIO use the OCIO names).
NUKE_DEFAULT_LINEAR = "linear"

_FIELD = re.compile(r"#+|%(?:0(\d+))?d")
_VIEW = re.compile(r"%[Vv]")


@dataclass(frozen=True)
class ReadJob:
    """One Read node's conversion: paths in fhdr's notation, the output in the Read's own, and the frames."""

    input: str
    output: str
    nuke_output: str
    frames: tuple[int, ...]
    still: bool

    def input_path(self, frame: int) -> Path:
        """The input file of ``frame``."""
        return Path(self.input) if self.still else parse_pattern(self.input).path(frame)

    def output_path(self, frame: int) -> Path:
        """The output file of ``frame``."""
        return Path(self.output) if self.still else parse_pattern(self.output).path(frame)


@dataclass(frozen=True)
class Outcome:
    """What ``convert`` did: the frames written, the frames without an input file, and whether it was cancelled."""

    written: tuple[int, ...]
    missing: tuple[int, ...]
    cancelled: bool


def _field(path: str) -> re.Match[str] | None:
    """The frame-number field of the file name in ``path``; an FhdrError where Nuke notation is not handled."""
    folder, name = os.path.split(path)
    if _VIEW.search(path):
        raise FhdrError(f"{path!r}: stereo views (%V, %v) are not supported; convert one view at a time")
    if _FIELD.search(folder):
        raise FhdrError(f"{path!r}: the frame number must be in the file name, not in a folder")
    fields = list(_FIELD.finditer(name))
    if len(fields) > 1:
        raise FhdrError(f"{path!r}: more than one frame-number field")
    return fields[0] if fields else None


def to_fhdr_pattern(path: str) -> str:
    """``path`` in fhdr's notation: a run of N ``#`` becomes ``%0Nd``; printf fields and stills are unchanged."""
    m = _field(path)
    if m is None or not m[0].startswith("#"):
        return path
    start = len(path) - len(os.path.basename(path)) + m.start()
    return f"{path[:start]}%0{len(m[0])}d{path[start + len(m[0]) :]}"


def output_for(path: str) -> str:
    """The EXR path beside ``path``: ``<dir>/fhdr/<name>_hdr.<field>.exr``, in the same frame notation."""
    folder, name = os.path.split(path)
    m = _field(path)
    if m is None:
        head, field, tail = os.path.splitext(name)[0], "", ""
    else:
        head, field, tail = name[: m.start()], m[0], name[m.end() :].removesuffix(os.path.splitext(name)[1])
    stem = head.rstrip("._-")
    base = f"{stem}_hdr" if stem else "hdr"
    if field:
        base = f"{base}{head[len(stem) :] or '.'}{field}{tail}"
    return f"{folder}/{OUTPUT_FOLDER}/{base}.exr" if folder else f"{OUTPUT_FOLDER}/{base}.exr"


def plan(file: str, first: int, last: int) -> ReadJob:
    """The conversion of a Read node whose ``file`` knob is ``file`` and whose frame range is ``first``-``last``."""
    if not file:
        raise FhdrError("the Read node has no file")
    still = _field(file) is None
    if not still and first > last:
        raise FhdrError(f"{file}: the first frame ({first}) is after the last ({last})")
    nuke_output = output_for(file)
    frames = (first,) if still else tuple(range(first, last + 1))
    return ReadJob(to_fhdr_pattern(file), to_fhdr_pattern(nuke_output), nuke_output, frames, still)


def convert(
    job: ReadJob,
    params: dict[str, Any] | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Outcome:
    """Convert the frames of ``job`` that exist, one by one; ``progress(done, total)`` after each, and stop as
    soon as ``cancelled()`` is true. Raises FhdrError on the first frame that fails, or when no input exists."""
    params = params or {}
    LdrToHdrParams.from_kwargs(**params)
    present = tuple(f for f in job.frames if job.input_path(f).is_file())
    missing = tuple(f for f in job.frames if f not in present)
    if not present:
        raise FhdrError(f"{job.input}: no input file for frames {job.frames[0]}-{job.frames[-1]}")
    Path(job.output).parent.mkdir(parents=True, exist_ok=True)
    written: list[int] = []
    for frame in present:
        if cancelled is not None and cancelled():
            return Outcome(tuple(written), missing, True)
        convert_file(job.input_path(frame), job.output_path(frame), params)
        written.append(frame)
        if progress is not None:
            progress(len(written), len(present))
    return Outcome(tuple(written), missing, False)


def read_knobs(job: ReadJob, outcome: Outcome) -> dict[str, Any]:
    """Knob values of a Read node on the frames ``convert`` wrote."""
    if job.still:
        return {"file": job.nuke_output}
    first, last = min(outcome.written), max(outcome.written)
    return {"file": job.nuke_output, "first": first, "last": last, "origfirst": first, "origlast": last}


def read_colorspaces(output_colorspace: str = "") -> list[str]:
    """Names the new Read's ``colorspace`` knob may know the output's space by, best first: the name given,
    fhdr's config's canonical name and aliases (OCIO configs), then ``linear`` (nuke-default) for linear
    Rec.709. ``menu.py`` sets the first one the knob accepts."""
    name = output_colorspace or LdrToHdrParams().output_colorspace
    canonical = color.resolve(name)
    names = [name, canonical, *color.config().getAliases(canonical)]
    if canonical == color.resolve(color.LINEAR_SPACE):
        names.append(NUKE_DEFAULT_LINEAR)
    return list(dict.fromkeys(names))


def pick_colorspaces(candidates: list[str], menu: list[str]) -> list[str]:
    """The ``candidates`` found among a colorspace knob's ``menu`` items (matched by the part after the last
    ``/``, as OCIO menus group names by family); all of them when the menu is unknown (empty)."""
    if not menu:
        return candidates
    leaves = {item.rsplit("/", 1)[-1].strip() for item in menu}
    return [c for c in candidates if c in leaves]


def summary(job: ReadJob, outcome: Outcome) -> str:
    """One line for the user when not every frame was written; empty otherwise."""
    notes = []
    if outcome.missing:
        notes.append(f"no input for frame(s) {format_frames(list(outcome.missing))}")
    if outcome.cancelled:
        notes.append(f"cancelled after {len(outcome.written)} frame(s)")
    return f"{job.nuke_output}: {'; '.join(notes)}" if notes else ""
