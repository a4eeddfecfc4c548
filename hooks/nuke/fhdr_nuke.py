"""The Nuke side of fhdr without Nuke: Read-node knob values in, an EXR sequence and the new Read's knobs out.

``menu.py`` shows the panel's ``Settings`` (remembered by ``load_settings``/``save_settings``), reads the knobs of
the selected Read node into a ``ReadJob``, calls ``convert`` here, creates a Read node from ``read_knobs`` and
``read_colorspaces``, and shows each Read's ``message`` at the end. Nothing here imports ``nuke``, so all of it
runs in tests.

Nuke writes frame numbers as a run of ``#`` (one digit per ``#``: ``plate.####.png``) or printf style
(``plate.%04d.png``); ``fhdr_plugin.imaging.sequence`` reads that notation. The frames are converted by
``fhdr_plugin.host.batch.run_batch`` on its local executor, as ``fhdr batch`` converts them: a bad or missing frame
is reported and the others carry on, a cancel stops after the frame in progress, and the per-frame lines and the
summary go to stderr.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import OpenImageIO as oiio

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.host.batch import (
    CANCELLED,
    DONE,
    FAILED,
    FrameResult,
    Job,
    LocalExecutor,
    OnProgress,
    neighbours,
    run_batch,
)
from fhdr_plugin.imaging import color
from fhdr_plugin.imaging.io import make_folder, write_bytes_atomic
from fhdr_plugin.imaging.sequence import NUKE, FramePattern, format_frames, frame_field, parse_pattern
from fhdr_plugin.node.steady import check_radius
from fhdr_plugin.params import LdrToHdrParams

#: The folder, beside the input, that receives the EXRs.
OUTPUT_FOLDER = "fhdr"
#: Nuke-default's name for scene-linear Rec.709 (its configs with OCIO use the OCIO names).
NUKE_DEFAULT_LINEAR = "linear"
#: Where the panel's last settings are kept, unless ``$FHDR_NUKE_SETTINGS`` names another file.
SETTINGS_FILE = Path("~/.nuke/fhdr_panel.json")
#: At most this many frames' errors in a Read's ``message``; every one is on stderr.
MAX_ERRORS = 3


@dataclass(frozen=True)
class Settings:
    """The panel's choices: the output folder (relative: beside the plate) or pattern, node parameters, and the
    frames either side each frame is steadied by (``fhdr batch --steady``; 0: off)."""

    output: str = OUTPUT_FOLDER
    output_colorspace: str = LdrToHdrParams().output_colorspace
    strength: float = LdrToHdrParams().blend.strength
    steady: int = 0

    def params(self) -> dict[str, Any]:
        """The node parameters the panel sets."""
        return {"output_colorspace": self.output_colorspace, "strength": self.strength}


def settings_from(values: dict[str, str]) -> Settings:
    """The panel's text fields as checked ``Settings`` (an empty folder or colour space: the default); an
    FhdrError naming a bad field."""
    try:
        strength = float(values["strength"])
    except ValueError:
        raise FhdrError(f"strength must be a number, got {values['strength']!r}") from None
    try:
        steady = int(values.get("steady", "").strip() or 0)
    except ValueError:
        raise FhdrError(f"steady must be a whole number of frames, got {values['steady']!r}") from None
    check_radius(steady)
    space = values["output_colorspace"].strip() or Settings().output_colorspace
    settings = Settings(values["output"].strip() or OUTPUT_FOLDER, space, strength, steady)
    LdrToHdrParams.from_kwargs(**settings.params())
    return settings


def settings_path() -> Path:
    """The file that remembers the panel's settings."""
    return Path(os.environ.get("FHDR_NUKE_SETTINGS") or SETTINGS_FILE).expanduser()


def load_settings(path: Path | None = None) -> Settings:
    """The settings last saved at ``path`` (default: ``settings_path()``), a field saved by an older panel
    taking its default; the defaults when there are none or they no longer check (a colour space the current
    config lacks)."""
    try:
        saved = json.loads((path or settings_path()).read_text())
        return settings_from({f.name: str(saved.get(f.name, f.default)) for f in dataclasses.fields(Settings)})
    except (OSError, ValueError, KeyError, TypeError, FhdrError):
        return Settings()


def save_settings(settings: Settings, path: Path | None = None) -> None:
    """Remember ``settings`` at ``path`` (default: ``settings_path()``), atomically."""
    target = path or settings_path()
    make_folder(target.parent)
    write_bytes_atomic(target, (json.dumps(dataclasses.asdict(settings), indent=2) + "\n").encode())


def input_colorspace(knob_value: str) -> str:
    """The input space a Read's ``colorspace`` knob names, as fhdr's config knows it; empty (the file's own
    space) for Nuke's ``default (…)`` and for names the config cannot resolve. ``linear`` (nuke-default's) is
    linear Rec.709, as OIIO reads it; a menu path (``Utility/Utility - sRGB - Texture``) is taken by its last part."""
    name = knob_value.rsplit("/", 1)[-1].strip()
    if not name or name.startswith("default"):
        return ""
    try:
        return color.resolve(name)
    except FhdrError:
        return ""


