"""The plugin manifest, ``plugin.toml``, read once with tomli into typed objects."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli

from fhdr_plugin.errors import FhdrError

#: The operation fhdr itself registers, which every manifest describes.
BUILTIN_OPERATION = "ldr_to_hdr"

PACKAGE_DIR = Path(__file__).resolve().parent
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class OperationSpec:
    """An operation the plugin provides; its parameters are declared in code (``params.py``), not here."""

    name: str
    description: str


@dataclass(frozen=True)
class ModelSpec:
    """A shipped model file and its expected sha256."""

    name: str
    path: Path
    sha256: str
    description: str = ""


@dataclass(frozen=True)
class Manifest:
    """Everything ``plugin.toml`` declares."""

    name: str
    version: str
    entry_point_group: str
    default_model: str
    models: dict[str, ModelSpec]
    operations: dict[str, OperationSpec]

    def model(self, name: str | None = None) -> ModelSpec:
        """The model called ``name`` (the default model if None)."""
        key = name or self.default_model
        if key not in self.models:
            raise FhdrError(f"unknown model {key!r}; shipped models: {', '.join(self.models)}")
        return self.models[key]


def manifest_path() -> Path:
    """``plugin.toml`` inside the installed package, else at the root of the source tree."""
    for candidate in (PACKAGE_DIR / "plugin.toml", PACKAGE_DIR.parent / "plugin.toml"):
        if candidate.is_file():
            return candidate
    raise FhdrError(f"plugin.toml not found beside {PACKAGE_DIR}")


def _table(data: dict, key: str, where: str) -> dict:
    value = data.get(key)
    if not isinstance(value, dict):
        raise FhdrError(f"{where}: missing table [{key}]")
    return value


def _text(data: dict, key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise FhdrError(f"{where}: {key} must be a non-empty string")
    return value


def _model_path(file: str, where: str) -> Path:
    path = (PACKAGE_DIR / file).resolve()
    if not path.is_relative_to(PACKAGE_DIR):
        raise FhdrError(f"{where}: model file {file!r} points outside the package")
    return path


def parse_manifest(data: dict[str, Any], where: str = "plugin.toml") -> Manifest:
    """Validate a parsed manifest; an FhdrError names the first problem."""
    plugin = _table(data, "plugin", where)
    models = {}
    for name, m in _table(data, "models", where).items():
        here = f"{where} [models.{name}]"
        if not isinstance(m, dict):
            raise FhdrError(f"{here}: must be a table")
        sha = _text(m, "sha256", here)
        if not _SHA256.fullmatch(sha):
            raise FhdrError(f"{here}: sha256 must be 64 lower-case hex digits")
        models[name] = ModelSpec(name, _model_path(_text(m, "file", here), here), sha, m.get("description", ""))
    operations = {}
    for name, op in _table(data, "operations", where).items():
        here = f"{where} [operations.{name}]"
        if not isinstance(op, dict):
            raise FhdrError(f"{here}: must be a table")
        if "params" in op:
            raise FhdrError(f"{here}: parameters are declared in code (fhdr ops lists them), not in the manifest")
        operations[name] = OperationSpec(name, _text(op, "description", here))
    if BUILTIN_OPERATION not in operations:
        raise FhdrError(f"{where}: no [operations.{BUILTIN_OPERATION}] table (the built-in operation)")
    default_model = _text(plugin, "default_model", where)
    if default_model not in models:
        raise FhdrError(f"{where}: default_model {default_model!r} is not among [models]")
    return Manifest(
        name=_text(plugin, "name", where),
        version=_text(plugin, "version", where),
        entry_point_group=_text(plugin, "entry_point_group", where),
        default_model=default_model,
        models=models,
        operations=operations,
    )


def read_manifest(path: Path) -> Manifest:
    """Read and validate the manifest at ``path``."""
    try:
        with open(path, "rb") as f:
            data = tomli.load(f)
    except (OSError, tomli.TOMLDecodeError) as exc:
        raise FhdrError(f"{path}: cannot read the plugin manifest: {exc}") from exc
    return parse_manifest(data, str(path))


@functools.lru_cache(maxsize=1)
def manifest() -> Manifest:
    """The package's manifest, read once."""
    return read_manifest(manifest_path())
