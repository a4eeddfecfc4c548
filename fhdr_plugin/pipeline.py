"""File to file: read an image, run ``ldr_to_hdr`` through the registry, write the EXR atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.io import read_image, write_exr
from fhdr_plugin.registry import run_operation


def check_paths(input: Path, output: Path) -> None:
    """Refuse an output that is not an EXR or that would overwrite the input."""
    if output.suffix.lower() != ".exr":
        raise FhdrError(f"{output}: the output must be an .exr file")
    if output.exists() and input.exists() and os.path.samefile(input, output):
        raise FhdrError(f"{output}: the output would overwrite the input")


def convert_file(
    input: Path, output: Path, params: dict[str, Any], *, half: bool = True, compression: str = "zip"
) -> None:
    """Convert ``input`` into the scene-linear EXR ``output``."""
    check_paths(input, output)
    buf = read_image(input)
    try:
        result = run_operation("ldr_to_hdr", buf, **params)
    except FhdrError as exc:
        raise FhdrError(f"{input}: {exc}") from exc
    write_exr(result, output, half=half, compression=compression)
