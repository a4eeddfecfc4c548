"""Giving the network's output an absolute scale.

``anchored`` (the default) keeps the linearised input wherever it is well
exposed, so a diffuse white stays at 1.0, and blends the network's expansion in
only where the input nears saturation, channel by channel (a channel the plate
did not clip is a measurement and stays as it is), never darker than the input. ``raw``
returns the network's output as trained: linear, relative to the LDR's white,
times the training headroom. The model's lift head (``lift.py``) may raise the anchored expansion of large
highlights from the frame's context; ``strengthen`` then dials the expansion.
``maths.py`` is the torch twin of these functions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fhdr_plugin.imaging.color import REC709_LUMA
from fhdr_plugin.params import BlendParams

#: The linearised plate's white: a channel above it is a measurement of an input that is already HDR.
WHITE = 1.001


def blend_weight(display: np.ndarray, low: float, high: float) -> np.ndarray:
    """Per-channel weight (H, W, 3) of the anchored blend: 0 below ``low`` of that channel of the display-referred
    input, 1 at ``high``, so a channel the plate did not clip keeps its measured value."""
    t = np.clip((display - low) / max(high - low, 1e-6), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def matte(display: np.ndarray, low: float, high: float) -> np.ndarray:
    """How much of each pixel came from the network (H, W, 1): its largest channel weight."""
    return blend_weight(display, low, high).max(axis=-1, keepdims=True)


def anchored(linear: np.ndarray, display: np.ndarray, predicted: np.ndarray, low: float, high: float) -> np.ndarray:
    """The linear input, each channel raised towards the prediction as that channel nears saturation."""
    w = blend_weight(display, low, high)
    return linear + w * np.maximum(predicted - linear, 0.0)


def strengthen(linear: np.ndarray, expanded: np.ndarray, strength: float) -> np.ndarray:
    """The expansion of ``linear`` into ``expanded`` (never darker) at ``strength``, scaled in log space.

    The luminance becomes ``L_lin · (L_exp / L_lin) ** strength`` and every channel moves along the expansion's
    own difference by the same fraction, so 0 gives ``linear``, 1 gives ``expanded``, each channel rises
    monotonically with ``strength``, and a channel the plate has at 0 cannot blow up (per-channel ratios would).
    """
    if strength == 1.0:
        return expanded
    lum_lin = linear @ REC709_LUMA
    lum_exp = expanded @ REC709_LUMA
    lifted = lum_exp > lum_lin
    base = np.where(lifted, np.maximum(lum_lin, 1e-6), 1.0)
    gain = np.where(lifted, (np.maximum(lum_exp, 1e-6) / base) ** strength, 1.0)
    fraction = np.where(lifted, (base * gain - lum_lin) / np.where(lifted, lum_exp - lum_lin, 1.0), 0.0)
    return (linear + fraction[..., None] * (expanded - linear)).astype(np.float32)


#: A lift of the anchored expansion from the whole frame: (display, linear, expanded, low, high) -> lifted.
Lift = Callable[[np.ndarray, np.ndarray, np.ndarray, float, float], np.ndarray]


def blend(
    linear: np.ndarray, display: np.ndarray, predicted: np.ndarray, params: BlendParams, lift: Lift | None = None
) -> np.ndarray:
    """The node's output for the plate (linearised and display-referred) and the network's decoded prediction;
    ``params`` as ``BlendParams.for_plate`` gives them (an automatic ``blend_low`` reads as a lossless plate's).
    ``lift``: the model's lift head, run on the anchored expansion when ``params.context`` is on."""
    if params.mode == "raw":
        return predicted
    params = params.for_plate(lossy=False)
    return strengthen(linear, expand(linear, display, predicted, params, lift), params.strength)


def expand(
    linear: np.ndarray, display: np.ndarray, predicted: np.ndarray, params: BlendParams, lift: Lift | None = None
) -> np.ndarray:
    """The anchored expansion of the plate by the network's decoded prediction, lifted by ``lift`` when
    ``params.context`` is on: ``blend`` in anchored mode before its ``strength``; ``params`` for the plate
    (``BlendParams.for_plate``)."""
    expanded = anchored(linear, display, predicted, params.blend_low, params.blend_high)
    if lift is not None and params.context:
        expanded = lift(display, linear, expanded, params.blend_low, params.blend_high)
    return expanded


def needed(display: np.ndarray, params: BlendParams) -> np.ndarray | None:
    """The pixels (H, W) bool whose network output ``blend`` uses: in anchored mode those with a channel above
    ``blend_low`` (elsewhere the output is the linearised plate whatever the network says); None (every pixel) in
    raw mode."""
    if params.mode == "raw":
        return None
    return (display > params.for_plate(lossy=False).blend_low).any(axis=-1)


def matte_of(display: np.ndarray, params: BlendParams) -> np.ndarray:
    """How much of each pixel came from the network (H, W, 1), 0-1: ``matte`` in anchored mode, 1 in raw mode."""
    if params.mode == "raw":
        return np.ones((*display.shape[:2], 1), dtype=np.float32)
    params = params.for_plate(lossy=False)
    return matte(display, params.blend_low, params.blend_high).astype(np.float32)
