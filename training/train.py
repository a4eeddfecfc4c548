"""The training loop: Adam, the paper's schedule, resumable atomic checkpoints, validation."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from fhdr_plugin.model import FHDR
from training.data import HDRCrops, Synthesis
from training.losses import FHDRLoss, mu_law

log = logging.getLogger("fhdr.training")


@dataclass
class TrainConfig:
    """Every hyper-parameter of a run; saved in each checkpoint."""

    iterations: int = 1
    crop: int = 64
    batch: int = 8
    lr: float = 2e-4
    beta1: float = 0.9
    beta2: float = 0.999
    steps: int = 6000
    decay_start: float = 0.5
    checkpoint_every: int = 250
    validate_every: int = 250
    seed: int = 0
    threads: int = 0


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Constant, then linear decay to 0 from ``decay_start`` of the run (the paper's schedule)."""
    start = int(cfg.steps * cfg.decay_start)
    if step < start:
        return 1.0
    return max(0.0, (cfg.steps - step) / max(1, cfg.steps - start))


def save_atomic(obj: dict, path: Path) -> None:
    """torch.save to a temporary file beside ``path``, then rename over it."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def validation_set(val: HDRCrops, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed set of validation crops."""
    ldr, hdr = val.batch(count)
    return torch.from_numpy(ldr), torch.from_numpy(hdr)


@torch.no_grad()
def validate(model: FHDR, ldr: torch.Tensor, hdr: torch.Tensor, chunk: int = 16) -> float:
    """mu-PSNR (dB) of the model on fixed validation crops."""
    model.eval()
    errs = []
    for i in range(0, len(ldr), chunk):
        out = model(ldr[i : i + chunk])
        errs.append(((mu_law(out) - mu_law(hdr[i : i + chunk])) ** 2).flatten(1).mean(1))
    model.train()
    mse = torch.cat(errs).mean().item()
    return float(-10 * np.log10(max(mse, 1e-12)))


def train(
    cfg: TrainConfig,
    train_data: HDRCrops,
    val_data: HDRCrops | None,
    out_dir: Path,
    syn: Synthesis,
    perceptual: torch.nn.Module | None = None,
    resume: bool = True,
) -> Path:
    """Train, checkpointing to ``out_dir/last.pt`` and ``out_dir/best.pt``; returns the best checkpoint's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = FHDR(cfg.iterations)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    loss_fn = FHDRLoss(perceptual)
    step, best = 0, -float("inf")
    last = out_dir / "last.pt"
    if resume and last.exists():
        ck = torch.load(last, weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        step, best = ck["step"], ck["best"]
        train_data.rng.bit_generator.state = ck["data_rng"]
        torch.set_rng_state(ck["torch_rng"])
        log.info("resumed from %s at step %d", last, step)
    val = validation_set(val_data, 64) if val_data is not None else None
    t0, seen = time.time(), 0
    while step < cfg.steps:
        ldr, hdr = (torch.from_numpy(a) for a in train_data.batch(cfg.batch))
        loss = loss_fn(model.forward_all(ldr), hdr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        seen += cfg.batch
        if step % 25 == 0:
            rate = seen / (time.time() - t0)
            log.info(
                "step %d/%d loss %.5f lr %.2e %.1f samples/s",
                step,
                cfg.steps,
                loss.item(),
                sched.get_last_lr()[0],
                rate,
            )
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            score = (
                validate(model, *val)
                if val is not None and (step % cfg.validate_every == 0 or step == cfg.steps)
                else None
            )
            state = {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "step": step,
                "best": best,
                "config": asdict(cfg),
                "synthesis": asdict(syn),
                "perceptual": perceptual is not None,
                "data_rng": train_data.rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "val_mu_psnr": score,
            }
            if score is not None and score > best:
                best = state["best"] = score
                save_atomic(state, out_dir / "best.pt")
                log.info("step %d: validation mu-PSNR %.3f dB (best)", step, score)
            elif score is not None:
                log.info("step %d: validation mu-PSNR %.3f dB", step, score)
            save_atomic(state, last)
    return out_dir / "best.pt"
