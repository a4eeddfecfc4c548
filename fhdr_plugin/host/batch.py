"""Frame sequences through ``ldr_to_hdr``: disk I/O in background threads, frames in order, a JSON report.

    reader thread ──(bounded queue)──▶ model (calling thread) ──(bounded queue)──▶ writer thread

The reader decodes the next frames while the model runs, and the writer encodes the previous ones, so the
device does not wait on disk. A frame that cannot be read, converted or written is recorded as failed and
the others carry on. Ctrl-C (or SIGTERM from a farm) stops after the write in progress: outputs are written
atomically, so no partial file is left, and the frames not done are recorded as cancelled; a host's cancel
(``run_batch``'s ``cancelled``) stops the run the same way. ``run_batch`` takes any executor
(``frames.Executor``): this module's ``LocalExecutor``, or ``ray_executor.RayExecutor``, which runs the same
per-frame work (``frames.FrameWork``) on a Ray cluster.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.host.frames import (
    CANCELLED,
    DONE,
    FAILED,
    SKIPPED,
    Executor,
    FrameResult,
    FrameWork,
    Job,
    OnResult,
    engine_line,
    engine_of,
    with_cancelled,
)
from fhdr_plugin.host.pipeline import check_paths
from fhdr_plugin.host.registry import DEFAULT_OPERATION
from fhdr_plugin.host.terminal import bar_fits, sigterm_as_interrupt
from fhdr_plugin.imaging.io import WriteOptions, check_writable, make_folder, write_atomic
from fhdr_plugin.imaging.sequence import FramePattern, chunk, format_frames, parse_chunk, parse_frames, parse_pattern
from fhdr_plugin.node.steady import check_radius
from fhdr_plugin.params import Params
from fhdr_plugin.version import __version__

__all__ = [
    "CANCELLED",
    "DONE",
    "FAILED",
    "SKIPPED",
    "FrameResult",
    "Job",
    "LocalExecutor",
    "neighbours",
    "plan",
    "run_batch",
]

log = logging.getLogger("fhdr")

_END = object()
_POLL_S = 0.1

#: ``run_batch``'s ``on_progress``: called with each frame's result, the frames finished so far and the total.
OnProgress = Callable[[FrameResult, int, int], None]


class _Cancel(KeyboardInterrupt):
    """A host's cancel, raised from ``on_result``: every executor stops on it as on Ctrl-C (after the frames in
    progress, marking the rest cancelled), and ``run_batch`` returns the results."""


def plan(in_pattern: str, out_pattern: str, frames: str = "", chunk_spec: str = "", steady: int = 0) -> list[Job]:
    """The jobs of a batch, in frame order: ``frames`` (default: those on disk), cut to chunk ``I/N`` if given;
    with ``steady``, each job names the files of up to that many frames either side on disk (whatever the range
    and the chunk), nearest first, with their distance (``neighbours``)."""
    check_radius(steady)
    source = parse_pattern(in_pattern)
    target = parse_pattern(out_pattern)
    if not isinstance(target, FramePattern):
        raise FhdrError(f"{out_pattern!r}: the output needs a frame-number field (#, @ or %04d), not a glob")
    wanted = parse_frames(frames) if frames else None
    part = parse_chunk(chunk_spec) if chunk_spec else None
    found = source.on_disk() if wanted is None or steady or not isinstance(source, FramePattern) else {}
    numbers = list(found) if wanted is None else wanted
    if not numbers:
        raise FhdrError(f"--frames {frames!r} selects no frames" if frames else f"no frames match {in_pattern!r}")
    if part:
        numbers = chunk(numbers, *part)
    if isinstance(source, FramePattern):
        return [
            Job(f, source.path(f), target.path(f), steady=steady, neighbours=neighbours(found, f, steady))
            for f in numbers
        ]
    return [Job(f, found.get(f), target.path(f), in_pattern, steady, neighbours(found, f, steady)) for f in numbers]


def neighbours(found: dict[int, Path], frame: int, steady: int) -> tuple[tuple[int, Path], ...]:
    """The frames of up to ``steady`` frames either side of ``frame`` that ``found`` (frame → file on disk) holds,
    nearest first: how far each is from ``frame``, and its file."""
    near = [d for k in range(1, steady + 1) for d in (-k, k)]
    return tuple((d, found[frame + d]) for d in near if frame + d in found)


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


class LocalExecutor:
    """Runs jobs in this process: a reader thread, the model in the calling thread, a writer thread."""

    name = "local"

    def __init__(
        self,
        params: Params,
        options: WriteOptions = WriteOptions(),
        *,
        skip_existing: bool = False,
        depth: int = 2,
        operation: str = DEFAULT_OPERATION,
    ) -> None:
        if depth < 1:
            raise FhdrError(f"queue depth must be at least 1, got {depth}")
        self.work = FrameWork(params, options, skip_existing, operation)
        self.depth = depth
        self._results: list[FrameResult] = []
        self._error: BaseException | None = None

    def describe(self) -> dict[str, str]:
        """Load the engine (once per process) and describe it."""
        engine = engine_of(self.work.params)
        return {**engine, "executor": self.name, "workers": "1"} if engine else {}

    def run(self, jobs: list[Job], on_result: OnResult | None = None) -> list[FrameResult]:
        """Convert ``jobs``; on an interrupt, finish the write in progress, mark the rest cancelled, re-raise."""
        self._results = []
        self._error = None
        self.work.t0 = time.perf_counter()
        stop = threading.Event()
        loaded: queue.Queue = queue.Queue(self.depth)
        converted: queue.Queue = queue.Queue(self.depth)
        threads = [
            threading.Thread(target=self._guard, args=(self._read, stop, jobs, loaded), name="fhdr-read"),
            threading.Thread(target=self._guard, args=(self._write, stop, converted, on_result), name="fhdr-write"),
        ]
        for thread in threads:
            thread.start()
        try:
            while not stop.is_set() and (item := _get(loaded, stop)) is not _END:
                _put(converted, self.work.process(*item), stop)
            _put(converted, _END, stop)
        except BaseException:
            stop.set()
            raise
        finally:
            for thread in threads:
                thread.join()
            self._results = with_cancelled(jobs, self._results)
        if self._error is not None:
            raise self._error
        return self._results

    def _guard(self, target: Callable[..., None], stop: threading.Event, *args: Any) -> None:
        """Run a thread's loop; an unexpected error stops the whole run and is re-raised by ``run``."""
        try:
            target(*args, stop)
        except BaseException as exc:
            self._error = exc
            stop.set()

    def _read(self, jobs: list[Job], loaded: queue.Queue, stop: threading.Event) -> None:
        for job in jobs:
            if stop.is_set() or not _put(loaded, self.work.load(job), stop):
                return
        _put(loaded, _END, stop)

    def _write(self, converted: queue.Queue, on_result: OnResult | None, stop: threading.Event) -> None:
        while (item := _get(converted, stop)) is not _END and not stop.is_set():
            result = self.work.save(*item)
            self._results.append(result)
            if on_result:
                on_result(result)


