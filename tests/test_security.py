"""No code runs from data: no pickles, no eval/exec, weights as safetensors only; plugins come only from installed
distributions' entry points; manifest paths stay inside the package, symlinks included.

(Manifest paths with ``..`` are in test_weights_manifest.py; entry-point discovery in test_plugins.py.)
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli
from conftest import ROOT

from fhdr_plugin import manifest as manifest_module
from fhdr_plugin.errors import FhdrError
from fhdr_plugin.host.registry import Registry, plugin_manager, registry
from fhdr_plugin.manifest import manifest, manifest_path, parse_manifest
from fhdr_plugin.node.weights import load_model

#: The code that ships or makes what ships: the package, the training code, the host scripts.
SOURCES = ("fhdr_plugin", "training", "hooks")
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "shelve", "marshal", "cloudpickle"}
#: Ways to import code by name; the package takes plugins only through pluggy's entry-point loader.
DYNAMIC_IMPORTS = {"import_module", "__import__", "run_path", "run_module", "spec_from_file_location"}
MANIFEST = manifest_path()


def python_files() -> Iterator[Path]:
    for folder in SOURCES:
        yield from sorted((ROOT / folder).rglob("*.py"))


def dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain, else ''."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def keyword_is_true(call: ast.Call, name: str) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is True for k in call.keywords)


def findings(path: Path) -> list[str]:
    """Unsafe loading, code evaluation and dynamic imports in one source file."""
    where = path.relative_to(ROOT)
    problems = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [(node.module or "").split(".")[0]]
        else:
            modules = []
        problems += [f"{where}:{node.lineno}: imports {m}" for m in modules if m in UNSAFE_MODULES]
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        if name in ("eval", "exec", "compile"):
            problems.append(f"{where}:{node.lineno}: calls {name}()")
        if name == "torch.load" and not keyword_is_true(node, "weights_only"):
            problems.append(f"{where}:{node.lineno}: torch.load without weights_only=True")
        if name in ("torch.jit.load", "jit.load"):
            problems.append(f"{where}:{node.lineno}: torch.jit.load (pickled code)")
        if name.split(".")[-1] == "load" and keyword_is_true(node, "allow_pickle"):
            problems.append(f"{where}:{node.lineno}: {name}(allow_pickle=True)")
        if name == "yaml.load" and not any(k.arg == "Loader" for k in node.keywords):
            problems.append(f"{where}:{node.lineno}: yaml.load without a safe Loader")
        if path.is_relative_to(ROOT / "fhdr_plugin") and name.split(".")[-1] in DYNAMIC_IMPORTS:
            problems.append(f"{where}:{node.lineno}: imports code by name ({name})")
    return problems


def test_no_code_is_loaded_from_data() -> None:
    files = list(python_files())
    assert len(files) > 20
    assert [p for path in files for p in findings(path)] == []


@pytest.mark.parametrize(
    "source",
    [
        "import pickle",
        "from joblib import load",
        "torch.load(path)",
        "torch.load(path, weights_only=False)",
        "x = eval(text)",
        "exec(code)",
        "np.load(path, allow_pickle=True)",
        "torch.jit.load(path)",
    ],
)
def test_the_scan_catches_each_pattern(tmp_path: Path, source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "m.py").write_text(source + "\n")
    assert len(findings(tmp_path / "m.py")) == 1
    safe = "model.eval()\ntorch.load(p, weights_only=True)\nnp.load(p)\nsafetensors.torch.load(data)\n"
    (tmp_path / "ok.py").write_text(safe)
    assert findings(tmp_path / "ok.py") == []


class Payload:
    """Unpickling this creates ``marker``: what a malicious weights file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickled_weights_file_is_never_unpickled(tmp_path: Path) -> None:
    """Even with a matching sha256 (a manifest edited by an attacker), a pickle is refused, not run."""
    marker = tmp_path / "pwned"
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(pickle.dumps({"state": Payload(marker)}))
    spec = dataclasses.replace(manifest().model(), path=bad, sha256=hashlib.sha256(bad.read_bytes()).hexdigest())
    with pytest.raises(FhdrError, match="not a safetensors file|weights metadata lacks"):
        load_model(spec)
    assert not marker.exists()
    pickle.loads(bad.read_bytes())
    assert marker.exists(), "the payload is live: unpickling it runs code"


def test_plugins_come_only_from_installed_distributions() -> None:
    pm = plugin_manager()
    installed = {id(plugin) for plugin, _ in pm.list_plugin_distinfo()}
    assert {id(plugin) for plugin in pm.get_plugins()} <= installed | {id(pm.get_plugin("fhdr"))}


def test_a_module_on_the_path_without_an_entry_point_is_not_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin-shaped module that is importable (on sys.path, in the working directory) but not installed with an
    ``fhdr.plugins`` entry point is ignored."""
    (tmp_path / "fhdr_rogue.py").write_text(
        "from fhdr_plugin import hookimpl\n"
        "from fhdr_plugin.host.registry import Operation\n"
        "@hookimpl\n"
        "def fhdr_register_operations():\n"
        "    return [Operation('rogue', 'should never load', lambda buf, **p: buf)]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    registry.cache_clear()
    try:
        assert "rogue" not in Registry(plugin_manager()).operations
        assert "fhdr_rogue" not in sys.modules
    finally:
        registry.cache_clear()


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package folder standing in for the installed one, with a file outside it to point at."""
    package = tmp_path / "site" / "fhdr_plugin"
    (package / "models").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "w.safetensors").write_bytes(b"weights from elsewhere")
    monkeypatch.setattr(manifest_module, "PACKAGE_DIR", package.resolve())
    return package


def raw_manifest(model_file: str) -> dict:
    with open(MANIFEST, "rb") as f:
        data = tomli.load(f)
    data["models"]["fhdr-i1"]["file"] = model_file
    return data


def test_a_symlinked_model_file_cannot_escape_the_package(fake_package: Path) -> None:
    (fake_package / "models" / "evil.safetensors").symlink_to(fake_package.parent.parent / "outside" / "w.safetensors")
    with pytest.raises(FhdrError, match="points outside the package"):
        parse_manifest(raw_manifest("models/evil.safetensors"))


def test_a_symlinked_model_folder_cannot_escape_the_package(fake_package: Path) -> None:
    (fake_package / "linked").symlink_to(fake_package.parent.parent / "outside", target_is_directory=True)
    with pytest.raises(FhdrError, match="points outside the package"):
        parse_manifest(raw_manifest("linked/w.safetensors"))


def test_an_absolute_model_path_cannot_escape_the_package(fake_package: Path) -> None:
    with pytest.raises(FhdrError, match="points outside the package"):
        parse_manifest(raw_manifest(str(fake_package.parent.parent / "outside" / "w.safetensors")))


def test_a_model_file_inside_the_package_is_accepted(fake_package: Path) -> None:
    (fake_package / "models" / "ok.safetensors").write_bytes(b"x")
    parsed = parse_manifest(raw_manifest("models/ok.safetensors"))
    assert parsed.models["fhdr-i1"].path == (fake_package / "models" / "ok.safetensors").resolve()
