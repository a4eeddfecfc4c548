"""The Nuke drop-in, reloaded with plain torch.jit.load, gives fhdr convert's anchored result on a real plate."""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
import torch
from conftest import write_image
from typer.testing import CliRunner

from fhdr_plugin.exports.dropin import LIBTORCH_1_6_OPS
from fhdr_plugin.host.cli import app
from fhdr_plugin.imaging import color
from fhdr_plugin.node.encoding import decoding
from fhdr_plugin.params import LdrToHdrParams

#: Runs in a fresh interpreter with torch and numpy alone, as Nuke does: the module, its knobs, float32 and half.
HOST = """
import json, sys
import numpy as np
import torch
module = torch.jit.load(sys.argv[1], _extra_files={"fhdr.json": ""})
x = torch.from_numpy(np.load(sys.argv[2]))
kinds = {"strength": type(module.strength).__name__, "matte": type(module.matte).__name__}
with torch.inference_mode():
    np.save(sys.argv[3] + "float.npy", module(x).numpy())
    module.strength = 2.0
    np.save(sys.argv[3] + "strength2.npy", module(x).numpy())
    module.strength = 1.0
    np.save(sys.argv[3] + "half.npy", module.half()(x.half()).float().numpy())
ops = set()
def walk(block):
    for node in block.nodes():
        ops.add(node.kind())
        for inner in node.blocks():
            walk(inner)
walk(module.inlined_graph)
print(json.dumps({"fhdr": [m for m in sys.modules if m.startswith("fhdr")], "kinds": kinds, "ops": sorted(ops)}))
"""


@pytest.fixture(scope="module")
def plate(sample_ldr, tmp_path_factory):
    """A real 8-bit sRGB plate: a 96×128 crop of the sample with clipped sky (odd sizes need no padding)."""
    rgb = np.asarray(oiio.ImageBuf(str(sample_ldr)).get_pixels(oiio.FLOAT))[40:136, 100:229, :3]
    return write_image(tmp_path_factory.mktemp("plate") / "plate.png", rgb), np.ascontiguousarray(rgb)


def convert(plate_png, out, space: str, *args: str) -> np.ndarray:
    cmd = ["convert", str(plate_png), str(out), "--float", "--precision", "float32", "--tile", "0"]
    result = CliRunner().invoke(app, [*cmd, "--output-colorspace", space, *args])
    assert result.exit_code == 0, result.output
    return np.asarray(oiio.ImageBuf(str(out)).get_pixels(oiio.FLOAT))


def half_tolerance(meta: dict[str, str]) -> float:
    """Relative error half precision may cost: eight half ulps (2^-11 each) of the network's output and of the
    colour maths, times the decoding's gain d ln(HDR)/d(output): 1 for linear, ln(1 + μ) for μ-law."""
    _, mu = decoding(meta)
    return 8 * 2**-11 * (math.log1p(mu) if mu else 1.0)


