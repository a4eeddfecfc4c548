"""The training loop: Adam, the paper's schedule, resumable atomic checkpoints, validation, torchrun."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from fhdr_plugin.model import FHDR
from training.data import HDRCrops, Synthesis
from training.losses import FHDRLoss, mu_law

log = logging.getLogger("fhdr.training")


@dataclass
class TrainConfig:
    """Every hyper-parameter of a run; saved in each checkpoint."""

    iterations: int = 1
    crop: int = 64
    batch: int = 8  # the global batch, split evenly over torchrun's processes
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


def torchrun_ranks() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) of this process when torchrun started it, else None."""
    try:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    except KeyError:
        return None


def pick_device(requested: str, local_rank: int) -> torch.device:
    """``requested`` (e.g. "cpu", "cuda"), or CUDA when available, else the CPU; with CUDA, GPU ``local_rank``."""
    kind = requested or ("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device("cuda", local_rank) if kind == "cuda" else torch.device(kind)


def global_mean(x: torch.Tensor) -> float:
    """The mean of scalar ``x`` over the run's processes (``x`` itself in a single process)."""
    if not dist.is_initialized():
        return x.item()
    total = x.detach().clone()
    dist.all_reduce(total)
    return total.item() / dist.get_world_size()


class AllOutputs(torch.nn.Module):
    """FHDR whose forward returns every iteration's output, for DistributedDataParallel (which calls forward)."""

    def __init__(self, model: FHDR) -> None:
        super().__init__()
        self.model = model

    def forward(self, ldr: torch.Tensor) -> list[torch.Tensor]:
        return self.model.forward_all(ldr)


def validation_set(val: HDRCrops, count: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed set of validation crops on ``device``."""
    ldr, hdr = val.batch(count)
    return torch.from_numpy(ldr).to(device), torch.from_numpy(hdr).to(device)


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
    device: str = "",
) -> Path:
    """Train, checkpointing to ``out_dir/last.pt`` and ``out_dir/best.pt``; returns the best checkpoint's path.

    Under torchrun every process draws the same global batch and trains on its own slice of it, DistributedDataParallel
    averaging the gradients, so the weights do not depend on the number of processes; rank 0 alone logs, validates and
    writes checkpoints. ``device`` is a torch device type [default: CUDA when available, else the CPU].
    """
    ranks = torchrun_ranks()
    _, world, local_rank = ranks or (0, 1, 0)
    if cfg.batch % world:
        raise ValueError(f"the global batch of {cfg.batch} does not split evenly over {world} processes")
    dev = pick_device(device, local_rank)
    if ranks is None:
        return train_loop(cfg, train_data, val_data, out_dir, syn, perceptual, resume, dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    try:
        return train_loop(cfg, train_data, val_data, out_dir, syn, perceptual, resume, dev)
    finally:
        dist.destroy_process_group()


def train_loop(
    cfg: TrainConfig,
    train_data: HDRCrops,
    val_data: HDRCrops | None,
    out_dir: Path,
    syn: Synthesis,
    perceptual: torch.nn.Module | None,
    resume: bool,
    dev: torch.device,
) -> Path:
    """The loop of ``train`` on ``dev``, in this process's share of the process group when there is one."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = FHDR(cfg.iterations).to(dev)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    loss_fn = FHDRLoss(perceptual).to(dev)
    step, best = 0, -float("inf")
    last = out_dir / "last.pt"
    if resume and last.exists():
        ck = torch.load(last, weights_only=True, map_location="cpu")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        step, best = ck["step"], ck["best"]
        train_data.rng.bit_generator.state = ck["data_rng"]
        torch.set_rng_state(ck["torch_rng"])
        if rank == 0:
            log.info("resumed from %s at step %d", last, step)
    net = AllOutputs(model)
    if dist.is_initialized():
        if global_mean(torch.tensor(float(step), device=dev)) != step:
            raise RuntimeError(f"the processes resumed from different steps; every one must see the same {last}")
        net = DistributedDataParallel(net)
    val = validation_set(val_data, 64, dev) if val_data is not None and rank == 0 else None
    share = cfg.batch // world
    mine = slice(rank * share, (rank + 1) * share)  # this process's share of each global batch
    t0, seen = time.time(), 0
    while step < cfg.steps:
        ldr, hdr = (torch.from_numpy(a[mine]).to(dev) for a in train_data.batch(cfg.batch))
        loss = loss_fn(net(ldr), hdr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        seen += cfg.batch
        if step % 25 == 0:
            mean_loss = global_mean(loss)
            if rank == 0:
                log.info(
                    "step %d/%d loss %.5f lr %.2e %.1f samples/s",
                    step,
                    cfg.steps,
                    mean_loss,
                    sched.get_last_lr()[0],
                    seen / (time.time() - t0),
                )
        if rank == 0 and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
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
