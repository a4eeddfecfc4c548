"""Frame sequences through ``ldr_to_hdr``: disk I/O in background threads, frames in order, a JSON report.

    reader thread ──(bounded queue)──▶ model (calling thread) ──(bounded queue)──▶ writer thread

The reader decodes the next frames while the model runs, and the writer encodes the previous ones, so the
device does not wait on disk. A frame that cannot be read, converted or written is recorded as failed and
the others carry on. Ctrl-C (or SIGTERM from a farm) stops after the write in progress: outputs are written
atomically, so no partial file is left, and the frames not done are recorded as cancelled. With the ``ray``
executor the same per-frame work runs on a Ray cluster instead (``ray_executor.py``).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import OpenImageIO as oiio
from tqdm import tqdm

from fhdr_plugin import color
from fhdr_plugin.errors import FhdrError
from fhdr_plugin.io import check_compression, read_image, remove_stale_temps, write_exr
from fhdr_plugin.node import LdrToHdrParams, engine_for
from fhdr_plugin.pipeline import check_paths
from fhdr_plugin.registry import run_operation
from fhdr_plugin.sequence import FramePattern, chunk, format_frames, parse_chunk, parse_frames, parse_pattern
from fhdr_plugin.version import __version__

log = logging.getLogger("fhdr")

DONE, SKIPPED, FAILED, CANCELLED = "done", "skipped", "failed", "cancelled"
EXECUTORS = ("local", "ray")
_END = object()
_POLL_S = 0.1


@dataclass(frozen=True)
class Job:
    """One frame to convert; ``input`` is None when a glob found no file for the frame."""

    frame: int
    input: Path | None
    output: Path


@dataclass
class FrameResult:
    """What became of one frame: seconds spent reading, converting and writing it, and when each began
    (``*_at``: seconds from the start of the run); ``worker``: the Ray worker (host:pid) that ran it."""

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


def plan(in_pattern: str, out_pattern: str, frames: str = "", chunk_spec: str = "") -> list[Job]:
    """The jobs of a batch, in frame order: ``frames`` (default: those on disk), cut to chunk ``I/N`` if given."""
    source = parse_pattern(in_pattern)
    target = parse_pattern(out_pattern)
    if not isinstance(target, FramePattern):
        raise FhdrError(f"{out_pattern!r}: the output needs a frame-number field (#, @ or %04d), not a glob")
    wanted = parse_frames(frames) if frames else None
    part = parse_chunk(chunk_spec) if chunk_spec else None
    found = source.on_disk() if wanted is None or not isinstance(source, FramePattern) else {}
    numbers = list(found) if wanted is None else wanted
    if not numbers:
        raise FhdrError(f"no frames match {in_pattern!r}")
    if part:
        numbers = chunk(numbers, *part)
    if isinstance(source, FramePattern):
        return [Job(f, source.path(f), target.path(f)) for f in numbers]
    return [Job(f, found.get(f), target.path(f)) for f in numbers]


def _put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            pass
    return False


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    while True:
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            if stop.is_set():
                return _END


def _describe(exc: Exception) -> str:
    return str(exc) if isinstance(exc, FhdrError) else f"{type(exc).__name__}: {exc}"


def complete_exr(path: Path) -> bool:
    """True if ``path`` is an image whose header OIIO can read (a finished output, for --skip-existing)."""
    if not path.is_file():
        return False
    image = oiio.ImageInput.open(str(path))
    if image is None:
        oiio.geterror()
        return False
    image.close()
    return True


class Pipeline:
    """Runs jobs through ``ldr_to_hdr`` with a reader and a writer thread; ``results`` fill in frame order."""

    def __init__(
        self,
        params: dict[str, Any],
        *,
        half: bool = True,
        compression: str = "zip",
        skip_existing: bool = False,
        depth: int = 2,
        on_result: Callable[[FrameResult], None] | None = None,
    ) -> None:
        if depth < 1:
            raise FhdrError(f"queue depth must be at least 1, got {depth}")
        self.params = params
        self.half = half
        self.compression = compression
        self.skip_existing = skip_existing
        self.depth = depth
        self.on_result = on_result
        self.results: list[FrameResult] = []
        self._t0 = 0.0
        self._error: BaseException | None = None

    def run(self, jobs: list[Job]) -> list[FrameResult]:
        """Convert ``jobs``; on an interrupt, finish the write in progress, mark the rest cancelled, re-raise."""
        self.results = []
        self._t0 = time.perf_counter()
        self._error = None
        stop = threading.Event()
        loaded: queue.Queue = queue.Queue(self.depth)
        converted: queue.Queue = queue.Queue(self.depth)
        threads = [
            threading.Thread(target=self._guard, args=(self._read, stop, jobs, loaded), name="fhdr-read"),
            threading.Thread(target=self._guard, args=(self._write, stop, converted), name="fhdr-write"),
        ]
        for thread in threads:
            thread.start()
        try:
            while (item := _get(loaded, stop)) is not _END:
                _put(converted, self._process(*item), stop)
            _put(converted, _END, stop)
        except BaseException:
            stop.set()
            raise
        finally:
            for thread in threads:
                thread.join()
            finished = {r.frame for r in self.results}
            self.results += [
                FrameResult(j.frame, str(j.input or ""), str(j.output), CANCELLED)
                for j in jobs
                if j.frame not in finished
            ]
        if self._error is not None:
            raise self._error
        return self.results

    def convert(self, job: Job, since_start: float = 0.0) -> FrameResult:
        """Read, convert and write one job in the calling thread (a Ray worker's unit of work); ``since_start``:
        seconds since the run began, for the ``*_at`` times."""
        self._t0 = time.perf_counter() - since_start
        return self._save(*self._process(*self._load(job)))

    def _guard(self, target: Callable[..., None], stop: threading.Event, *args: Any) -> None:
        """Run a thread's loop; an unexpected error stops the whole pipeline and is re-raised by ``run``."""
        try:
            target(*args, stop)
        except BaseException as exc:
            self._error = exc
            stop.set()

    def _read(self, jobs: list[Job], loaded: queue.Queue, stop: threading.Event) -> None:
        for job in jobs:
            if stop.is_set() or not _put(loaded, self._load(job), stop):
                return
        _put(loaded, _END, stop)

    def _load(self, job: Job) -> tuple[FrameResult, oiio.ImageBuf | None]:
        result = FrameResult(job.frame, str(job.input or ""), str(job.output))
        if self.skip_existing and complete_exr(job.output):
            remove_stale_temps(job.output)
            result.status = SKIPPED
            return result, None
        start = time.perf_counter()
        result.read_at = start - self._t0
        try:
            if job.input is None:
                raise FhdrError(f"frame {job.frame}: no input file")
            check_paths(job.input, job.output)
            buf = read_image(job.input)
        except Exception as exc:
            result.status, result.error = FAILED, _describe(exc)
            buf = None
        result.read_s = time.perf_counter() - start
        return result, buf

    def _process(self, result: FrameResult, buf: oiio.ImageBuf | None) -> tuple[FrameResult, oiio.ImageBuf | None]:
        if buf is None:
            return result, None
        start = time.perf_counter()
        result.process_at = start - self._t0
        try:
            out = run_operation("ldr_to_hdr", buf, **self.params)
        except Exception as exc:
            result.status, result.error = FAILED, f"{result.input}: {_describe(exc)}"
            out = None
        result.process_s = time.perf_counter() - start
        return result, out

    def _write(self, converted: queue.Queue, stop: threading.Event) -> None:
        while (item := _get(converted, stop)) is not _END and not stop.is_set():
            result = self._save(*item)
            self.results.append(result)
            if self.on_result:
                self.on_result(result)

    def _save(self, result: FrameResult, out: oiio.ImageBuf | None) -> FrameResult:
        if out is not None:
            start = time.perf_counter()
            result.write_at = start - self._t0
            try:
                write_exr(out, result.output, half=self.half, compression=self.compression)
                result.status = DONE
            except Exception as exc:
                result.status, result.error = FAILED, _describe(exc)
            result.write_s = time.perf_counter() - start
        return result


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (how farms cancel a task) like Ctrl-C while the block runs in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _preflight(jobs: list[Job], params: dict[str, Any], compression: str, *, load: bool = True) -> dict[str, str]:
    """Fail before any work on settings that would fail every frame; if ``load``, load the model once and
    describe the engine (the ray executor's workers do that on their own machines)."""
    first = jobs[0]
    if first.input is not None:
        check_paths(first.input, first.output)
    for folder in sorted({j.output.parent for j in jobs}):
        if not folder.is_dir():
            raise FhdrError(f"output folder {folder} {'is not a folder' if folder.exists() else 'does not exist'}")
    check_compression(compression)
    p = LdrToHdrParams.from_kwargs(**params)
    for space in (p.input_colorspace, p.output_colorspace):
        if space:
            color.resolve(space)
    return describe_engine(params) if load else {}


def describe_engine(params: dict[str, Any]) -> dict[str, str]:
    """Load the engine of ``params`` (once per process) and say which model, device, dtype and tile it runs."""
    p = LdrToHdrParams.from_kwargs(**params)
    engine, meta = engine_for(p.model, p.iterations, p.device, p.precision, p.tile)
    return {
        "model": meta["fhdr:model"],
        "device": str(engine.device),
        "dtype": str(engine.dtype).removeprefix("torch."),
        "tile": str(engine.tile),
    }


def summary(results: list[FrameResult], elapsed_s: float) -> dict[str, Any]:
    """Counts by status, frames per second over the converted frames, and the failed frames as a range."""
    counts = {s: sum(r.status == s for r in results) for s in (DONE, SKIPPED, FAILED, CANCELLED)}
    return {
        "counts": counts,
        "elapsed_s": round(elapsed_s, 3),
        "frames_per_second": round(counts[DONE] / elapsed_s, 3) if elapsed_s > 0 else 0.0,
        "failed_frames": format_frames([r.frame for r in results if r.status == FAILED]),
        "cancelled_frames": format_frames([r.frame for r in results if r.status == CANCELLED]),
    }


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write ``report`` as JSON at ``path``, atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise FhdrError(f"{path}: cannot write the report: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _rounded(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in entry.items()}


def _show(result: FrameResult, bar: tqdm) -> None:
    bar.update(1)
    if result.status == FAILED:
        tqdm.write(f"fhdr: frame {result.frame} failed: {result.error}", file=sys.stderr)
    elif bar.disable:
        seconds = result.read_s + result.process_s + result.write_s
        log.info("frame %d %s: %s (%.2f s)", result.frame, result.status, result.output, seconds)


def _say(summary_: dict[str, Any], quiet: bool) -> None:
    counts = summary_["counts"]
    if not quiet:
        parts = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "nothing to do"
        tqdm.write(
            f"fhdr: {sum(counts.values())} frames: {parts} in {summary_['elapsed_s']:.1f} s "
            f"({summary_['frames_per_second']:.2f} frames/s)",
            file=sys.stderr,
        )
    if counts[CANCELLED] and not quiet:
        cancelled = summary_["cancelled_frames"]
        tqdm.write(f"fhdr: not done: frames {cancelled} (resume with --skip-existing)", file=sys.stderr)
    if counts[FAILED]:
        failed = summary_["failed_frames"]
        tqdm.write(f"fhdr: failed frames: {failed} (rerun them with --frames {failed})", file=sys.stderr)


def run_batch(
    in_pattern: str,
    out_pattern: str,
    params: dict[str, Any],
    *,
    frames: str = "",
    chunk_spec: str = "",
    skip_existing: bool = False,
    half: bool = True,
    compression: str = "zip",
    report: Path | None = None,
    quiet: bool = False,
    executor: str = "local",
    address: str = "",
    ray_cpus: int = 0,
    ray_workers: int = 0,
) -> list[FrameResult]:
    """Convert a frame sequence with a progress bar (on a terminal), a summary and an optional JSON report.

    ``executor="ray"``: on the Ray cluster at ``address`` (default: a local instance with ``ray_cpus`` CPUs,
    0 for all) with ``ray_workers`` workers (0: one per GPU, or one per node without GPUs).
    """
    if executor not in EXECUTORS:
        raise FhdrError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    if executor == "local" and (address or ray_cpus or ray_workers):
        raise FhdrError("--address, --ray-cpus and --ray-workers are options of --executor ray")
    jobs = plan(in_pattern, out_pattern, frames, chunk_spec)
    engine = _preflight(jobs, params, compression, load=executor == "local") if jobs else {}
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if executor == "ray":
        from fhdr_plugin.ray_executor import RayPipeline

        pipeline: Pipeline | RayPipeline = RayPipeline(
            params,
            half=half,
            compression=compression,
            skip_existing=skip_existing,
            address=address,
            cpus=ray_cpus,
            workers=ray_workers,
            quiet=quiet,
        )
    else:
        pipeline = Pipeline(params, half=half, compression=compression, skip_existing=skip_existing)
    bar = tqdm(total=len(jobs), unit="frame", file=sys.stderr, disable=quiet or not sys.stderr.isatty())
    pipeline.on_result = lambda r: _show(r, bar)
    start = time.perf_counter()
    try:
        with sigterm_as_interrupt():
            pipeline.run(jobs)
    finally:
        bar.close()
        outcome = summary(pipeline.results, time.perf_counter() - start)
        if report is not None:
            write_report(
                report,
                {
                    "fhdr_version": __version__,
                    "command": sys.argv,
                    "input": in_pattern,
                    "output": out_pattern,
                    "frame_range": frames,
                    "chunk": chunk_spec,
                    "started": started,
                    "settings": {
                        **params,
                        "half": half,
                        "compression": compression,
                        "skip_existing": skip_existing,
                        "executor": executor,
                    },
                    "engine": pipeline.engine if executor == "ray" else engine,
                    **outcome,
                    "frames": [_rounded(asdict(r)) for r in pipeline.results],
                },
            )
        _say(outcome, quiet)
    return pipeline.results
