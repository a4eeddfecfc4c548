"""Giving the network's output an absolute scale.

``anchored`` (the default) keeps the linearised input wherever it is well
exposed, so a diffuse white stays at 1.0, and blends the network's expansion in
only where the input nears saturation, never darker than the input. ``raw``
returns the network's output as trained: linear, relative to the LDR's white,
times the training headroom.
"""

from __future__ import annotations

import numpy as np

MODES = ("anchored", "raw")


def blend_weight(display: np.ndarray, low: float, high: float) -> np.ndarray:
    """Per-pixel weight (H, W, 1): 0 below ``low`` of the max channel of the display-referred input, 1 at ``high``."""
    peak = display.max(axis=-1, keepdims=True)
    t = np.clip((peak - low) / max(high - low, 1e-6), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def anchored(linear: np.ndarray, display: np.ndarray, predicted: np.ndarray, low: float, high: float) -> np.ndarray:
    """The linear input, raised towards the prediction where the input is near saturation."""
    w = blend_weight(display, low, high)
    return linear + w * np.maximum(predicted - linear, 0.0)
