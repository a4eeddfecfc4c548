"""Killing ``fhdr batch`` at seeded moments, then resuming with ``--skip-existing``, ends with every frame correct.

SIGINT stops after the write in progress; SIGKILL stops anywhere, and may leave the temporary file of a write in
progress (nothing runs on SIGKILL), never a partial final output. The next run removes such temporary files once
the process that wrote them is gone.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import exercised
from helpers import batch, interruptible, pixels, plate

FHDR = Path(sys.executable).with_name("fhdr")
FRAMES = range(1, 7)
FAST = ["--tile", "256"]


def sequence(folder: Path) -> Path:
    """Six 96x64 frames of the plate; returns the input pattern."""
    plate(folder, FRAMES, shape=(64, 96))
    return folder / "plate.####.png"


def finals(folder: Path) -> list[Path]:
    return sorted(folder.glob("h.*.exr"))


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[int, np.ndarray]:
    """Every frame's pixels from an uninterrupted run."""
    folder = tmp_path_factory.mktemp("reference")
    code, err = batch(sequence(folder), folder / "h.####.exr", *FAST)
    assert code == 0, err
    return {f: pixels(folder / f"h.{f:04d}.exr") for f in FRAMES}


def assert_frames_match(folder: Path, reference: dict[int, np.ndarray]) -> None:
    for path in finals(folder):
        frame = int(path.name.split(".")[1])
        np.testing.assert_allclose(pixels(path), reference[frame], rtol=1e-3, atol=1e-3, err_msg=path.name)


def kill_at(cmd: list[str], folder: Path, sig: signal.Signals, after: int, delay: float) -> tuple[int, str]:
    """Start ``cmd``; once ``after`` outputs exist, wait ``delay`` seconds and send ``sig`` (if it still runs);
    returns its exit code and stderr."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    deadline = time.monotonic() + 300
    while len(finals(folder)) < after and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(sig)
    err = proc.communicate(timeout=120)[1]
    return proc.returncode, err


@pytest.mark.parametrize(
    ("sig", "seed"),
    [
        pytest.param(signal.SIGINT, 1, id="SIGINT-1"),
        pytest.param(signal.SIGINT, 2, id="SIGINT-2"),
        pytest.param(signal.SIGKILL, 3, id="SIGKILL-3"),
        pytest.param(signal.SIGKILL, 4, id="SIGKILL-4"),
    ],
)
def test_killed_batch_resumes_to_the_reference(
    tmp_path: Path, reference: dict[int, np.ndarray], sig: signal.Signals, seed: int
) -> None:
    rng = random.Random(seed)
    after = rng.randint(1, 4) if sig == signal.SIGINT else rng.randint(0, 4)
    delay = rng.uniform(0.0, 0.3)
    pattern, out = sequence(tmp_path / "in"), tmp_path / "out"
    out.mkdir()
    cmd = [str(FHDR), "batch", str(pattern), str(out / "h.####.exr"), *FAST]
    code, err = kill_at(cmd, out, sig, after, delay)
    exercised(f"batch runs killed with {sig.name}")
    if sig == signal.SIGINT:
        assert code in (0, 130), err
        assert "Traceback" not in err and temporaries(out) == []
    else:
        assert code in (0, -signal.SIGKILL), err
    assert_frames_match(out, reference)
    done_before = {p.name for p in finals(out)}
    exercised(f"frames finished before {sig.name} (of {len(FRAMES)} per run)", len(done_before))
    exercised(f"temporary files left by {sig.name}", len(temporaries(out)))

    code, err = batch(pattern, out / "h.####.exr", "--skip-existing", "--report", tmp_path / "r.json", *FAST)
    assert code == 0, err
    assert temporaries(out) == []
    assert [p.name for p in finals(out)] == [f"h.{f:04d}.exr" for f in FRAMES]
    assert_frames_match(out, reference)
    status = {e["frame"]: e["status"] for e in json.loads((tmp_path / "r.json").read_text())["frames"]}
    assert status == {f: "skipped" if f"h.{f:04d}.exr" in done_before else "done" for f in FRAMES}


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path: Path, reference: dict[int, np.ndarray]) -> None:
    """Temporary files whose writer is gone are removed, for the frames written and the frames skipped alike;
    one whose writer still runs (here: this process) is left alone."""
    pattern, out = sequence(tmp_path / "in"), tmp_path / "out"
    out.mkdir()
    assert batch(pattern, out / "h.####.exr", "--frames", "2", *FAST)[0] == 0
    gone = _dead_pid()
    for name in (f".h.0001.exr.{gone}.tmp", f".h.0002.exr.{gone}.tmp", f".h.0002.exr.{os.getpid()}.tmp"):
        (out / name).write_bytes(b"half a frame")
    code, err = batch(pattern, out / "h.####.exr", "--frames", "1-2", "--skip-existing", *FAST)
    assert code == 0, err
    assert temporaries(out) == [f".h.0002.exr.{os.getpid()}.tmp"]
    assert_frames_match(out, reference)


def _dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid
