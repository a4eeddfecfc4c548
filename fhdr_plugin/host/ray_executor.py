"""``fhdr batch --executor ray``: the per-frame work of a batch on a Ray cluster, one model per worker.

Each worker is a Ray actor that loads the engine once and then reads, converts and writes whole frames, the
same code as the local pipeline, on files every node sees at the same paths (outputs are written atomically).
The driver hands the next frame to whichever worker is free (``Order``: in runs of frames when they steady a
shot) and gathers the results in frame order, so the summary, the report and the exit status are those of a
local run. Ray is an optional dependency, imported only here and only when the executor runs.

A worker that dies (a preempted node, the OOM killer, a crash) is Ray's to replace: the actors are restartable
(``max_restarts``) and their frames retried once on the restarted worker (``max_task_retries``). A small
``Attempts`` actor counts the starts of each frame, so the report records the retries, and a frame whose worker
died on both of its attempts fails as a poison frame while the others carry on.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import replace
from types import ModuleType
from typing import Any

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.host.frames import (
    FAILED,
    FrameResult,
    FrameWork,
    Job,
    OnResult,
    engine_line,
    engine_of,
    with_cancelled,
)
from fhdr_plugin.host.registry import DEFAULT_OPERATION
from fhdr_plugin.imaging.io import WriteOptions
from fhdr_plugin.params import Params

log = logging.getLogger("fhdr")

INSTALL_HINT = "the ray executor needs: pip install 'fhdr[ray]'"
#: How many times Ray starts a frame again on the restarted worker when its worker dies under it.
MAX_TASK_RETRIES = 1
#: The named actor of a run that counts each frame's attempts (its name: this, the driver's PID, a random tag).
ATTEMPTS_NAME = "fhdr-attempts"


def import_ray() -> ModuleType:
    """The ``ray`` module, or an FhdrError saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise FhdrError(INSTALL_HINT) from exc
    return ray


class Attempts:
    """A Ray actor (no CPU of its own) that counts the attempts at each frame and knows which worker runs the
    latest: what survives a worker that dies under a frame."""

    def __init__(self) -> None:
        self.count: dict[int, int] = {}
        self.worker: dict[int, str] = {}

    def start(self, frame: int, worker: str) -> int:
        """Record that ``worker`` starts ``frame``; the attempt's number, from 1."""
        self.count[frame] = self.count.get(frame, 0) + 1
        self.worker[frame] = worker
        return self.count[frame]

    def of(self, frame: int) -> int:
        """How many attempts ``frame`` has had."""
        return self.count.get(frame, 0)

    def latest(self) -> dict[int, tuple[int, str]]:
        """Each frame started so far: its number of attempts and the worker of the latest."""
        return {f: (n, self.worker[f]) for f, n in self.count.items()}


class FrameWorker:
    """What one Ray actor holds: the per-frame work, whose engine it loads once, run one frame at a time.
    ``attempts``: the name of the run's ``Attempts`` actor ("": attempts are not counted); a name rather than a
    handle, so that Ray keeps no constructor argument in the object store for a restart."""

    def __init__(
        self, params: Params, options: WriteOptions, skip_existing: bool, operation: str, attempts: str = ""
    ) -> None:
        self.work = FrameWork(params, options, skip_existing, operation)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.attempts = attempts

    def start(self) -> dict[str, str]:
        """Load the engine; describe it."""
        return engine_of(self.work.params)

    def ping(self) -> str:
        """This worker's name, once it is up (again)."""
        return self.name

    def convert(self, job: Job, started: float) -> FrameResult:
        """Read, convert and write one frame; ``started``: the driver's wall-clock time at the start of the run."""
        attempt = 1
        if self.attempts:
            import ray

            attempt = ray.get(ray.get_actor(self.attempts).start.remote(job.frame, self.name))
        self.work.t0 = time.perf_counter() - (time.time() - started)
        result = self.work.convert(job)
        result.worker = self.name
        result.retries = attempt - 1
        return result


