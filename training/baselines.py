"""Classical baselines for single-image HDR reconstruction, on the network's normalisation.

Each takes the linearised LDR image (H, W, 3), linear Rec.709 relative to the
LDR's white (so a clipped pixel is 1.0), and returns linear HDR in the same
units. The operators act on Rec.709 luminance and scale each pixel's colour by
the ratio of new to old luminance, so hue and saturation are kept.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fhdr_plugin.imaging.color import REC709_LUMA

#: Inverse Reinhard's white point: the luminance a clipped white expands to (the training headroom).
REINHARD_WHITE = 16.0
#: Masia's gamma is kept at least this large so that the expansion stays increasing (the fit goes negative for
#: very dark images).
MASIA_MIN_GAMMA = 0.1


def _with_luminance(linear: np.ndarray, lum: np.ndarray, new_lum: np.ndarray) -> np.ndarray:
    """``linear`` with each pixel's luminance ``lum`` replaced by ``new_lum`` (black pixels stay black)."""
    ratio = np.divide(new_lum, lum, out=np.ones_like(lum), where=lum > 0)
    return (linear * ratio[..., None]).astype(np.float32)


def linearised(linear: np.ndarray) -> np.ndarray:
    """The linearised input itself: no expansion, clipped pixels stay at 1."""
    return np.asarray(linear, np.float32).copy()


def inverse_reinhard(linear: np.ndarray, white: float = REINHARD_WHITE) -> np.ndarray:
    """Banterle et al. (2006): the inverse of Reinhard's global tone curve with white point ``white``.

    Reinhard maps scene luminance L to display luminance Ld = L (1 + L / W²) / (1 + L). Solving the quadratic
    for L gives L = (W² / 2) (Ld - 1 + sqrt((1 - Ld)² + 4 Ld / W²)), computed here in the equivalent,
    cancellation-free form L = 2 Ld / (1 - Ld + sqrt((1 - Ld)² + 4 Ld / W²)). It is the identity near black
    (slope 1 at 0) and maps a clipped white (Ld = 1) to W. The forward operator's exposure factor (key over
    log-average luminance) is taken as 1, so the darks keep the input's scale.
    """
    lum = np.asarray(linear, np.float64) @ REC709_LUMA
    ld = np.clip(lum, 0.0, 1.0)
    expanded = 2.0 * ld / (1.0 - ld + np.sqrt((1.0 - ld) ** 2 + 4.0 * ld / (white * white)))
    return _with_luminance(np.asarray(linear, np.float64), lum, expanded)


def masia_gamma_value(lum: np.ndarray, eps: float = 1e-6) -> float:
    """Masia et al.'s gamma, 10.44 k - 6.282, from the image key k (at least ``MASIA_MIN_GAMMA``).

    k = (log Lavg - log Lmin) / (log Lmax - log Lmin), with Lavg the log-average luminance and Lmin, Lmax the
    1st and 99th percentiles of luminance (robust against a few outlying pixels).
    """
    logl = np.log(np.asarray(lum, np.float64) + eps)
    lo, hi = np.percentile(logl, [1.0, 99.0])
    k = (logl.mean() - lo) / (hi - lo) if hi > lo else 0.5
    return max(MASIA_MIN_GAMMA, 10.44 * float(k) - 6.282)


def masia_gamma(linear: np.ndarray) -> np.ndarray:
    """Masia et al. (2009): gamma expansion L' = L^gamma of the linearised luminance, gamma from the image key.

    Bright (high-key) images get gamma > 1, which darkens the mid-tones against the white so that highlights
    stand out; white stays at 1.
    """
    lum = np.asarray(linear, np.float64) @ REC709_LUMA
    gamma = masia_gamma_value(lum)
    return _with_luminance(np.asarray(linear, np.float64), lum, np.clip(lum, 0.0, None) ** gamma)


#: The baselines by the name used in evaluation reports.
BASELINES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linearised": linearised,
    "inverse_reinhard": inverse_reinhard,
    "masia_gamma": masia_gamma,
}
