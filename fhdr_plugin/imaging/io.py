"""Reading any image OIIO reads, writing files atomically, arrays to and from ImageBufs; every OIIO error
becomes an FhdrError."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import OpenImageIO as oiio

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.imaging.channels import layout
from fhdr_plugin.imaging.clib import library_messages
from fhdr_plugin.params import Params, check_choice, param

COMPRESSIONS = ("none", "rle", "zips", "zip", "piz", "pxr24", "b44", "b44a", "dwaa", "dwab", "htj2k")
EXR_MAGIC = b"\x76\x2f\x31\x01"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: In a JPEG's entropy-coded data, the next marker: 0xFF then a byte that is not a stuffed zero, a restart
#: marker (RST0-7) or another fill 0xFF.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
TRUNCATED = "the file is cut short (truncated, or still being written): {}"
#: Every atomic write goes through ``.NAME.HOST.PID.tmp`` beside ``NAME``; ``remove_stale_temps`` knows that name.
TEMP_SUFFIX = ".tmp"
#: File formats whose usual coding is lossy, and compressions (any format's) that are.
LOSSY_FORMATS = ("jpeg", "webp", "heif", "jpeg2000")
LOSSY_COMPRESSIONS = ("jpeg", "dwaa", "dwab", "b44", "b44a")

log = logging.getLogger("fhdr")


def _as_stored() -> oiio.ImageSpec:
    """The read hint that keeps a file's colour as stored: OIIO premultiplies straight (unassociated) alpha,
    as PNG holds, unless told not to, and then says so in the spec's ``oiio:UnassociatedAlpha``."""
    hint = oiio.ImageSpec()
    hint.attribute("oiio:UnassociatedAlpha", 1)
    return hint


def read_image(path: str | os.PathLike) -> oiio.ImageBuf:
    """Read ``path`` fully into memory: its first subimage, or of a multi-part file the first part with colour;
    its colour as stored, not premultiplied by OIIO (the spec's ``oiio:UnassociatedAlpha`` says it is straight)."""
    p = Path(path)
    if not p.exists():
        raise FhdrError(f"{p}: no such file")
    if p.is_dir():
        raise FhdrError(f"{p}: is a directory, not an image")
    with library_messages(str(p)):
        buf = oiio.ImageBuf(str(p), 0, 0, _as_stored())
        opened = not buf.has_error
    if not opened:
        raise FhdrError(f"{p}: cannot read: {_explain(p, _error_text(buf.geterror))}")
    part = _colour_part(p, buf.nsubimages)
    if part:
        buf = oiio.ImageBuf(str(p), part, 0, _as_stored())
    with library_messages(str(p)):
        read = buf.read(part, 0, force=True)
    if not read or buf.has_error:
        message = _error_text(buf.geterror) or _error_text(oiio.geterror)
        check_complete(p, buf.file_format_name)
        raise FhdrError(f"{p}: cannot read: {_explain(p, message)}")
    check_complete(p, buf.file_format_name)
    spec = buf.spec()
    if spec.deep:
        raise FhdrError(f"{p}: deep images are not supported; flatten it first (oiiotool IN --flatten -o OUT)")
    if spec.width < 1 or spec.height < 1 or spec.nchannels < 1:
        raise FhdrError(f"{p}: empty image ({spec.width}x{spec.height}, {spec.nchannels} channels)")
    return buf


def as_stored(buf: oiio.ImageBuf) -> oiio.ImageBuf:
    """``buf`` as ``read_image`` would have read it: the first part with colour of a multi-part file whose first
    part (``ImageBuf(path)``) has none; when ``buf`` is a file whose alpha is straight (a PNG, say) that OIIO
    premultiplied on reading, and its pixels are still the file's, the file read again with its colour as
    stored; else ``buf`` itself. Premultiplied in the file's own bit depth, a faint pixel's colour is rounded,
    and unpremultiplying cannot undo it."""
    buf = _colour_part_of(buf)
    spec = buf.spec()
    if not buf.name or spec.alpha_channel < 0 or spec.get_int_attribute("oiio:UnassociatedAlpha", 0):
        return buf
    if not os.path.isfile(buf.name):
        return buf
    with library_messages(buf.name):
        stored = oiio.ImageBuf(buf.name, buf.subimage, buf.miplevel, _as_stored())
        if stored.has_error or not stored.spec().get_int_attribute("oiio:UnassociatedAlpha", 0):
            return buf  # a file of premultiplied colour (an EXR): OIIO read it as it is
        fresh = oiio.ImageBuf(buf.name, buf.subimage, buf.miplevel)
        if fresh.roi != buf.roi or tuple(fresh.spec().channelnames) != tuple(spec.channelnames):
            return buf
        same = np.array_equal(fresh.get_pixels(oiio.FLOAT), buf.get_pixels(oiio.FLOAT))
        if not same or not stored.read(buf.subimage, buf.miplevel, force=True) or stored.has_error:
            return buf
    return stored


def _colour_part_of(buf: oiio.ImageBuf) -> oiio.ImageBuf:
    """The file read as ``read_image`` reads it when ``buf`` is the colourless first part of a multi-part file."""
    if not buf.name or buf.subimage != 0 or buf.nsubimages < 2 or _has_colour(buf.spec()):
        return buf
    return read_image(buf.name) if os.path.isfile(buf.name) else buf


def stored_lossily(spec: oiio.ImageSpec) -> bool:
    """Whether the image of ``spec`` was read from a lossy file (JPEG, WebP, a JPEG-compressed TIFF, DWA EXR):
    by the ``oiio:SourceFileFormat`` and ``compression`` OIIO records when it reads a file (an image made in memory
    is lossless)."""
    source = spec.get_string_attribute("oiio:SourceFileFormat").lower()
    compression = spec.get_string_attribute("compression").lower().split(":")[0]
    return source in LOSSY_FORMATS or compression in LOSSY_COMPRESSIONS


def incomplete(p: Path, format_name: str) -> str:
    """What is missing from a JPEG or PNG file that ends before its end marker ("" when it is whole): OIIO reads
    such files without an error (libjpeg fills the missing rows with grey and only warns, which OIIO does not pass
    on; libpng never reaches the end chunk), while its other readers (TIFF, DPX, EXR, HDR) fail on a short file
    themselves."""
    check = {"jpeg": _jpeg_end, "png": _png_end}.get(format_name)
    return check(p) if check else ""


def check_complete(p: Path, format_name: str) -> None:
    """Refuse a file cut short (``incomplete``)."""
    missing = incomplete(p, format_name)
    if missing:
        raise FhdrError(f"{p}: cannot read: {TRUNCATED.format(missing)}")


def _jpeg_end(p: Path) -> str:
    """What is missing from the JPEG ``p`` ("" if it is whole): walk its segments to the end-of-image marker
    (EOI), skipping each segment by its length and the entropy-coded data after each start-of-scan to the next
    marker. Bytes after EOI (camera trailers) are allowed."""
    data = p.read_bytes()
    if data[:2] != b"\xff\xd8":
        return ""
    at = 2
    while True:
        while data[at : at + 2] == b"\xff\xff":
            at += 1
        if at + 2 > len(data):
            return "no end-of-image marker (EOI)"
        if data[at] != 0xFF:  # stray bytes before a marker: libjpeg skips them with a warning, and so do we
            at = data.find(b"\xff", at)
            if at < 0:
                return "no end-of-image marker (EOI)"
            continue
        marker = data[at + 1]
        if marker == 0xD9:
            return ""
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            at += 2
            continue
        if at + 4 > len(data):
            return "no end-of-image marker (EOI)"
        end = at + 2 + int.from_bytes(data[at + 2 : at + 4], "big")
        if end > len(data):
            return f"its segment at byte {at} runs past the end of the file"
        at = end
        if marker == 0xDA:
            found = _JPEG_MARKER.search(data, at)
            if not found:
                return "its image data stops before the end-of-image marker (EOI)"
            at = found.start()


def _png_end(p: Path) -> str:
    """What is missing from the PNG ``p`` ("" if it is whole): walk its chunks to the end of the IEND chunk."""
    size = p.stat().st_size
    with open(p, "rb") as f:
        if f.read(8) != PNG_MAGIC:
            return ""
        at = 8
        while True:
            head = f.read(8)
            if len(head) < 8:
                return "no IEND chunk"
            end = at + 12 + int.from_bytes(head[:4], "big")
            if end > size:
                return f"its {head[4:].decode('latin-1')} chunk at byte {at} runs past the end of the file"
            if head[4:] == b"IEND":
                return ""
            at = end
            f.seek(at)


def _check_compression(compression: str) -> None:
    """Refuse an EXR compression name OpenEXR does not know (``name`` or ``name:level``)."""
    check_choice("EXR compression", compression.split(":")[0], COMPRESSIONS)


