"""The context variant (fhdr-context): tiled equals whole-frame, it starts as the paper's network, it saves,
loads and scripts."""

import numpy as np
import pytest
import safetensors
import torch

from fhdr_plugin.exports.export import portable_copy
from fhdr_plugin.manifest import ModelSpec
from fhdr_plugin.node.engine import Engine
from fhdr_plugin.node.model import FHDR, FHDRContext, build
from fhdr_plugin.node.weights import load_model, save_weights, sha256_bytes

META = {
    "fhdr:iterations": "1",
    "fhdr:headroom": "256",
    "fhdr:encoding": "mu-law",
    "fhdr:hdr_normalisation": "test",
    "fhdr:perceptual_loss": "off",
}


@pytest.fixture(scope="module")
def trained_context():
    """A context model whose context pass is not zero (as after training)."""
    torch.manual_seed(5)
    net = FHDRContext(1)
    torch.nn.init.normal_(net.context.out.weight, std=0.2)
    return net.eval()


@pytest.mark.parametrize("shape", [(203, 301), (64, 64), (9, 130)])
def test_tiled_matches_the_whole_frame(trained_context, shape):
    frame = np.random.default_rng(1).uniform(0, 1, (*shape, 3)).astype(np.float32)
    full = Engine(trained_context, "cpu", "float32", tile=0).run(frame)
    tiled = Engine(trained_context, "cpu", "float32", tile=64).run(frame)
    plain = Engine(portable_copy(FHDR(1)), "cpu", "float32", tile=0)  # a different network entirely
    assert np.abs(full - tiled).max() < 1e-4
    assert np.abs(full - plain.run(frame)).max() > 1e-2


def test_a_context_model_starts_as_the_paper_network():
    torch.manual_seed(2)
    paper = FHDR(1).eval()
    ctx = build("fhdr-context", 1).eval()
    missing, unexpected = ctx.load_state_dict(paper.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("context.") for k in missing)
    x = torch.rand(1, 3, 37, 45)
    with torch.no_grad():
        assert torch.equal(ctx(x), paper(x))


def test_saved_weights_name_the_architecture_and_load_back(tmp_path, trained_context):
    path = tmp_path / "ctx.safetensors"
    sha = save_weights(trained_context, path, META)
    assert sha == sha256_bytes(path.read_bytes())
    with safetensors.safe_open(str(path), "pt") as f:
        assert f.metadata()["fhdr:architecture"] == "fhdr-context"
    net, meta = load_model(ModelSpec("ctx", path, sha))
    assert isinstance(net, FHDRContext) and meta["fhdr:architecture"] == "fhdr-context"
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.allclose(net(x), trained_context(x), atol=1e-6)


def test_the_context_model_scripts(trained_context):
    scripted = torch.jit.script(portable_copy(trained_context))
    x = torch.rand(1, 3, 50, 70)
    with torch.no_grad():
        assert torch.allclose(scripted(x), trained_context(x), atol=1e-6)
