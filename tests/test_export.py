"""Exports: TorchScript and ONNX files reload and match the eager model on a real image of another size."""

import importlib.util
import io
import json
import math

import numpy as np
import OpenImageIO as oiio
import pytest
import torch
from typer.testing import CliRunner

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.exports.dropin import export_nuke
from fhdr_plugin.exports.export import EXAMPLE_SHAPE, METADATA_FILE, export_model, torchscript_bytes
from fhdr_plugin.host.cli import app
from fhdr_plugin.manifest import manifest
from fhdr_plugin.node.encoding import decode, decoding
from fhdr_plugin.node.weights import load_model


@pytest.fixture(scope="module")
def shipped():
    model, meta = load_model(manifest().model())
    return model, meta


@pytest.fixture(scope="module")
def crop(sample_ldr) -> torch.Tensor:
    """A real LDR crop, (1, 3, 121, 197) in [0, 1]: odd, and not the export's example size."""
    rgb = np.asarray(oiio.ImageBuf(str(sample_ldr)).get_pixels(oiio.FLOAT))[40:161, 100:297, :3]
    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]
    assert x.shape[2:] != EXAMPLE_SHAPE[2:]
    return x


@pytest.fixture(scope="module")
def eager(shipped, crop) -> np.ndarray:
    """The eager network's output, decoded as the weights' metadata says (``encoding.decode``)."""
    model, meta = shipped
    with torch.inference_mode():
        return decode(model(crop).numpy(), meta)


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """The largest error relative to the expected value (with a floor of 1e-3 of white for the blacks)."""
    return float((np.abs(got - want) / np.maximum(np.abs(want), 1e-3)).max())


def export_with_cli(tmp_path, fmt: str, name: str):
    out = tmp_path / name
    result = CliRunner().invoke(app, ["export", "--format", fmt, str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    return out


def test_torchscript_export_reloads_and_matches_the_eager_model(tmp_path, crop, eager):
    path = export_with_cli(tmp_path, "torchscript", "fhdr.pt")
    extra = {METADATA_FILE: ""}
    scripted = torch.jit.load(str(path), _extra_files=extra)
    with torch.inference_mode():
        out = scripted(crop)
    assert out.shape == crop.shape and out.dtype == torch.float32
    assert relative_error(out.numpy(), eager) < 1e-3
    meta = json.loads(extra[METADATA_FILE])
    assert meta["fhdr:model"] == manifest().default_model and float(meta["fhdr:headroom"]) > 1


def test_torchscript_export_runs_in_half_precision_and_clamps(shipped, crop, eager):
    """Nuke's 'Optimize for Speed and Memory' runs the module in half precision; out-of-range input is clamped."""
    model, meta = shipped
    scripted = torch.jit.load(io.BytesIO(torchscript_bytes(model, meta)))
    with torch.inference_mode():
        half = scripted.half()(crop.half())
        shifted = scripted.float()(crop * 3.0 - 1.0)
        clamped = scripted(torch.clamp(crop * 3.0 - 1.0, 0.0, 1.0))
    assert half.dtype == torch.float16
    # Eight half ulps of the network's output, times the decoding's gain d ln(HDR) / d(output).
    _, mu = decoding(meta)
    assert relative_error(half.float().numpy(), eager) < 8 * 2**-11 * (math.log1p(mu) if mu else 1.0)
    assert torch.equal(shifted, clamped)


def test_onnx_export_reloads_in_onnxruntime_and_matches_the_eager_model(tmp_path, crop, eager):
    for name in ("onnx", "onnxscript", "onnxruntime"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed (pip install 'fhdr[onnx]')")
    import onnx
    import onnxruntime

    path = export_with_cli(tmp_path, "onnx", "fhdr.onnx")
    proto = onnx.load(str(path))
    assert max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")) >= 17
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims[2:]] == ["height", "width"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["fhdr:model"] == manifest().default_model
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"ldr": crop.numpy()})
    assert out.shape == tuple(crop.shape)
    assert relative_error(out, eager) < 1e-3


def test_exports_run_on_a_frame_one_pixel_high_or_wide_as_the_node_does(shipped, crop, tmp_path):
    """The network's reflection padding needs two pixels: the exports repeat the last row or column, as the node."""
    model, meta = shipped
    scripted = torch.jit.load(io.BytesIO(torchscript_bytes(model, meta)))
    runs = {"torchscript": lambda x: scripted(x).numpy()}
    if all(importlib.util.find_spec(n) for n in ("onnx", "onnxscript", "onnxruntime")):
        import onnxruntime

        session = onnxruntime.InferenceSession(str(export_with_cli(tmp_path, "onnx", "fhdr.onnx")))
        runs["onnx"] = lambda x: session.run(None, {"ldr": x.numpy()})[0]
    for x in (crop[:, :, 60:61, :40], crop[:, :, :30, 7:8], crop[:, :, 5:6, 9:10]):
        padded = torch.nn.functional.pad(x, [0, max(0, 2 - x.shape[3]), 0, max(0, 2 - x.shape[2])], mode="replicate")
        with torch.inference_mode():
            want = decode(model(padded).numpy(), meta)[:, :, : x.shape[2], : x.shape[3]]
        for name, run in runs.items():
            with torch.inference_mode():
                got = run(x)
            assert got.shape == tuple(x.shape) and relative_error(got, want) < 1e-3, name


def test_unknown_format_is_refused(shipped, tmp_path):
    model, meta = shipped
    with pytest.raises(FhdrError, match="unknown export format"):
        export_model(model, meta, "tflite", tmp_path / "m.tflite")


def test_an_export_into_a_path_that_cannot_be_a_folder_fails_before_the_work(shipped, tmp_path):
    model, meta = shipped
    (tmp_path / "afile").write_text("not a folder")
    for fmt, name in (("torchscript", "m.pt"), ("onnx", "sub/m.onnx")):
        with pytest.raises(FhdrError, match="afile is not a folder"):
            export_model(model, meta, fmt, tmp_path / "afile" / name)
    with pytest.raises(FhdrError, match="afile is not a folder"):
        export_nuke(model, meta, tmp_path / "afile" / "m.pt")
