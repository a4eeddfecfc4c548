"""The lift head: its context features, what it may change, how it is stored, run by the node and fitted."""

import dataclasses
import hashlib

import numpy as np
import pytest
import torch

from fhdr_plugin.imaging import color
from fhdr_plugin.manifest import manifest
from fhdr_plugin.node import lift, scale
from fhdr_plugin.node.engine import Engine, to_tensor
from fhdr_plugin.node.model import FHDR
from fhdr_plugin.node.weights import REQUIRED_METADATA, load_model, save_weights
from training import lift as fitting
from training.evaluate import Case
from training.train import Init

RNG = np.random.default_rng(3)
LOW, HIGH = 0.996, 1.0


def plate(h: int = 40, w: int = 56) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A display plate with a large clipped area, a red-only clipped patch and mid-tones; its linearisation; and an
    anchored expansion of it (clipped channels raised 2x)."""
    display = RNG.uniform(0.05, 0.9, (h, w, 3)).astype(np.float32)
    display[5:30, 10:40] = 1.0
    display[32:38, 2:8, 0] = 1.0
    linear = color.convert(display, color.MODEL_SPACE, color.LINEAR_SPACE)
    expanded = linear * (1.0 + scale.blend_weight(display, LOW, HIGH))
    return display, linear, expanded


def random_head(seed: int = 0) -> lift.LiftHead:
    """A head with random weights, its output layer too, so that it changes the frame."""
    torch.manual_seed(seed)
    head = lift.LiftHead()
    torch.nn.init.normal_(head.out.weight, std=0.5)
    torch.nn.init.constant_(head.out.bias, 0.3)
    return head.eval()


def box_reference(x: np.ndarray, r: int) -> np.ndarray:
    padded = np.pad(x, r, mode="edge")
    h, w = x.shape
    return np.array([[padded[i : i + 2 * r + 1, j : j + 2 * r + 1].mean() for j in range(w)] for i in range(h)])


@pytest.mark.parametrize("radius", [1, 4, 30])
def test_box_mean_is_the_mean_over_the_box_with_the_edges_replicated(radius):
    x = RNG.uniform(0, 1, (9, 13)).astype(np.float32)
    got = lift.box_mean(torch.from_numpy(x)[None, None], radius)[0, 0].numpy()
    np.testing.assert_allclose(got, box_reference(x, radius), rtol=1e-5, atol=1e-6)


def test_features_see_how_deep_a_pixel_is_inside_a_clipped_area():
    display, linear, expanded = plate()
    feats = (
        lift.LiftHead()
        .features(to_tensor(display), to_tensor(linear), to_tensor(expanded), LOW, HIGH)[0]
        .detach()
        .numpy()
    )
    assert feats.shape == (lift.FEATURES, *display.shape[:2])
    r8 = 2 + lift.DENSITY_RADII.index(8)
    assert feats[1, 17, 25] == 1.0 and feats[1, 39, 55] < 1.0  # the matte
    assert feats[r8, 17, 25] == 1.0 > feats[r8, 5, 10] > feats[r8, 39, 55]  # centre > rim > outside
    np.testing.assert_allclose(feats[0, 17, 25], np.log(2.0), rtol=1e-4)  # the expansion's own lift


def test_a_new_head_changes_nothing():
    display, linear, expanded = plate()
    with torch.no_grad():
        out = lift.LiftHead()(to_tensor(display), to_tensor(linear), to_tensor(expanded), LOW, HIGH)
    np.testing.assert_array_equal(out[0].permute(1, 2, 0).numpy(), np.maximum(expanded, linear))


def test_the_head_changes_only_clipped_channels_and_never_darkens():
    display, linear, expanded = plate()
    with torch.no_grad():
        out = (
            random_head()(to_tensor(display), to_tensor(linear), to_tensor(expanded), LOW, HIGH)[0]
            .permute(1, 2, 0)
            .numpy()
        )
    measured = display < LOW
    np.testing.assert_array_equal(out[measured], linear[measured])
    assert not np.allclose(out[~measured], expanded[~measured]), "the head must act on the clipped channels"
    assert np.isfinite(out).all() and (out >= linear).all()
    assert (out[32:38, 2:8, 1:] == linear[32:38, 2:8, 1:]).all(), "green and blue of the red-only patch are kept"


def test_the_engine_runs_the_head_in_bands_exactly_as_on_the_whole_frame(monkeypatch, one_thread):
    from fhdr_plugin.node import engine as engine_module

    net = FHDR(1)
    net.lift = random_head(1)
    engine = Engine(net, "cpu", "float32", tile=0)
    display, linear, expanded = plate(70, 24)
    monkeypatch.setattr(engine_module, "LIFT_ROWS", 16)
    banded = engine.lift(display, linear, expanded, LOW, HIGH)
    with torch.no_grad():
        whole = (
            net.lift(to_tensor(display), to_tensor(linear), to_tensor(expanded), LOW, HIGH)[0].permute(1, 2, 0).numpy()
        )
    np.testing.assert_allclose(banded, whole, rtol=1e-6, atol=1e-7)
    assert Engine(FHDR(1), "cpu", "float32").lift is None


def test_weights_keep_their_lift_head_and_a_retrained_network_drops_it(tmp_path):
    net = FHDR(1)
    net.lift = random_head(2)
    meta = {k: "1" for k in REQUIRED_METADATA}
    path = tmp_path / "w.safetensors"
    sha = save_weights(net, path, meta)
    spec = dataclasses.replace(manifest().model(), path=path, sha256=sha)
    again, _ = load_model(spec)
    assert again.lift is not None
    for name, value in net.lift.state_dict().items():
        assert torch.equal(again.lift.state_dict()[name], value)
    assert not any(k.startswith(lift.PREFIX) for k in Init.load(path).state)
    plain = tmp_path / "plain.safetensors"
    sha = save_weights(FHDR(1), plain, meta)
    assert load_model(dataclasses.replace(spec, path=plain, sha256=sha))[0].lift is None
    assert hashlib.sha256(plain.read_bytes()).hexdigest() == sha


def test_fitting_learns_the_gain_the_truth_asks_for(one_thread):
    display, linear, _ = plate(48, 64)
    hdr = linear * (1.0 + 7.0 * scale.blend_weight(display, LOW, HIGH))  # the clipped channels are 8x in truth
    meta = {"fhdr:encoding": "mu-law", "fhdr:headroom": "256", "fhdr:mu": "5000"}
    samples = fitting.collect(FHDR(1), meta, [Case("flat", 0.1, display, hdr)], per_frame=500)
    assert samples.features.shape[1] == lift.FEATURES and samples.targets.numel() == 500
    head = fitting.fit(samples, steps=300, batch=500)
    x = samples.features.float().T[None, :, :, None]
    with torch.no_grad():
        error = (head.gain(x)[0, 0, :, 0] - samples.targets).abs().mean()
        half = (fitting.scaled(head, 0.5).gain(x) / head.gain(x)).mean()
    assert error < 0.1 * samples.targets.abs().mean(), float(error)
    assert abs(float(half) - 0.5) < 1e-4


def test_a_fit_that_pays_more_for_over_lifting_lifts_less(one_thread):
    n = 2000
    targets = torch.from_numpy(np.random.default_rng(0).uniform(0.0, 2.0, n).astype(np.float32))
    samples = fitting.Samples(torch.ones(n, lift.FEATURES), targets, torch.zeros(n, dtype=torch.long), ("a",))
    x = samples.features.T[None, :, :1, None]
    median_head = fitting.fit(samples, steps=400, batch=n)
    cautious_head = fitting.fit(samples, steps=400, batch=n, over=3.0)
    with torch.no_grad():
        median, cautious = float(median_head.gain(x)), float(cautious_head.gain(x))
    assert abs(median - 1.0) < 0.15, median  # the median of U(0, 2)
    assert abs(cautious - 0.5) < 0.15, cautious  # its quarter quantile: an over-lift costs 3x an under-lift


def test_a_consistency_pair_compares_a_pixel_with_the_two_it_lies_between(one_thread):
    y, x = np.mgrid[0:48, 0:64].astype(np.float32)
    hdr = np.repeat((2.0 + 0.1 * x + 0.08 * y)[..., None], 3, axis=-1)  # clipped everywhere, a plane in truth
    meta = {"fhdr:encoding": "mu-law", "fhdr:headroom": "256", "fhdr:mu": "5000"}
    pairs = fitting.collect(FHDR(1), meta, [Case("plane", 0.1, np.ones_like(hdr), hdr)], 400, 0, fitting.pair_samples)
    assert pairs.features.shape == (400, 3, lift.FEATURES) and pairs.targets.shape == (400, 3)
    assert pairs.frames.shape == (400,) and pairs.without({"plane"}).targets.shape == (0, 3)
    assert (pairs.features[:, :, 1] > fitting.MATTE_MIN).all()
    b, a0, a1 = pairs.targets.double().unbind(1)
    # b is a third of a pixel further on than a: its truth, on a plane, is a's two pixels mixed 2:1
    assert float((b - (2 * a0 + a1) / 3).abs().median()) < 1e-3
    assert float((b - (a0 + 2 * a1) / 3).abs().median()) > 2e-3


def test_a_consistency_term_steadies_a_head_whose_feature_jitters_between_frames(one_thread):
    gen = torch.Generator().manual_seed(0)
    n = 4000
    feats = torch.rand(n, lift.FEATURES, generator=gen)
    samples = fitting.Samples(feats, feats[:, 0].clone(), torch.zeros(n, dtype=torch.long), ("a",))
    # the same points of a scene, whose feature 0 changes from frame to frame while the truth does not
    pair = torch.rand(n, 1, lift.FEATURES, generator=gen).repeat(1, 3, 1)
    pair[:, :, 0] = torch.rand(n, 3, generator=gen)
    pairs = fitting.Samples(pair, torch.zeros(n, 3), torch.zeros(n, dtype=torch.long), ("a",))
    probe = torch.full((1, lift.FEATURES, 2, 1), 0.5)
    probe[0, 0, :, 0] = torch.tensor([0.2, 0.8])
    slopes = []
    for weight in (0.0, 4.0):
        head = fitting.fit(samples, steps=400, batch=n, pairs=pairs, consistency=weight)
        with torch.no_grad():
            low, high = head.gain(probe)[0, 0, :, 0].tolist()
        slopes.append((high - low) / 0.6)
    assert slopes[0] > 0.7, slopes  # without the term it follows the feature (the target is feature 0)
    assert slopes[1] < 0.5 * slopes[0], slopes


def test_samples_without_some_images_keep_the_other_frames_in_order():
    frames = torch.tensor([0, 0, 1, 2, 2, 2, 3])
    samples = fitting.Samples(
        torch.arange(7.0)[:, None].repeat(1, lift.FEATURES), torch.arange(7.0), frames, tuple("abac")
    )
    rest = samples.without({"a"})
    assert rest.images == ("b", "c") and rest.frames.tolist() == [0, 1]
    assert rest.targets.tolist() == [2.0, 6.0] and rest.features[:, 0].tolist() == [2.0, 6.0]
    assert samples.without(set()).frames.tolist() == frames.tolist()


def test_a_channel_above_white_is_a_measurement_the_head_keeps():
    display, linear, expanded = plate()
    linear[5:30, 10:40] = 3.0  # an input that is already HDR: display clips at 1, the value was measured
    expanded = np.maximum(expanded, linear)
    with torch.no_grad():
        out = (
            random_head()(to_tensor(display), to_tensor(linear), to_tensor(expanded), LOW, HIGH)[0]
            .permute(1, 2, 0)
            .numpy()
        )
    np.testing.assert_array_equal(out[5:30, 10:40], linear[5:30, 10:40])


def test_the_scale_chosen_has_the_fewest_cases_below_the_guard_then_barely_clipped_over_then_the_best_pu21():
    def result(below: int, over: int, pu21: float) -> dict:
        return {"below_guard": below, "flat_over": over, "pu21_clipped": pu21}

    scored = {
        0.0: result(0, 1, 18.6),
        0.5: result(0, 1, 18.9),
        0.65: result(0, 0, 18.8),
        0.75: result(0, 0, 18.7),
        1.0: result(1, 0, 19.5),
    }
    assert fitting.choose_scale(scored) == 0.65
    del scored[0.65], scored[0.75]
    assert fitting.choose_scale(scored) == 0.5, "when none keeps barely clipped highlights, the guard still rules"
    assert fitting.choose_scale({0.0: result(3, 9, 18.0), 0.5: result(4, 0, 18.5), 1.0: result(3, 8, 17.0)}) == 1.0
