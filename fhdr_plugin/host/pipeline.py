"""File to file: read an image, run an operation (``ldr_to_hdr`` by default) through the registry, write the EXR
atomically."""

from __future__ import annotations

import os
from pathlib import Path

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.host.registry import DEFAULT_OPERATION, run_operation
from fhdr_plugin.imaging.io import WriteOptions, check_writable, make_folder, read_image, write_exr
from fhdr_plugin.params import Params


def check_paths(input: Path, output: Path) -> None:
    """Refuse an output that is not an EXR or that would overwrite the input."""
    if output.suffix.lower() != ".exr":
        raise FhdrError(f"{output}: the output must be an .exr file")
    if output.exists() and input.exists() and os.path.samefile(input, output):
        raise FhdrError(f"{output}: the output would overwrite the input")


def convert_file(
    input: Path,
    output: Path,
    params: Params | None = None,
    options: WriteOptions = WriteOptions(),
    operation: str = DEFAULT_OPERATION,
) -> None:
    """Convert ``input`` into the EXR ``output`` with ``operation`` and its parameter object ``params`` (the
    defaults when None), creating the output's folder; an existing folder it cannot write in fails first."""
    check_paths(input, output)
    if output.parent.is_dir():
        check_writable(output.parent)
    buf = read_image(input)
    try:
        result = run_operation(operation, buf, params)
    except FhdrError as exc:
        raise FhdrError(f"{input}: {exc}") from exc
    make_folder(output.parent)
    write_exr(result, output, options)
