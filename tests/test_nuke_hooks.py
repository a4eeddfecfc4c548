"""The Nuke hooks: the Nuke-free module on a real LDR sequence, and the Nuke scripts checked without Nuke."""

from __future__ import annotations

import ast
import importlib
import os
import re
import runpy
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helpers
import numpy as np
import OpenImageIO as oiio
import pytest
from conftest import ROOT

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.host.frames import Job

NUKE_HOOKS = ROOT / "hooks" / "nuke"
NUKE_DEFAULT_MENU = ["default (linear)", "linear", "sRGB", "rec709", "Cineon"]


@pytest.fixture(scope="module")
def fhdr_nuke() -> Iterator[types.ModuleType]:
    """``hooks/nuke/fhdr_nuke.py``, imported the way Nuke imports it: its folder on ``sys.path``."""
    sys.path.insert(0, str(NUKE_HOOKS))
    try:
        yield importlib.import_module("fhdr_nuke")
    finally:
        sys.path.remove(str(NUKE_HOOKS))


@pytest.fixture
def plate(tmp_path: Path) -> Path:
    """Frames 1001-1003 of the 64x48 8-bit sRGB plate, as ``plate.####.png``."""
    helpers.plate(tmp_path, (1001, 1002, 1003))
    return tmp_path / "plate.####.png"


def test_patterns_in_nuke_notation(fhdr_nuke):
    assert fhdr_nuke.to_fhdr_pattern("/s/plate.####.png") == "/s/plate.%04d.png"
    assert fhdr_nuke.to_fhdr_pattern("/s/plate.#.png") == "/s/plate.%01d.png"
    assert fhdr_nuke.to_fhdr_pattern("/s/plate.%04d.png") == "/s/plate.%04d.png"
    assert fhdr_nuke.output_for("/s/plate.####.png") == "/s/fhdr/plate_hdr.####.exr"
    assert fhdr_nuke.output_for("/s/plate.%04d.png") == "/s/fhdr/plate_hdr.%04d.exr"
    assert fhdr_nuke.output_for("C:/s/plate_v2_%d_left.jpg") == "C:/s/fhdr/plate_v2_hdr_%d_left.exr"
    assert fhdr_nuke.output_for("/s/still.png") == "/s/fhdr/still_hdr.exr"
    job = fhdr_nuke.ReadJob.of("/s/plate.####.png", 1001, 1003)
    assert (job.input, job.output, job.nuke_output) == (
        "/s/plate.%04d.png",
        "/s/fhdr/plate_hdr.%04d.exr",
        "/s/fhdr/plate_hdr.####.exr",
    )
    assert job.frames == (1001, 1002, 1003) and not job.still
    assert job.input_path(1002) == Path("/s/plate.1002.png")
    assert job.jobs()[1] == Job(1002, Path("/s/plate.1002.png"), Path("/s/fhdr/plate_hdr.1002.exr"))
    still = fhdr_nuke.ReadJob.of("/s/still.png", 1, 1)
    assert still.still and still.jobs() == [Job(1, Path("/s/still.png"), Path("/s/fhdr/still_hdr.exr"))]


@pytest.mark.parametrize(
    ("file", "first", "last", "message"),
    [
        ("", 1, 1, "no file"),
        ("/s/plate.%V.####.png", 1, 2, "stereo views"),
        ("/s/####/plate.####.png", 1, 2, "not in a folder"),
        ("/s/plate.####.%04d.png", 1, 2, "more than one"),
        ("/s/plate.####.png", 5, 1, "after the last"),
    ],
)
def test_plan_refuses_what_it_cannot_do(fhdr_nuke, file, first, last, message):
    with pytest.raises(FhdrError, match=message):
        fhdr_nuke.ReadJob.of(file, first, last)