@dataclass(frozen=True)
class ReadJob:
    """One Read node's conversion: paths in fhdr's notation, the output in the Read's own, and the frames."""

    input: str
    output: str
    nuke_output: str
    frames: tuple[int, ...]
    still: bool

    @classmethod
    def of(cls, file: str, first: int, last: int, output: str = OUTPUT_FOLDER) -> ReadJob:
        """The conversion of a Read node whose ``file`` knob is ``file`` and whose frame range is
        ``first``-``last``, into ``output`` (a folder or a pattern, as ``output_for`` takes it)."""
        if not file:
            raise FhdrError("the Read node has no file")
        still = frame_field(file, NUKE) is None
        if not still and first > last:
            raise FhdrError(f"{file}: the first frame ({first}) is after the last ({last})")
        nuke_output = output_for(file, output)
        frames = (first,) if still else tuple(range(first, last + 1))
        return cls(to_fhdr_pattern(file), to_fhdr_pattern(nuke_output), nuke_output, frames, still)

    def input_path(self, frame: int) -> Path:
        """The input file of ``frame``."""
        return Path(self.input) if self.still else parse_pattern(self.input).path(frame)

    def output_path(self, frame: int) -> Path:
        """The output file of ``frame``."""
        return Path(self.output) if self.still else parse_pattern(self.output).path(frame)

    def jobs(self, steady: int = 0) -> list[Job]:
        """The batch's jobs, one per frame; with ``steady``, each steadied by up to that many frames either side
        of the plate on disk (``fhdr batch --steady``)."""
        found = parse_pattern(self.input).on_disk() if steady and not self.still else {}
        return [
            Job(f, self.input_path(f), self.output_path(f), steady=steady, neighbours=neighbours(found, f, steady))
            for f in self.frames
        ]


def to_fhdr_pattern(path: str) -> str:
    """``path`` in fhdr's notation: a run of N ``#`` becomes ``%0Nd``; printf fields and stills are unchanged."""
    m = frame_field(path, NUKE)
    if m is None or not m[0].startswith("#"):
        return path
    pattern = parse_pattern(path, NUKE)
    return pattern.printf if isinstance(pattern, FramePattern) else path


def output_for(path: str, output: str = OUTPUT_FOLDER) -> str:
    """The EXR path of the plate ``path``: ``output`` itself when it is a pattern (it ends in ``.exr``), else
    ``<output>/<name>_hdr.<field>.exr`` in the plate's frame notation, ``output`` relative to the plate's folder
    (by default ``<plate folder>/fhdr/``)."""
    if output.lower().endswith(".exr"):
        if frame_field(path, NUKE) is not None and frame_field(output, NUKE) is None:
            raise FhdrError(f"{output}: the output pattern of a sequence needs a frame number (####, %04d)")
        return output
    folder, name = os.path.split(path)
    target = output if os.path.isabs(output) or ":" in output[:2] else f"{folder}/{output}" if folder else output
    m = frame_field(path, NUKE)
    if m is None:
        head, field, tail = os.path.splitext(name)[0], "", ""
    else:
        head, field, tail = name[: m.start()], m[0], name[m.end() :].removesuffix(os.path.splitext(name)[1])
    stem = head.rstrip("._-")
    base = f"{stem}_hdr" if stem else "hdr"
    if field:
        base = f"{base}{head[len(stem) :] or '.'}{field}{tail}"
    return f"{target.rstrip('/')}/{base}.exr"


def convert(
    job: ReadJob,
    params: dict[str, Any] | None = None,
    *,
    steady: int = 0,
    on_progress: OnProgress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> list[FrameResult]:
    """Convert the frames of ``job`` with ``run_batch`` on the local executor, one result per frame, each
    steadied by ``steady`` frames either side; a frame that fails is recorded and the others carry on.
    ``on_progress`` and ``cancelled`` are ``run_batch``'s; an FhdrError for bad ``params``."""
    settings = LdrToHdrParams.from_kwargs(**(params or {}))
    check_radius(steady, settings.blend.mode)
    return run_batch(
        LocalExecutor(settings),
        job.input,
        job.output,
        {**settings.to_dict(), "steady": steady},
        jobs=job.jobs(steady),
        on_progress=on_progress,
        cancelled=cancelled,
    )


def written(results: list[FrameResult]) -> list[int]:
    """The frames ``convert`` wrote."""
    return [r.frame for r in results if r.status == DONE]


def written_colorspace(job: ReadJob, results: list[FrameResult]) -> str:
    """The colour space (``oiio:ColorSpace``) recorded in the first EXR ``convert`` wrote."""
    buf = oiio.ImageBuf(str(job.output_path(written(results)[0])))
    return buf.spec().get_string_attribute("oiio:ColorSpace")


def read_knobs(job: ReadJob, results: list[FrameResult]) -> dict[str, Any]:
    """Knob values of a Read node on the frames ``convert`` wrote."""
    if job.still:
        return {"file": job.nuke_output}
    frames = written(results)
    first, last = min(frames), max(frames)
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


def message(job: ReadJob, results: list[FrameResult]) -> str:
    """One line for the user when not every frame of ``job`` was written: the failed frames with the first
    ``MAX_ERRORS`` errors, and the cancelled frames; empty otherwise."""
    failed = [r for r in results if r.status == FAILED]
    cancelled = [r.frame for r in results if r.status == CANCELLED]
    notes = [f"failed frames: {format_frames([r.frame for r in failed])}"] if failed else []
    notes += [f"frame {r.frame} failed: {r.error}" for r in failed[:MAX_ERRORS]]
    if len(failed) > MAX_ERRORS:
        notes.append(f"{len(failed) - MAX_ERRORS} more errors on stderr")
    if cancelled:
        notes.append(f"cancelled: frames {format_frames(cancelled)}")
    return f"{job.nuke_output}: {'; '.join(notes)}" if notes else ""
