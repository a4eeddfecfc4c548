"""Metrics and baselines against values computed by hand on tiny arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training import baselines, metrics


def flat(value: float, h: int = 4, w: int = 6) -> np.ndarray:
    return np.full((h, w, 3), value, dtype=np.float64)


def ramp(h: int = 12, w: int = 16) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack((x / w, y / h, (x + y) / (h + w)), axis=-1) * 3.0 + 0.01


def test_identical_images_score_perfectly():
    gt = ramp()
    assert metrics.mu_psnr(gt, gt) == math.inf
    assert metrics.pu21_psnr(gt, gt) == math.inf
    assert metrics.mu_ssim(gt, gt) == pytest.approx(1.0, abs=1e-12)


def test_plain_psnr_of_a_constant_error():
    # every value off by 0.1 with peak 1: MSE 0.01, PSNR 20 dB
    assert metrics.psnr(flat(0.1), flat(0.0), 1.0) == pytest.approx(20.0)
    assert metrics.psnr(flat(3.0), flat(1.0), 256.0) == pytest.approx(20 * math.log10(256 / 2))


def test_mu_psnr_by_hand():
    # the ground truth's peak is 0.5, so it normalises to 1 and mu-maps to 1; the prediction normalises to 1.2
    gt, pred = flat(0.5), flat(0.6)
    mu_pred = math.log(1 + 5000 * 1.2) / math.log(1 + 5000)
    assert metrics.mu_psnr(pred, gt) == pytest.approx(-10 * math.log10((mu_pred - 1.0) ** 2))


def test_mu_psnr_ignores_the_absolute_scale_of_both_images():
    gt, pred = ramp(), ramp() * 1.1
    assert metrics.mu_psnr(pred * 7, gt * 7) == pytest.approx(metrics.mu_psnr(pred, gt))
    assert metrics.mu_psnr(pred, gt) < 40


def test_pu21_encoding_matches_published_values():
    # the PU21 authors' banding_glare encoding spans ~0 at 0.005 cd/m² to 595.39 at 10000 cd/m², ~256 at 100
    v = metrics.pu21_encode(np.array([0.005, 100.0, 10000.0, 1e6]))
    assert v[0] == pytest.approx(5.47e-10, rel=1e-2)
    assert v[1] == pytest.approx(256.4, abs=0.1)
    assert v[2] == pytest.approx(595.3939, abs=1e-3)
    assert v[3] == v[2]  # clamped at 10000 cd/m²
    assert np.all(np.diff(metrics.pu21_encode(np.geomspace(0.005, 10000, 50))) > 0)


def test_pu21_psnr_by_hand():
    # ground truth peak 2 -> 4000 cd/m²; the prediction at half of it -> 2000 cd/m²
    p = metrics.PU21_BANDING_GLARE

    def pu(y: float) -> float:
        return p[6] * (((p[0] + p[1] * y ** p[3]) / (1 + p[2] * y ** p[3])) ** p[4] - p[5])

    expected = 20 * math.log10(256 / abs(pu(4000.0) - pu(2000.0)))
    assert metrics.pu21_psnr(flat(1.0), flat(2.0)) == pytest.approx(expected)
    # a different assumed display peak changes the score
    assert metrics.pu21_psnr(flat(1.0), flat(2.0), peak_nits=100.0) != pytest.approx(expected)


def test_masks_select_pixels():
    gt = flat(0.5)
    pred = gt.copy()
    mask = np.zeros(gt.shape[:2], bool)
    mask[1:3, 2:5] = True  # 6 of 24 pixels
    pred[mask] = 0.6
    assert metrics.psnr(pred, gt, 1.0, ~mask) == math.inf
    assert metrics.psnr(pred, gt, 1.0, mask) == pytest.approx(20.0)
    # over the whole image the MSE is diluted by 24 / 6
    assert metrics.psnr(pred, gt, 1.0) == pytest.approx(20.0 + 10 * math.log10(4))
    assert metrics.mu_psnr(pred, gt, ~mask) == math.inf
    assert math.isnan(metrics.mu_psnr(pred, gt, np.zeros_like(mask)))
    assert math.isnan(metrics.mu_ssim(pred, gt, np.zeros_like(mask)))


def test_ssim_drops_with_structure_loss_and_is_local():
    gt = ramp(24, 24)
    noisy = gt + np.random.default_rng(0).normal(0, 0.3, gt.shape)
    assert 0.0 < metrics.mu_ssim(noisy, gt) < 0.95
    # damage the left edge only: the SSIM map stays 1 far from it (window radius 5)
    damaged = gt.copy()
    damaged[:, :3] = 0.0
    smap = metrics.ssim_map(*metrics.mu_pair(damaged, gt))
    assert smap.shape == (24, 24)
    assert smap[:, 9:].min() == pytest.approx(1.0, abs=1e-9)
    assert smap[:, :3].max() < 0.5


def test_ssim_of_a_constant_offset_by_hand():
    # flat images: variances vanish, SSIM = (2 a b + C1) / (a² + b² + C1)
    a, b = 0.4, 0.6
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert metrics.ssim_map(flat(a), flat(b)) == pytest.approx(np.full((4, 6), expected))


def test_alignment_recovers_a_known_scale():
    gt = ramp()
    assert metrics.align_scale(gt / 3.0, gt) == pytest.approx(3.0)
    mask = np.zeros(gt.shape[:2], bool)
    mask[:, :8] = True
    pred = gt / 3.0
    pred[:, 8:] *= 10  # outside the trusted pixels the prediction is wrong; they must not count
    assert metrics.align_scale(pred, gt, mask) == pytest.approx(3.0)
    assert metrics.align_scale(pred, gt, np.zeros_like(mask)) == 1.0


def test_score_reports_aligned_and_unaligned():
    gt = ramp()
    clipped = gt.max(-1) > 2.0
    s = metrics.score(gt * 0.5, gt, clipped)
    assert s["scale"] == pytest.approx(2.0)
    assert s["mu_psnr_all_aligned"] == math.inf
    assert s["pu21_psnr_clipped_aligned"] == math.inf
    assert s["mu_ssim_all_aligned"] == pytest.approx(1.0)
    assert math.isfinite(s["mu_psnr_all"]) and math.isfinite(s["pu21_psnr_clipped"])
    assert s["mu_ssim_all"] < 1.0
    expected = {f"{m}_{r}{a}" for m in metrics.METRICS for r in metrics.REGIONS for a in ("", "_aligned")}
    assert set(s) == expected | {"scale"}


def test_inverse_reinhard_by_hand():
    lin = np.array([[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5], [1e-4, 1e-4, 1e-4]]])
    out = baselines.inverse_reinhard(lin, white=16.0)
    w2 = 256.0
    # the quadratic's positive root: L = (W²/2)(Ld - 1 + sqrt((1 - Ld)² + 4 Ld / W²))
    half = 0.5 * w2 * (0.5 - 1 + math.sqrt(0.25 + 2.0 / w2))
    assert out[0, 0] == pytest.approx([0, 0, 0])
    assert out[0, 1] == pytest.approx([16, 16, 16], rel=1e-6)
    assert out[0, 2] == pytest.approx([half] * 3, rel=1e-5)
    assert out[0, 3] == pytest.approx([1e-4] * 3, rel=1e-3)  # the identity near black
    # forward Reinhard of the result gives the input back
    lw = out[0, 2, 0]
    assert lw * (1 + lw / w2) / (1 + lw) == pytest.approx(0.5, rel=1e-5)


def test_inverse_reinhard_keeps_chromaticity():
    lin = np.array([[[0.8, 0.4, 0.2]]])
    out = baselines.inverse_reinhard(lin)
    assert out[0, 0] / out[0, 0, 0] == pytest.approx(lin[0, 0] / lin[0, 0, 0])
    assert out[0, 0, 0] > lin[0, 0, 0]


def test_masia_gamma_by_hand():
    rng = np.random.default_rng(3)
    lum = rng.uniform(0.0, 1.0, (20, 20)) ** 0.1  # a bright, high-key image
    lin = np.repeat(lum[..., None], 3, axis=-1)
    logl = np.log(lum + 1e-6)
    lo, hi = np.percentile(logl, [1, 99])
    gamma = 10.44 * (logl.mean() - lo) / (hi - lo) - 6.282
    assert gamma > 1.0
    assert baselines.masia_gamma_value(lum) == pytest.approx(gamma)
    out = baselines.masia_gamma(lin)
    assert out[..., 0] == pytest.approx(lum**gamma, rel=1e-5)
    assert baselines.masia_gamma(np.ones((2, 2, 3))) == pytest.approx(np.ones((2, 2, 3)))


def test_linearised_baseline_is_the_input():
    lin = ramp() / 4
    assert np.array_equal(baselines.linearised(lin), lin.astype(np.float32))
