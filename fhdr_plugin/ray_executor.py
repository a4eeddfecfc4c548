"""``fhdr batch --executor ray``: the per-frame work of a batch on a Ray cluster, one model per worker.

Each worker is a Ray actor that loads the engine once and then reads, converts and writes whole frames, the
same code as the local pipeline, on files every node sees at the same paths (outputs are written atomically).
The driver hands the next frame to whichever worker is free and gathers the results in frame order, so the
summary, the report and the exit status are those of a local run. Ray is an optional dependency, imported only
here and only when the executor runs.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import threading
import time
from collections import deque
from dataclasses import replace
from types import ModuleType
from typing import Any

from fhdr_plugin.engine import describe_engine
from fhdr_plugin.errors import FhdrError
from fhdr_plugin.frames import FAILED, FrameResult, FrameWork, Job, OnResult, engine_line, with_cancelled
from fhdr_plugin.io import WriteOptions
from fhdr_plugin.params import LdrToHdrParams

log = logging.getLogger("fhdr")

INSTALL_HINT = "the ray executor needs: pip install 'fhdr[ray]'"


def import_ray() -> ModuleType:
    """The ``ray`` module, or an FhdrError saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise FhdrError(INSTALL_HINT) from exc
    return ray


class FrameWorker:
    """What one Ray actor holds: the per-frame work, whose engine it loads once, run one frame at a time."""

    def __init__(self, params: LdrToHdrParams, options: WriteOptions, skip_existing: bool) -> None:
        self.work = FrameWork(params, options, skip_existing)
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def start(self) -> dict[str, str]:
        """Load the engine; describe it."""
        return describe_engine(self.work.params)

    def convert(self, job: Job, started: float) -> FrameResult:
        """Read, convert and write one frame; ``started``: the driver's wall-clock time at the start of the run."""
        self.work.t0 = time.perf_counter() - (time.time() - started)
        result = self.work.convert(job)
        result.worker = self.name
        return result


