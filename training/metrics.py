"""Quality metrics for HDR reconstructions: mu-PSNR, PU21-PSNR and mu-SSIM, over a whole image or a mask.

Every metric takes a prediction and a ground truth as linear (H, W, 3) arrays in
the same units, and an optional (H, W) boolean mask of the pixels to score (an
empty mask gives NaN). Identical images give an infinite PSNR.

Scale alignment (``align_scale``) is least squares in log luminance over a mask
of trusted pixels (the input's well-exposed ones): the factor ``s`` minimising
``sum (log(s * pred) - log(gt))**2``, i.e. the geometric mean of the
ground-truth-to-prediction luminance ratios. Log space makes every pixel count
by its relative error, so dark pixels are not drowned out by bright ones.

PU21 (Mantiuk and Azimi, PCS 2021, 'banding_glare' parameters) needs absolute
luminance: both images are scaled by one factor that maps the ground truth's
peak to ``PU21_PEAK_NITS`` (4000 cd/m², an HDR display's peak), each colour
channel is encoded after clamping to [0.005, 10000] cd/m², and PSNR is taken
with a peak of 256 — the conventions of the PU21 authors' own metric code.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from fhdr_plugin.imaging.color import REC709_LUMA

MU = 5000.0
#: PU21 'banding_glare' parameters p1..p7 (Mantiuk and Azimi 2021).
PU21_BANDING_GLARE = (
    0.353487901,
    0.3734658629,
    8.277049286e-05,
    0.9062562627,
    0.09150303166,
    0.9099517204,
    596.3148142,
)
PU21_L_MIN = 0.005
PU21_L_MAX = 10000.0
#: cd/m² that the ground truth's peak is mapped to before PU21 encoding.
PU21_PEAK_NITS = 4000.0
#: The PSNR peak of PU21 values.
PU21_PSNR_PEAK = 256.0
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5
METRICS = ("mu_psnr", "pu21_psnr", "mu_ssim")
REGIONS = ("all", "clipped")


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec.709 luminance (H, W) of linear RGB (H, W, 3)."""
    return rgb @ REC709_LUMA


def clipped_ratio(pred: np.ndarray, linear: np.ndarray, clipped: np.ndarray) -> float:
    """Mean luminance of ``pred`` over the ``clipped`` pixels relative to the linearised input's there (NaN if none)."""
    if not clipped.any():
        return math.nan
    return float(luminance(pred)[clipped].mean() / max(float(luminance(linear)[clipped].mean()), 1e-12))


def psnr(pred: np.ndarray, gt: np.ndarray, peak: float, mask: np.ndarray | None = None) -> float:
    """PSNR in dB over every channel of the pixels in ``mask`` (all pixels if None); NaN for an empty mask."""
    err = (np.asarray(pred, np.float64) - np.asarray(gt, np.float64)) ** 2
    if mask is not None:
        err = err[mask]
    if err.size == 0:
        return math.nan
    mse = float(err.mean())
    return math.inf if mse == 0.0 else 10.0 * math.log10(peak * peak / mse)


def mu_law(x: np.ndarray, mu: float = MU) -> np.ndarray:
    """mu-law tone mapping, log(1 + mu x) / log(1 + mu); negative values count as 0."""
    return np.log1p(mu * np.maximum(np.asarray(x, np.float64), 0.0)) / math.log1p(mu)


def mu_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both images divided by the ground truth's peak, then mu-law tone-mapped (values above the peak are kept)."""
    peak = max(float(np.max(gt)), 1e-12)
    return mu_law(pred / peak), mu_law(gt / peak)


