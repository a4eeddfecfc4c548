"""Validation through the node's own code path: whole held-out images, the tiled engine, the anchored blend.

Each held-out image is exposed at the evaluation's clipped fractions (``evaluate.FRACTIONS``), and barely clipped
where it can be (``evaluate.barely_case``), like a plain sRGB camera. A model is scored by PU21-PSNR over the
input's clipped pixels and over the whole image, against the linearised input (no expansion) on the same case.
``best`` is the model with the highest mean clipped-pixel PU21-PSNR among those whose whole-image PU21-PSNR is
nowhere more than ``GUARD_DB`` below the linearised input's.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from fhdr_plugin.imaging import color
from fhdr_plugin.node.encoding import decoding
from fhdr_plugin.node.engine import Engine
from fhdr_plugin.node.model import FHDR
from fhdr_plugin.node.operation import LdrToHdrParams, predict, reconstruct
from training.evaluate import BARELY_TRUTH, GUARD_DB, INPUT_SPACE, Case
from training.highlights import figures, hollow, reach
from training.metrics import clipped_ratio, pu21_psnr

log = logging.getLogger("fhdr.validation")


@dataclass(frozen=True)
class ValCase:
    """One validation input with what every scoring of it needs, computed once."""

    name: str
    display: np.ndarray
    linear: np.ndarray
    hdr: np.ndarray
    clipped: np.ndarray
    base_clipped: float
    base_all: float
    truth_ratio: float

    @classmethod
    def of(cls, case: Case) -> ValCase:
        """The validation case of an evaluation case."""
        linear = color.convert(case.ldr, INPUT_SPACE, color.LINEAR_SPACE)
        clipped = case.clipped
        return cls(
            case.name,
            case.ldr,
            linear,
            case.hdr,
            clipped,
            pu21_psnr(linear, case.hdr, clipped),
            pu21_psnr(linear, case.hdr),
            clipped_ratio(case.hdr, linear, clipped),
        )


def validation_cases(cases: Iterable[Case]) -> list[ValCase]:
    """The validation cases of evaluation cases, skipping those without clipped pixels."""
    out = [ValCase.of(c) for c in cases if c.clipped.any()]
    if not out:
        raise ValueError("no validation case has clipped pixels")
    return out


def highlight_summary(rows: list[dict]) -> dict:
    """The large-highlight figures over the cases: the largest unclipped-channel change, the median and lowest
    log-lift ratio where the truth is at least twice the plate, the hollow cases, and the largest lift where the
    truth is within 1.1x and how many such cases come out above 1.1x; ``log_lift_reach_min`` is the lowest log-lift
    ratio the network's output range allows (``highlights.reach``)."""
    bright = [r["log_lift"] for r in rows if r["truth_ratio"] >= 2.0]
    reaches = [r["reach"] for r in rows if r["truth_ratio"] >= 2.0]
    flat = [r["ratio"] for r in rows if r["truth_ratio"] <= BARELY_TRUTH]
    changes = [r["unclipped_change"] for r in rows if not np.isnan(r["unclipped_change"])]
    return {
        "unclipped_max": float(max(changes, default=float("nan"))),
        "log_lift_median": float(np.median(bright)) if bright else float("nan"),
        "log_lift_min": float(min(bright, default=float("nan"))),
        "log_lift_reach_min": float(min(reaches, default=float("nan"))),
        "hollow": [r["case"] for r in rows if hollow(r)],
        "flat_max": float(max(flat, default=float("nan"))),
        "flat_over": sum(ratio > BARELY_TRUTH for ratio in flat),
    }


def predictions(
    model: FHDR,
    meta: dict[str, str],
    cases: list[ValCase],
    device: str = "cpu",
    precision: str = "auto",
    params: LdrToHdrParams | None = None,
) -> list[np.ndarray]:
    """The network's decoded prediction of each case through the node's engine (``operation.predict``): what
    ``validate`` blends, the same whatever the model's lift head."""
    engine = Engine(copy.deepcopy(model), device, precision)
    blend = (params or LdrToHdrParams()).blend
    return [predict(engine, meta, case.display, blend) for case in cases]


def validate(
    model: FHDR,
    meta: dict[str, str],
    cases: list[ValCase],
    device: str = "cpu",
    precision: str = "auto",
    params: LdrToHdrParams | None = None,
    predicted: list[np.ndarray] | None = None,
) -> dict:
    """Scores of ``model`` (its output decoded by ``meta``) on ``cases`` through the node with ``params`` (its
    defaults when None), the network run again unless ``predicted`` holds its ``predictions`` of the cases (the
    coarser levels of a case with large highlights, ``operation.expand``, run it in any case); the figures of
    ``summarise`` and ``cases`` (per case, with the output's and the truth's clipped-area brightness ratios, the
    log-lift ratio and the highest the network's output range allows, the unclipped-channel change and the depth
    ratios)."""
    engine = Engine(copy.deepcopy(model), device, precision)
    params = params or LdrToHdrParams()
    headroom = decoding(meta)[0]
    rows = []
    for i, case in enumerate(cases):
        pred = None if predicted is None else predicted[i]
        hdr = reconstruct(engine, meta, case.linear, case.display, params, pred)
        ratio = clipped_ratio(hdr, case.linear, case.clipped)
        rows.append(
            {
                "case": case.name,
                "pu21_clipped": pu21_psnr(hdr, case.hdr, case.clipped),
                "pu21_all": pu21_psnr(hdr, case.hdr),
                "base_clipped": case.base_clipped,
                "base_all": case.base_all,
                "ratio": ratio,
                "truth_ratio": case.truth_ratio,
                "reach": reach(case.hdr, case.linear, case.clipped, headroom, case.truth_ratio),
                **figures(hdr, case.hdr, case.linear, case.display, case.clipped, ratio, case.truth_ratio),
            }
        )
    return summarise(rows)


def summarise(rows: list[dict]) -> dict:
    """The figures of per-case rows (``validate``'s, of one or several sets of cases): ``pu21_clipped``,
    ``pu21_all`` (means), ``gain_clipped`` (mean over the linearised input), ``worst_all`` (the lowest whole-image
    difference to the linearised input), ``below_guard`` (how many cases fall further below it than ``GUARD_DB``),
    ``guard`` (none does), those of ``highlight_summary``, and the rows as ``cases``."""
    whole = [r["pu21_all"] - r["base_all"] for r in rows]
    worst = min(whole)
    return {
        **highlight_summary(rows),
        "pu21_clipped": float(np.mean([r["pu21_clipped"] for r in rows])),
        "pu21_all": float(np.mean([r["pu21_all"] for r in rows])),
        "gain_clipped": float(np.mean([r["pu21_clipped"] - r["base_clipped"] for r in rows])),
        "worst_all": float(worst),
        "below_guard": sum(w < -GUARD_DB for w in whole),
        "guard": bool(worst >= -GUARD_DB),
        "cases": rows,
    }