@dataclass(frozen=True)
class WriteOptions(Params):
    """How an output EXR is written."""

    where = "EXR"

    half: bool = param(True, "Write half (default) or float EXR.", flag="--half/--float")
    compression: str = param("zip", "EXR compression (zip, piz, dwaa, none, …).", check=_check_compression)


def check_folder(folder: Path) -> None:
    """Refuse an output folder that is missing or not a folder."""
    if not folder.is_dir():
        raise FhdrError(f"output folder {folder} {'is not a folder' if folder.exists() else 'does not exist'}")


def check_writable(folder: Path) -> None:
    """Refuse a folder this process cannot create files in (permissions, a read-only mount), found by creating
    and removing a probe file there as the writes will."""
    probe = folder / f".fhdr-probe.{_host()}.{os.getpid()}{TEMP_SUFFIX}"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        os.unlink(probe)
    except OSError as exc:
        raise FhdrError(f"output folder {folder} is not writable: {exc.strerror or exc}") from None


def make_folder(folder: Path) -> None:
    """Create the output folder ``folder`` and its parents where missing (as oiiotool does); an FhdrError
    naming what is in the way otherwise."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next((f for f in (folder, *folder.parents) if f.exists() and not f.is_dir()), folder)
        raise FhdrError(f"output folder {blocking} is not a folder") from None
    except OSError as exc:
        raise FhdrError(f"cannot create output folder {folder}: {exc.strerror or exc}") from None


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None], what: str = "") -> None:
    """Call ``write(tmp)`` on ``.NAME.HOST.PID.tmp`` beside ``path``, then rename it over ``path``; the temporary
    never outlives a failure. Writers of one file on several machines at once (overlapping farm tasks on shared
    storage) each write their own temporary, and the last rename wins, so the file is always whole. ``what``
    names the file in errors (``cannot write the report``)."""
    p = Path(path)
    try:
        check_folder(p.parent)
    except FhdrError as exc:
        raise FhdrError(f"{p}: {exc}") from None
    if p.is_dir():
        raise FhdrError(f"{p}: is a directory")
    remove_stale_temps(p)
    tmp = p.with_name(f".{p.name}.{_host()}.{os.getpid()}{TEMP_SUFFIX}")
    try:
        write(tmp)
        os.replace(tmp, p)
    except OSError as exc:
        raise FhdrError(f"{p}: cannot write{' ' + what if what else ''}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(OSError):  # on a read-only mount even this fails: the error above is the one
            tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` at ``path`` atomically."""
    write_atomic(path, lambda tmp: tmp.write_bytes(data))


def channel_formats(spec: oiio.ImageSpec) -> list[oiio.TypeDesc]:
    """The pixel format of each channel of ``spec``."""
    return list(spec.channelformats) or [spec.format] * spec.nchannels


def precision(fmt: oiio.TypeDesc) -> oiio.TypeDesc:
    """What an EXR channel needs to hold values of ``fmt`` unchanged: float for 32-bit and wider, else half."""
    return oiio.FLOAT if fmt.size() >= 4 else oiio.HALF


def exr_formats(spec: oiio.ImageSpec, half: bool) -> list[oiio.TypeDesc]:
    """Each channel's format in an EXR of ``spec``: with ``half``, the colour channels half and every other
    channel as its spec's channel formats say (``precision``: a float AOV stays float); else all float."""
    if not half:
        return [oiio.FLOAT] * spec.nchannels
    try:
        colour = set(layout(spec).rgb)
    except FhdrError:  # no colour channel to tell: every channel is the result
        colour = set(range(spec.nchannels))
    return [oiio.HALF if i in colour else precision(f) for i, f in enumerate(channel_formats(spec))]


def write_exr(buf: oiio.ImageBuf, path: str | os.PathLike, options: WriteOptions = WriteOptions()) -> None:
    """Write ``buf`` as an EXR at ``path``, atomically, in the formats ``exr_formats`` gives."""
    p = Path(path)

    def write(tmp: Path) -> None:
        buf.set_write_format(exr_formats(buf.spec(), options.half))
        ok = buf.write(str(tmp), fileformat="openexr")
        if not ok or buf.has_error:
            message = _error_text(buf.geterror) or _error_text(oiio.geterror) or "unknown error"
            raise FhdrError(f"{p}: cannot write: {message}")

    buf.specmod().attribute("compression", options.compression)
    write_atomic(p, write)


