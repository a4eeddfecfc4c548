"""The FHDR network: size, range, statelessness, receptive field."""

import pytest
import torch

from fhdr_plugin.node.model import FHDR, PARAMETER_COUNT, receptive_radius


@pytest.mark.parametrize("iterations", [1, 2, 3, 4])
def test_parameter_count_matches_the_paper(iterations):
    model = FHDR(iterations)
    assert sum(p.numel() for p in model.parameters()) == PARAMETER_COUNT == 571_267


def test_output_shape_and_range():
    torch.manual_seed(0)
    model = FHDR(2).eval()
    with torch.no_grad():
        outs = model.forward_all(torch.rand(2, 3, 37, 53))
    assert len(outs) == 2
    for out in outs:
        assert out.shape == (2, 3, 37, 53)
        assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("iterations", [1, 3])
def test_inference_skips_the_earlier_reconstructions_and_returns_the_last_output(iterations):
    torch.manual_seed(0)
    model, ldr = FHDR(iterations).eval(), torch.rand(1, 3, 29, 31)
    with torch.no_grad():
        every, last = model.forward_all(ldr), model.forward_all(ldr, last_only=True)
        assert len(every) == iterations and len(last) == 1
        assert torch.equal(last[0], every[-1]) and torch.equal(model(ldr), every[-1])
        assert torch.equal(torch.jit.script(model)(ldr), every[-1])


def test_calls_on_different_sizes_and_order_do_not_matter():
    torch.manual_seed(0)
    model = FHDR(2).eval()
    a, b = torch.rand(1, 3, 40, 40), torch.rand(1, 3, 23, 71)
    with torch.no_grad():
        first_a = model(a)
        model(b)
        again_a = model(a)
        fresh_b = FHDR(2).eval()
        fresh_b.load_state_dict(model.state_dict())
        assert torch.equal(model(b), fresh_b(b))
    assert torch.equal(first_a, again_a)


@pytest.mark.parametrize("iterations", [1, 2])
def test_receptive_field_is_within_the_halo(iterations):
    torch.manual_seed(0)
    model = FHDR(iterations).eval()
    size, c = 161, 80
    x = torch.rand(1, 3, size, size)
    y = x.clone()
    y[..., c, c] += 0.5
    with torch.no_grad():
        diff = (model(x) - model(y)).abs().amax(dim=(0, 1))
    rows, cols = torch.nonzero(diff > 0, as_tuple=True)
    assert len(rows) > 0
    r = receptive_radius(iterations)
    assert rows.min() >= c - r and rows.max() <= c + r
    assert cols.min() >= c - r and cols.max() <= c + r


def test_iterations_out_of_range():
    with pytest.raises(ValueError, match="1-4"):
        FHDR(5)


def test_weights_are_not_zero_initialised():
    model = FHDR(1)
    assert all(p.abs().sum() > 0 for name, p in model.named_parameters() if name.endswith("weight"))
