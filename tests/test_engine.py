"""The engine: tiled inference equals a full-frame pass, devices and precisions are validated."""

import logging

import numpy as np
import OpenImageIO as oiio
import pytest
import torch

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.imaging import color
from fhdr_plugin.manifest import manifest
from fhdr_plugin.node import engine as engine_module
from fhdr_plugin.node import scale
from fhdr_plugin.node.encoding import decode
from fhdr_plugin.node.engine import Engine, auto_tile, resolve_precision, select_device, tiles
from fhdr_plugin.node.model import FHDR
from fhdr_plugin.node.operation import LdrToHdrParams, reconstruct
from fhdr_plugin.node.weights import load_model
from fhdr_plugin.params import BlendParams


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(3)
    return FHDR(1)


@pytest.mark.parametrize("iterations", [1, 2])
def test_tiled_matches_full_frame_on_a_frame_much_larger_than_the_tile(iterations):
    torch.manual_seed(3)
    net = FHDR(iterations)
    rng = np.random.default_rng(0)
    frame = rng.uniform(0, 1, (260, 333, 3)).astype(np.float32)
    full = Engine(net, "cpu", "float32", tile=0).run(frame)
    tiled = Engine(net, "cpu", "float32", tile=64).run(frame)
    assert full.shape == tiled.shape == frame.shape
    assert np.abs(full - tiled).max() < 1e-3


def test_tiles_cover_the_frame_exactly_once():
    hits = np.zeros((130, 97), dtype=int)
    for sy, sx, cy, cx in tiles(130, 97, 40, 29):
        region = np.zeros((130, 97), dtype=int)
        region[sy, sx][cy, cx] = 1
        hits += region
    assert (hits == 1).all()


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 17, 3), (9, 1, 3), (2, 2, 3)])
def test_tiny_frames(model, shape):
    out = Engine(model, "cpu", "float32", tile=64).run(np.full(shape, 0.5, np.float32))
    assert out.shape == shape and np.isfinite(out).all()


def test_nan_input_gives_finite_output(model):
    frame = np.full((20, 20, 3), np.nan, np.float32)
    assert np.isfinite(Engine(model, "cpu", tile=0).run(frame)).all()


def test_rejects_wrong_shape(model):
    with pytest.raises(FhdrError, match="H, W, 3"):
        Engine(model, "cpu").run(np.zeros((8, 8), np.float32))


def test_device_selection():
    assert select_device("cpu").type == "cpu"
    assert select_device().type in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(FhdrError, match="CUDA is not available"):
            select_device("cuda")
    with pytest.raises(FhdrError, match="unknown device"):
        select_device("toaster")
    for other in ("meta", "xpu"):  # devices torch knows and fhdr does not run on
        with pytest.raises(FhdrError, match=f"device '{other}': fhdr runs on cuda, mps or cpu"):
            select_device(other)


def test_precision():
    cpu = torch.device("cpu")
    assert resolve_precision("float32", cpu) == torch.float32
    assert resolve_precision("bfloat16", cpu) == torch.bfloat16
    with pytest.raises(FhdrError, match="unknown precision"):
        resolve_precision("int4", cpu)


def test_bfloat16_on_cpu_stays_close_to_float32(model):
    frame = np.random.default_rng(1).uniform(0, 1, (64, 64, 3)).astype(np.float32)
    ref = Engine(model, "cpu", "float32", tile=0).run(frame)
    low = Engine(model, "cpu", "bfloat16", tile=0).run(frame)
    assert np.abs(ref - low).max() < 0.05


def test_auto_tile_is_bounded():
    t = auto_tile(torch.device("cpu"), 1)
    assert 64 <= t <= 1024 and t % 64 == 0


def test_a_long_frame_logs_its_progress_over_tiles(model, monkeypatch, caplog):
    monkeypatch.setattr(engine_module, "PROGRESS_EVERY", 0.0)  # every tile counts as long
    frame = np.random.default_rng(2).uniform(0, 1, (150, 140, 3)).astype(np.float32)
    with caplog.at_level(logging.INFO, logger="fhdr"):
        Engine(model, "cpu", "float32", tile=64).run(frame)
    lines = [r.getMessage() for r in caplog.records if "tiles" in r.getMessage()]
    assert lines[0].startswith("140x150: 1 of 9 tiles") and lines[-1].startswith("140x150: 9 of 9 tiles, about 0 s")


def test_only_the_tiles_the_blend_uses_run_and_the_node_gives_the_same_pixels(sample_ldr, one_thread):
    net, meta = load_model(manifest().model("fhdr-i1"))
    display = np.clip(oiio.ImageBuf(str(sample_ldr)).get_pixels(oiio.FLOAT)[:192, :320, :3], 0.0, 1.0)
    linear = color.convert(display, "srgb_tx", color.LINEAR_SPACE)
    params = BlendParams().for_plate(lossy=False)
    needed = scale.needed(display, params)
    assert 0.0 < needed.mean() < 0.5
    engine = Engine(net, "cpu", "float32", tile=64)
    full, sparse = engine.run(display), engine.run(display, needed)
    assert np.abs(sparse - full)[needed].max() < 1e-5
    assert (sparse == 0).all(axis=-1).mean() > 0.3  # the tiles far from any highlight did not run
    assert len(engine.jobs(*needed.shape, needed)) < len(engine.jobs(*needed.shape))
    batched = Engine(net, "cpu", "float32", tile=64, batch=3)  # CUDA's path: equal windows, several per batch
    assert np.abs(batched.run(display, needed) - sparse).max() < 1e-5
    expected = scale.blend(linear, display, decode(full, meta), params, engine.lift)
    single = LdrToHdrParams.from_kwargs(coarse=False)  # the coarser levels run the engine on other frames
    assert np.abs(reconstruct(engine, meta, linear, display, single) - expected).max() < 1e-4


def test_a_single_needed_pixel_runs_one_small_window(model):
    engine = Engine(model, "cpu", "float32", tile=512)
    needed = np.zeros((512, 512), bool)
    needed[300, 200] = True
    (job,) = engine.jobs(512, 512, needed)
    assert (job[0].stop - job[0].start) <= 128 + 2 * engine.halo
    out = engine.run(np.full((512, 512, 3), 0.5, np.float32), needed)
    assert out[300, 200].any() and not out[0, 0].any()
    assert not engine.run(np.ones((64, 64, 3), np.float32), np.zeros((64, 64), bool)).any()


def test_raw_mode_needs_every_pixel():
    display = np.ones((8, 8, 3), np.float32)
    assert scale.needed(display, BlendParams(mode="raw")) is None
    assert scale.needed(display, BlendParams()).all()
