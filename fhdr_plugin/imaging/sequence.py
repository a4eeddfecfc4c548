"""Frame sequences: file-name patterns with a frame number, frame ranges, and farm chunks.

Frame numbers in a pattern are written as VFX tools write them:

- ``shot.####.exr``: a run of ``#`` pads to its length; a lone ``#`` means 4 digits, as in oiiotool.
- ``shot.@@@@.exr``: one digit per ``@``.
- ``shot.%04d.exr`` (or ``%d``): printf style.
- ``shot.*.exr`` (any glob, inputs only): the frame is the last number in each matching file's stem.

Nuke's notation (``notation=NUKE``) differs in one way: every ``#`` is one digit, so ``plate.#.png`` is
``plate.1.png``; its stereo fields (``%V``, ``%v``) are refused, one view at a time.

Ranges follow oiiotool's ``--frames``: ``1001-1100``, ``1001-1100x4`` (every 4th), ``1001-1100y4`` (all
but every 4th), ``1,5,9-12``, reverse ``10-1``, negative ``-5--1``.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path

from fhdr_plugin.errors import FhdrError

#: More frames than this in one range is taken as a typing mistake, not a shot.
MAX_FRAMES = 1_000_000
#: Frame-number notations: oiiotool's (a lone ``#`` is 4 digits) and Nuke's (one digit per ``#``).
OIIOTOOL, NUKE = "oiiotool", "nuke"

_TOKEN = re.compile(r"%(?:0(\d+))?d|#+|@+")
_GLOB = re.compile(r"[*?\[]")
_ITEM = re.compile(r"(-?\d+)(?:-(-?\d+)(?:([xy])(\d+))?)?")
#: The last number of a name, negative after a separator (``a.-001``, pre-roll) but not after a letter (``a-001``).
_LAST_NUMBER = re.compile(r"(?:(?<=[._])-)?\d+(?!.*\d)")
#: Frame-number fields a folder may not hold; ``@`` in a folder is literal (``user@host``).
_FOLDER_TOKEN = re.compile(r"%(?:0\d+)?d|#")
_VIEW = re.compile(r"%[Vv]")


@dataclass(frozen=True)
class FramePattern:
    """A path with one frame-number field: ``prefix`` + the zero-padded frame + ``suffix``."""

    text: str
    prefix: str
    suffix: str
    padding: int

    def path(self, frame: int) -> Path:
        """The file of ``frame``."""
        return Path(f"{self.prefix}{frame:0{self.padding}d}{self.suffix}")

    @property
    def printf(self) -> str:
        """The pattern with its field written printf style (``%04d``)."""
        return f"{self.prefix}%0{self.padding}d{self.suffix}"

    def on_disk(self) -> dict[int, Path]:
        """The frames whose file exists, with their paths (numbers padded differently do not count)."""
        folder, head = os.path.split(self.prefix)
        name = re.compile(re.escape(head) + r"(-?\d+)" + re.escape(self.suffix))
        found: dict[int, Path] = {}
        try:
            entries = list(os.scandir(folder or "."))
        except OSError:
            return found
        for entry in entries:
            m = name.fullmatch(entry.name)
            if m and f"{int(m[1]):0{self.padding}d}" == m[1] and entry.is_file():
                found[int(m[1])] = Path(folder, entry.name) if folder else Path(entry.name)
        return dict(sorted(found.items()))


@dataclass(frozen=True)
class GlobPattern:
    """A glob whose matches are frames, numbered by the last number in each file's stem."""

    text: str

    def on_disk(self) -> dict[int, Path]:
        """The matching files by frame number; an FhdrError if a name has no number or two share one."""
        found: dict[int, Path] = {}
        for name in sorted(glob.glob(self.text)):
            m = _LAST_NUMBER.search(Path(name).stem)
            if m is None:
                raise FhdrError(f"{name}: matches {self.text!r} but has no frame number in its name")
            frame = int(m[0])
            if frame in found:
                raise FhdrError(f"{found[frame]} and {name} are both frame {frame} of {self.text!r}")
            found[frame] = Path(name)
        return dict(sorted(found.items()))


