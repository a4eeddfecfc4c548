"""``fhdr batch --executor ray`` on a local 2-CPU Ray instance: the local executor's pixels and report statuses."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
from conftest import write_image
from helpers import batch, pixels, plate, plate_frame

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (pip install -e '.[ray]')")
#: float32 everywhere, so that the workers compute exactly what the local run computes.
SETTINGS = ["--precision", "float32", "--tile", "64", "--frames", "1-5"]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A local Ray instance with 2 CPUs that stays offline: no dashboard, no usage stats, token authentication
    with a token in the environment rather than in ~/.ray, its files in a short temporary folder (for Ray's
    sockets)."""
    import ray

    folder = tempfile.mkdtemp(prefix="fhdr-ray-")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")
        env.delenv("RAY_AUTH_MODE", raising=False)
        env.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
        try:
            ray.init(
                num_cpus=2,
                include_dashboard=False,
                object_store_memory=100 * 2**20,
                logging_level=logging.ERROR,
                _temp_dir=folder,
            )
            yield
        finally:
            ray.shutdown()
            shutil.rmtree(folder, ignore_errors=True)


def shot(folder: Path) -> Path:
    """Frames 1-4 of a 64x48 plate and a corrupt frame 5; returns the input pattern."""
    inputs = plate(folder, range(1, 6))
    inputs[4].write_bytes(inputs[4].read_bytes()[:60])
    return folder / "plate.####.png"


def run(pattern: Path, out: Path, *args: str) -> dict:
    """Run ``fhdr batch`` into ``out``; the report, checking that frame 5 alone failed (exit status 1)."""
    out.mkdir()
    code, err = batch(pattern, out / "h.####.exr", "--report", out / "r.json", *SETTINGS, *args)
    assert code == 1, err
    assert "failed frames: 5" in err
    return json.loads((out / "r.json").read_text())


def written(path: Path) -> tuple[np.ndarray, dict[str, str]]:
    """The half pixels of ``path`` as raw bits, and the attributes fhdr writes."""
    buf = oiio.ImageBuf(str(path))
    assert buf.read(force=True), buf.geterror()
    spec = buf.spec()
    attrs = {a.name: str(a.value) for a in spec.extra_attribs if a.name.startswith(("fhdr:", "oiio:ColorSpace"))}
    return pixels(buf, oiio.HALF).view(np.uint16), attrs


@needs_ray
def test_ray_executor_matches_the_local_one(tmp_path: Path, local_ray: None) -> None:
    pattern = shot(tmp_path / "in")
    local = run(pattern, tmp_path / "local")
    remote = run(pattern, tmp_path / "ray", "--executor", "ray", "--ray-workers", "2")

    def outcome(report: dict) -> list[tuple[int, str, str]]:
        return [(f["frame"], f["status"], f["error"]) for f in report["frames"]]

    assert outcome(remote) == outcome(local)
    assert [s for _, s, _ in outcome(local)] == ["done"] * 4 + ["failed"]
    assert "plate.0005.png" in remote["frames"][4]["error"]
    assert remote["counts"] == local["counts"] and remote["failed_frames"] == local["failed_frames"] == "5"
    for f in range(1, 5):
        ours, theirs = written(tmp_path / f"ray/h.{f:04d}.exr"), written(tmp_path / f"local/h.{f:04d}.exr")
        # The same pixels but for float32 rounding: a Ray worker runs torch on its own number of threads, which can
        # round a sum differently; that moves a rare value by one step of half (one value in 9,216 here).
        steps = np.abs(ours[0].astype(np.int32) - theirs[0].astype(np.int32))
        assert steps.max() <= 1 and np.count_nonzero(steps) <= ours[0].size // 1000, f"frame {f}: the pixels differ"
        assert ours[1] == theirs[1] and ours[1]["fhdr:model"]
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == [f"h.{f:04d}.exr" for f in range(1, 5)] + ["r.json"]
    assert len({f["worker"] for f in remote["frames"][:4]}) == 2, "both workers converted frames"
    assert {f["worker"] for f in local["frames"]} == {""}
    assert remote["engine"] | {"executor": "", "workers": ""} == local["engine"] | {"executor": "", "workers": ""}
    assert (remote["engine"]["executor"], remote["engine"]["workers"]) == ("ray", "2")
    assert remote["settings"]["executor"] == "ray"

    resumed = batch(
        pattern,
        tmp_path / "ray/h.####.exr",
        "--report",
        tmp_path / "again.json",
        *SETTINGS,
        "--skip-existing",
        "--executor",
        "ray",
    )
    assert resumed[0] == 1, resumed[1]
    statuses = [f["status"] for f in json.loads((tmp_path / "again.json").read_text())["frames"]]
    assert statuses == ["skipped"] * 4 + ["failed"]


