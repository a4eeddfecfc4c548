"""The structure the code promises: no import cycles, no torch for listing, parameters declared once."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from conftest import ROOT
from typer.testing import CliRunner

import fhdr_plugin
from fhdr_plugin.errors import FhdrError
from fhdr_plugin.exports.dropin import KNOBS, SceneLinearFhdr
from fhdr_plugin.host.cli import app, with_params
from fhdr_plugin.imaging.io import WriteOptions
from fhdr_plugin.node import maths, scale
from fhdr_plugin.node.engine import select_device
from fhdr_plugin.node.model import FHDR
from fhdr_plugin.params import BlendParams, EngineParams, LdrToHdrParams, param, type_name
from training.losses import FHDRLoss

PACKAGE = ROOT / "fhdr_plugin"
FIELDS = [f.name for f in LdrToHdrParams.fields()]


def module_name(path: Path) -> str:
    """``path``'s module inside the package, dotted (``host.cli``)."""
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def module_imports(path: Path) -> set[str]:
    """The fhdr_plugin modules ``path`` imports at module level (not inside functions), dotted."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fhdr_plugin"):
            inner = node.module.removeprefix("fhdr_plugin").removeprefix(".")
            folder = PACKAGE.joinpath(*inner.split(".")) if inner else PACKAGE
            names = {f"{inner}.{a.name}".lstrip(".") for a in node.names if (folder / f"{a.name}.py").exists()}
            found |= names or {inner}
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("fhdr_plugin.") for a in node.names if a.name.startswith("fhdr_plugin.")}
    return found


def test_the_layout_shows_the_four_neighbourhoods():
    top = sorted(p.name for p in PACKAGE.iterdir() if not p.name.startswith((".", "_")) and p.suffix != ".toml")
    assert top == [
        "errors.py",
        "exports",
        "host",
        "imaging",
        "manifest.py",
        "models",
        "node",
        "params.py",
        "version.py",
    ]
    floors = {"imaging": 0, "node": 1, "exports": 2, "host": 2}  # a neighbourhood imports only those below it
    for path in PACKAGE.rglob("*.py"):
        here = module_name(path).split(".")[0]
        for dep in module_imports(path):
            there = dep.split(".")[0]
            if here in floors and there in floors and there != here:
                assert floors[there] < floors[here], f"{module_name(path)} imports {dep}"


def test_no_module_level_import_cycle():
    files = [p for p in PACKAGE.rglob("*.py") if p.stem != "__init__"]
    graph = {module_name(p): module_imports(p) - {module_name(p)} for p in files}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == "open":
                pytest.fail(f"import cycle: {' -> '.join([*path, module, dep])}")
            if dep not in state:
                visit(dep, [*path, module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert "host.frames" in graph["host.ray_executor"]


@pytest.mark.parametrize("order", [("batch", "ray_executor"), ("ray_executor", "batch")])
def test_executor_modules_import_in_either_order(order):
    code = "; ".join(f"import fhdr_plugin.host.{m}" for m in order)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_fhdr_ops_and_version_leave_torch_unimported():
    code = (
        "import sys\n"
        "from fhdr_plugin.host.cli import main\n"
        "for args in (['ops'], ['--version']):\n"
        "    sys.argv = ['fhdr', *args]\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('torch' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "ldr_to_hdr" in run.stdout and run.stdout.strip().endswith("False")


def options_of(help_text: str) -> set[str]:
    return set(re.findall(r"--([a-z][a-z-]*)", help_text))


def test_every_parameter_reaches_the_cli_ops_and_the_python_api():
    runner = CliRunner()
    flags = {f.replace("_", "-") for f in FIELDS}
    for command in ("convert", "batch"):
        shown = options_of(runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output)
        assert flags <= shown, (command, flags - shown)
        assert {"half", "float", "compression"} <= shown
    ops = runner.invoke(app, ["ops"]).output
    assert re.findall(r"^  (\w+):", ops, re.M) == FIELDS
    api = list(inspect.signature(fhdr_plugin.ldr_to_hdr).parameters)
    assert api == ["buf", *FIELDS]


def test_one_declaration_adds_a_parameter_everywhere():
    @dataclasses.dataclass(frozen=True)
    class WithGrain(LdrToHdrParams):
        grain: float = param(1.0, "how much film grain to add")

    seen = []
    cli = typer.Typer()

    @cli.command()
    @with_params(params=WithGrain, options=WriteOptions)
    def convert(input: str, *, params: WithGrain, options: WriteOptions) -> None:
        seen.append((params, options))

    runner = CliRunner()
    assert "--grain" in runner.invoke(cli, ["--help"], env={"COLUMNS": "200"}).output
    result = runner.invoke(cli, ["in.png", "--grain", "0.5", "--float", "--tile", "0"])
    assert result.exit_code == 0, result.output
    assert seen == [(WithGrain.from_kwargs(grain=0.5, tile=0), WriteOptions(half=False))]
    assert [d.name for d in WithGrain.describe()][-1] == "grain"
    assert WithGrain.from_kwargs(grain=2).grain == 2.0
    bad = runner.invoke(cli, ["in.png", "--tile", "-5"])
    assert bad.exit_code == 1 and "tile must be" in bad.output


def test_the_blend_s_fields_reach_every_host_and_the_loss():
    """A field added to BlendParams shows in the CLI, fhdr ops, the Python API, the drop-in's knobs and the loss:
    every one of these lists the group's fields, and the maths that applies them takes them by name."""
    blend = [f.name for f in BlendParams.fields()]
    assert [f.name for f in LdrToHdrParams.fields() if f.name in blend] == blend
    assert set(blend) <= set(FIELDS)  # hence in convert/batch --help, fhdr ops and ldr_to_hdr's signature
    assert list(inspect.signature(maths.blend).parameters)[3:] == blend
    assert [p for p in inspect.signature(scale.blend).parameters][3:] == ["params", "lift"]
    lossless = BlendParams().for_plate(lossy=False)  # the module gets pixels, not a file
    numbers = {f.name: getattr(lossless, f.name) for f in BlendParams.fields() if type_name(f) in ("float", "int")}
    module = SceneLinearFhdr(FHDR(1), {"fhdr:headroom": "256", "fhdr:encoding": "mu-law"})
    assert {name: getattr(module, name) for name in KNOBS} == numbers
    assert module.mode == "anchored"  # a choice is fixed at export
    assert FHDRLoss().blend == LdrToHdrParams().blend
    assert vars(FHDRLoss(blend=BlendParams(strength=2.0)).blend)["strength"] == 2.0


