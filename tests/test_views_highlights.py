"""Rectilinear views of panoramas, and the large-highlight figures validation reports."""

import math

import numpy as np
import pytest
from conftest import shared

from training.data import read_rgb
from training.highlights import clipped_depth, depth_ratios, hollow, log_lift, reach, unclipped_change
from training.views import brightest_view, is_panorama, rectilinear, training_views


def test_a_view_straight_ahead_is_the_panorama_centre():
    h, w = 64, 128
    pano = np.zeros((h, w, 3), np.float32)
    pano[h // 2 - 1 : h // 2 + 1, w // 2 - 1 : w // 2 + 1] = 100.0  # a lamp at longitude 0 on the horizon
    view = rectilinear(pano, 0.0, 0.0, 60.0, 33, 33)
    assert np.unravel_index(int(np.argmax(view[..., 0])), view.shape[:2]) == (16, 16)
    behind = rectilinear(pano, 180.0, 0.0, 60.0, 33, 33)
    assert behind.max() == 0.0
    up = rectilinear(pano, 0.0, 20.0, 60.0, 33, 33)  # tilted up 20°: the lamp drops below the centre
    row = np.unravel_index(int(np.argmax(up[..., 0])), up.shape[:2])[0]
    focal = 16.5 / math.tan(math.radians(30.0))
    assert up.max() > 0.0 and abs(row + 0.5 - (16.5 + focal * math.tan(math.radians(20.0)))) <= 1.0


def test_the_brightest_view_of_a_real_panorama_holds_its_lamp():
    pano = np.maximum(read_rgb(shared("hdr-train/polyhaven_st_peters_square_night.exr")), 0.0)
    assert is_panorama(pano)
    view = brightest_view(pano)
    assert view.shape == (288, 384, 3)
    assert view.max() > 0.5 * pano.max()
    views = training_views(pano, np.random.default_rng(0), 4)
    assert len(views) == 4
    assert all(abs(v.shape[1] / v.shape[0] - 4 / 3) < 0.02 for v in views)


def test_clipped_depth_counts_pixels_from_the_edge():
    mask = np.zeros((9, 9), bool)
    mask[1:8, 1:8] = True
    depth = clipped_depth(mask)
    assert depth[0, 0] == 0 and depth[1, 1] == 1 and depth[2, 2] == 2 and depth[4, 4] == 4


def test_unclipped_change_counts_only_the_channels_the_plate_did_not_clip():
    display = np.array([[[1.0, 0.5, 0.2], [0.5, 0.5, 0.5]]], np.float32)
    linear = display**2.2
    out = linear.copy()
    out[0, 0, 0] *= 5.0  # the clipped channel: free to rise
    out[0, 1] *= 2.0  # a pixel without a clipped channel: not counted
    assert unclipped_change(out, linear, display) == 0.0
    out[0, 0, 1] *= 1.1
    assert unclipped_change(out, linear, display) == pytest.approx(0.05, rel=1e-5)
    assert math.isnan(unclipped_change(out, linear, np.full_like(display, 0.5)))


def test_log_lift_and_a_hollow_highlight():
    assert log_lift(4.0, 16.0) == pytest.approx(0.5)
    assert math.isnan(log_lift(2.0, 1.0))
    linear = np.ones((20, 20, 3), np.float32)
    clipped = np.zeros((20, 20), bool)
    clipped[2:18, 2:18] = True
    depth = clipped_depth(clipped)
    truth = linear * (1.0 + depth[..., None])  # brighter towards the middle
    rim_bright = linear * np.where(clipped, np.where(depth <= 2, 3.0, 1.5), 1.0)[..., None]
    row = depth_ratios(rim_bright, truth, linear, clipped)
    assert row["truth_inner"] > row["truth_edge"] and row["out_inner"] < row["out_edge"]
    assert hollow(row)
    assert not hollow(depth_ratios(truth, truth, linear, clipped))


def test_reach_is_the_lift_a_network_capped_at_its_headroom_can_give():
    linear = np.ones((10, 10, 3), np.float32)
    clipped = np.zeros((10, 10), bool)
    clipped[4:6, 4:6] = True  # four clipped pixels: a sun's disc at 10,000x and three of glare at 4x
    truth = linear.copy()
    truth[4, 4], truth[4:6, 5], truth[5, 4] = 10_000.0, 4.0, 4.0
    truth_ratio = (10_000.0 + 3 * 4.0) / 4
    assert reach(truth, linear, clipped, 1e6, truth_ratio) == pytest.approx(1.0)
    capped = (256.0 + 3 * 4.0) / 4
    assert reach(truth, linear, clipped, 256.0, truth_ratio) == pytest.approx(log_lift(capped, truth_ratio))
    assert reach(truth, linear, clipped, 256.0, truth_ratio) < 0.6
