"""The training loop on a tiny set: it learns, and an interrupted run resumes to the same weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
import torch
from conftest import shared, write_image
from typer.testing import CliRunner

from fhdr_plugin.model import FHDR
from training import data
from training.__main__ import app
from training.data import HDRCrops, Synthesis
from training.losses import FHDRLoss
from training.train import TrainConfig, train

SYN = Synthesis()


class Interrupted(Exception):
    """Raised in place of a crash."""


class CrashingCrops(HDRCrops):
    """HDR crops that fail when asked for batch number ``limit + 1``, like a process killed mid-run."""

    def __init__(self, *args, limit: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.limit = limit
        self.calls = 0

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        if self.calls == self.limit:
            raise Interrupted
        self.calls += 1
        return super().batch(size)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    """Two 96x192 regions of real HDR images."""
    lobby = data.read_rgb(shared("hdr-train/polyhaven512_lobby.exr"))
    workshop = data.read_rgb(shared("hdr-train/polyhaven512_workshop.exr"))
    return [lobby[80:176, 100:292].copy(), workshop[80:176, 200:392].copy()]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(steps: int, **kwargs) -> TrainConfig:
    return TrainConfig(crop=32, batch=2, steps=steps, seed=0, threads=1, **kwargs)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def test_a_few_steps_reduce_the_loss(images, tmp_path: Path):
    ldr, hdr = (torch.from_numpy(a) for a in HDRCrops(images, 32, SYN, seed=99).batch(8))
    torch.manual_seed(0)
    initial = FHDR(1).eval()
    loss = FHDRLoss()
    with torch.no_grad():
        before = loss([initial(ldr)], hdr).item()
    cfg = tiny(40, lr=1e-3, checkpoint_every=40)
    train(cfg, HDRCrops(images, 32, SYN, seed=0), None, tmp_path, SYN)
    trained = FHDR(1).eval()
    trained.load_state_dict(weights(tmp_path / "last.pt"))
    with torch.no_grad():
        after = loss([trained(ldr)], hdr).item()
    assert after < 0.7 * before


def test_resume_after_a_crash_gives_the_weights_of_an_uninterrupted_run(images, tmp_path: Path):
    cfg = tiny(6, checkpoint_every=2, decay_start=0.5)
    train(cfg, HDRCrops(images, 32, SYN, seed=0), None, tmp_path / "straight", SYN)

    with pytest.raises(Interrupted):
        train(cfg, CrashingCrops(images, 32, SYN, seed=0, limit=5), None, tmp_path / "crashed", SYN)
    checkpoint = torch.load(tmp_path / "crashed" / "last.pt", weights_only=True)
    assert checkpoint["step"] == 4  # step 5 ran but was lost with the crash
    train(cfg, HDRCrops(images, 32, SYN, seed=0), None, tmp_path / "crashed", SYN)

    straight, resumed = weights(tmp_path / "straight" / "last.pt"), weights(tmp_path / "crashed" / "last.pt")
    assert torch.load(tmp_path / "crashed" / "last.pt", weights_only=True)["step"] == 6
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    # and the weights did move away from the checkpoint the resumed run started from
    assert not all(torch.equal(checkpoint["model"][n], resumed[n]) for n in resumed)


def test_train_command_on_the_paired_layout(images, tmp_path: Path):
    for i, hdr in enumerate(images):
        rel = data.expose(np.maximum(hdr, 0.0), 0.05)
        (tmp_path / "pairs" / "LDR").mkdir(parents=True, exist_ok=True)
        (tmp_path / "pairs" / "HDR").mkdir(parents=True, exist_ok=True)
        data.write_ldr(data.synthesise(rel, np.random.default_rng(i), SYN), tmp_path / "pairs" / "LDR" / f"p{i}.png")
        write_image(tmp_path / "pairs" / "HDR" / f"p{i}.exr", hdr * 0.25, oiio.HALF)
    args = ["train", "--paired", str(tmp_path / "pairs"), "--out", str(tmp_path / "run"), "--val", "p1"]
    args += ["--steps", "2", "--crop", "32", "--batch", "2", "--checkpoint-every", "2", "--threads", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert checkpoint["step"] == 2
    assert checkpoint["val_mu_psnr"] is not None  # the held-out pair was used for validation
    assert (tmp_path / "run" / "best.pt").exists()