def _preflight(jobs: list[Job], report: Path | None) -> None:
    """Fail before any work on output paths that would fail every frame (settings failed when made), or on a
    report that could not be written after them; create the output folders and the report's, and check that
    this process can write in them."""
    for job in jobs:
        if job.input is not None:
            check_paths(job.input, job.output)
    if report is not None:
        make_folder(report.parent)
        if report.is_dir():
            raise FhdrError(f"{report}: is a directory, not a report file")
        check_writable(report.parent)
    for folder in sorted({j.output.parent for j in jobs}):
        make_folder(folder)
        check_writable(folder)


def summary(results: list[FrameResult], elapsed_s: float) -> dict[str, Any]:
    """Counts by status, frames per second over the converted frames, the failed, cancelled and retried frames
    (started again after their Ray worker died) as ranges."""
    counts = {s: sum(r.status == s for r in results) for s in (DONE, SKIPPED, FAILED, CANCELLED)}
    return {
        "counts": counts,
        "elapsed_s": round(elapsed_s, 3),
        "frames_per_second": round(counts[DONE] / elapsed_s, 3) if elapsed_s > 0 else 0.0,
        "failed_frames": format_frames([r.frame for r in results if r.status == FAILED]),
        "cancelled_frames": format_frames([r.frame for r in results if r.status == CANCELLED]),
        "retried_frames": format_frames([r.frame for r in results if r.retries]),
        "retries": sum(r.retries for r in results),
    }


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write ``report`` as JSON at ``path``, atomically."""
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"), "the report")


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
    if summary_["retries"] and not quiet:
        retried = summary_["retried_frames"]
        tqdm.write(f"fhdr: frames retried after their ray worker died: {retried}", file=sys.stderr)
    if counts[CANCELLED] and not quiet:
        cancelled = summary_["cancelled_frames"]
        tqdm.write(f"fhdr: not done: frames {cancelled} (resume with --skip-existing)", file=sys.stderr)
    if counts[FAILED]:
        failed = summary_["failed_frames"]
        tqdm.write(f"fhdr: failed frames: {failed} (rerun them with --frames {failed})", file=sys.stderr)


def run_batch(
    executor: Executor,
    in_pattern: str,
    out_pattern: str,
    settings: dict[str, Any],
    *,
    frames: str = "",
    chunk_spec: str = "",
    steady: int = 0,
    jobs: list[Job] | None = None,
    report: Path | None = None,
    quiet: bool = False,
    on_progress: OnProgress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> list[FrameResult]:
    """Convert a frame sequence on ``executor`` (a ``frames.Executor``) with a progress bar (on a terminal), a
    summary and an optional JSON report that records ``settings``. ``jobs``: the frames when the caller planned
    them (a still has no pattern; the patterns then only name them), else ``plan``'s (with ``steady``).
    ``on_progress(result, done, total)`` follows each frame; ``cancelled()`` is asked before the first frame and
    between frames: once it is true, the frames not finished are cancelled as by Ctrl-C, and the results are
    returned. A batch refused before its first frame (no frames, an output it cannot write) still writes its
    report, the refusal as ``error``."""
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    recorded = {**settings, "executor": executor.name}
    try:
        jobs = plan(in_pattern, out_pattern, frames, chunk_spec, steady) if jobs is None else jobs
        if jobs:
            _preflight(jobs, report)
    except FhdrError as exc:
        if report is not None:
            report_refusal(report, in_pattern, out_pattern, recorded, str(exc), frames, chunk_spec)
        raise
    if jobs:
        engine = executor.describe()
        if engine:
            log.debug("%s", engine_line(engine, settings.get("precision", "")))
    bar = tqdm(total=len(jobs), unit="frame", file=sys.stderr, disable=quiet or not bar_fits(sys.stderr))
    finished: list[FrameResult] = []
    stopping = threading.Event()

    def on_result(result: FrameResult) -> None:
        finished.append(result)
        _show(result, bar)
        if on_progress is not None:
            on_progress(result, len(finished), len(jobs))
        if cancelled is not None and len(finished) < len(jobs) and not stopping.is_set() and cancelled():
            stopping.set()
            raise _Cancel

    start = time.perf_counter()
    interrupted = False
    try:
        with suppress(_Cancel), sigterm_as_interrupt():
            if cancelled is None or not cancelled():
                executor.run(jobs, on_result)
    except BaseException:
        interrupted = True
        raise
    finally:
        bar.close()
        results = with_cancelled(jobs, finished)
        outcome = summary(results, time.perf_counter() - start)
        _say(outcome, quiet)
        if report is not None:
            head = _head(in_pattern, out_pattern, frames, chunk_spec)
            done = batch_report(head, started, recorded, executor.describe(), results, outcome)
            _report_after(interrupted, report, done)
    return results


def _head(in_pattern: str, out_pattern: str, frames: str, chunk_spec: str) -> dict[str, str]:
    """What a batch's report says it was asked for: the input and output patterns, frame range and chunk."""
    return {"input": in_pattern, "output": out_pattern, "frame_range": frames, "chunk": chunk_spec}