def to_array(buf: oiio.ImageBuf, where: str = "image") -> np.ndarray:
    """The pixels of ``buf`` as a float32 (H, W, C) array."""
    spec = buf.spec()
    with library_messages(buf.name or where):
        pixels = np.asarray(buf.get_pixels(oiio.FLOAT), dtype=np.float32)
    if buf.has_error:
        raise FhdrError(f"cannot read {buf.name or where}: {_error_text(buf.geterror)}")
    return pixels.reshape(spec.height, spec.width, spec.nchannels)


def from_array(pixels: np.ndarray, spec: oiio.ImageSpec | None = None, where: str = "image") -> oiio.ImageBuf:
    """An ImageBuf of an (H, W, C) array: with ``spec`` (its size and channels must match), else float, with
    alpha last for four channels."""
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if spec is None:
        h, w, c = pixels.shape
        spec = oiio.ImageSpec(w, h, c, oiio.FLOAT)
        if c == 4:
            spec.channelnames = ("R", "G", "B", "A")
            spec.alpha_channel = 3
    buf = oiio.ImageBuf(spec)
    if not buf.set_pixels(buf.roi, np.ascontiguousarray(pixels, dtype=np.float32)) or buf.has_error:
        raise FhdrError(f"{where}: cannot build the image: {buf.geterror()}")
    return buf


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files (``.NAME.HOST.PID.tmp``, or ``.NAME.PID.tmp`` of earlier versions) that writers
    of ``path`` killed on this machine left behind, those whose PID no longer runs; another machine's are left to
    it (its PIDs mean nothing here). Returns the removed paths."""
    p = Path(path)
    removed = []
    for tmp in p.parent.glob(f".{glob.escape(p.name)}.*{TEMP_SUFFIX}"):
        host, _, pid = tmp.name[len(p.name) + 2 : -len(TEMP_SUFFIX)].rpartition(".")
        if host in ("", _host()) and pid.isdigit() and not _running(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def _host() -> str:
    """This machine's name as it appears in temporary file names (letters, digits, ``-``, ``.``, ``_``)."""
    return re.sub(r"[^\w.-]", "_", socket.gethostname()) or "localhost"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def check_buffer(buf: oiio.ImageBuf) -> None:
    """Raise an FhdrError naming the file when ``buf``, made by a caller (``ImageBuf(path)``), cannot be read or
    comes from a file cut short (``check_complete``)."""
    with library_messages(buf.name):
        failed = buf.has_error
    if failed:
        p, message = Path(buf.name), _error_text(buf.geterror)
        reason = "no such file" if buf.name and not p.exists() else _explain(p, message)
        raise FhdrError(f"cannot read {buf.name or 'the image'}: {reason}")
    missing = incomplete(Path(buf.name), buf.file_format_name) if buf.name and os.path.isfile(buf.name) else ""
    if missing:
        raise FhdrError(f"cannot read {buf.name}: {TRUNCATED.format(missing)}")


def _colour_part(p: Path, parts: int) -> int:
    """The first part of a multi-part file with flat R, G, B (or Y) channels (0 if none), logging what is skipped."""
    if parts < 2:
        return 0
    specs = [oiio.ImageBuf(str(p), i, 0).spec() for i in range(parts)]
    chosen = next((i for i, s in enumerate(specs) if not s.deep and _has_colour(s)), 0)
    name = specs[chosen].get_string_attribute("name") or "unnamed"
    log.warning("%s: %d parts; converting only part %d (%s), the first with colour", p, parts, chosen, name)
    return chosen


def _has_colour(spec: oiio.ImageSpec) -> bool:
    names = {n.upper() for n in spec.channelnames}
    return {"R", "G", "B"} <= names or "Y" in names


def _error_text(get: Callable[[], str]) -> str:
    """An OIIO error message on one line; damaged files can put bytes in it that are not UTF-8."""
    try:
        return " ".join(get().split())
    except UnicodeDecodeError:
        return "its header is damaged"


def _explain(p: Path, message: str) -> str:
    """``message`` without repeats of the path, or a plainer one for the cases OIIO words obscurely."""
    message = message.replace(f" ({p})", "")
    if "Subsampled channels" in message:
        return "luminance/chroma EXRs with subsampled chroma (RY, BY) are not supported; convert it to RGB first"
    if "could not find a format reader" in message:
        if _is_exr(p):
            return "the EXR header is damaged or unreadable; re-export the file"
        return "not an image format OpenImageIO reads; convert it to EXR, TIFF or PNG"
    return message or "unknown error"


def _is_exr(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            return f.read(4) == EXR_MAGIC
    except OSError:
        return False
