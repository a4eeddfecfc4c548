"""Data-parallel training: two gloo processes under torchrun give the weights of one process with the same batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
import torch
from conftest import ROOT, write_image
from typer.testing import CliRunner

from fhdr_plugin.node.model import FHDR
from training.__main__ import app
from training.data import HDRCrops, Synthesis
from training.train import TrainConfig, train

TOLERANCE = 1e-5


def hdr_folder(folder: Path) -> Path:
    """Three small HDR images (two to train on, ``val`` to validate on): gradients with bright highlights."""
    folder.mkdir()
    rng = np.random.default_rng(7)
    for name in ("a", "b", "val"):
        y, x = np.mgrid[0:64, 0:96] / 64.0
        image = 0.05 + 0.4 * np.stack([x, y, (x + y) / 2], axis=-1) + rng.uniform(0.0, 0.05, (64, 96, 3))
        cy, cx = rng.integers(8, 56), rng.integers(8, 88)
        image[cy - 6 : cy + 6, cx - 6 : cx + 6] *= rng.uniform(10.0, 40.0)
        write_image(folder / f"{name}.exr", image, oiio.FLOAT)
    return folder


def args(data: Path, out: Path, steps: int = 3) -> list[str]:
    """A tiny run: ``steps`` steps of a global batch of 4 on 32-pixel crops, validated and checkpointed at the end."""
    return [
        "train", "--data", str(data), "--out", str(out), "--val", "val", "--crop", "32", "--batch", "4",
        "--steps", str(steps), "--checkpoint-every", str(steps), "--validate-every", str(steps), "--threads", "1",
        "--device", "cpu",
    ]  # fmt: skip


def torchrun(train_args: list[str]) -> subprocess.CompletedProcess:
    """``python -m training`` with ``train_args`` in two gloo processes under torchrun, one thread each."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    return subprocess.run(
        [*launch, "-m", "training", *train_args],
        cwd=ROOT,
        env={**env, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_two_processes_give_the_weights_of_one(tmp_path: Path, one_thread):
    data = hdr_folder(tmp_path / "hdr")
    done = torchrun(args(data, tmp_path / "ddp"))
    assert done.returncode == 0, done.stdout + done.stderr
    result = CliRunner().invoke(app, args(data, tmp_path / "one"))
    assert result.exit_code == 0, result.output

    ddp = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    one = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    best = ["best.pt"] if ddp["val"]["guard"] else []  # written when the validation's guard holds
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == [*best, "last.pt"]  # no stray temporaries
    assert ddp["step"] == one["step"] == 3
    assert ddp["data_rng"] == one["data_rng"]  # both drew the same three global batches
    assert ddp["model"].keys() == one["model"].keys()
    for name, weight in one["model"].items():
        assert torch.allclose(ddp["model"][name], weight, rtol=0.0, atol=TOLERANCE), name
    assert ddp["val"]["pu21_clipped"] == pytest.approx(one["val"]["pu21_clipped"], abs=1e-3)
    torch.manual_seed(0)
    initial = FHDR(1).state_dict()
    moved = max((one["model"][name] - weight).abs().max().item() for name, weight in initial.items())
    assert moved > 10 * TOLERANCE  # the comparison is not between two untrained networks


def test_a_batch_that_does_not_split_over_the_processes_is_refused(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    images = [np.ones((40, 40, 3), np.float32)]
    with pytest.raises(ValueError, match="global batch of 3 does not split evenly over 2 processes"):
        train(TrainConfig(crop=32, batch=3, steps=1), HDRCrops(images, 32, Synthesis(), 0), None, tmp_path, Synthesis())


def test_a_timed_run_ends_at_the_same_step_on_every_process(tmp_path: Path, one_thread):
    data = hdr_folder(tmp_path / "hdr")
    done = torchrun([*args(data, tmp_path / "ddp", steps=100000), "--minutes", "0.005"])
    assert done.returncode == 0, done.stdout + done.stderr
    checkpoint = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    assert 1 <= checkpoint["step"] < 100000 and checkpoint["config"]["minutes"] == 0.005
