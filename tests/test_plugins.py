"""A third-party plugin installed beside fhdr, found through the ``fhdr.plugins`` entry point and nothing else.

The plugin is a package folder plus a ``.dist-info`` folder (METADATA, entry_points.txt), which is what pip
leaves in site-packages; it is written into a temporary folder put on the import path, so no pip and no network.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np
import OpenImageIO as oiio
import pytest
from conftest import ROOT

from fhdr_plugin.host.registry import Registry, plugin_manager, registry
from fhdr_plugin.imaging.io import read_image
from fhdr_plugin.manifest import manifest
from fhdr_plugin.params import LdrToHdrParams

PLUGIN = "fhdr_trace_plugin"

PLUGIN_SOURCE = '''\
"""A third-party fhdr plugin: ``invert`` and ``gain`` operations, and a JSON-lines trace of every operation run."""

import json
import os
from dataclasses import dataclass

import OpenImageIO as oiio

from fhdr_plugin import hookimpl
from fhdr_plugin.params import Params, param
from fhdr_plugin.host.registry import Operation


@dataclass(frozen=True)
class GainParams(Params):
    where = "gain"

    gain: float = param(1.0, "factor of every channel")
    output_colorspace: str = param("ACEScg", "the space it says it writes: a name ldr_to_hdr has, its own default")


def _trace(**entry):
    with open(os.environ["FHDR_TRACE"], "a") as f:
        f.write(json.dumps(entry) + "\\n")


def invert(buf, params):
    return oiio.ImageBufAlgo.invert(buf)


def gain(buf, params):
    return oiio.ImageBufAlgo.mul(buf, params.gain)


@hookimpl
def fhdr_register_operations():
    return [
        Operation("invert", "1 - x on every channel", invert, plugin="trace"),
        Operation("gain", "x times a gain", gain, plugin="trace", params=GainParams),
    ]


@hookimpl
def fhdr_before_operation(name, buf, params):
    _trace(hook="before", name=name, size=[buf.spec().width, buf.spec().height], params=params.to_dict())


@hookimpl
def fhdr_after_operation(name, result, params):
    _trace(hook="after", name=name, model=result.spec().get_string_attribute("fhdr:model"))
'''


def install_plugin(site: Path, package: str = PLUGIN, source: str = PLUGIN_SOURCE, name: str = "trace") -> None:
    """Write a plugin package as an installed distribution into ``site``, registered under ``name``."""
    (site / package).mkdir(parents=True)
    (site / package / "__init__.py").write_text(source)
    info = site / f"{package}-0.1.dist-info"
    info.mkdir()
    dist = package.replace("_", "-")
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{manifest().entry_point_group}]\n{name} = {package}\n")


def read_trace(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The plugin installed into a folder on ``sys.path``, with ``$FHDR_TRACE`` naming its trace file."""
    site = tmp_path / "site"
    install_plugin(site)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("FHDR_TRACE", str(tmp_path / "trace.jsonl"))
    registry.cache_clear()
    yield site
    registry.cache_clear()
    sys.modules.pop(PLUGIN, None)


def test_plugin_is_loaded_through_its_entry_point(site, ldr_png, tmp_path):
    group = manifest().entry_point_group
    assert {ep.name: ep.value for ep in entry_points(group=group)}["trace"] == PLUGIN
    pm = plugin_manager()
    assert pm.has_plugin("trace") and pm.has_plugin("fhdr")
    assert [dist.project_name for _, dist in pm.list_plugin_distinfo()].count("fhdr-trace-plugin") == 1
    reg = Registry(pm)
    assert reg.operations["invert"].plugin == "trace"
    assert reg.operations["ldr_to_hdr"].plugin == "fhdr"

    src = read_image(ldr_png)
    inverted = reg.run("invert", src)
    np.testing.assert_allclose(inverted.get_pixels(oiio.FLOAT), 1.0 - src.get_pixels(oiio.FLOAT), atol=1e-6)
    reg.run("ldr_to_hdr", src, tile=0)
    full = LdrToHdrParams.from_kwargs(tile=0).to_dict()
    assert read_trace(tmp_path / "trace.jsonl") == [
        {"hook": "before", "name": "invert", "size": [64, 48], "params": {}},
        {"hook": "after", "name": "invert", "model": ""},
        {"hook": "before", "name": "ldr_to_hdr", "size": [64, 48], "params": full},
        {"hook": "after", "name": "ldr_to_hdr", "model": manifest().default_model},
    ]


def test_plugin_operation_through_the_public_api_and_the_generic_host(site, tmp_path):
    host = runpy.run_path(str(ROOT / "hooks" / "generic_host.py"))
    assert host["operations"]()["invert"] == "1 - x on every channel"
    rgb = np.linspace(0, 1, 4 * 6 * 3, dtype=np.float32).reshape(4, 6, 3)
    np.testing.assert_allclose(host["run_on_array"]("invert", rgb), 1.0 - rgb, atol=1e-6)
    assert [(e["hook"], e["name"]) for e in read_trace(tmp_path / "trace.jsonl")] == [
        ("before", "invert"),
        ("after", "invert"),
    ]


def command_line(site: Path, trace: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run the installed ``fhdr`` command with the plugin's folder on the path, tracing to ``trace``."""
    script = Path(sys.executable).parent / "fhdr"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "fhdr_plugin"]
    env = {**os.environ, "PYTHONPATH": str(site), "FHDR_TRACE": str(trace)}

    def fhdr(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=600)

    return fhdr


