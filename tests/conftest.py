"""Shared fixtures: the real data beside the project, small images written by the tests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
#: Inputs the reliability tests ran, by kind; printed at the end of the run.
EXERCISED: Counter[str] = Counter()


def exercised(kind: str, count: int = 1) -> None:
    """Count ``count`` more inputs of ``kind`` for the summary at the end of the run."""
    EXERCISED[kind] += count


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print how many inputs of each kind the tests exercised."""
    if EXERCISED:
        terminalreporter.section("inputs exercised")
        for kind, count in sorted(EXERCISED.items()):
            terminalreporter.write_line(f"{count:5d}  {kind}")


def shared(relative: str) -> Path:
    """A file under ../shared/data, or a skip when the shared data is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"{path} not available (../shared/data is absent)")
    return path


def write_image(path: Path, pixels: np.ndarray, fmt=oiio.UINT8, channelnames=None, attrs=None) -> Path:
    """Write ``pixels`` (H, W, C) floats with OIIO in ``fmt``; returns ``path``."""
    h, w, c = pixels.shape
    spec = oiio.ImageSpec(w, h, c, fmt)
    if channelnames:
        spec.channelnames = tuple(channelnames)
    for key, value in (attrs or {}).items():
        spec.attribute(key, value)
    buf = oiio.ImageBuf(spec)
    buf.set_pixels(buf.roi, np.ascontiguousarray(pixels, dtype=np.float32))
    assert buf.write(str(path)), buf.geterror()
    return path


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one thread for the test, its thread count restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def sample_ldr() -> Path:
    """The shipped sample LDR image."""
    return ROOT / "samples" / "quarry_ldr.png"


@pytest.fixture
def ldr_png(tmp_path: Path) -> Path:
    """A small 8-bit sRGB PNG with a clipped highlight."""
    rng = np.random.default_rng(1)
    img = rng.uniform(0.1, 0.7, (48, 64, 3)).astype(np.float32)
    img[10:20, 20:40] = 1.0
    return write_image(tmp_path / "small.png", img)
