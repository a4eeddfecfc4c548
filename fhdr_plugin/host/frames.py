"""One frame of a batch: the job, its result, and the work (load → convert → save) every executor runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import OpenImageIO as oiio

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.host.pipeline import check_paths
from fhdr_plugin.host.registry import DEFAULT_OPERATION, registry, run_operation
from fhdr_plugin.imaging.io import WriteOptions, read_image, remove_stale_temps, write_exr
from fhdr_plugin.manifest import BUILTIN_OPERATION
from fhdr_plugin.params import EngineParams, Params

if TYPE_CHECKING:
    from fhdr_plugin.node.shot import Shot

DONE, SKIPPED, FAILED, CANCELLED = "done", "skipped", "failed", "cancelled"


@dataclass(frozen=True)
class Job:
    """One frame to convert; ``input`` is None when the glob ``pattern`` found no file for the frame. ``steady``:
    the frames either side it is steadied by (0: none, ``fhdr_plugin.node.shot``), ``neighbours`` those on disk:
    how far each is from ``frame``, and its file."""

    frame: int
    input: Path | None
    output: Path
    pattern: str = ""
    steady: int = 0
    neighbours: tuple[tuple[int, Path], ...] = ()


@dataclass
class FrameResult:
    """What became of one frame: seconds spent reading, converting and writing it, and when each began
    (``*_at``: seconds from the start of the run); ``worker``: the Ray worker (host:pid) that ran it;
    ``retries``: how many times it was started again because its Ray worker died under it."""

    frame: int
    input: str
    output: str
    status: str = ""
    error: str = ""
    read_s: float = 0.0
    process_s: float = 0.0
    write_s: float = 0.0
    read_at: float = 0.0
    process_at: float = 0.0
    write_at: float = 0.0
    worker: str = ""
    retries: int = 0

    @classmethod
    def of(cls, job: Job, status: str = "", error: str = "") -> FrameResult:
        """The result of ``job`` before (or without) any work."""
        return cls(job.frame, str(job.input or ""), str(job.output), status, error)


class OnResult(Protocol):
    """Called with each frame's result as soon as it is known."""

    def __call__(self, result: FrameResult) -> None: ...


class Executor(Protocol):
    """Runs a batch's jobs: ``run`` returns one result per job, in the jobs' order, even when interrupted."""

    name: str

    def run(self, jobs: list[Job], on_result: OnResult) -> list[FrameResult]:
        """Convert ``jobs``, calling ``on_result`` for each; on an interrupt, mark the rest cancelled, re-raise."""
        ...

    def describe(self) -> dict[str, str]:
        """The engine that runs (or ran) the frames: model, device, dtype, tile, executor, workers."""
        ...


def with_cancelled(jobs: list[Job], results: list[FrameResult]) -> list[FrameResult]:
    """``results`` and a cancelled result for every job without one, in the order of ``jobs``."""
    by_frame = {r.frame: r for r in results}
    return [by_frame.get(j.frame) or FrameResult.of(j, CANCELLED) for j in jobs]


def describe_error(exc: Exception) -> str:
    """An exception as one line of a report: FhdrError's own message, else the type and the message."""
    return str(exc) if isinstance(exc, FhdrError) else f"{type(exc).__name__}: {exc}"


def engine_line(engine: dict[str, str], precision: str = "") -> str:
    """An engine's description (``describe_engine``, an executor's ``describe``) as one log line: the model,
    device, precision (and the ``precision`` asked for, when it differs), tile, executor and workers."""
    asked = f" (--precision {precision})" if precision and precision != engine["dtype"] else ""
    tile = engine["tile"] if engine["tile"] != "0" else "0 (whole frame)"
    line = f"engine: model {engine['model']}, device {engine['device']}, precision {engine['dtype']}{asked}"
    line += f", tile {tile}"
    if "executor" in engine:
        workers = engine["workers"]
        line += f", executor {engine['executor']} with {workers} worker{'' if workers == '1' else 's'}"
    return line


