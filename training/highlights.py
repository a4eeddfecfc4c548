"""How a reconstruction treats the plate's highlights: kept channels, lift, and brightness by depth into a clipped area.

- ``unclipped_change``: in pixels where some channel clipped, the mean relative change of the channels that did
  not (they are measurements, and should come out as the linearised plate).
- ``log_lift``: log(output lift) / log(truth lift) over the clipped pixels (1: as bright as the truth, 0: no lift).
- ``reach``: the highest ``log_lift`` a network's output range allows, where the truth holds lights beyond it.
- ``depth_ratios``: output and truth luminance relative to the plate's, at the edge of the clipped areas and deep
  inside them, to see whether a large window or flame comes out dimmer inside than at its rim.
"""

from __future__ import annotations

import math

import numpy as np

from training.metrics import clipped_ratio, luminance

#: Pixels from a clipped area's edge counted as its rim, and the depth from which a pixel is deep inside.
EDGE_DEPTH = 2
INNER_DEPTH = 8


def clipped_depth(clipped: np.ndarray, limit: int = 64) -> np.ndarray:
    """Per pixel of the (H, W) mask, its distance in pixels (chessboard) to the nearest unclipped pixel, up to
    ``limit``; 0 outside the mask."""
    depth = np.zeros(clipped.shape, dtype=np.int32)
    inside = clipped.copy()
    for d in range(1, limit + 1):
        if not inside.any():
            break
        depth[inside] = d
        padded = np.pad(inside, 1, constant_values=False)
        h, w = inside.shape
        eroded = np.ones_like(inside)
        for dy in range(3):
            for dx in range(3):
                eroded &= padded[dy : dy + h, dx : dx + w]
        inside = eroded
    return depth


def unclipped_change(output: np.ndarray, linear: np.ndarray, display: np.ndarray) -> float:
    """Mean |output − plate| / plate over the channels below 1.0 of pixels where another channel is at 1.0 (NaN if
    there are none)."""
    some = display.max(axis=-1, keepdims=True) >= 1.0
    kept = some & (display < 1.0) & (linear > 1e-4)
    if not kept.any():
        return math.nan
    return float((np.abs(output - linear)[kept] / linear[kept]).mean())


def log_lift(ratio: float, truth_ratio: float) -> float:
    """log(output lift) / log(truth lift); NaN when the truth is not brighter than the plate."""
    if not truth_ratio > 1.0 or not ratio > 0.0:
        return math.nan
    return math.log(ratio) / math.log(truth_ratio)


def reach(truth: np.ndarray, linear: np.ndarray, clipped: np.ndarray, headroom: float, truth_ratio: float) -> float:
    """The log-lift ratio of the truth capped at ``headroom`` over the ``clipped`` pixels: the most a network whose
    output stops at ``headroom`` times the plate's white can reach (below 1 where a sun or a lamp is brighter)."""
    capped = np.where(clipped[..., None], np.minimum(truth, headroom), linear)
    return log_lift(clipped_ratio(capped, linear, clipped), truth_ratio)


def depth_ratios(output: np.ndarray, truth: np.ndarray, linear: np.ndarray, clipped: np.ndarray) -> dict[str, float]:
    """Mean luminance relative to the plate's at the rim (depth <= ``EDGE_DEPTH``) and deep inside (depth >=
    ``INNER_DEPTH``) of the clipped areas, for the output and the truth (NaN where there is no such pixel)."""
    depth = clipped_depth(clipped)
    plate = np.maximum(luminance(linear), 1e-12)
    out, tru = luminance(output) / plate, luminance(truth) / plate
    rim, inner = (depth > 0) & (depth <= EDGE_DEPTH), depth >= INNER_DEPTH

    def mean(x: np.ndarray, mask: np.ndarray) -> float:
        return float(x[mask].mean()) if mask.any() else math.nan

    return {
        "out_edge": mean(out, rim),
        "out_inner": mean(out, inner),
        "truth_edge": mean(tru, rim),
        "truth_inner": mean(tru, inner),
    }


def figures(
    output: np.ndarray,
    truth: np.ndarray,
    linear: np.ndarray,
    display: np.ndarray,
    clipped: np.ndarray,
    ratio: float,
    truth_ratio: float,
) -> dict[str, float]:
    """Every figure of this module for one case: ``log_lift``, ``unclipped_change`` and the ``depth_ratios``."""
    return {
        "log_lift": log_lift(ratio, truth_ratio),
        "unclipped_change": unclipped_change(output, linear, display),
        **depth_ratios(output, truth, linear, clipped),
    }


def hollow(row: dict[str, float], margin: float = 1.05) -> bool:
    """Whether a case came out dimmer inside its clipped areas than at their rim where the truth is brighter inside."""
    if any(math.isnan(row[k]) for k in ("out_edge", "out_inner", "truth_edge", "truth_inner")):
        return False
    return row["truth_inner"] > margin * row["truth_edge"] and row["out_inner"] < row["out_edge"]