def worker_layout(ray: ModuleType, wanted: int) -> tuple[int, dict[str, float]]:
    """How many workers, and the resources of each: one GPU each when the cluster has GPUs (one worker per
    GPU by default), else an equal share of the smallest node's CPUs (one worker per node by default); never
    more workers than the cluster can hold at once."""
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus:
        return min(wanted or gpus, gpus), {"num_gpus": 1, "num_cpus": 1}
    cpus = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n["Alive"]]
    cpus = [c for c in cpus if c > 0]
    if not cpus:
        raise FhdrError("the Ray cluster has no CPUs or GPUs to run workers on")
    count = wanted or len(cpus)
    each = max(1, min(cpus) // math.ceil(count / len(cpus)))
    return min(count, sum(c // each for c in cpus)), {"num_cpus": each}


class RayExecutor:
    """Runs jobs on Ray workers, one model each, on the cluster at ``address`` (default: a local instance with
    ``cpus`` CPUs, 0 for all) with ``workers`` workers (0: one per GPU, or one per node without GPUs)."""

    name = "ray"

    def __init__(
        self,
        params: LdrToHdrParams,
        options: WriteOptions = WriteOptions(),
        *,
        skip_existing: bool = False,
        address: str = "",
        cpus: int = 0,
        workers: int = 0,
        quiet: bool = False,
    ) -> None:
        if cpus < 0 or workers < 0:
            raise FhdrError(f"ray CPUs and workers must be 0 (automatic) or more, got {cpus} and {workers}")
        if cpus and address:
            raise FhdrError("--ray-cpus is for a local Ray instance; a cluster at --address has its own CPUs")
        self.ray = import_ray()
        self.worker_args = (params, options, skip_existing)
        self.address = address
        self.cpus = cpus
        self.workers = workers
        self.quiet = quiet
        self.results: list[FrameResult] = []
        self.engine: dict[str, str] = {}
        self._workers: list[Any] = []

    def describe(self) -> dict[str, str]:
        """The first worker's engine, the executor and the number of workers (empty before a run)."""
        return self.engine

    def run(self, jobs: list[Job], on_result: OnResult | None = None) -> list[FrameResult]:
        """Convert ``jobs`` on the cluster (connecting to it, or starting a local instance, unless Ray is
        already initialised); on an interrupt, wait for the frames in progress, mark the rest cancelled, re-raise."""
        self.results = []
        connect = not self.ray.is_initialized()
        try:
            if connect:
                self._init()
            if jobs:
                self._start_workers(len(jobs))
                self._distribute(jobs, on_result)
        finally:
            for worker in self._workers:
                self.ray.kill(worker)
            self._workers = []
            if connect:
                self.ray.shutdown()
            self.results = with_cancelled(jobs, self.results)
        return self.results

    def _init(self) -> None:
        """Connect to ``address`` or start a local instance, keeping this process's SIGTERM handler (ray.init
        replaces it)."""
        main = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGTERM) if main else None
        options: dict[str, Any] = {
            "logging_level": max(logging.WARNING, log.getEffectiveLevel()),
            "log_to_driver": not self.quiet,
        }
        if self.address:
            options["address"] = self.address
        else:
            options.update(num_cpus=self.cpus or None, include_dashboard=False)
        try:
            self.ray.init(**options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            if not self.address:
                raise FhdrError(f"cannot start a local Ray instance: {exc}") from exc
            hint = "a cluster with token authentication also needs RAY_AUTH_MODE=token and RAY_AUTH_TOKEN"
            raise FhdrError(f"cannot connect to the Ray cluster at {self.address}: {exc} ({hint})") from exc
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)

    def _start_workers(self, frames: int) -> None:
        """Start the workers and load a model in each; settings that fail in a worker fail here, before any frame."""
        count, resources = worker_layout(self.ray, self.workers)
        count = min(count, frames)
        actor = self.ray.remote(FrameWorker).options(**resources)
        self._workers = [actor.remote(*self.worker_args) for _ in range(count)]
        try:
            engines = self.ray.get([w.start.remote() for w in self._workers])
        except self.ray.exceptions.RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, FhdrError):
                raise FhdrError(str(cause)) from None
            raise FhdrError(f"a ray worker could not start: {type(cause).__name__}: {cause}") from None
        except self.ray.exceptions.RayError as exc:
            message = f"{type(exc).__name__}: {_first_line(exc)}"
            raise FhdrError(f"the ray workers could not start (is fhdr installed on every node?): {message}") from None
        self.engine = {**engines[0], "executor": "ray", "workers": str(count)}
        log.debug("%s (%s each)", engine_line(self.engine, self.worker_args[0].precision), resources)

    def _distribute(self, jobs: list[Job], on_result: OnResult | None) -> None:
        """Give each free worker the next frame until all are done; a frame whose worker is lost fails."""
        ray = self.ray
        started = time.time()
        todo = deque(jobs)
        idle = list(self._workers)
        running: dict[Any, tuple[Any, Job]] = {}
        try:
            while todo or running:
                if not idle and not running:
                    raise FhdrError("every ray worker was lost; the frames not done are marked cancelled")
                while idle and todo:
                    worker, job = idle.pop(), todo.popleft()
                    running[worker.convert.remote(_absolute(job), started)] = (worker, job)
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    worker, job = running[ref]
                    if self._collect(ref, job, on_result):
                        idle.append(worker)
                    del running[ref]
        except KeyboardInterrupt:
            recorded = {r.frame for r in self.results}
            for ref, (_, job) in running.items():
                if job.frame not in recorded:
                    self._collect(ref, job, on_result)
            raise

    def _collect(self, ref: Any, job: Job, on_result: OnResult | None) -> bool:
        """Record the result of ``job``; False if its worker was lost."""
        errors = self.ray.exceptions
        alive = True
        try:
            result = replace(self.ray.get(ref), input=str(job.input or ""), output=str(job.output))
        except errors.RayActorError as exc:
            alive = False
            lost = f"frame {job.frame}: the ray worker running it was lost ({type(exc).__name__})"
            result = FrameResult.of(job, FAILED, lost)
        except errors.RayError as exc:
            result = FrameResult.of(job, FAILED, f"frame {job.frame}: ray: {type(exc).__name__}: {_first_line(exc)}")
        self.results.append(result)
        if on_result:
            on_result(result)
        return alive


def _absolute(job: Job) -> Job:
    """``job`` with absolute paths: workers do not run in the driver's folder."""
    return replace(job, input=job.input and job.input.absolute(), output=job.output.absolute())


def _first_line(exc: Exception) -> str:
    """The first line of a Ray error's message (the rest is a remote traceback)."""
    return next(iter(str(exc).splitlines()), "")