def engine_of(params: Params) -> dict[str, str]:
    """Load the engine an operation's ``params`` run on (once per process) and describe it
    (``describe_engine``); empty for parameters that hold no ``EngineParams``."""
    engine = getattr(params, "engine", None)
    if not isinstance(engine, EngineParams):
        return {}
    from fhdr_plugin.node.engine import describe_engine

    return describe_engine(engine)


def complete_exr(path: Path) -> bool:
    """True if ``path`` is an image OIIO reads whole (a finished output, for --skip-existing): a file cut short or
    damaged by a copy is converted again."""
    if not path.is_file():
        return False
    try:
        read_image(path)
    except FhdrError:
        return False
    return True


class FrameWork:
    """Reads, converts (the registered ``operation`` with ``params``, its parameter object) and writes frames;
    each step records its times and errors.

    ``t0``: the ``time.perf_counter()`` that the ``*_at`` times count from.
    """

    def __init__(
        self, params: Params, options: WriteOptions, skip_existing: bool = False, operation: str = DEFAULT_OPERATION
    ) -> None:
        self.params = params
        self.options = options
        self.skip_existing = skip_existing
        self.operation = operation
        self.t0 = time.perf_counter()
        self.shot: Shot | None = None

    def convert(self, job: Job) -> FrameResult:
        """Load, convert and save one job in the calling thread."""
        return self.save(*self.process(*self.load(job)))

    def load(self, job: Job) -> tuple[FrameResult, oiio.ImageBuf | None, Job]:
        """Read the job's input (None when skipped or failed); the job goes on with it to ``process``."""
        result = FrameResult.of(job)
        if self.skip_existing and complete_exr(job.output):
            remove_stale_temps(job.output)
            result.status = SKIPPED
            return result, None, job
        start = time.perf_counter()
        result.read_at = start - self.t0
        try:
            if job.input is None:
                raise FhdrError(f"{job.pattern}: no file for frame {job.frame}")
            check_paths(job.input, job.output)
            buf = read_image(job.input)
        except Exception as exc:
            result.status, result.error = FAILED, describe_error(exc)
            buf = None
        result.read_s = time.perf_counter() - start
        return result, buf, job

    def process(
        self, result: FrameResult, buf: oiio.ImageBuf | None, job: Job
    ) -> tuple[FrameResult, oiio.ImageBuf | None]:
        """Run the operation on a loaded frame (None when there is nothing to write), steadied by the job's
        neighbours when it asks for it."""
        if buf is None:
            return result, None
        start = time.perf_counter()
        result.process_at = start - self.t0
        try:
            if job.steady:
                out = registry().run_with(self.operation, buf, self.params, self._steadied(job))
            else:
                out = run_operation(self.operation, buf, self.params)
        except Exception as exc:
            result.status, result.error = FAILED, f"{result.input}: {describe_error(exc)}"
            out = None
        result.process_s = time.perf_counter() - start
        return result, out

    def _steadied(self, job: Job) -> Callable[[oiio.ImageBuf, Params], oiio.ImageBuf]:
        """The operation as ``job``'s steady mode runs it: ``ldr_to_hdr`` steadied by the job's neighbours."""
        if self.operation != BUILTIN_OPERATION:
            raise FhdrError(f"--steady: {self.operation} is not {BUILTIN_OPERATION}; only it can be steadied")
        from fhdr_plugin.node.shot import Shot

        if self.shot is None or self.shot.radius != job.steady:
            self.shot = Shot(job.steady)
        shot = self.shot
        return lambda buf, params: shot.apply(buf, params, job.input, job.neighbours)

    def save(self, result: FrameResult, out: oiio.ImageBuf | None) -> FrameResult:
        """Write a converted frame atomically; the result's status says how the frame ended."""
        if out is not None:
            start = time.perf_counter()
            result.write_at = start - self.t0
            try:
                write_exr(out, result.output, self.options)
                result.status = DONE
            except Exception as exc:
                result.status, result.error = FAILED, describe_error(exc)
            result.write_s = time.perf_counter() - start
        return result
