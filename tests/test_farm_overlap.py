"""Two farm tasks given overlapping frame ranges of the same shot (a misconfigured chunking), run at once as real
``fhdr batch`` processes: every output is whole and valid at every moment it exists, and each task's report says
what it wrote."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
from helpers import FHDR, pixels, plate

from fhdr_plugin.imaging.io import remove_stale_temps
from fhdr_plugin.manifest import manifest

FRAMES = {"a": range(1, 9), "b": range(1, 7)}


def read_whole(path: Path) -> np.ndarray | None:
    """The float pixels of the EXR ``path``, read without OIIO's cache; None if it vanished meanwhile (a rename
    over it); an assertion error if it is there but not a whole, valid EXR."""
    image = oiio.ImageInput.open(str(path))
    if image is None:
        message = oiio.geterror()
        if not path.exists():
            return None
        raise AssertionError(f"{path.name}: cannot open: {message}")
    try:
        spec = image.spec()
        data = image.read_image(0, 0, 0, spec.nchannels, oiio.FLOAT)
        assert data is not None and not image.has_error, f"{path.name}: {image.geterror()}"
    finally:
        image.close()
    assert data.shape == (32, 48, 3), f"{path.name}: {data.shape}"
    assert np.isfinite(data).all(), path.name
    return data


def test_overlapping_batches_leave_every_output_whole(tmp_path: Path) -> None:
    plate(tmp_path / "in", range(1, 9), shape=(32, 48))
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = {}
    for task, frames in FRAMES.items():
        args = [tmp_path / "in/plate.####.png", out / "h.####.exr", "--tile", "256", "--precision", "float32"]
        args += ["--frames", f"{frames[0]}-{frames[-1]}", "--report", tmp_path / f"{task}.json"]
        procs[task] = subprocess.Popen(
            [*FHDR, "batch", *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
        )
    reads, deadline = 0, time.monotonic() + 600
    while any(p.poll() is None for p in procs.values()) and time.monotonic() < deadline:
        for path in sorted(out.glob("h.*.exr")) if out.is_dir() else []:
            reads += read_whole(path) is not None
        time.sleep(0.01)
    errs = {task: p.communicate(timeout=60)[1] for task, p in procs.items()}
    assert reads > 0, "the outputs were read while the tasks ran"
    for task, frames in FRAMES.items():
        assert procs[task].returncode == 0, errs[task]
        assert f"fhdr: {len(frames)} frames: {len(frames)} done" in errs[task], errs[task]
        report = json.loads((tmp_path / f"{task}.json").read_text())
        assert [(f["frame"], f["status"], f["output"]) for f in report["frames"]] == [
            (f, "done", str(out / f"h.{f:04d}.exr")) for f in frames
        ]
    assert sorted(p.name for p in out.iterdir()) == [f"h.{f:04d}.exr" for f in range(1, 9)]
    reference = subprocess.run(
        [*FHDR, "convert", tmp_path / "in/plate.0003.png", tmp_path / "ref.exr", "--tile", "256"]
        + ["--precision", "float32"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert reference.returncode == 0, reference.stderr
    for f in range(1, 9):
        assert read_whole(out / f"h.{f:04d}.exr") is not None
        assert (
            oiio.ImageBuf(str(out / f"h.{f:04d}.exr")).spec().get_string_attribute("fhdr:model")
            == manifest().default_model
        )
    np.testing.assert_array_equal(pixels(out / "h.0003.exr"), pixels(tmp_path / "ref.exr"))


def test_a_writer_on_another_host_keeps_its_temporary(tmp_path: Path) -> None:
    """On shared storage a temporary file of a writer on another machine is not this machine's to remove, whatever
    its PID is here; one of this machine's dead writers is removed."""
    target = tmp_path / "h.0001.exr"
    dead = _dead_pid()
    here, there = socket.gethostname(), "render-node-17.farm"
    ours, theirs = tmp_path / f".h.0001.exr.{here}.{dead}.tmp", tmp_path / f".h.0001.exr.{there}.{dead}.tmp"
    for path in (ours, theirs):
        path.write_bytes(b"half a frame")
    assert remove_stale_temps(target) == [ours]
    assert sorted(p.name for p in tmp_path.iterdir()) == [theirs.name]


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid
