"""The training loop on a tiny set: it learns, and an interrupted run resumes to the same weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
import torch
from conftest import shared, write_image
from typer.testing import CliRunner

from fhdr_plugin.manifest import manifest
from fhdr_plugin.node import maths, scale
from fhdr_plugin.node.encoding import decode, encode
from fhdr_plugin.node.model import FHDR
from fhdr_plugin.node.operation import LdrToHdrParams, predict_linear
from fhdr_plugin.node.weights import load_model
from fhdr_plugin.params import BlendParams
from training import data
from training.__main__ import app, init_weights
from training.data import HDRCrops, Synthesis
from training.evaluate import Case
from training.export import checkpoint_metadata
from training.loader import batches
from training.losses import FHDRLoss
from training.metrics import pu21_psnr
from training.train import Init, TrainConfig, better, loss_of, lr_factor, train
from training.validation import GUARD_DB, validate, validation_cases

pytestmark = pytest.mark.usefixtures("one_thread")

SYN = Synthesis()


class Interrupted(Exception):
    """Raised in place of a crash."""


class CrashingCrops(HDRCrops):
    """HDR crops that fail when asked for batch number ``limit + 1``, like a process killed mid-run."""

    def __init__(self, *args, limit: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.limit = limit
        self.calls = 0

    def batch(self, size: int, frames: int = 1) -> tuple[np.ndarray, np.ndarray]:
        if self.calls == self.limit:
            raise Interrupted
        self.calls += 1
        return super().batch(size, frames)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    """Two 96x192 regions of real HDR images."""
    lobby = data.read_rgb(shared("hdr-train/polyhaven512_lobby.exr"))
    workshop = data.read_rgb(shared("hdr-train/polyhaven512_workshop.exr"))
    return [lobby[80:176, 100:292].copy(), workshop[80:176, 200:392].copy()]


def tiny(steps: int, **kwargs) -> TrainConfig:
    return TrainConfig(crop=32, batch=2, steps=steps, seed=0, threads=1, **kwargs)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def test_a_few_steps_reduce_the_loss(images, tmp_path: Path):
    ldr, hdr = (torch.from_numpy(a) for a in HDRCrops(images, 32, SYN, seed=99).batch(8))
    torch.manual_seed(0)
    initial = FHDR(1).eval()
    loss = FHDRLoss()
    with torch.no_grad():
        before = loss([initial(ldr)], hdr, ldr).item()
    cfg = tiny(40, lr=1e-3, checkpoint_every=40)
    train(cfg, HDRCrops(images, 32, SYN, seed=0), None, tmp_path, SYN)
    trained = FHDR(1).eval()
    trained.load_state_dict(weights(tmp_path / "last.pt"))
    with torch.no_grad():
        after = loss([trained(ldr)], hdr, ldr).item()
    assert after < 0.7 * before


def test_the_learning_rate_rises_over_the_warmup_then_holds_then_decays_to_zero():
    cfg = TrainConfig(steps=100, warmup=10, decay_start=0.5)
    factors = [lr_factor(step, cfg) for step in range(100)]
    assert factors[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert factors[10:50] == [1.0] * 40
    assert factors[50] == pytest.approx(1.0) and factors[99] == pytest.approx(0.02)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert lr_factor(0, TrainConfig(steps=100)) == 1.0


def test_a_timed_run_decays_over_its_minutes_and_ends_with_a_checkpoint(images, tmp_path: Path):
    cfg = TrainConfig(steps=1000, minutes=10.0, decay_start=0.5)
    assert lr_factor(0, cfg, 0.0) == 1.0 and lr_factor(0, cfg, 299.0) == 1.0
    assert lr_factor(0, cfg, 450.0) == pytest.approx(0.5) and lr_factor(0, cfg, 600.0) == 0.0
    assert lr_factor(900, cfg, 60.0) == pytest.approx(0.2)  # the steps, further along, set the pace
    train(
        tiny(100_000, minutes=0.002, checkpoint_every=100_000), HDRCrops(images, 32, SYN, seed=0), None, tmp_path, SYN
    )
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)
    assert 1 <= checkpoint["step"] < 100_000 and checkpoint["seconds"] >= 0.12


def test_worker_processes_draw_different_batches_and_feed_a_run(images, tmp_path: Path):
    jpeg = Synthesis(jpeg=1.0)  # every crop goes through OpenImageIO in a forked worker
    stream = batches(HDRCrops(images, 32, jpeg, seed=0), 4, 1, workers=2, seed=0, start=0)
    drawn = [next(stream) for _ in range(4)]
    assert all(ldr.shape == (4, 3, 32, 32) and bool(lossy.all()) for ldr, _, lossy in drawn)
    assert len({ldr.numpy().tobytes() for ldr, _, _ in drawn}) == 4
    train(tiny(4, workers=2, checkpoint_every=4), HDRCrops(images, 32, SYN, seed=0), None, tmp_path, SYN)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["step"] == 4


def test_resume_after_a_crash_gives_the_weights_of_an_uninterrupted_run(images, tmp_path: Path):
    cfg = tiny(6, checkpoint_every=2, decay_start=0.5)
    train(cfg, HDRCrops(images, 32, SYN, seed=0), None, tmp_path / "straight", SYN)

    with pytest.raises(Interrupted):
        train(cfg, CrashingCrops(images, 32, SYN, seed=0, limit=5), None, tmp_path / "crashed", SYN)
    checkpoint = torch.load(tmp_path / "crashed" / "last.pt", weights_only=True)
    assert checkpoint["step"] == 4  # step 5 ran but was lost with the crash
    train(cfg, HDRCrops(images, 32, SYN, seed=0), None, tmp_path / "crashed", SYN)

    straight, resumed = weights(tmp_path / "straight" / "last.pt"), weights(tmp_path / "crashed" / "last.pt")
    assert torch.load(tmp_path / "crashed" / "last.pt", weights_only=True)["step"] == 6
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    # and the weights did move away from the checkpoint the resumed run started from
    assert not all(torch.equal(checkpoint["model"][n], resumed[n]) for n in resumed)


def test_training_with_the_consistency_term_takes_shots_of_two_frames(images, tmp_path: Path):
    train(tiny(2, consistency=1.0, checkpoint_every=2), HDRCrops(images, 32, SYN, seed=0), None, tmp_path, SYN)
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)
    assert checkpoint["step"] == 2 and checkpoint["config"]["consistency"] == 1.0
    assert "steadiness over two frames" in checkpoint_metadata(checkpoint, {})["fhdr:loss"]
    assert "over-lift" not in checkpoint_metadata(checkpoint, {})["fhdr:loss"]
    checkpoint["config"]["over_weight"] = 1.5
    assert "an error above the truth (over-lift) weighs 1.5x" in checkpoint_metadata(checkpoint, {})["fhdr:loss"]
    with pytest.raises(ValueError, match="whole shots of 2"):
        odd = TrainConfig(crop=32, batch=3, steps=2, threads=1, consistency=1.0)
        train(odd, HDRCrops(images, 32, SYN, seed=0), None, tmp_path / "odd", SYN)


def test_train_command_on_the_paired_layout(images, tmp_path: Path):
    for i, hdr in enumerate(images):
        rel = data.expose(np.maximum(hdr, 0.0), 0.05)
        (tmp_path / "pairs" / "LDR").mkdir(parents=True, exist_ok=True)
        (tmp_path / "pairs" / "HDR").mkdir(parents=True, exist_ok=True)
        data.write_ldr(data.synthesise(rel, np.random.default_rng(i), SYN), tmp_path / "pairs" / "LDR" / f"p{i}.png")
        write_image(tmp_path / "pairs" / "HDR" / f"p{i}.exr", hdr * 0.25, oiio.HALF)
    args = ["train", "--paired", str(tmp_path / "pairs"), "--out", str(tmp_path / "run"), "--val", "p1"]
    args += ["--steps", "2", "--crop", "32", "--batch", "2", "--checkpoint-every", "2", "--validate-every", "2"]
    args += ["--threads", "1", "--jpeg", "0.7"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    checkpoint = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert checkpoint["step"] == 2 and checkpoint["synthesis"]["jpeg"] == 0.7
    # the held-out pair was used for validation, through the node's path
    assert [c["case"] for c in checkpoint["val"]["cases"]] == ["p1"]
    assert np.isfinite(checkpoint["val"]["pu21_clipped"])
    # a best checkpoint is one that keeps the whole image no worse than the linearised input
    assert (tmp_path / "run" / "best.pt").exists() == checkpoint["val"]["guard"]


def test_the_loss_weighs_the_pixels_the_node_takes_from_the_network():
    ldr = torch.full((1, 3, 8, 8), 0.5)
    ldr[..., :4] = 1.0  # the left half is clipped: the anchored blend takes it from the network
    gt = torch.full((1, 3, 8, 8), 0.4)
    wrong_clipped, wrong_exposed = gt.clone(), gt.clone()
    wrong_clipped[..., :4] += 0.1
    wrong_exposed[..., 4:] += 0.1
    loss = FHDRLoss(focus=0.9, kind="weighted")
    hit, miss = loss([wrong_clipped], gt, ldr).item(), loss([wrong_exposed], gt, ldr).item()
    assert hit == pytest.approx(10 * miss, rel=1e-5)  # weights 1 and 1 - 0.9
    assert FHDRLoss(focus=0.0, kind="weighted")([wrong_clipped], gt, ldr).item() == pytest.approx(
        FHDRLoss(focus=0.0, kind="weighted")([wrong_exposed], gt, ldr).item()
    )
    assert loss([gt], gt, ldr).item() == 0.0


LOSSLESS = BlendParams().for_plate(lossy=False)
RAMP = (LOSSLESS.blend_low, LOSSLESS.blend_high)
#: The lossy plate's ramp, wide enough for random crops to have measured channels in it.
WIDE = BlendParams().for_plate(lossy=True)
WIDE_RAMP = (WIDE.blend_low, WIDE.blend_high)


def test_the_composite_loss_is_the_l1_of_the_nodes_anchored_output():
    assert FHDRLoss().blend == LdrToHdrParams().blend  # the loss blends as the node does by default
    ldr, tgt = (torch.from_numpy(a) for a in HDRCrops(
        [data.read_rgb(shared("hdr-train/polyhaven512_lobby.exr"))], 32, SYN, seed=1
    ).batch(4))  # fmt: skip
    out = torch.rand_like(tgt) * 0.6
    meta = {"fhdr:headroom": str(SYN.headroom), "fhdr:encoding": SYN.encoding}
    composite = kept = 0.0
    for i in range(len(ldr)):
        display = ldr[i].permute(1, 2, 0).numpy()
        linear = data.srgb_decode(display)
        node = scale.anchored(linear, display, decode(out[i].permute(1, 2, 0).numpy(), meta), *WIDE_RAMP)
        weight = scale.blend_weight(display, *WIDE_RAMP)
        err = np.abs(encode(node, SYN.headroom, SYN.encoding) - tgt[i].permute(1, 2, 0).numpy())
        composite += float((weight * err).mean()) / len(ldr)
        truth = decode(tgt[i].permute(1, 2, 0).numpy(), meta)
        measured = (display < 1.0 - 0.5 / 255) & (truth < 1.0) & (weight > 0)
        change = np.abs(encode(node, SYN.headroom, SYN.encoding) - encode(linear, SYN.headroom, SYN.encoding))
        kept += float((measured * change).mean()) / len(ldr)
    assert kept > 0.0  # the crops have measured channels in the ramp, and a random prediction lifts some
    raw = float((out - tgt).abs().mean())
    got = FHDRLoss(focus=0.9, headroom=SYN.headroom, keep=0.0, blend=WIDE)([out], tgt, ldr).item()
    assert got == pytest.approx(composite + 0.1 * raw, rel=1e-3)
    both = FHDRLoss(focus=0.9, headroom=SYN.headroom, keep=2.0, blend=WIDE)([out], tgt, ldr).item()
    assert both == pytest.approx(composite + 0.1 * raw + 2.0 * kept, rel=1e-3)
    # a JPEG plate's samples are scored with the node's wider ramp for a lossy plate, the others with the narrow one
    lossy = torch.tensor([True, False, True, False])
    wide = FHDRLoss(focus=0.9, headroom=SYN.headroom, blend=WIDE)
    narrow = FHDRLoss(focus=0.9, headroom=SYN.headroom, blend=LOSSLESS)
    auto = FHDRLoss(focus=0.9, headroom=SYN.headroom)
    mixed = auto([out], tgt, ldr, lossy).item()
    parts = [
        (wide if flag else narrow)([out[i : i + 1]], tgt[i : i + 1], ldr[i : i + 1]).item()
        for i, flag in enumerate(lossy)
    ]
    assert mixed == pytest.approx(sum(parts) / len(parts), rel=1e-4)
    assert mixed != pytest.approx(got, rel=1e-3)
    # a prediction below the input in the blended pixels changes nothing in the node's output: only the raw term sees it
    low = FHDRLoss(focus=1.0, headroom=SYN.headroom)([torch.zeros_like(tgt)], tgt, ldr).item()
    lin = torch.from_numpy(encode(data.srgb_decode(ldr.numpy()), SYN.headroom, SYN.encoding))
    assert low == pytest.approx(FHDRLoss(focus=1.0, headroom=SYN.headroom)([lin], tgt, ldr).item(), rel=1e-4)


def test_the_over_weight_charges_an_over_lift_more_than_a_shortfall():
    ldr = torch.ones((1, 3, 8, 8))  # clipped everywhere: the node's output is the network's wherever it lifts
    truth = torch.full((1, 3, 8, 8), 0.6)
    above, below = truth + 0.1, truth - 0.1  # both above the plate's white (μ-law 0.35 at a headroom of 256)
    plain, heavy = FHDRLoss(focus=1.0, over=1.0), FHDRLoss(focus=1.0, over=2.0)
    assert plain([above], truth, ldr).item() > 0.0
    assert heavy([above], truth, ldr).item() == pytest.approx(2.0 * plain([above], truth, ldr).item(), rel=1e-5)
    assert heavy([below], truth, ldr).item() == pytest.approx(plain([below], truth, ldr).item(), rel=1e-5)


def test_validation_scores_what_the_node_returns():
    hdr = data.read_rgb(shared("hdr-train/polyhaven512_workshop.exr"))[64:192, :256]
    cases = validation_cases(synthetic_cases_of([hdr], (0.02, 0.08)))
    model, meta = load_model(manifest().model(None))
    result = validate(model, meta, cases)
    assert [c["case"] for c in result["cases"]] == ["crop@2.0%", "crop@8.0%"]
    for case, row in zip(cases, result["cases"], strict=True):
        node = predict_linear(case.display, "srgb_tx", LdrToHdrParams())[0]
        assert row["pu21_clipped"] == pytest.approx(pu21_psnr(node, case.hdr, case.clipped), abs=1e-6)
        assert row["base_all"] == pytest.approx(pu21_psnr(case.linear, case.hdr), abs=1e-6)
        assert row["truth_ratio"] > 1.0 and row["ratio"] >= 1.0
    assert result["guard"] == (result["worst_all"] >= -GUARD_DB)
    assert better({"pu21_clipped": 20.0, "guard": True}, 19.0)
    assert not better({"pu21_clipped": 25.0, "guard": False}, 19.0)  # over-expansion loses, however it scores


def test_init_continues_from_shipped_weights(images, tmp_path: Path):
    shipped = manifest().model(None).path
    init = Init.load(shipped)
    assert init.steps > 0 and init.name == shipped.name
    train(tiny(1, lr=0.0, checkpoint_every=1), HDRCrops(images, 32, SYN, seed=0), None, tmp_path, SYN, init=init)
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)
    for name, weight in init.state.items():
        assert torch.equal(checkpoint["model"][name], weight), name  # lr 0: the weights are the shipped ones
    meta = checkpoint_metadata(checkpoint, {})
    assert meta["fhdr:total_steps"] == str(init.steps + 1)
    assert meta["fhdr:init"] == f"{shipped.name} sha256 {init.sha256}"
    assert meta["fhdr:encoding"] == SYN.encoding


def test_init_takes_a_shipped_models_name_and_refuses_what_is_not_weights(tmp_path: Path):
    name = manifest().default_model
    assert init_weights(name).sha256 == init_weights(str(manifest().model(name).path)).sha256
    not_weights = tmp_path / "run.safetensors"
    not_weights.write_bytes(b"a checkpoint of another format")
    for value, says in [("fhdr-nine", "nor a shipped model"), (str(not_weights), "not a safetensors weights file")]:
        # the data folder does not exist either: the weights are checked before any image is read
        args = ["train", "--init", value, "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")]
        result = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
        assert result.exit_code == 2 and says in result.output and value in result.output, result.output
        assert not (tmp_path / "run").exists()


def synthetic_cases_of(images: list[np.ndarray], fractions: tuple[float, ...]) -> list[Case]:
    """Evaluation cases of in-memory HDR images, exposed like the validation's plain camera."""
    cases = []
    for hdr in images:
        for f in fractions:
            rel = data.expose(np.maximum(hdr, 0.0), f)
            ldr = data.synthesise(rel, np.random.default_rng(0), data.Synthesis.plain())
            cases.append(Case("crop", f, ldr, rel))
    return cases


def test_a_shot_without_a_shift_is_one_view_under_two_noise_draws():
    image = [data.read_rgb(shared("hdr-train/polyhaven512_lobby.exr"))]
    still = Synthesis(shift=0.0, jpeg=0.0)
    ldr, tgt = HDRCrops(image, 32, still, seed=3).batch(4, frames=2)
    assert np.allclose(tgt[0], tgt[1], atol=1e-6) and np.allclose(tgt[2], tgt[3], atol=1e-6)
    assert not np.array_equal(ldr[0], ldr[1])  # the camera's noise is drawn anew
    moved = HDRCrops(image, 32, Synthesis(jpeg=0.0), seed=3).batch(4, frames=2)[1]
    assert not np.allclose(moved[0], moved[1], atol=1e-3)


def test_the_consistency_term_is_the_change_of_the_error_between_frames_of_a_shot():
    crops = HDRCrops([data.read_rgb(shared("hdr-train/polyhaven512_lobby.exr"))], 32, SYN, seed=2)
    ldr, tgt = (torch.from_numpy(a) for a in crops.batch(4, frames=2))
    out = torch.rand_like(tgt) * 0.6
    plain = FHDRLoss(headroom=SYN.headroom, keep=0.0)
    steady = FHDRLoss(headroom=SYN.headroom, keep=0.0, consistency=3.0, frames=2)
    extra = steady([out], tgt, ldr).item() - plain([out], tgt, ldr).item()
    node = plain.composite(out, ldr)
    err = (node - tgt).reshape(2, 2, 3, 32, 32)
    weight = maths.blend_weight(ldr, *RAMP).reshape(2, 2, 3, 32, 32).amax(dim=1)
    expected = float((weight * (err[:, 1] - err[:, 0]).abs()).sum()) / tgt.numel()
    assert expected > 0.0
    assert extra == pytest.approx(3.0 * expected, rel=1e-3)
    # the training loop's loss is this one: its config's weight reaches the term
    assert loss_of(TrainConfig(consistency=3.0), SYN)([out], tgt, ldr).item() == pytest.approx(
        steady([out], tgt, ldr).item(), rel=1e-6
    )
    # a shot whose two frames are one picture has nothing to be unsteady about
    same_ldr, same_tgt = ldr[0::2].repeat_interleave(2, 0), tgt[0::2].repeat_interleave(2, 0)
    same_out = out[0::2].repeat_interleave(2, 0)
    gap = steady([same_out], same_tgt, same_ldr).item() - plain([same_out], same_tgt, same_ldr).item()
    assert gap == pytest.approx(0.0, abs=1e-7)