def frame_field(text: str, notation: str = OIIOTOOL) -> re.Match[str] | None:
    """The one frame-number field of the file name in ``text`` (None if it has none); an FhdrError for a field
    in a folder, more than one field, or (Nuke) a stereo view."""
    folder, name = os.path.split(text)
    if notation == NUKE and _VIEW.search(text):
        raise FhdrError(f"{text!r}: stereo views (%V, %v) are not supported; convert one view at a time")
    if _FOLDER_TOKEN.search(folder):
        raise FhdrError(f"{text!r}: the frame number must be in the file name, not in a folder")
    tokens = list(_TOKEN.finditer(name))
    if len(tokens) > 1:
        raise FhdrError(f"{text!r}: more than one frame-number field ({', '.join(t[0] for t in tokens)})")
    return tokens[0] if tokens else None


def parse_pattern(text: str, notation: str = OIIOTOOL) -> FramePattern | GlobPattern:
    """The pattern ``text`` names: a FramePattern if it has one frame field, else a GlobPattern."""
    folder, name = os.path.split(text)
    token = frame_field(text, notation)
    if token is None:
        if _GLOB.search(text):
            return GlobPattern(text)
        raise FhdrError(f"{text!r}: no frame number in the name (use #, @, %04d or a glob such as *)")
    if _GLOB.search(name):
        raise FhdrError(f"{text!r}: a pattern has a frame-number field or glob characters, not both")
    field = token[0]
    if field.startswith("%"):
        padding = int(token[1] or 1)
    elif field == "#" and notation == OIIOTOOL:
        padding = 4
    else:
        padding = len(field)
    prefix = os.path.join(folder, name[: token.start()]) if folder else name[: token.start()]
    return FramePattern(text, prefix, name[token.end() :], padding)


def parse_frames(spec: str) -> list[int]:
    """The frames of an oiiotool-style range, in the order given, each once."""
    frames: dict[int, None] = {}
    items = spec.replace(" ", "").split(",")
    for item in items:
        m = _ITEM.fullmatch(item)
        if m is None:
            raise FhdrError(f"bad frame range {spec!r}: cannot read {item!r} (e.g. 1001-1100, 1001-1100x4, 1,5,9-12)")
        first = int(m[1])
        last = first if m[2] is None else int(m[2])
        step = int(m[4] or 1)
        if step < 1:
            raise FhdrError(f"bad frame range {spec!r}: the step of {item!r} must be at least 1")
        if abs(last - first) + 1 + len(frames) > MAX_FRAMES:
            raise FhdrError(f"frame range {spec!r} has more than {MAX_FRAMES} frames")
        direction = 1 if last >= first else -1
        span = range(first, last + direction, direction)
        if m[3] == "x":
            span = span[::step]
        elif m[3] == "y":
            span = [f for i, f in enumerate(span) if i % step]
        frames.update(dict.fromkeys(span))
    return list(frames)


def format_frames(frames: list[int]) -> str:
    """A short range string for ``frames`` (``1-3,7,9-12``) that ``parse_frames`` reads back."""
    parts: list[str] = []
    ordered = sorted(set(frames))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def parse_chunk(spec: str) -> tuple[int, int]:
    """``"I/N"`` as ``(I, N)``, with 1 <= I <= N."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if m is None:
        raise FhdrError(f"bad chunk {spec!r}: write I/N, e.g. 3/10 for the third of ten chunks")
    index, count = int(m[1]), int(m[2])
    if not 1 <= index <= count:
        raise FhdrError(f"bad chunk {spec!r}: need 1 <= I <= N")
    return index, count


def chunk(frames: list[int], index: int, count: int) -> list[int]:
    """The ``index``-th (1-based) of ``count`` contiguous chunks of ``frames``; sizes differ by at most one."""
    size, extra = divmod(len(frames), count)
    start = (index - 1) * size + min(index - 1, extra)
    return frames[start : start + size + (index <= extra)]