def test_read_node_sequence_becomes_an_exr_sequence(fhdr_nuke, plate):
    job = fhdr_nuke.ReadJob.of(str(plate), 1001, 1003)
    steps = []
    results = fhdr_nuke.convert(
        job, {"tile": 64}, on_progress=lambda result, done, total: steps.append((result.frame, done, total))
    )
    assert [r.status for r in results] == ["done"] * 3
    assert steps == [(1001, 1, 3), (1002, 2, 3), (1003, 3, 3)]
    for frame in job.frames:
        out = plate.parent / "fhdr" / f"plate_hdr.{frame}.exr"
        buf = oiio.ImageBuf(str(out))
        assert buf.spec().get_string_attribute("fhdr:output_colorspace") == "Linear Rec.709 (sRGB)"
        assert np.asarray(buf.get_pixels(oiio.FLOAT)).max() > 1.0
    knobs = fhdr_nuke.read_knobs(job, results)
    assert knobs == {
        "file": str(plate.parent / "fhdr" / "plate_hdr.####.exr"),
        "first": 1001,
        "last": 1003,
        "origfirst": 1001,
        "origlast": 1003,
    }
    assert fhdr_nuke.message(job, results) == ""


def test_missing_frames_fail_and_cancel_stops_after_the_frame_in_progress(fhdr_nuke, plate):
    job = fhdr_nuke.ReadJob.of(str(plate).replace("####", "%04d"), 1000, 1004)
    seen = []
    results = fhdr_nuke.convert(
        job,
        {"tile": 64},
        on_progress=lambda result, done, total: seen.append(result.status),
        cancelled=lambda: "done" in seen,
    )
    assert [r.status for r in results] == ["failed", "done", "cancelled", "cancelled", "cancelled"]
    assert "plate.1000.png" in results[0].error and "no such file" in results[0].error
    assert sorted(p.name for p in (plate.parent / "fhdr").iterdir()) == ["plate_hdr.1001.exr"]
    assert fhdr_nuke.read_knobs(job, results)["last"] == 1001
    message = fhdr_nuke.message(job, results)
    assert message.startswith(f"{job.nuke_output}: failed frames: 1000; frame 1000 failed: ")
    assert message.endswith("; cancelled: frames 1002-1004")
    gone = fhdr_nuke.ReadJob.of(str(plate.parent / "gone.####.png"), 1, 5)
    message = fhdr_nuke.message(gone, fhdr_nuke.convert(gone))
    assert "failed frames: 1-5; frame 1 failed: " in message and "frame 3 failed: " in message
    assert "frame 4 failed" not in message and message.endswith("; 2 more errors on stderr")
    with pytest.raises(FhdrError, match="unknown parameter"):
        fhdr_nuke.convert(job, {"gain": 2})


def test_colorspace_names_for_the_new_read(fhdr_nuke):
    names = fhdr_nuke.read_colorspaces()
    assert names[:2] == ["lin_rec709", "Linear Rec.709 (sRGB)"]
    assert {"Utility - Linear - sRGB", "linear"} <= set(names)
    acescg = fhdr_nuke.read_colorspaces("ACEScg")
    assert "ACES - ACEScg" in acescg and "linear" not in acescg
    assert fhdr_nuke.pick_colorspaces(names, NUKE_DEFAULT_MENU) == ["linear"]
    aces_menu = ["Utility/Utility - Linear - sRGB", "ACES/ACES - ACEScg", "Roles/scene_linear"]
    assert fhdr_nuke.pick_colorspaces(names, aces_menu) == ["Utility - Linear - sRGB"]
    assert fhdr_nuke.pick_colorspaces(acescg, NUKE_DEFAULT_MENU) == []
    assert fhdr_nuke.pick_colorspaces(names, []) == names


def _nuke_imports(tree: ast.AST) -> list[ast.AST]:
    return [
        node
        for node in ast.walk(tree)
        if (isinstance(node, ast.Import) and any(a.name.split(".")[0] == "nuke" for a in node.names))
        or (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "nuke")
    ]


