"""Fitting the lift head (``fhdr_plugin/node/lift.py``) on whole frames of the training images.

The network is fixed: each training frame goes through the node's own path (the tiled engine, the decoding, the
anchored blend at the plate's ramp), and the head learns, per pixel the network reconstructs, the log of the
truth's luminance over the expansion's, from the frame's context features (``lift.features``, the same function
the node runs). The loss is L1 in log luminance with every frame weighted equally, so a frame with a large sun
does not outweigh one with a barely clipped sky. The head's scale (a shrinkage towards no change, no head at all
among the choices) is chosen without the validation scenes, by cross-fitting: the training scenes are split into
folds (``scenes.folds``), each fold is scored through the node with a head fitted on the others, and the scale
with the fewest cases over all folds below the whole-image guard, then the fewest barely clipped cases beyond
1.1x, then the best PU21 (``choose_scale``) is applied to the head fitted on every training scene.

A consistency term (``fit``'s ``consistency``) keeps the head steady on a moving shot: each of its frames is made
twice, a third of a pixel apart, each through its own camera draw and the network (``pair_samples``), and the
head's error at a pixel of the moved frame is held to the unmoved frame's at the same point of the scene, the
flicker ``benchmarks/temporal.py`` measures.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from fhdr_plugin.imaging import color
from fhdr_plugin.node import lift
from fhdr_plugin.node.engine import Engine, to_tensor
from fhdr_plugin.node.model import FHDR
from fhdr_plugin.node.operation import LdrToHdrParams, reconstruct
from fhdr_plugin.params import BlendParams
from training.data import Synthesis, subpixel_shift, synthesise
from training.evaluate import CAMERA, INPUT_SPACE, Case
from training.export import validation_metadata
from training.metrics import luminance

log = logging.getLogger("fhdr.lift")

#: Where the target log gain is clipped: the head is never asked to darken by more than e, nor to brighten beyond e^6.
TARGET_RANGE = (-1.0, 6.0)
#: Pixels whose matte is above this are the head's training samples (the ones the network reconstructs).
MATTE_MIN = 0.5
#: How far the second frame of a consistency pair is moved from the first (px), each resampled from the view.
PAIR_SHIFT = 1.0 / 3.0
#: The clipped fractions of the consistency term's frames: two of the fit's four, so that the pairs' network
#: passes cost what the fit's own do.
PAIR_FRACTIONS = (0.02, 0.05)


@dataclass(frozen=True)
class Samples:
    """The head's training set: features (n, ``lift.FEATURES``), target log gains (n,), each sample's frame, and
    each frame's image (the stem of its HDR file). A consistency pair's samples (``pair_samples``) hold three
    pixels each: features (n, 3, ``lift.FEATURES``) and targets (n, 3)."""

    features: torch.Tensor
    targets: torch.Tensor
    frames: torch.Tensor
    images: tuple[str, ...]

    def without(self, images: set[str]) -> Samples:
        """The samples of the frames whose image is not in ``images``, the frames renumbered in order."""
        keep = [i for i, image in enumerate(self.images) if image not in images]
        number = torch.full((len(self.images),), -1, dtype=torch.long)
        number[keep] = torch.arange(len(keep))
        chosen = number[self.frames] >= 0
        return Samples(
            self.features[chosen],
            self.targets[chosen],
            number[self.frames][chosen],
            tuple(self.images[i] for i in keep),
        )


def frame_maps(engine: Engine, meta: dict[str, str], ldr: np.ndarray, hdr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pixel's features (H, W, ``lift.FEATURES``) and target log gain (H, W) of one whole frame (the plate
    ``ldr``, its truth ``hdr``) through the node's path."""
    ramp = BlendParams().for_plate(lossy=False)
    linear = color.convert(ldr, INPUT_SPACE, color.LINEAR_SPACE)
    # The head's input as the node gives it: one level's anchored expansion (the engine's model has no head),
    # before any coarser level refines it.
    expanded = reconstruct(engine, meta, linear, ldr, LdrToHdrParams.from_kwargs(coarse=False))
    with torch.inference_mode():
        feats = lift.LiftHead().features(
            to_tensor(ldr), to_tensor(linear), to_tensor(expanded), ramp.blend_low, ramp.blend_high
        )[0]
    truth = np.maximum(luminance(hdr), 1e-6)
    out = np.maximum(luminance(expanded), 1e-6)
    return feats.numpy().transpose(1, 2, 0), np.clip(np.log(truth / out), *TARGET_RANGE)


