"""Reading any image OIIO reads, and writing EXR atomically; every OIIO error becomes an FhdrError."""

from __future__ import annotations

import os
from pathlib import Path

import OpenImageIO as oiio

from fhdr_plugin.errors import FhdrError

COMPRESSIONS = ("none", "rle", "zips", "zip", "piz", "pxr24", "b44", "b44a", "dwaa", "dwab", "htj2k")


def read_image(path: str | os.PathLike) -> oiio.ImageBuf:
    """Read the first subimage of ``path`` fully into memory."""
    p = Path(path)
    if not p.exists():
        raise FhdrError(f"{p}: no such file")
    if p.is_dir():
        raise FhdrError(f"{p}: is a directory, not an image")
    buf = oiio.ImageBuf(str(p))
    if buf.has_error:
        raise FhdrError(f"{p}: cannot read: {_one_line(buf.geterror())}")
    if not buf.read(0, 0, force=True) or buf.has_error:
        raise FhdrError(f"{p}: cannot read: {_one_line(buf.geterror() or oiio.geterror())}")
    spec = buf.spec()
    if spec.deep:
        raise FhdrError(f"{p}: deep images are not supported")
    if spec.width < 1 or spec.height < 1 or spec.nchannels < 1:
        raise FhdrError(f"{p}: empty image ({spec.width}x{spec.height}, {spec.nchannels} channels)")
    return buf


def write_exr(buf: oiio.ImageBuf, path: str | os.PathLike, *, half: bool = True, compression: str = "zip") -> None:
    """Write ``buf`` as an EXR at ``path``: to a temporary file in the same folder, then renamed over ``path``."""
    p = Path(path)
    if compression.split(":")[0] not in COMPRESSIONS:
        raise FhdrError(f"unknown EXR compression {compression!r}; choose from {', '.join(COMPRESSIONS)}")
    if not p.parent.is_dir():
        raise FhdrError(f"{p}: output folder {p.parent} does not exist")
    if p.is_dir():
        raise FhdrError(f"{p}: is a directory")
    buf.specmod().attribute("compression", compression)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp.exr")
    try:
        ok = buf.write(str(tmp), oiio.HALF if half else oiio.FLOAT, fileformat="openexr")
        if not ok or buf.has_error:
            raise FhdrError(f"{p}: cannot write: {_one_line(buf.geterror() or oiio.geterror())}")
        os.replace(tmp, p)
    except OSError as exc:
        raise FhdrError(f"{p}: cannot write: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _one_line(message: str) -> str:
    return " ".join(message.split()) or "unknown error"
