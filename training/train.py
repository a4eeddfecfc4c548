"""The training loop: Adam, the paper's schedule, resumable atomic checkpoints, validation, torchrun."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import safetensors.torch
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from fhdr_plugin.imaging.io import write_atomic
from fhdr_plugin.node.encoding import MU
from fhdr_plugin.node.lift import PREFIX as LIFT_PREFIX
from fhdr_plugin.node.model import ARCHITECTURES, FHDR, build
from fhdr_plugin.node.weights import sha256_bytes
from fhdr_plugin.params import Params, check_iterations, param
from training.data import HDRCrops, Synthesis
from training.loader import batches
from training.losses import LOSSES, FHDRLoss

log = logging.getLogger("fhdr.training")
#: The compute precisions a run trains in.
PRECISIONS = ("float32", "bfloat16")


@dataclass(frozen=True)
class TrainConfig(Params):
    """Every hyper-parameter of a run, declared once (``python -m training train`` has one option per field);
    saved in each checkpoint."""

    where = "train"

    iterations: int = param(1, "feedback iterations of the network", check=check_iterations)
    arch: str = param(
        "fhdr", "fhdr (the paper's network) or fhdr-context (with a coarse context pass)", choices=ARCHITECTURES
    )
    crop: int = param(64, "crop size in pixels")
    batch: int = param(8, "global batch, split evenly over the processes of a torchrun launch")
    lr: float = param(2e-4, "Adam's learning rate")
    beta1: float = param(0.9, "Adam's beta1")
    beta2: float = param(0.999, "Adam's beta2")
    steps: int = param(6000, "optimiser steps of this run")
    minutes: float = param(0.0, "end the run after this many minutes if its steps are not done by then; 0: no limit")
    decay_start: float = param(0.5, "fraction of the run after which the learning rate decays linearly to 0")
    warmup: int = param(0, "steps over which the learning rate first rises linearly from 0 (for a run from --init)")
    checkpoint_every: int = param(250, "steps between checkpoints (last.pt)")
    validate_every: int = param(500, "steps between validations (a multiple of checkpoint_every)")
    seed: int = param(0, "seed of the data and of the initial weights")
    workers: int = param(
        0, "processes that draw the batches (to keep a GPU fed); 0: the training process, resumed exactly"
    )
    threads: int = param(0, "torch CPU threads; 0: torch's default")
    focus: float = param(0.9, "loss weight of the pixels the anchored blend takes from the network (losses.py)")
    loss: str = param("composite", "composite (L1 of the node's output) or weighted (losses.py)", choices=LOSSES)
    keep: float = param(0.0, "loss weight of the measured channels the blend must keep as the plate (losses.py)")
    consistency: float = param(0.0, "loss weight of steadiness over two shifted, re-noised frames; 0: none")
    over_weight: float = param(
        1.0, "weight of the node's error above the truth (over-lift) against one below (losses.py)"
    )
    precision: str = param("float32", "float32, or bfloat16 autocast of the forward pass", choices=PRECISIONS)
    channels_last: bool = param(True, "run in channels-last memory layout", flag="--channels-last/--contiguous")


def lr_factor(step: int, cfg: TrainConfig, seconds: float = 0.0) -> float:
    """Constant, then linear decay to 0 from ``decay_start`` of the run (the paper's schedule), after a linear rise
    over the first ``warmup`` steps: a run continued from trained weights starts Adam without moments, and its
    first full-size steps move every weight by about the learning rate at once. With ``cfg.minutes`` the run is
    as far along as the larger of its steps and its ``seconds`` of training say."""
    rise = min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else 1.0
    start = int(cfg.steps * cfg.decay_start)
    by_steps = 1.0 if step < start else max(0.0, (cfg.steps - step) / max(1, cfg.steps - start))
    if not cfg.minutes:
        return rise * by_steps
    done = seconds / (60.0 * cfg.minutes)
    by_time = 1.0 if done < cfg.decay_start else max(0.0, (1.0 - done) / (1.0 - cfg.decay_start))
    return rise * min(by_steps, by_time)


def over(step: int, seconds: float, cfg: TrainConfig) -> bool:
    """Whether a run at ``step`` after ``seconds`` of training is done: its steps, or its minutes, are spent."""
    return step >= cfg.steps or bool(cfg.minutes) and seconds >= 60.0 * cfg.minutes


def save_atomic(obj: dict, path: Path) -> None:
    """torch.save to a temporary file beside ``path``, then rename over it."""
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


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


#: Scores a model on held-out data: returns a dict with ``pu21_clipped`` (higher is better) and ``guard``.
Validator = Callable[[FHDR], dict]


def decoding_metadata(syn: Synthesis) -> dict[str, str]:
    """The weights' metadata that says how the network's output decodes (``fhdr_plugin.node.encoding``)."""
    return {"fhdr:headroom": str(syn.headroom), "fhdr:encoding": syn.encoding, "fhdr:mu": str(MU)}


@dataclass(frozen=True)
class Init:
    """Weights a run starts from instead of random ones, with the training they already had."""

    state: dict[str, torch.Tensor]
    name: str
    sha256: str
    steps: int
    seconds: float

    @classmethod
    def load(cls, path: Path) -> Init:
        """Read a safetensors weights file (no code runs) and the steps and time recorded in its metadata."""
        data = path.read_bytes()
        with safetensors.safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        steps = int(meta.get("fhdr:total_steps", meta.get("fhdr:steps", "0")) or 0)
        seconds = float(meta.get("fhdr:total_seconds", "0") or 0)
        # A lift head is fitted to the network it follows: a run that changes the network starts without it.
        state = {k: v for k, v in safetensors.torch.load(data).items() if not k.startswith(LIFT_PREFIX)}
        return cls(state, path.name, sha256_bytes(data), steps, seconds)


def better(result: dict, best: float) -> bool:
    """Whether a validation ``result`` beats the best score so far: higher clipped PU21, guard kept."""
    return bool(result.get("guard", True)) and result["pu21_clipped"] > best


def loss_of(cfg: TrainConfig, syn: Synthesis, perceptual: torch.nn.Module | None = None) -> FHDRLoss:
    """The loss ``cfg`` asks for, on targets encoded as ``syn`` encodes them; with a consistency weight its batches
    hold shots of two frames."""
    return FHDRLoss(
        perceptual,
        encoding=syn.encoding,
        headroom=syn.headroom,
        focus=cfg.focus,
        kind=cfg.loss,
        keep=cfg.keep,
        consistency=cfg.consistency,
        frames=2 if cfg.consistency else 1,
        over=cfg.over_weight,
    )


def train(
    cfg: TrainConfig,
    train_data: HDRCrops,
    validator: Validator | None,
    out_dir: Path,
    syn: Synthesis,
    perceptual: torch.nn.Module | None = None,
    resume: bool = True,
    device: str = "",
    init: Init | None = None,
) -> Path:
    """Train, checkpointing to ``out_dir/last.pt`` and ``out_dir/best.pt``; returns the best checkpoint's path.

    Under torchrun every process draws the same global batch and trains on its own slice of it, DistributedDataParallel
    averaging the gradients, so the weights do not depend on the number of processes; rank 0 alone logs, validates and
    writes checkpoints. ``device`` is a torch device type [default: CUDA when available, else the CPU]. ``init``:
    weights to start from when there is no checkpoint to resume (a new optimiser; steps and time add up).
    """
    ranks = torchrun_ranks()
    _, world, local_rank = ranks or (0, 1, 0)
    if cfg.batch % world:
        raise ValueError(f"the global batch of {cfg.batch} does not split evenly over {world} processes")
    dev = pick_device(device, local_rank)
    if ranks is None:
        return train_loop(cfg, train_data, validator, out_dir, syn, perceptual, resume, dev, init)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    try:
        result = train_loop(cfg, train_data, validator, out_dir, syn, perceptual, resume, dev, init)
        dist.barrier()  # every process waits for rank 0's last checkpoint, then all leave the group together
        return result
    finally:
        dist.destroy_process_group()


def train_loop(
    cfg: TrainConfig,
    train_data: HDRCrops,
    validator: Validator | None,
    out_dir: Path,
    syn: Synthesis,
    perceptual: torch.nn.Module | None,
    resume: bool,
    dev: torch.device,
    init: Init | None = None,
) -> Path:
    """The loop of ``train`` on ``dev``, in this process's share of the process group when there is one."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = build(cfg.arch, cfg.iterations)
    prior = {"init": "", "steps": 0, "seconds": 0.0}
    if init is not None:
        # A context model may start from the paper's network: its context pass starts at zero (it adds nothing).
        missing, unexpected = model.load_state_dict(init.state, strict=False)
        if unexpected or any(not k.startswith("context.") for k in missing):
            raise ValueError(f"{init.name} does not fit {cfg.arch}: missing {missing}, unexpected {unexpected}")
        prior = {"init": f"{init.name} sha256 {init.sha256}", "steps": init.steps, "seconds": init.seconds}
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(dev, memory_format=layout)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    loss_fn = loss_of(cfg, syn, perceptual).to(dev)
    frames = loss_fn.frames
    if (cfg.batch // world) % frames:
        raise ValueError(f"each process's share of the batch ({cfg.batch // world}) must hold whole shots of {frames}")
    step, best, seconds = 0, -float("inf"), 0.0
    last = out_dir / "last.pt"
    if resume and last.exists():
        ck = torch.load(last, weights_only=True, map_location="cpu")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step, best, seconds, prior = ck["step"], ck["best"], ck["seconds"], ck["prior"]
        train_data.rng.bit_generator.state = ck["data_rng"]
        torch.set_rng_state(ck["torch_rng"])
        if rank == 0:
            log.info("resumed from %s at step %d", last, step)
    net = AllOutputs(model)
    if dist.is_initialized():
        if global_mean(torch.tensor(float(step), device=dev)) != step:
            raise RuntimeError(f"the processes resumed from different steps; every one must see the same {last}")
        net = DistributedDataParallel(net)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16) if cfg.precision == "bfloat16" else nullcontext()
    share = cfg.batch // world
    mine = slice(rank * share, (rank + 1) * share)  # this process's share of each global batch
    stream = batches(train_data, cfg.batch, frames, cfg.workers, cfg.seed, step)
    t0, seen = time.time(), 0

    def trained() -> float:
        """Seconds of training so far; under torchrun with --minutes the slowest process's, so that every process
        takes the same learning rate and stops at the same step."""
        own = seconds + time.time() - t0
        if not (cfg.minutes and dist.is_initialized()):
            return own
        slowest = torch.tensor(own, dtype=torch.float64, device=dev)
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        return slowest.item()

    now = seconds
    done = over(step, now, cfg)
    while not done:
        lr = cfg.lr * lr_factor(step, cfg, now)
        for group in opt.param_groups:
            group["lr"] = lr
        ldr, hdr, lossy = (t[mine].to(dev) for t in next(stream))
        ldr = ldr.contiguous(memory_format=layout)
        with autocast:
            outputs = net(ldr)
        loss = loss_fn(outputs, hdr, ldr, lossy)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        seen += cfg.batch
        now = trained()
        done = over(step, now, cfg)
        if step % 25 == 0:
            mean_loss = global_mean(loss)
            if rank == 0:
                log.info(
                    "step %d/%d loss %.5f lr %.2e %.1f samples/s",
                    step,
                    cfg.steps,
                    mean_loss,
                    lr,
                    seen / (time.time() - t0),
                )
        if rank == 0 and (step % cfg.checkpoint_every == 0 or done):
            result = validator(model) if validator is not None and (step % cfg.validate_every == 0 or done) else None
            elapsed, t_mark = time.time() - t0, time.time()
            state = {
                "model": {k: v.contiguous() for k, v in model.state_dict().items()},
                "optimizer": opt.state_dict(),
                "step": step,
                "best": best,
                "seconds": seconds + elapsed,
                "prior": prior,
                "config": asdict(cfg),
                "synthesis": asdict(syn),
                "perceptual": perceptual is not None,
                "data_rng": train_data.rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "val": result,
            }
            if result is not None:
                summary = ", ".join(
                    f"{k} {result[k]:.3f}"
                    for k in (
                        "pu21_clipped",
                        "gain_clipped",
                        "worst_all",
                        "log_lift_median",
                        "log_lift_min",
                        "flat_max",
                    )
                    if k in result
                )
                if better(result, best):
                    best = state["best"] = result["pu21_clipped"]
                    save_atomic(state, out_dir / "best.pt")
                    log.info("step %d: validation %s (best)", step, summary)
                else:
                    log.info("step %d: validation %s", step, summary)
            save_atomic(state, last)
            # The time to validate and save counts towards the run, not towards samples/s.
            seconds += elapsed
            t0, seen = t_mark, 0
    return out_dir / "best.pt"