def batch_report(
    head: dict[str, str],
    started: str,
    settings: dict[str, Any],
    engine: dict[str, str],
    results: list[FrameResult],
    outcome: dict[str, Any],
    **refused: str,
) -> dict[str, Any]:
    """A batch's JSON report: the version, the command, ``head`` (input and output patterns, frame range, chunk),
    when it started, its settings and engine, an ``error`` when it was refused, its ``summary`` and its frames."""
    return {
        "fhdr_version": __version__,
        "command": sys.argv,
        **head,
        "started": started,
        "settings": settings,
        "engine": engine,
        **refused,
        **outcome,
        "frames": [_rounded(asdict(r)) for r in results],
    }


def report_refusal(
    path: Path, in_pattern: str, out_pattern: str, settings: dict[str, Any], error: str, frames: str, chunk_spec: str
) -> None:
    """Write the report of a batch refused before its first frame (an operation's bad parameter, an executor it
    cannot start, no frames, an output it cannot write): no frames, the refusal as ``error``; a failure to write it
    is logged, so the refusal is what the command reports."""
    head = _head(in_pattern, out_pattern, frames, chunk_spec)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    try:
        write_report(path, batch_report(head, started, settings, {}, [], summary([], 0.0), error=error))
    except (FhdrError, OSError) as exc:
        log.error("no report written: %s", exc)


def _report_after(interrupted: bool, path: Path, report: dict[str, Any]) -> None:
    """Write the report; after an interrupt, a failure to write it is logged, so the interrupt's exit status stands."""
    try:
        write_report(path, report)
    except FhdrError as exc:
        if not interrupted:
            raise
        log.error("%s", exc)