def mu_psnr(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR of the mu-law images (mu = 5000, normalised by the ground truth's peak), peak 1."""
    return psnr(*mu_pair(pred, gt), 1.0, mask)


def pu21_encode(nits: np.ndarray) -> np.ndarray:
    """PU21 'banding_glare' values of absolute luminance in cd/m² (clamped to [0.005, 10000])."""
    p1, p2, p3, p4, p5, p6, p7 = PU21_BANDING_GLARE
    y = np.clip(np.asarray(nits, np.float64), PU21_L_MIN, PU21_L_MAX) ** p4
    return p7 * (((p1 + p2 * y) / (1.0 + p3 * y)) ** p5 - p6)


def pu21_pair(pred: np.ndarray, gt: np.ndarray, peak_nits: float = PU21_PEAK_NITS) -> tuple[np.ndarray, np.ndarray]:
    """Both images scaled so that the ground truth's peak is ``peak_nits`` cd/m², then PU21-encoded per channel."""
    to_nits = peak_nits / max(float(np.max(gt)), 1e-12)
    return pu21_encode(pred * to_nits), pu21_encode(gt * to_nits)


def pu21_psnr(
    pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None, peak_nits: float = PU21_PEAK_NITS
) -> float:
    """PSNR (peak 256) of PU21-encoded colour channels, the ground truth's peak mapped to ``peak_nits`` cd/m²."""
    return psnr(*pu21_pair(pred, gt, peak_nits), PU21_PSNR_PEAK, mask)


def _gaussian_blur(x: torch.Tensor, sigma: float, radius: int) -> torch.Tensor:
    """Separable Gaussian filter of (N, C, H, W), edges replicated so the output keeps the size."""
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = torch.nn.functional.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = torch.nn.functional.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return torch.nn.functional.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Per-pixel SSIM (H, W), Gaussian window (sigma 1.5, 11x11), averaged over channels."""
    x = torch.from_numpy(np.ascontiguousarray(np.asarray(a, np.float64).transpose(2, 0, 1)))[None]
    y = torch.from_numpy(np.ascontiguousarray(np.asarray(b, np.float64).transpose(2, 0, 1)))[None]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    stats = _gaussian_blur(torch.cat((x, y, x * x, y * y, x * y), dim=1), SSIM_SIGMA, SSIM_RADIUS)
    mx, my, xx, yy, xy = stats.chunk(5, dim=1)
    vx, vy, cxy = xx - mx * mx, yy - my * my, xy - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s[0].mean(0).numpy()


def masked_mean(values: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean of ``values`` over ``mask`` (all if None); NaN for an empty mask."""
    if mask is not None:
        values = values[mask]
    return float(values.mean()) if values.size else math.nan


def mu_ssim(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM of the mu-law images (as in ``mu_psnr``) over ``mask``; NaN for an empty mask."""
    return masked_mean(ssim_map(*mu_pair(pred, gt)), mask)


def align_scale(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None, eps: float = 1e-6) -> float:
    """The factor for ``pred`` that best fits ``gt`` in log luminance over ``mask``; 1 when no pixel qualifies."""
    lp, lg = luminance(np.asarray(pred, np.float64)), luminance(np.asarray(gt, np.float64))
    ok = (lp > eps) & (lg > eps)
    if mask is not None:
        ok &= mask
    if not ok.any():
        return 1.0
    return float(np.exp(np.mean(np.log(lg[ok]) - np.log(lp[ok]))))


def score(
    pred: np.ndarray, gt: np.ndarray, clipped: np.ndarray, well_exposed: np.ndarray | None = None
) -> dict[str, float]:
    """Every metric over the whole image and the ``clipped`` mask, unaligned and aligned on ``well_exposed``.

    Keys are ``{metric}_{region}`` and ``{metric}_{region}_aligned``, plus ``scale``: the alignment factor.
    """
    s = align_scale(pred, gt, well_exposed)
    out: dict[str, float] = {"scale": s}
    for suffix, p in (("", pred), ("_aligned", pred * s)):
        mp, mg = mu_pair(p, gt)
        pp, pg = pu21_pair(p, gt)
        smap = ssim_map(mp, mg)
        for region, mask in zip(REGIONS, (None, clipped), strict=True):
            out[f"mu_psnr_{region}{suffix}"] = psnr(mp, mg, 1.0, mask)
            out[f"pu21_psnr_{region}{suffix}"] = psnr(pp, pg, PU21_PSNR_PEAK, mask)
            out[f"mu_ssim_{region}{suffix}"] = masked_mean(smap, mask)
    return out
