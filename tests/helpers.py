"""Helpers the tests share: pixels of an image, a generated LDR plate, ``fhdr`` in a subprocess or in process,
a folder nobody may write in."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
from conftest import write_image
from typer.testing import CliRunner

from fhdr_plugin.host.cli import app

#: ``fhdr`` as a user runs it, through this interpreter.
FHDR = [sys.executable, "-m", "fhdr_plugin"]


def interruptible() -> None:
    """``preexec_fn`` of a child that a test stops with SIGINT: SIGINT's default action restored, as a terminal
    gives it. A shell starts its background jobs with SIGINT ignored, and a Python started so raises no
    KeyboardInterrupt: under a CI that runs the tests in the background, the child would ignore the test's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def pixels(image: oiio.ImageBuf | str | os.PathLike, dtype: oiio.BASETYPE = oiio.FLOAT) -> np.ndarray:
    """The (H, W, C) pixels of an ImageBuf, or of a file read afresh (not from OIIO's cache), as ``dtype``."""
    if isinstance(image, oiio.ImageBuf):
        buf = image
    else:
        buf = oiio.ImageBuf(str(image))
        assert buf.read(force=True), f"{image}: {buf.geterror()}"
    spec = buf.spec()
    return np.asarray(buf.get_pixels(dtype)).reshape(spec.height, spec.width, spec.nchannels)


def plate_frame(frame: int, shape: tuple[int, int] = (48, 64), low: float = 0.1, high: float = 0.7) -> np.ndarray:
    """Frame ``frame`` of an sRGB plate: noise in [low, high) seeded by the frame, and a clipped 10x20 patch that
    moves with it."""
    img = np.random.default_rng(frame).uniform(low, high, (*shape, 3)).astype(np.float32)
    x = 5 + 3 * (frame % 20)
    img[10:20, x : x + 20] = 1.0
    return img


def plate(folder: Path, frames: Iterable[int], name: str = "plate.{:04d}.png", **frame: object) -> list[Path]:
    """Write ``frames`` of the plate (``plate_frame``'s options in ``frame``) as 8-bit files ``name.format(n)``
    in ``folder``; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    return [write_image(folder / name.format(f), plate_frame(f, **frame)) for f in frames]


def fhdr(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``fhdr ARGS`` in a subprocess on one OpenMP thread, ``env`` added to the environment."""
    run_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([*FHDR, *map(str, args)], capture_output=True, text=True, env=run_env, timeout=600)


def batch(*args: object) -> tuple[int, str]:
    """Run ``fhdr batch ARGS`` in this process: (exit code, stderr); an exception other than an exit is raised."""
    result = CliRunner().invoke(app, ["batch", *map(str, args)])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stderr


@contextlib.contextmanager
def unwritable(folder: Path) -> Iterator[None]:
    """Make ``folder`` a place this process cannot create files in: read-only permissions, or for root (whom
    permissions do not stop) the immutable attribute; skips the test where neither is possible."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root on a filesystem without chattr +i: no folder root cannot write in")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