class Order:
    """The jobs not yet given to a worker, and which one a free worker gets next: in order, or, when the jobs steady
    a shot (``Job.steady``), in runs, so that the reconstructions a worker keeps serve its next frame. A worker
    then gets the job after its last one while that is not given out, otherwise the first job of the longest run
    not given out when no worker is on the job before it, else the middle of that run."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs
        self.left = set(range(len(jobs)))
        self.runs = any(job.steady for job in jobs)
        self.next = 0
        self.last: dict[int, int] = {}

    def __bool__(self) -> bool:
        return bool(self.left)

    def next_for(self, worker: object) -> Job:
        """The job ``worker`` (any object that stays the same for one worker) is given now."""
        after = self.last.get(id(worker), -2) + 1
        while self.next not in self.left and self.next < len(self.jobs):
            self.next += 1
        if not self.runs:
            index = self.next
        elif after in self.left:
            index = after
        else:
            index = self._split()
        self.left.remove(index)
        self.last[id(worker)] = index
        return self.jobs[index]

    def _split(self) -> int:
        """Where a worker starts on the longest run of jobs not given out (the first such run)."""
        left = sorted(self.left)
        starts = [i for i, index in enumerate(left) if i == 0 or index != left[i - 1] + 1] + [len(left)]
        length, first = max((starts[k + 1] - starts[k], -starts[k]) for k in range(len(starts) - 1))
        start = left[-first]
        return start if start - 1 not in self.last.values() else start + length // 2


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
        params: Params,
        options: WriteOptions = WriteOptions(),
        *,
        skip_existing: bool = False,
        operation: str = DEFAULT_OPERATION,
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
        self.worker_args = (params, options, skip_existing, operation)
        self.address = address
        self.cpus = cpus
        self.workers = workers
        self.quiet = quiet
        self.results: list[FrameResult] = []
        self.engine: dict[str, str] = {}
        self._workers: list[Any] = []
        self._attempts: Any = None

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
            for actor in [*self._workers, *([self._attempts] if self._attempts is not None else [])]:
                self.ray.kill(actor)
            self._workers, self._attempts = [], None
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
        """Start the workers and load a model in each; settings that fail in a worker fail here, before any frame.
        Ray restarts a worker that dies (as often as every frame could need) and retries its frame once."""
        count, resources = worker_layout(self.ray, self.workers)
        count = min(count, frames)
        name = f"{ATTEMPTS_NAME}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._attempts = self.ray.remote(Attempts).options(name=name, num_cpus=0, max_restarts=0).remote()
        restarts = {"max_restarts": (MAX_TASK_RETRIES + 1) * frames, "max_task_retries": MAX_TASK_RETRIES}
        actor = self.ray.remote(FrameWorker).options(**resources, **restarts)
        self._workers = [actor.remote(*self.worker_args, name) for _ in range(count)]
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
        if engines[0]:
            self.engine = {**engines[0], "executor": "ray", "workers": str(count)}
            asked = self.worker_args[0].to_dict().get("precision", "")
            log.debug("%s (%s each)", engine_line(self.engine, asked), resources)

    def _distribute(self, jobs: list[Job], on_result: OnResult | None) -> None:
        """Give each free worker the next frame until all are done. A worker whose frame was lost (Ray restarted
        it and retried the frame, which lost it again) is given frames again once it answers a ping; one that
        cannot be restarted is dropped."""
        ray = self.ray
        started = time.time()
        todo = Order(jobs)
        idle = list(self._workers)
        running: dict[Any, tuple[Any, Job | None]] = {}  # a frame, or (None) a ping of a worker that lost one
        try:
            while todo or any(job is not None for _, job in running.values()):
                if not idle and not running:
                    raise FhdrError("every ray worker was lost; the frames not done are marked cancelled")
                while idle and todo:
                    worker = idle.pop()
                    job = todo.next_for(worker)
                    running[worker.convert.remote(_absolute(job), started)] = (worker, job)
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    worker, job = running.pop(ref)
                    if job is None:
                        if self._answers(ref):
                            idle.append(worker)
                    elif self._collect(ref, job, on_result):
                        idle.append(worker)
                    else:
                        running[worker.ping.options(max_task_retries=0).remote()] = (worker, None)
        except KeyboardInterrupt:
            recorded = {r.frame for r in self.results}
            for ref, (_, job) in running.items():
                if job is not None and job.frame not in recorded:
                    self._collect(ref, job, on_result)
            raise

    def _answers(self, ping: Any) -> bool:
        """True if the worker answered ``ping`` (it is up, restarted or not); False if it is gone for good."""
        try:
            name = self.ray.get(ping)
        except self.ray.exceptions.RayError as exc:
            log.warning("a ray worker is gone for good (%s); carrying on without it", type(exc).__name__)
            return False
        log.debug("ray worker %s is up", name)
        return True

    def _collect(self, ref: Any, job: Job, on_result: OnResult | None) -> bool:
        """Record the result of ``job``; False if its worker died under it on every attempt."""
        errors = self.ray.exceptions
        alive = True
        try:
            result = replace(self.ray.get(ref), input=str(job.input or ""), output=str(job.output))
            if result.retries:
                log.warning("frame %d: retried on a restarted ray worker (%s)", job.frame, result.worker)
        except errors.RayActorError as exc:
            alive = False
            attempts = self._attempts_of(job.frame)
            result = FrameResult.of(job, FAILED, _lost(job, exc, attempts))
            result.retries = max(0, attempts - 1)
        except errors.RayError as exc:
            result = FrameResult.of(job, FAILED, f"frame {job.frame}: ray: {type(exc).__name__}: {_first_line(exc)}")
        self.results.append(result)
        if on_result:
            on_result(result)
        return alive

    def _attempts_of(self, frame: int) -> int:
        """How many attempts ``frame`` has had (0 if the attempts actor cannot say)."""
        try:
            return int(self.ray.get(self._attempts.of.remote(frame), timeout=60))
        except Exception:  # the count is for the report; the frame has failed either way
            return 0


def _lost(job: Job, exc: Exception, attempts: int) -> str:
    """Why ``job`` failed when its worker died under it: on each of its ``attempts`` (a poison frame), or once,
    and Ray did not retry it (its worker could not be restarted)."""
    if attempts > MAX_TASK_RETRIES:
        return (
            f"frame {job.frame}: a poison frame: its ray worker died on each of its {attempts} attempts "
            f"({type(exc).__name__}); convert {job.input} alone to see why"
        )
    return f"frame {job.frame}: the ray worker running it was lost and Ray did not retry it ({type(exc).__name__})"


def _absolute(job: Job) -> Job:
    """``job`` with absolute paths, its neighbours' too: workers do not run in the driver's folder."""
    return replace(
        job,
        input=job.input and job.input.absolute(),
        output=job.output.absolute(),
        neighbours=tuple((offset, path.absolute()) for offset, path in job.neighbours),
    )


def _first_line(exc: Exception) -> str:
    """The first line of a Ray error's message (the rest is a remote traceback)."""
    return next(iter(str(exc).splitlines()), "")
