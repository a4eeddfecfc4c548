"""File to file: read an image, run ``ldr_to_hdr`` through the registry, write the EXR atomically."""

from __future__ import annotations

import os
from pathlib import Path

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.io import WriteOptions, make_folder, read_image, write_exr
from fhdr_plugin.params import LdrToHdrParams
from fhdr_plugin.registry import run_operation


def check_paths(input: Path, output: Path) -> None:
    """Refuse an output that is not an EXR or that would overwrite the input."""
    if output.suffix.lower() != ".exr":
        raise FhdrError(f"{output}: the output must be an .exr file")
    if output.exists() and input.exists() and os.path.samefile(input, output):
        raise FhdrError(f"{output}: the output would overwrite the input")


def convert_file(
    input: Path, output: Path, params: LdrToHdrParams | None = None, options: WriteOptions = WriteOptions()
) -> None:
    """Convert ``input`` into the scene-linear EXR ``output`` (``params``: the defaults when None), creating
    the output's folder."""
    check_paths(input, output)
    buf = read_image(input)
    try:
        result = run_operation("ldr_to_hdr", buf, **(params or LdrToHdrParams()).to_dict())
    except FhdrError as exc:
        raise FhdrError(f"{input}: {exc}") from exc
    make_folder(output.parent)
    write_exr(result, output, options)
