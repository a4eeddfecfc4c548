"""The engine's fast paths: batched uniform tiles, bfloat16 on the CPU, the ONNX Runtime backend."""

import importlib.util

import numpy as np
import OpenImageIO as oiio
import pytest
import torch

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.manifest import manifest
from fhdr_plugin.node import engine as engine_module
from fhdr_plugin.node.engine import Engine, resolve_precision, tiles
from fhdr_plugin.node.model import FHDR
from fhdr_plugin.node.weights import load_model
from training.metrics import mu_psnr

HAS_ORT = all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnxscript"))


@pytest.fixture(scope="module")
def shipped() -> FHDR:
    return load_model(manifest().model())[0]


@pytest.fixture(scope="module")
def crop(sample_ldr) -> np.ndarray:
    """A real LDR crop of an odd size, (H, W, 3) in [0, 1]."""
    return np.asarray(oiio.ImageBuf(str(sample_ldr)).get_pixels(oiio.FLOAT))[40:161, 100:297, :3].copy()


def test_uniform_tiles_cover_the_frame_once_with_windows_of_one_size():
    hits = np.zeros((130, 97), dtype=int)
    sizes = set()
    for sy, sx, cy, cx in tiles(130, 97, 40, 29, uniform=True):
        sizes.add((sy.stop - sy.start, sx.stop - sx.start))
        region = np.zeros((130, 97), dtype=int)
        region[sy, sx][cy, cx] = 1
        hits += region
    assert (hits == 1).all()
    assert len(sizes) == 1


def test_batched_tiles_match_the_full_frame(crop):
    torch.manual_seed(3)
    net = FHDR(1)
    full = Engine(net, "cpu", "float32", tile=0).run(crop)
    batched = Engine(net, "cpu", "float32", tile=48, batch=3)
    assert batched.batch == 3
    assert np.abs(batched.run(crop) - full).max() < 1e-3


@pytest.mark.parametrize("has_bf16, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_precision_on_the_cpu_follows_native_bfloat16(monkeypatch, has_bf16, expected):
    monkeypatch.setattr(engine_module, "cpu_has_bf16", lambda: has_bf16)
    assert resolve_precision("auto", torch.device("cpu")) == expected


def test_bfloat16_is_close_to_float32_in_mu_psnr_on_a_real_image(shipped, crop):
    reference = Engine(shipped, "cpu", "float32", tile=0).run(crop)
    low = Engine(shipped, "cpu", "bfloat16", tile=0).run(crop)
    assert mu_psnr(low, reference) > 45.0


def test_rejects_bad_backend_and_batch(shipped):
    with pytest.raises(FhdrError, match="unknown backend"):
        Engine(shipped, "cpu", backend="tensorrt")
    with pytest.raises(FhdrError, match="batch"):
        Engine(shipped, "cpu", batch=0)
    with pytest.raises(FhdrError, match="float32 on the CPU"):
        Engine(shipped, "cpu", "bfloat16", backend="onnxruntime")


@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime and onnxscript are not installed (pip install 'fhdr[onnx]')")
def test_onnxruntime_backend_matches_torch_when_tiled(shipped, crop):
    reference = Engine(shipped, "cpu", "float32", tile=0).run(crop)
    ort = Engine(shipped, "cpu", tile=64, backend="onnxruntime")
    assert ort.dtype == torch.float32
    assert np.abs(ort.run(crop) - reference).max() < 1e-3