def test_only_menu_py_imports_nuke_and_at_its_top():
    trees = {name: ast.parse((NUKE_HOOKS / name).read_text(), name) for name in ("init.py", "menu.py", "fhdr_nuke.py")}
    assert _nuke_imports(trees["init.py"]) == [] and _nuke_imports(trees["fhdr_nuke.py"]) == []
    imports = _nuke_imports(trees["menu.py"])
    assert imports and all(node in trees["menu.py"].body for node in imports)
    for name in trees:
        compile((NUKE_HOOKS / name).read_text(), name, "exec")


def test_init_py_adds_fhdr_pythonpath(tmp_path):
    site_dir, extra = tmp_path / "site-packages", tmp_path / "editable-src"
    site_dir.mkdir()
    extra.mkdir()
    (site_dir / "fhdr-editable.pth").write_text(f"{extra}\n")
    code = f"import runpy, sys; runpy.run_path({str(NUKE_HOOKS / 'init.py')!r}); print('\\n'.join(sys.path))"
    env = {**os.environ, "FHDR_PYTHONPATH": f"{site_dir}{os.pathsep}"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    assert {str(site_dir), str(extra)} <= set(run.stdout.splitlines())


class Knob:
    """A stand-in knob: a value, and for an enumeration the menu items it accepts."""

    def __init__(self, value: Any = "", menu: list[str] | None = None) -> None:
        self._value, self.menu = value, menu or []

    def value(self) -> Any:
        return self._value

    def values(self) -> list[str]:
        return self.menu

    def setValue(self, value: Any) -> None:
        if self.menu and value not in self.menu:
            raise ValueError(f"Invalid value {value!r}")
        self._value = value


class Node:
    """A stand-in node with the calls menu.py makes."""

    def __init__(self, cls: str, name: str, **knobs: Any) -> None:
        self.cls, self._name, self.pos = cls, name, (0, 0)
        self.knobs = {k: Knob(v) for k, v in knobs.items()}

    def Class(self) -> str:
        return self.cls

    def name(self) -> str:
        return self._name

    def __getitem__(self, knob: str) -> Knob:
        return self.knobs[knob]

    def knob(self, name: str) -> Knob | None:
        return self.knobs.get(name)

    def xpos(self) -> int:
        return self.pos[0]

    def ypos(self) -> int:
        return self.pos[1]

    def screenWidth(self) -> int:
        return 80

    def setXYpos(self, x: int, y: int) -> None:
        self.pos = (x, y)


def stand_in_nuke(
    selected: list[Node], answers: dict[str, str] | None = None, ok: bool = True, cancel_after: int = 0
) -> tuple[types.ModuleType, dict[str, list]]:
    """A ``nuke`` module with the calls menu.py makes, recording them. It checks our use of the API, not Nuke.
    Its panel is answered with ``answers`` (by label; the rest as filled) and OK, or cancelled; its progress task
    is cancelled once it has shown ``cancel_after`` steps (never with 0)."""
    log: dict[str, list] = {"menus": [], "messages": [], "progress": [], "created": [], "panels": []}
    nuke = types.ModuleType("nuke")

    class Panel:
        def __init__(self, title: str) -> None:
            self.title, self.fields = title, {}
            log["panels"].append(self.fields)

        def addSingleLineInput(self, label: str, value: str) -> None:
            self.fields[label] = value

        def show(self) -> int:
            return int(ok)

        def value(self, label: str) -> str:
            return (answers or {}).get(label, self.fields[label])

    class Menu:
        def __init__(self, path: str) -> None:
            self.path = path

        def addMenu(self, name: str) -> Menu:
            return Menu(f"{self.path}/{name}")

        def addCommand(self, name: str, command: Any) -> None:
            log["menus"].append((f"{self.path}/{name}", command))

    class ProgressTask:
        def __init__(self, title: str) -> None:
            self.title = title

        def setMessage(self, text: str) -> None:
            pass

        def setProgress(self, percent: int) -> None:
            log["progress"].append(percent)

        def isCancelled(self) -> bool:
            return 0 < cancel_after <= len(log["progress"])

    def new_read(**knobs: Any) -> Node:
        node = Node("Read", f"Read{len(log['created']) + 2}", **knobs)
        node.knobs["colorspace"] = Knob("default (linear)", NUKE_DEFAULT_MENU)
        log["created"].append(node)
        return node

    nuke.menu = Menu
    nuke.Panel = Panel
    nuke.selectedNodes = lambda cls="": [n for n in selected if not cls or n.Class() == cls]
    nuke.filename = lambda node: node["file"].value()
    nuke.message = log["messages"].append
    nuke.ProgressTask = ProgressTask
    nuke.executeInMainThread = lambda call, args=(): call(*args)
    nuke.nodes = types.SimpleNamespace(Read=new_read)
    return nuke, log


def run_menu(
    monkeypatch,
    fhdr_nuke,
    selected: list[Node],
    answers: dict[str, str] | None = None,
    ok: bool = True,
    cancel_after: int = 0,
) -> tuple[dict[str, Any], dict[str, list]]:
    nuke, log = stand_in_nuke(selected, answers, ok, cancel_after)
    monkeypatch.setitem(sys.modules, "nuke", nuke)
    if selected:  # the panel remembers its settings beside the plate
        monkeypatch.setenv("FHDR_NUKE_SETTINGS", str(Path(selected[0]["file"].value()).parent / "panel.json"))
    return runpy.run_path(str(NUKE_HOOKS / "menu.py")), log


def test_menu_command_converts_the_selected_read(monkeypatch, fhdr_nuke, plate):
    source = Node("Read", "Read1", file=str(plate), first=1001, last=1002)
    menu, log = run_menu(monkeypatch, fhdr_nuke, [source, Node("Blur", "Blur1")])
    command = menu["ldr_to_hdr_selected"]
    assert log["menus"] == [("Nodes/fhdr/LDR to HDR", command), ("Nuke/fhdr/LDR to HDR", command)]
    command().join(timeout=300)
    assert log["messages"] == [] and log["progress"] == [50, 100]
    [read] = log["created"]
    assert read["file"].value() == str(plate.parent / "fhdr" / "plate_hdr.####.exr")
    assert (read["first"].value(), read["last"].value()) == (1001, 1002)
    assert read["colorspace"].value() == "linear"
    assert read.pos == (120, 0)
    assert sorted(p.name for p in (plate.parent / "fhdr").iterdir()) == ["plate_hdr.1001.exr", "plate_hdr.1002.exr"]


def test_menu_command_explains_a_missing_selection_or_input(monkeypatch, fhdr_nuke, tmp_path):
    menu, log = run_menu(monkeypatch, fhdr_nuke, [])
    assert menu["ldr_to_hdr_selected"]() is None
    assert log["messages"] == ["LDR to HDR: select a Read node of an LDR plate first."]
    gone = Node("Read", "Read1", file=str(tmp_path / "gone.%04d.png"), first=1, last=2)
    menu, log = run_menu(monkeypatch, fhdr_nuke, [gone])
    menu["ldr_to_hdr_selected"]().join(timeout=60)
    [message] = log["messages"]
    assert "failed frames: 1-2" in message and "gone.0001.png" in message and "no such file" in message
    assert log["created"] == []


def test_menu_cancel_stops_after_the_frame_in_progress(monkeypatch, fhdr_nuke, plate, tmp_path):
    helpers.plate(tmp_path / "b", (1001,))
    first = Node("Read", "Read1", file=str(plate), first=1001, last=1003)
    second = Node("Read", "Read9", file=str(tmp_path / "b" / "plate.####.png"), first=1001, last=1001)
    menu, log = run_menu(monkeypatch, fhdr_nuke, [first, second], cancel_after=1)
    menu["ldr_to_hdr_selected"]().join(timeout=300)
    assert log["progress"] == [33]
    assert sorted(p.name for p in (plate.parent / "fhdr").iterdir()) == ["plate_hdr.1001.exr"]
    assert not (tmp_path / "b" / "fhdr").exists()
    [read] = log["created"]
    assert (read["first"].value(), read["last"].value()) == (1001, 1001)
    [message] = log["messages"]
    assert message == f"LDR to HDR: {plate.parent / 'fhdr' / 'plate_hdr.####.exr'}: cancelled: frames 1002-1003"


def test_fhdr_hooks_prints_the_nuke_setup():
    run = subprocess.run([sys.executable, "-m", "fhdr_plugin", "hooks"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert f"export NUKE_PATH={NUKE_HOOKS}{os.pathsep}" in run.stdout
    assert "nuke/menu.py" in run.stdout and "nuke/init.py" in run.stdout
    site_dir = Path(re.search(r"export FHDR_PYTHONPATH=(\S+)", run.stdout)[1])
    assert any(site_dir.glob("fhdr-*.dist-info"))


def test_output_folder_or_pattern(fhdr_nuke):
    assert fhdr_nuke.output_for("/s/plate.####.png", "hdr/v2") == "/s/hdr/v2/plate_hdr.####.exr"
    assert fhdr_nuke.output_for("/s/plate.####.png", "/show/hdr/") == "/show/hdr/plate_hdr.####.exr"
    assert fhdr_nuke.output_for("/s/plate.%04d.png", "/o/sh010_hdr.####.exr") == "/o/sh010_hdr.####.exr"
    assert fhdr_nuke.output_for("/s/still.png", "/o/key.exr") == "/o/key.exr"
    with pytest.raises(FhdrError, match="needs a frame number"):
        fhdr_nuke.output_for("/s/plate.####.png", "/o/one.exr")
    job = fhdr_nuke.ReadJob.of("/s/plate.####.png", 1, 2, "/o/sh_hdr.%04d.exr")
    assert (job.output, job.nuke_output) == ("/o/sh_hdr.%04d.exr", "/o/sh_hdr.%04d.exr")


def test_panel_settings_are_checked_and_remembered(fhdr_nuke, tmp_path):
    path = tmp_path / "prefs" / "panel.json"
    assert fhdr_nuke.load_settings(path) == fhdr_nuke.Settings()
    chosen = fhdr_nuke.settings_from({"output": " /o/hdr ", "output_colorspace": "ACEScg", "strength": "0.5"})
    assert chosen == fhdr_nuke.Settings("/o/hdr", "ACEScg", 0.5)
    blank = fhdr_nuke.settings_from({"output": " ", "output_colorspace": " ", "strength": "1"})
    assert blank == fhdr_nuke.Settings()
    fhdr_nuke.save_settings(chosen, path)
    assert fhdr_nuke.load_settings(path) == chosen
    steadied = fhdr_nuke.settings_from({"output": "", "output_colorspace": "", "strength": "1", "steady": " 2 "})
    assert steadied == fhdr_nuke.Settings(steady=2)
    path.write_text('{"output": "x", "output_colorspace": "ACEScg", "strength": 1}')
    assert fhdr_nuke.load_settings(path) == fhdr_nuke.Settings("x", "ACEScg", 1.0, 0)
    for field, value, message in [
        ("strength", "lots", "strength must be a number"),
        ("strength", "9", "strength must be 0-4"),
        ("output_colorspace", "bogus", "unknown colour space 'bogus'"),
        ("steady", "two", "steady must be a whole number of frames"),
        ("steady", "9", "frames either side must be 0 \\(off\\) to 8"),
    ]:
        with pytest.raises(FhdrError, match=message):
            fhdr_nuke.settings_from({"output": "", "output_colorspace": "ACEScg", "strength": "1", field: value})
    path.write_text('{"output": "x", "output_colorspace": "gone", "strength": 1}')
    assert fhdr_nuke.load_settings(path) == fhdr_nuke.Settings()
    path.write_text("{not json")
    assert fhdr_nuke.load_settings(path) == fhdr_nuke.Settings()


def test_read_colorspace_knob_names_the_input_space(fhdr_nuke):
    from fhdr_plugin.imaging import color

    assert fhdr_nuke.input_colorspace("linear") == color.resolve("lin_rec709")
    assert fhdr_nuke.input_colorspace("sRGB") == color.resolve("srgb_tx")
    assert fhdr_nuke.input_colorspace("Utility/Utility - sRGB - Texture") == color.resolve("srgb_tx")
    assert fhdr_nuke.input_colorspace("ACES/ACES - ACEScg") == "ACEScg"
    for unknown in ("default (sRGB)", "default", "Cineon", "rec709", ""):
        assert fhdr_nuke.input_colorspace(unknown) == "", unknown


def exr_attribute(path: Path, name: str) -> str:
    return oiio.ImageBuf(str(path)).spec().get_string_attribute(name)


#: The panel's field for ``--steady``.
STEADY = "steady: frames either side (0: off)"


def test_menu_panel_sets_output_space_strength_and_reads_the_input_space(monkeypatch, fhdr_nuke, plate, tmp_path):
    source = Node("Read", "Read1", file=str(plate), first=1001, last=1001, colorspace="linear")
    answers = {"output folder or pattern": str(tmp_path / "renders" / "sh_hdr.####.exr"), "strength": "0.5"}
    answers["output colorspace"] = "ACEScg"
    answers[STEADY] = "1"
    menu, log = run_menu(monkeypatch, fhdr_nuke, [source], answers)
    menu["ldr_to_hdr_selected"]().join(timeout=300)
    defaults = {"output folder or pattern": "fhdr", "output colorspace": "lin_rec709", "strength": "1.0", STEADY: "0"}
    assert log["panels"] == [defaults]
    out = tmp_path / "renders" / "sh_hdr.1001.exr"
    assert exr_attribute(out, "fhdr:input_colorspace") == "Linear Rec.709 (sRGB)"
    assert exr_attribute(out, "fhdr:output_colorspace") == "ACEScg"
    assert exr_attribute(out, "fhdr:strength") == "0.5"
    assert exr_attribute(out, "fhdr:steady") == "1 frame either side, 1 found"
    [read] = log["created"]
    assert read["file"].value() == str(tmp_path / "renders" / "sh_hdr.####.exr")
    [message] = log["messages"]
    assert message.startswith("LDR to HDR: Read2: set its colorspace by hand to scene-linear")
    source.knobs["colorspace"] = Knob("default (sRGB)")
    menu, log = run_menu(monkeypatch, fhdr_nuke, [source])
    menu["ldr_to_hdr_selected"]().join(timeout=300)
    assert log["panels"] == [
        {f: answers[f] for f in ("output folder or pattern", "output colorspace", "strength", STEADY)}
    ]
    assert exr_attribute(out, "fhdr:input_colorspace") == "sRGB Encoded Rec.709 (sRGB)"
    menu, log = run_menu(monkeypatch, fhdr_nuke, [source], ok=False)
    assert menu["ldr_to_hdr_selected"]() is None and log["created"] == []


def test_menu_reports_bad_frames_at_the_end(monkeypatch, fhdr_nuke, plate):
    (plate.parent / "plate.1002.png").write_bytes(b"not a png")
    source = Node("Read", "Read1", file=str(plate), first=1001, last=1003)
    menu, log = run_menu(monkeypatch, fhdr_nuke, [source])
    menu["ldr_to_hdr_selected"]().join(timeout=300)
    [message] = log["messages"]
    assert "failed frames: 1002" in message and "frame 1002 failed: " in message and "plate.1002.png" in message
    assert sorted(p.name for p in (plate.parent / "fhdr").iterdir()) == ["plate_hdr.1001.exr", "plate_hdr.1003.exr"]
    assert len(log["created"]) == 1
    for frame in (1001, 1003):
        (plate.parent / f"plate.{frame}.png").write_bytes(b"not a png either")
    menu, log = run_menu(monkeypatch, fhdr_nuke, [source])
    menu["ldr_to_hdr_selected"]().join(timeout=300)
    [message] = log["messages"]
    assert "failed frames: 1001-1003" in message and log["created"] == []