def frame_samples(
    engine: Engine, meta: dict[str, str], case: Case, per_frame: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray] | None:
    """Up to ``per_frame`` (features, target) samples of one whole frame through the node's path; None when the
    network reconstructs no pixel of it."""
    feats, targets = frame_maps(engine, meta, case.ldr, case.hdr)
    feats = feats.reshape(-1, lift.FEATURES)
    chosen = np.flatnonzero(feats[:, 1] > MATTE_MIN)
    if chosen.size == 0:
        return None
    chosen = rng.choice(chosen, min(per_frame, chosen.size), replace=False)
    return feats[chosen], targets.ravel()[chosen]


def pair_samples(
    engine: Engine,
    meta: dict[str, str],
    case: Case,
    per_frame: int,
    rng: np.random.Generator,
    camera: Synthesis = CAMERA,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Up to ``per_frame`` consistency samples of one frame: the case's truth resampled at a third (frame a) and
    two thirds (frame b) of a pixel across or down (drawn), each through ``camera`` and the network; per pixel
    reconstructed in both, the features (3, F) and targets (3,) of b's pixel and of the two pixels of a it lies
    between. None when no pixel is reconstructed in both."""
    axis = int(rng.integers(2))
    step = np.array([0.0, PAIR_SHIFT]) if axis else np.array([PAIR_SHIFT, 0.0])
    maps = [
        frame_maps(engine, meta, synthesise(x, rng, camera), x)
        for x in (subpixel_shift(case.hdr, *step), subpixel_shift(case.hdr, *(2 * step)))
    ]
    (fa, ta), (fb, tb) = maps
    first = (slice(None), slice(None, -1)) if axis else (slice(None, -1), slice(None))
    second = (slice(None), slice(1, None)) if axis else (slice(1, None), slice(None))
    feats = np.stack([fb[first], fa[first], fa[second]], axis=-2).reshape(-1, 3, lift.FEATURES)
    targets = np.stack([tb[first], ta[first], ta[second]], axis=-1).reshape(-1, 3)
    chosen = np.flatnonzero((feats[:, :, 1] > MATTE_MIN).all(axis=1))
    if chosen.size == 0:
        return None
    chosen = rng.choice(chosen, min(per_frame, chosen.size), replace=False)
    return feats[chosen], targets[chosen]


def collect(
    model: FHDR,
    meta: dict[str, str],
    cases: Iterable[Case],
    per_frame: int,
    seed: int = 0,
    sampler: Callable[..., tuple[np.ndarray, np.ndarray] | None] = frame_samples,
) -> Samples:
    """The head's training samples from whole frames, the network run as the node runs it (on the CPU): each
    frame's ``frame_samples``, or its ``pair_samples`` for the consistency term."""
    net = copy.deepcopy(model)
    net.lift = None
    engine = Engine(net, "cpu")
    rng = np.random.default_rng(seed)
    feats, targets, frames, images = [], [], [], []
    for case in cases:
        got = sampler(engine, meta, case, per_frame, rng)
        if got is None:
            continue
        feats.append(got[0])
        targets.append(got[1])
        frames.append(np.full(len(got[1]), len(frames)))
        images.append(case.image)
        log.info("%s: %d samples", case.name, len(got[1]))
    if not feats:
        raise ValueError("no training frame has pixels the network reconstructs")
    return Samples(*(torch.from_numpy(np.concatenate(a)) for a in (feats, targets, frames)), tuple(images))


def fit(
    samples: Samples,
    steps: int = 3000,
    batch: int = 16384,
    lr: float = 3e-3,
    seed: int = 0,
    over: float = 1.0,
    pairs: Samples | None = None,
    consistency: float = 0.0,
) -> lift.LiftHead:
    """A lift head fitted to ``samples``: L1 of the log gain, an error above the target weighted ``over`` times
    one below (1: the median), every frame weighted equally (Adam); with ``consistency`` times the mean change of
    its error from frame a to frame b of the ``pairs`` (``pair_samples``), each pair's frame weighted equally."""
    torch.manual_seed(seed)
    head = lift.LiftHead()
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    x = samples.features.float().T[None, :, :, None]  # (1, F, n, 1): the 1x1 convolutions see a column of pixels
    weight = frame_weights(samples.frames)
    n = samples.targets.numel()
    steady = consistency > 0 and pairs is not None
    if steady:
        px = pairs.features.float().permute(2, 0, 1)[None]  # (1, F, n, 3): b's pixel, then a's two
        pw = frame_weights(pairs.frames)
        between = torch.tensor([-1.0, 1.0 - PAIR_SHIFT, PAIR_SHIFT])
    for step in range(steps):
        i = torch.randint(0, n, (min(batch, n),))
        pred = head.gain(x[:, :, i])[0, 0, :, 0]
        err = pred - samples.targets[i].float()
        loss = (weight[i] * torch.where(err > 0, over * err, -err)).sum() / weight[i].sum()
        if steady:
            j = torch.randint(0, pw.numel(), (min(batch // 2, pw.numel()),))
            change = ((head.gain(px[:, :, j])[0, 0] - pairs.targets[j].float()) @ between).abs()
            loss = loss + consistency * (pw[j] * change).sum() / pw[j].sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % 500 == 0:
            log.info("lift head step %d/%d: loss %.4f", step + 1, steps, loss.item())
    return head.eval()


def frame_weights(frames: torch.Tensor) -> torch.Tensor:
    """Each sample's weight, so that every frame weighs the same whatever its number of samples."""
    return (1.0 / torch.bincount(frames).float())[frames]


def scaled(head: lift.LiftHead, factor: float) -> lift.LiftHead:
    """A copy of ``head`` whose log gain is ``factor`` times the original's."""
    out = copy.deepcopy(head)
    with torch.no_grad():
        out.out.weight.mul_(factor)
        out.out.bias.mul_(factor)
    return out


def choose_scale(scored: dict[float, dict]) -> float:
    """The scale whose validation (``validation.summarise``'s result) has the fewest cases below the whole-image
    guard, then the fewest barely clipped cases lifted beyond ``BARELY_TRUTH``, then the best clipped-pixel PU21:
    on cases the network alone keeps within both, the best PU21 among the scales that keep every case within
    them."""

    def rank(factor: float) -> tuple[int, int, float]:
        result = scored[factor]
        return -result["below_guard"], -result["flat_over"], result["pu21_clipped"]

    return max(scored, key=rank)


def metadata(
    samples: Samples,
    steps: int,
    factor: float,
    selected: dict,
    chosen: dict,
    without: dict,
    command: str,
    scales: list[float],
    pairs: Samples | None = None,
) -> dict[str, str]:
    """What a weights file records of its lift head: how it was fitted, the scale chosen and its cross-fitted
    figures on the training scenes it was chosen by (``fhdr:lift_select_*``), and the validation figures through
    the node with it (``fhdr:val_*``) and without it (``fhdr:val_nolift_*``)."""
    frames = int(samples.frames.max()) + 1
    meta = {
        "fhdr:lift": (
            f"per-pixel MLP {lift.FEATURES}-{lift.HIDDEN}-{lift.HIDDEN}-1 on the frame's context (fhdr_plugin/node/"
            f"lift.py), fitted {steps} steps on {samples.targets.numel()} pixels of {frames} whole training frames "
            "(views at 0.5-10 % clipped, plain 8-bit sRGB camera): L1 of the log luminance, frames weighted "
            "equally"
            + (
                f", and a consistency term on {pairs.targets.shape[0]} pixels of {int(pairs.frames.max()) + 1} "
                f"pairs of frames {PAIR_SHIFT:.2g} px apart (views at "
                + ", ".join(f"{100 * f:g}" for f in PAIR_FRACTIONS)
                + " % clipped, each through its own camera draw): the change of the head's error from one to the "
                "other"
                if pairs is not None
                else ""
            )
            + f"; scaled by {factor:g}, "
            + (
                f"chosen among {', '.join(f'{f:g}' for f in scales)} by cross-fitting on folds of the training scenes"
                if len(scales) > 1
                else "as given (--factors), its figures cross-fitted on folds of the training scenes"
            )
        )
        if factor
        else "none (no scale of the fitted head beat the network alone, cross-fitted on the training scenes)",
        "fhdr:lift_scale": f"{factor:g}",
        "fhdr:lift_command": command,
        "fhdr:val_node": "fhdr defaults (anchored, blend ramp chosen for the plate, "
        + ("lift head on" if factor else "no lift head")
        + "); python -m training validate",
        **validation_metadata(selected, "fhdr:lift_select_"),
        **validation_metadata(chosen),
        **validation_metadata({k: v for k, v in without.items() if k != "cases"}, "fhdr:val_nolift_"),
    }
    return meta