@pytest.mark.parametrize(("space", "matte"), [("lin_rec709", False), ("ACEScg", True)])
def test_nuke_dropin_matches_fhdr_convert_in_float32_and_half(tmp_path, plate, space, matte):
    png, rgb = plate
    module = tmp_path / "fhdr_nuke.pt"
    args = ["export", "--format", "torchscript", "--host", "nuke", "--working-space", space, str(module)]
    result = CliRunner().invoke(app, [*args, "--matte"] if matte else args)
    assert result.exit_code == 0, result.output
    scene_linear = color.convert(rgb, "srgb_tx", space).transpose(2, 0, 1)[None]
    np.save(tmp_path / "in.npy", np.ascontiguousarray(scene_linear, np.float32))
    run = subprocess.run(
        [sys.executable, "-c", HOST, str(module), str(tmp_path / "in.npy"), str(tmp_path / "out_")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["fhdr"] == [] and report["kinds"] == {"strength": "float", "matte": "int"}
    assert "prim::If" in report["ops"] and "prim::Loop" in report["ops"], "scripted, not traced"
    assert {op for op in report["ops"] if op.startswith("aten::")} <= LIBTORCH_1_6_OPS

    with_matte = ["--matte"] if matte else []
    reference = convert(png, tmp_path / "ref.exr", space, *with_matte)
    stronger = convert(png, tmp_path / "strong.exr", space, "--strength", "2", *with_matte)
    out = {k: np.load(tmp_path / f"out_{k}.npy")[0].transpose(1, 2, 0) for k in ("float", "strength2", "half")}
    assert out["float"].shape == reference.shape == (*rgb.shape[:2], 4 if matte else 3)
    reconstructed = reference[..., :3].max(axis=-1) > 1.05
    assert reconstructed.sum() > 50, "the plate must exercise the network"
    # Relative 1e-3; 1e-5 absolute for the plate's blacks, where 8-bit code 1 is 3e-4.
    ramp = LdrToHdrParams().blend.for_plate(lossy=False)  # the plate is a PNG
    slope = 1.5 / (ramp.blend_high - ramp.blend_low)  # the blend ramp's steepest slope
    for got, want in ((out["float"], reference), (out["strength2"], stronger)):
        np.testing.assert_allclose(got[..., :3], want[..., :3], rtol=1e-3, atol=1e-5)
        if matte:
            # The module sees the plate through the working space and back (float32, ~1e-5 of display value),
            # which the ramp magnifies by its slope; fhdr convert reads the code values themselves.
            np.testing.assert_allclose(got[..., 3], want[..., 3], rtol=0, atol=slope * 1e-5)
    extra = {"fhdr.json": ""}
    torch.jit.load(str(module), _extra_files=extra)
    meta = json.loads(extra["fhdr.json"])
    assert meta["fhdr:working_space"] == color.resolve(space)
    np.testing.assert_allclose(out["half"][..., :3], reference[..., :3], rtol=half_tolerance(meta), atol=1e-4)
    if matte:
        # The blend ramp's steepest slope times four half ulps at white.
        np.testing.assert_allclose(out["half"][..., 3], reference[..., 3], rtol=0, atol=slope * 4 * 2**-11)
    assert np.abs(out["half"] - reference).max() > 0, "half precision really ran"


def test_nuke_dropin_runs_on_a_frame_one_pixel_high_or_wide_as_fhdr_convert(tmp_path, plate):
    _, rgb = plate
    module = tmp_path / "fhdr_nuke.pt"
    result = CliRunner().invoke(app, ["export", "--host", "nuke", str(module)])
    assert result.exit_code == 0, result.output
    scripted = torch.jit.load(str(module))
    clipped = rgb.max(axis=-1) >= 1.0
    row, col = int(np.argmax(clipped.sum(axis=1))), int(np.argmax(clipped.sum(axis=0)))  # the most clipped
    for name, strip in (("row", rgb[row : row + 1]), ("column", rgb[:, col : col + 1])):
        png = write_image(tmp_path / f"{name}.png", np.ascontiguousarray(strip))
        reference = convert(png, tmp_path / f"{name}.exr", "lin_rec709")
        x = torch.from_numpy(np.ascontiguousarray(color.convert(strip, "srgb_tx", "lin_rec709").transpose(2, 0, 1)))
        with torch.inference_mode():
            got = scripted(x[None])[0].numpy().transpose(1, 2, 0)
        assert got.shape == reference.shape and (reference.max(axis=-1) > 1.05).any(), name
        np.testing.assert_allclose(got, reference, rtol=1e-3, atol=1e-5, err_msg=name)


def test_nuke_host_is_torchscript_only_and_its_options_need_it(tmp_path):
    runner = CliRunner()
    onnx = runner.invoke(app, ["export", "--host", "nuke", str(tmp_path / "m.onnx")])
    assert onnx.exit_code == 1 and "--host nuke writes TorchScript" in onnx.output
    raw = runner.invoke(app, ["export", "--matte", str(tmp_path / "m.pt")])
    assert raw.exit_code == 1 and "options of --host nuke" in raw.output
    space = runner.invoke(app, ["export", "--host", "nuke", "--working-space", "XYZ", str(tmp_path / "m.pt")])
    assert space.exit_code == 1 and "unknown working space 'XYZ'" in space.output
    assert not list(tmp_path.iterdir())


@pytest.fixture(scope="module")
def libtorch_host(tmp_path_factory):
    """hooks/nuke/libtorch_host.cpp built against the installed torch wheel's libtorch (its headers and libraries)."""
    compiler = shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler (g++) to build the libtorch host")
    root = Path(torch.__file__).parent
    binary = tmp_path_factory.mktemp("host") / "libtorch_host"
    source = Path(__file__).parent.parent / "hooks" / "nuke" / "libtorch_host.cpp"
    build = subprocess.run(
        [compiler, "-std=c++20", "-O1", "-w", str(source), "-o", str(binary),
         f"-I{root / 'include'}", f"-I{root / 'include' / 'torch' / 'csrc' / 'api' / 'include'}",
         f"-L{root / 'lib'}", "-ltorch", "-ltorch_cpu", "-lc10", f"-Wl,-rpath,{root / 'lib'}"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    return binary


def test_a_libtorch_host_runs_the_dropin_as_nuke_does(tmp_path, plate, libtorch_host):
    """The export, loaded by C++ through libtorch alone (as Nuke's Inference node loads it), gives fhdr convert's
    pixels, with the strength set as a knob, in float32 and half."""
    png, rgb = plate
    module = tmp_path / "fhdr_nuke.pt"
    result = CliRunner().invoke(app, ["export", "--host", "nuke", str(module)])
    assert result.exit_code == 0, result.output
    h, w = rgb.shape[:2]
    frame = tmp_path / "in.f32"
    scene_linear = color.convert(rgb, "srgb_tx", "lin_rec709").transpose(2, 0, 1)
    np.ascontiguousarray(scene_linear, np.float32).tofile(frame)

    def host(*extra: str) -> np.ndarray:
        out = tmp_path / "out.f32"
        run = subprocess.run(
            [str(libtorch_host), str(module), str(frame), str(h), str(w), str(out), *extra],
            capture_output=True, text=True,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert f"libtorch {torch.__version__.split('+')[0]}" in run.stdout
        return np.fromfile(out, np.float32).reshape(3, h, w).transpose(1, 2, 0)

    reference = convert(png, tmp_path / "ref.exr", "lin_rec709")
    stronger = convert(png, tmp_path / "strong.exr", "lin_rec709", "--strength", "2")
    assert (reference.max(axis=-1) > 1.05).sum() > 50, "the plate must exercise the network"
    np.testing.assert_allclose(host(), reference, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(host("2.0"), stronger, rtol=1e-3, atol=1e-5)
    extra = {"fhdr.json": ""}
    torch.jit.load(str(module), _extra_files=extra)
    half = host("1.0", "half")
    np.testing.assert_allclose(half, reference, rtol=half_tolerance(json.loads(extra["fhdr.json"])), atol=1e-4)
    assert np.abs(half - reference).max() > 0, "half precision really ran"


def test_a_half_frame_into_the_float_module_comes_back_half(tmp_path, plate):
    """Nuke may hand a float module a half frame: it runs at the module's own precision, in the frame's dtype out."""
    _, rgb = plate
    module = tmp_path / "fhdr_nuke.pt"
    assert CliRunner().invoke(app, ["export", "--host", "nuke", str(module)]).exit_code == 0
    loaded = torch.jit.load(str(module))
    x = torch.from_numpy(np.ascontiguousarray(color.convert(rgb, "srgb_tx", "lin_rec709").transpose(2, 0, 1)[None]))
    with torch.inference_mode():
        full, half = loaded(x), loaded(x.half())
    assert half.dtype == torch.half and full.dtype == torch.float32
    # The frame itself is rounded to half (2^-11), which the blend ramp and the output's rounding can double.
    np.testing.assert_allclose(half.float().numpy(), full.numpy(), rtol=8 * 2**-11, atol=1e-4)


def test_the_dropin_runs_the_network_only_where_the_blend_takes_it_with_the_whole_frame_s_pixels(sample_ldr):
    from fhdr_plugin.exports.dropin import SceneLinearFhdr
    from fhdr_plugin.manifest import manifest
    from fhdr_plugin.node.weights import load_model

    net, meta = load_model(manifest().model())
    sample = oiio.ImageBuf(str(sample_ldr))
    spec = sample.spec()
    larger = oiio.ImageBufAlgo.resize(sample, roi=oiio.ROI(0, 2 * spec.width, 0, 2 * spec.height, 0, 1, 0, 3))
    rgb = np.clip(np.asarray(larger.get_pixels(oiio.FLOAT))[..., :3], 0.0, 1.0)  # the sun and its sky clipped
    x = torch.from_numpy(color.convert(rgb, "srgb_tx", "lin_rec709").transpose(2, 0, 1)[None].copy())
    module = torch.jit.script(SceneLinearFhdr(net, meta))
    display = (x.clamp(min=0.0) ** (1 / 2.4)).clamp(max=1.0)  # near enough to find the highlights' tiles
    regions = module.windows(display)
    covered = sum((r[1] - r[0]) * (r[3] - r[2]) for r in regions)
    assert 0 < covered < x.shape[2] * x.shape[3] // 2, "only the tiles with highlights run"
    with torch.inference_mode():
        sparse = module(x)
        module.sparse = 0
        whole = module(x)
    assert module.windows(display) == [[0, x.shape[2], 0, x.shape[3]] * 2]
    reconstructed = (whole - x).abs().amax(1) > 1e-3
    assert reconstructed.sum() > 100, "the plate must exercise the network"
    np.testing.assert_allclose(sparse.numpy(), whole.numpy(), rtol=1e-4, atol=1e-6)
