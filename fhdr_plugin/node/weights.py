"""Model weights as safetensors files with metadata, checked against their sha256 before use."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import safetensors
import safetensors.torch

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.imaging.io import write_bytes_atomic
from fhdr_plugin.manifest import ModelSpec, manifest
from fhdr_plugin.node.encoding import decoding
from fhdr_plugin.node.lift import PREFIX
from fhdr_plugin.node.model import ARCHITECTURES, FHDR, build

REQUIRED_METADATA = ("fhdr:iterations", "fhdr:headroom", "fhdr:hdr_normalisation", "fhdr:perceptual_loss")


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def read_checked(spec: ModelSpec) -> bytes:
    """The bytes of a model file, after checking that they match the manifest's sha256."""
    try:
        data = spec.path.read_bytes()
    except OSError as exc:
        raise FhdrError(f"model {spec.name}: cannot read {spec.path}: {exc.strerror}") from exc
    digest = sha256_bytes(data)
    if digest != spec.sha256:
        raise FhdrError(
            f"model {spec.name}: {spec.path} has sha256 {digest[:12]}…, the manifest expects {spec.sha256[:12]}…; "
            "the file is corrupt or was replaced — reinstall fhdr"
        )
    return data


def metadata_of(data: bytes, where: str) -> dict[str, str]:
    """The metadata header of a safetensors file, without loading its tensors."""
    try:
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + size])
        meta = header.get("__metadata__", {}) if isinstance(header, dict) else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise FhdrError(f"{where}: not a safetensors file ({exc})") from exc
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise FhdrError(f"{where}: weights metadata must map names to strings")
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise FhdrError(f"{where}: weights metadata lacks {', '.join(missing)}")
    _check_values(meta, where)
    return meta


def _check_values(meta: dict[str, str], where: str) -> None:
    """Refuse metadata the node cannot run by: iterations 1-4, a known encoding, a positive headroom and μ."""
    if meta["fhdr:iterations"] not in ("1", "2", "3", "4"):
        raise FhdrError(f"{where}: fhdr:iterations must be 1-4, got {meta['fhdr:iterations']!r}")
    try:
        headroom, mu = decoding(meta)
    except ValueError as exc:
        raise FhdrError(f"{where}: {exc}") from None
    if not (math.isfinite(headroom) and headroom > 0 and math.isfinite(mu) and mu >= 0):
        raise FhdrError(f"{where}: fhdr:headroom and fhdr:mu must be positive numbers")


def model_metadata(spec: ModelSpec) -> dict[str, str]:
    """The checked metadata of a shipped model."""
    return {**metadata_of(read_checked(spec), str(spec.path)), "fhdr:model": spec.name}


def load_model(spec: ModelSpec, iterations: int | None = None) -> tuple[FHDR, dict[str, str]]:
    """The network of a shipped weights file (of its ``fhdr:architecture``, FHDR when absent, with its lift head
    when the file has one) and its metadata;
    ``iterations``, when given, must be the count the weights were trained with (FHDR's iterations share weights,
    but other counts switch the expansion off)."""
    data = read_checked(spec)
    meta = metadata_of(data, str(spec.path))
    trained = int(meta["fhdr:iterations"])
    if iterations and iterations != trained:
        raise FhdrError(_untrained(spec, trained, iterations))
    architecture = meta.get("fhdr:architecture", FHDR.architecture)
    if architecture not in ARCHITECTURES:
        raise FhdrError(
            f"{spec.path}: unknown architecture {architecture!r}; this fhdr knows {', '.join(ARCHITECTURES)}"
        )
    model = build(architecture, trained)
    try:
        state = safetensors.torch.load(data)
        if any(key.startswith(PREFIX) for key in state):
            model.add_lift()
        model.load_state_dict(state)
    except (safetensors.SafetensorError, RuntimeError) as exc:
        raise FhdrError(f"{spec.path}: weights do not fit the FHDR network: {str(exc).splitlines()[0]}") from exc
    return model.eval(), {**meta, "fhdr:model": spec.name}


def _untrained(spec: ModelSpec, trained: int, iterations: int) -> str:
    """Why ``iterations`` is refused for ``spec``, and which shipped model has weights for it, if any."""
    others = [
        name
        for name, other in manifest().models.items()
        if other != spec and int(model_metadata(other)["fhdr:iterations"]) == iterations
    ]
    fix = f"use --model {others[0]}" if others else f"no shipped model is trained with {iterations}"
    return (
        f"{spec.name} was trained with {trained} iteration{'' if trained == 1 else 's'}; its weights do not expand "
        f"at {iterations} ({fix}); leave iterations at 0 for the model's own"
    )


def save_weights(model: FHDR, path: Path, metadata: dict[str, str]) -> str:
    """Write ``model``'s weights with ``metadata`` atomically; returns the file's sha256."""
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        raise ValueError(f"metadata lacks {', '.join(missing)}")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    data = safetensors.torch.save(state, metadata={"fhdr:architecture": model.architecture, **metadata})
    write_bytes_atomic(path, data)
    return sha256_bytes(data)