def test_groups_read_and_write_by_flat_names():
    params = LdrToHdrParams.from_kwargs(strength=2, tile=64, matte=True)
    assert params.blend == BlendParams(strength=2.0) and params.engine == EngineParams(tile=64) and params.matte
    assert params.to_dict() == {**LdrToHdrParams().to_dict(), "strength": 2.0, "tile": 64, "matte": True}
    assert params.replace(tile=0).engine.tile == 0 and params.replace(tile=0).blend.strength == 2.0
    assert [d.name for d in LdrToHdrParams.describe()] == FIELDS
    with pytest.raises(FhdrError, match="blend must be a BlendParams"):
        LdrToHdrParams(blend={"strength": 2.0})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"tile": -5}, "tile must be"),
        ({"tile": 1}, "at least 32 pixels"),
        ({"tile": "64"}, "tile must be of type int"),
        ({"precision": "int4"}, "precision must be one of"),
        ({"blend_low": 1.0}, "blend_low < blend_high"),
    ],
)
def test_parameters_are_checked_when_made(values, message):
    with pytest.raises(FhdrError, match=message):
        LdrToHdrParams.from_kwargs(**values)


def test_a_missing_cuda_device_is_a_clear_error():
    with pytest.raises(FhdrError, match="cuda:7"):
        select_device("cuda:7")


def test_the_architecture_doc_lists_every_module_where_it_is():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    layout = doc.split("```")[1]
    for folder in ("imaging", "node", "exports", "host"):
        (line,) = [ln for ln in layout.splitlines() if ln.strip().startswith(f"{folder}/")]
        listed = {m.strip() for m in line.split(maxsplit=1)[1].split("  ")[0].split(",")}
        on_disk = {p.stem for p in (PACKAGE / folder).glob("*.py") if p.stem != "__init__"}
        assert listed == on_disk, folder