@needs_ray
def test_ray_workers_steady_a_shot_as_the_local_run_does(tmp_path: Path, local_ray: None) -> None:
    """Each worker reconstructs the neighbours of the frames it is given, so the frames come out as one local run
    gives them, the corrupt frame 5 left out as frame 4's neighbour."""
    pattern = shot(tmp_path / "in")
    run(pattern, tmp_path / "local", "--steady", "1")
    run(pattern, tmp_path / "ray", "--steady", "1", "--executor", "ray", "--ray-workers", "2")
    for f in range(1, 5):
        ours, theirs = written(tmp_path / f"ray/h.{f:04d}.exr"), written(tmp_path / f"local/h.{f:04d}.exr")
        steps = np.abs(ours[0].astype(np.int32) - theirs[0].astype(np.int32))
        assert steps.max() <= 1 and np.count_nonzero(steps) <= ours[0].size // 1000, f"frame {f}: the pixels differ"
        assert ours[1] == theirs[1]
        assert ours[1]["fhdr:steady"] == f"1 frame either side, {1 if f in (1, 4) else 2} found"


def test_ray_executor_without_ray_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pattern = shot(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)
    code, err = batch(pattern, tmp_path / "h.####.exr", *SETTINGS, "--executor", "ray")
    assert code == 1
    assert "the ray executor needs: pip install 'fhdr[ray]'" in err
    assert list(tmp_path.glob("h.*")) == []


def test_ray_options_need_the_ray_executor(tmp_path: Path) -> None:
    code, err = batch(shot(tmp_path), tmp_path / "h.####.exr", *SETTINGS, "--address", "auto")
    assert code == 1 and "options of --executor ray" in err
    assert list(tmp_path.glob("h.*")) == []


@needs_ray
def test_settings_that_fail_in_the_workers_stop_before_any_frame(tmp_path: Path, local_ray: None) -> None:
    code, err = batch(shot(tmp_path), tmp_path / "h.####.exr", *SETTINGS, "--executor", "ray", "--device", "nope")
    assert code == 1 and "unknown device 'nope'" in err
    assert list(tmp_path.glob("h.*")) == []


class FakeCluster:
    """The two calls of the ``ray`` module that size the workers, for a made-up cluster."""

    def __init__(self, node_cpus: list[int], gpus: int = 0) -> None:
        self.node_cpus, self.gpus = node_cpus, gpus

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": float(sum(self.node_cpus)), **({"GPU": float(self.gpus)} if self.gpus else {})}

    def nodes(self) -> list[dict]:
        return [{"Alive": True, "Resources": {"CPU": float(c)} if c else {}} for c in self.node_cpus]


@pytest.mark.parametrize(
    ("node_cpus", "gpus", "wanted", "expected"),
    [
        ([16, 16], 4, 0, (4, {"num_gpus": 1, "num_cpus": 1})),
        ([16, 16], 4, 8, (4, {"num_gpus": 1, "num_cpus": 1})),
        ([16, 16], 4, 2, (2, {"num_gpus": 1, "num_cpus": 1})),
        ([0, 16, 8], 0, 0, (2, {"num_cpus": 8})),
        ([16, 16], 0, 4, (4, {"num_cpus": 8})),
        ([2], 0, 2, (2, {"num_cpus": 1})),
        ([2], 0, 5, (2, {"num_cpus": 1})),
        ([4, 8], 0, 0, (2, {"num_cpus": 4})),
    ],
)
def test_one_worker_per_gpu_or_a_share_of_each_node(
    node_cpus: list[int], gpus: int, wanted: int, expected: tuple[int, dict[str, float]]
) -> None:
    from fhdr_plugin.host.ray_executor import worker_layout

    assert worker_layout(FakeCluster(node_cpus, gpus), wanted) == expected


def long_shot(folder: Path, slow: int) -> Path:
    """Frames 1-16 of a 48x32 plate, frame ``slow`` 384x256 with near-white noise everywhere (so that every tile
    runs and a worker can be killed while it converts it); returns the input pattern."""
    plate(folder, [f for f in range(1, 17) if f != slow], shape=(32, 48))
    write_image(folder / f"plate.{slow:04d}.png", plate_frame(slow, shape=(256, 384), low=0.5, high=1.0))
    return folder / "plate.####.png"