def test_plugin_hooks_run_around_fhdr_convert(site, ldr_png, tmp_path):
    fhdr = command_line(site, tmp_path / "cli-trace.jsonl")
    ops = fhdr("ops")
    assert ops.returncode == 0, ops.stderr
    assert "invert  (trace) 1 - x on every channel" in ops.stdout
    out = tmp_path / "small.exr"
    run = fhdr("convert", str(ldr_png), str(out), "--tile", "0")
    assert run.returncode == 0, run.stderr
    before, after = read_trace(tmp_path / "cli-trace.jsonl")
    assert (before["hook"], before["name"], before["size"]) == ("before", "ldr_to_hdr", [64, 48])
    assert before["params"]["tile"] == 0
    assert after == {"hook": "after", "name": "ldr_to_hdr", "model": manifest().default_model}
    assert oiio.ImageBuf(str(out)).spec().get_string_attribute("fhdr:model") == manifest().default_model


def test_a_plugin_operation_runs_by_name_with_its_own_options(site, ldr_png, tmp_path):
    fhdr = command_line(site, tmp_path / "trace.jsonl")
    assert "  gain: float = 1.0  factor of every channel" in fhdr("ops").stdout
    out = tmp_path / "half.exr"
    run = fhdr("convert", "--op", "gain", str(ldr_png), str(out), "--gain", "0.5")
    assert run.returncode == 0, run.stderr
    src = read_image(ldr_png).get_pixels(oiio.FLOAT)
    np.testing.assert_allclose(oiio.ImageBuf(str(out)).get_pixels(oiio.FLOAT), 0.5 * src, atol=4e-3)
    assert read_trace(tmp_path / "trace.jsonl")[0]["params"] == {"gain": 0.5, "output_colorspace": "ACEScg"}
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in (1, 2):
        (frames / f"in.{i:04d}.png").write_bytes(ldr_png.read_bytes())
    run = fhdr("batch", "--op", "gain", "--gain", "2", str(frames / "in.####.png"), str(frames / "out.####.exr"))
    assert run.returncode == 0, run.stderr
    doubled = oiio.ImageBuf(str(frames / "out.0002.exr")).get_pixels(oiio.FLOAT)
    np.testing.assert_allclose(doubled, np.minimum(2.0 * src, 1.0), atol=4e-3)  # the plugin keeps 8-bit's range
    wrong = fhdr("convert", "--op", "gain", str(ldr_png), str(tmp_path / "x.exr"), "--strength", "2")
    assert wrong.returncode == 1 and "--strength: not a parameter of gain" in wrong.stderr
    wrong = fhdr("convert", str(ldr_png), str(tmp_path / "x.exr"), "--gain", "2")
    assert wrong.returncode == 1 and "--gain: not a parameter of ldr_to_hdr" in wrong.stderr
    assert not (tmp_path / "x.exr").exists()


def test_a_plugin_that_cannot_be_imported_is_named_in_one_line(tmp_path, ldr_png):
    site = tmp_path / "site"
    install_plugin(site, "fhdr_broken_plugin", "import a_module_nobody_installed\n", "broken")
    fhdr = command_line(site, tmp_path / "trace.jsonl")
    run = fhdr("convert", str(ldr_png), str(tmp_path / "o.exr"))
    assert run.returncode == 1 and not (tmp_path / "o.exr").exists()
    assert run.stderr.strip().splitlines() == [
        f"fhdr: error: plugin broken (fhdr_broken_plugin) of {manifest().entry_point_group} cannot be loaded: "
        "ModuleNotFoundError: No module named 'a_module_nobody_installed'"
    ]


CLASHING_SOURCE = """\
from dataclasses import dataclass

import OpenImageIO as oiio

from fhdr_plugin import hookimpl
from fhdr_plugin.host.registry import Operation
from fhdr_plugin.params import Params, param


@dataclass(frozen=True)
class StepParams(Params):
    where = "step"

    frames: int = param(1, "frames to step")
    compression: str = param("none", "what it compresses")


@hookimpl
def fhdr_register_operations():
    return [Operation("step", "copies the image", lambda buf, params: oiio.ImageBufAlgo.copy(buf), plugin="clash",
                      params=StepParams)]
"""


def test_a_plugin_parameter_named_like_a_command_option_is_refused_by_name(tmp_path, ldr_png):
    site = tmp_path / "site"
    install_plugin(site, "fhdr_clashing_plugin", CLASHING_SOURCE, "clash")
    fhdr = command_line(site, tmp_path / "trace.jsonl")
    assert fhdr("ops").returncode == 0
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "in.0001.png").write_bytes(ldr_png.read_bytes())
    run = fhdr("batch", str(frames / "in.####.png"), str(frames / "out.####.exr"))
    assert run.returncode == 1 and not (frames / "out.0001.exr").exists()
    assert run.stderr.strip().splitlines() == [
        "fhdr: error: fhdr batch cannot offer --compression of step (plugin clash); --frames of step (plugin clash): "
        "a parameter is named like one of the command's own options; rename it (the Python API still runs the "
        "operation)"
    ]
    run = fhdr("convert", "--op", "step", str(ldr_png), str(tmp_path / "o.exr"), "--frames", "3")
    assert run.returncode == 1 and "fhdr convert cannot offer --compression of step (plugin clash):" in run.stderr
    api = "import OpenImageIO as oiio; from fhdr_plugin import run_operation; "
    api += f"print(run_operation('step', oiio.ImageBuf('{ldr_png}'), frames=3).spec().width)"
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run([sys.executable, "-c", api], capture_output=True, text=True, env=env, timeout=600)
    assert (run.returncode, run.stdout) == (0, "64\n"), run.stderr