def kill_the_worker_on(frame: int, times: int, killed: list[int], stop: threading.Event) -> None:
    """Each time ``frame`` starts (as the run's attempts actor says), kill the worker process converting it with
    SIGKILL, ``times`` times in all; the PIDs killed go to ``killed``."""
    import ray

    from fhdr_plugin.host.ray_executor import ATTEMPTS_NAME

    while len(killed) < times and not stop.is_set():
        names = [n for n in ray.util.list_named_actors() if n.startswith(ATTEMPTS_NAME)]
        latest = ray.get(ray.get_actor(names[0]).latest.remote()) if names else {}
        if frame in latest and latest[frame][0] > len(killed):
            pid = int(latest[frame][1].rsplit(":", 1)[1])
            time.sleep(0.2)  # into the frame's conversion
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        time.sleep(0.02)


def run_with_kills(tmp_path: Path, times: int) -> tuple[int, str, dict, list[int]]:
    pattern = long_shot(tmp_path / "in", slow=5)
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=kill_the_worker_on, args=(5, times, killed, stop), daemon=True)
    killer.start()
    try:
        args = ["--executor", "ray", "--ray-workers", "2", "--tile", "64", "--report", tmp_path / "r.json"]
        code, err = batch(pattern, tmp_path / "out/h.####.exr", *args)
    finally:
        stop.set()
        killer.join()
    return code, err, json.loads((tmp_path / "r.json").read_text()), killed


@needs_ray
def test_a_lost_worker_is_restarted_and_its_frame_retried(tmp_path: Path, local_ray: None) -> None:
    """SIGKILL of the worker converting frame 5 of 16, on two workers: Ray restarts it and runs frame 5 again; every
    frame is done, the exit status is 0 and the report says frame 5 was retried."""
    code, err, report, killed = run_with_kills(tmp_path, times=1)
    assert len(killed) == 1, err
    assert code == 0, err
    assert report["counts"] == {"done": 16, "skipped": 0, "failed": 0, "cancelled": 0}
    assert (report["retried_frames"], report["retries"]) == ("5", 1)
    frame5 = report["frames"][4]
    assert frame5["retries"] == 1 and not frame5["worker"].endswith(f":{killed[0]}")
    assert [f["retries"] for f in report["frames"] if f["frame"] != 5] == [0] * 15
    assert "fhdr: frames retried after their ray worker died: 5" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"h.{f:04d}.exr" for f in range(1, 17)]
    assert all(pixels(p).shape[2] == 3 for p in (tmp_path / "out").iterdir())


@needs_ray
def test_a_frame_that_kills_its_worker_twice_is_a_poison_frame(tmp_path: Path, local_ray: None) -> None:
    """The worker converting frame 5 killed on each attempt: frame 5 fails as a poison frame after one retry, the
    other 15 frames are done (the worker restarted again), the exit status is 1."""
    code, err, report, killed = run_with_kills(tmp_path, times=2)
    assert len(killed) == 2, err
    assert code == 1, err
    assert report["counts"] == {"done": 15, "skipped": 0, "failed": 1, "cancelled": 0}
    frame5 = report["frames"][4]
    assert frame5["status"] == "failed" and frame5["retries"] == 1
    assert "frame 5: a poison frame: its ray worker died on each of its 2 attempts" in frame5["error"]
    assert f"convert {tmp_path / 'in/plate.0005.png'} alone to see why" in frame5["error"]
    assert "failed frames: 5 (rerun them with --frames 5)" in err
    assert len({f["worker"] for f in report["frames"] if f["status"] == "done"}) >= 2


def test_steadied_frames_go_to_each_worker_in_runs() -> None:
    """A worker keeps the reconstructions around its last frame, so when frames are steadied it is given the next
    one; a second worker starts in the middle of what is left, and one whose run was taken steals half of the
    longest run left. Frames that are not steadied go out in order."""
    from fhdr_plugin.host.frames import Job
    from fhdr_plugin.host.ray_executor import Order

    jobs = [Job(f, Path(f"in.{f:04d}.png"), Path(f"out.{f:04d}.exr"), steady=2) for f in range(1, 13)]
    order, a, b = Order(jobs), object(), object()
    assert [order.next_for(a).frame, order.next_for(b).frame] == [1, 7]
    assert [order.next_for(b).frame for _ in range(5)] == [8, 9, 10, 11, 12]
    assert order.next_for(b).frame == 4
    assert [order.next_for(a).frame for _ in range(3)] == [2, 3, 6]
    assert order.next_for(b).frame == 5 and not order
    plain = Order([dataclasses.replace(job, steady=0) for job in jobs])
    assert [plain.next_for(w).frame for w in (a, b, a, b, b)] == [1, 2, 3, 4, 5]
