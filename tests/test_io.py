"""Reading and atomic writing through OIIO, with clear errors."""

import subprocess
import sys

import numpy as np
import OpenImageIO as oiio
import pytest
from conftest import shared, write_image
from typer.testing import CliRunner

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.host.cli import app
from fhdr_plugin.imaging.io import WriteOptions, check_buffer, read_image, write_exr


def small_buf(value=0.5) -> oiio.ImageBuf:
    buf = oiio.ImageBuf(oiio.ImageSpec(8, 6, 3, oiio.FLOAT))
    buf.set_pixels(buf.roi, np.full((6, 8, 3), value, np.float32))
    return buf


@pytest.mark.parametrize(
    "fmt,suffix",
    [
        (oiio.UINT8, "png"),
        (oiio.UINT16, "png"),
        (oiio.UINT16, "tif"),
        (oiio.UINT8, "jpg"),
        (oiio.UINT16, "dpx"),
        (oiio.HALF, "exr"),
    ],
)
def test_reads_common_formats(tmp_path, fmt, suffix):
    img = np.random.default_rng(0).uniform(0, 1, (10, 12, 3)).astype(np.float32)
    buf = read_image(write_image(tmp_path / f"x.{suffix}", img, fmt))
    assert (buf.spec().width, buf.spec().height, buf.spec().nchannels) == (12, 10, 3)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FhdrError, match="no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(FhdrError, match="is a directory"):
        read_image(tmp_path)


def test_damaged_exr_gives_a_clear_error():
    path = shared("exr-suite/Damaged/asan_heap-oob_4cb169_255_cc7ac9cde4b8634b31cb41c8fe89b92d_exr")
    with pytest.raises(FhdrError, match="cannot read"):
        read_image(path)


def test_truncated_file(tmp_path):
    good = write_image(tmp_path / "g.exr", np.ones((64, 64, 3), np.float32), oiio.HALF)
    bad = tmp_path / "bad.exr"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(FhdrError, match=r"bad\.exr: cannot read"):
        read_image(bad)


def test_write_is_atomic_and_half_by_default(tmp_path):
    out = tmp_path / "o.exr"
    write_exr(small_buf(), out)
    spec = oiio.ImageBuf(str(out)).spec()
    assert spec.format == oiio.HALF
    assert spec.get_string_attribute("compression") == "zip"
    write_exr(small_buf(2.0), out, WriteOptions(half=False, compression="piz"))
    back = oiio.ImageBuf(str(out))
    assert back.spec().format == oiio.FLOAT and back.spec().get_string_attribute("compression") == "piz"
    assert np.allclose(back.get_pixels(oiio.FLOAT), 2.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.exr"]


def test_failed_write_keeps_the_existing_file(tmp_path):
    out = tmp_path / "o.exr"
    write_exr(small_buf(0.25), out)
    before = out.read_bytes()
    with pytest.raises(FhdrError, match="unknown EXR compression"):
        write_exr(small_buf(1.0), out, WriteOptions(compression="lzma"))
    assert out.read_bytes() == before


def test_full_disk_leaves_no_partial_file(tmp_path):
    code = (
        "import resource, numpy as np, OpenImageIO as oiio\n"
        "from fhdr_plugin.imaging.io import WriteOptions, write_exr\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))\n"
        "b = oiio.ImageBuf(oiio.ImageSpec(512, 512, 3, oiio.FLOAT))\n"
        "b.set_pixels(b.roi, np.random.default_rng(0).random((512, 512, 3), dtype=np.float32))\n"
        f"write_exr(b, {str(tmp_path / 'big.exr')!r}, WriteOptions(half=False, compression='none'))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 1
    assert "big.exr: cannot write" in run.stderr
    assert list(tmp_path.iterdir()) == []


def test_output_folder_must_exist(tmp_path):
    with pytest.raises(FhdrError, match="does not exist"):
        write_exr(small_buf(), tmp_path / "no" / "o.exr")


#: Every format fhdr is asked to read on a farm, as OIIO writes it.
CUT_FORMATS = [("jpg", oiio.UINT8), ("png", oiio.UINT8), ("tif", oiio.UINT16), ("dpx", oiio.UINT16)]
CUT_FORMATS += [("exr", oiio.HALF), ("hdr", oiio.FLOAT)]


def plate_image(height: int = 48, width: int = 64) -> np.ndarray:
    img = np.random.default_rng(3).uniform(0.05, 0.8, (height, width, 3)).astype(np.float32)
    img[8:20, 10:40] = 1.0
    return img


@pytest.mark.parametrize("cut", ["half", "all-but-the-last-byte"])
@pytest.mark.parametrize("suffix,fmt", CUT_FORMATS, ids=[s for s, _ in CUT_FORMATS])
def test_a_file_cut_short_is_refused_by_convert(tmp_path, suffix, fmt, cut):
    """``fhdr convert`` of a file cut short: exit status 1, one line naming the file, no output (not even its
    folder). OIIO reads a cut JPEG (grey rows) and a PNG without its end chunk without an error."""
    whole = write_image(tmp_path / f"whole.{suffix}", plate_image(), fmt)
    data = whole.read_bytes()
    src = tmp_path / f"cut.{suffix}"
    src.write_bytes(data[: len(data) // 2 if cut == "half" else len(data) - 1])
    out = tmp_path / "out" / "o.exr"
    result = CliRunner().invoke(app, ["convert", str(src), str(out), "--tile", "256"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith(f"fhdr: error: {src}: cannot read: "), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name, whole.name]
    assert read_image(whole).spec().width == 64


def test_jpeg_and_png_cut_short_say_so(tmp_path):
    for suffix in ("jpg", "png"):
        whole = write_image(tmp_path / f"whole.{suffix}", plate_image(), oiio.UINT8)
        cut = tmp_path / f"cut.{suffix}"
        cut.write_bytes(whole.read_bytes()[:-1])
        with pytest.raises(FhdrError, match=rf"cut\.{suffix}: cannot read: the file is cut short"):
            read_image(cut)
        with pytest.raises(FhdrError, match=rf"cannot read \S*cut\.{suffix}: the file is cut short"):
            check_buffer(oiio.ImageBuf(str(cut)))


def test_whole_jpegs_of_every_kind_are_read(tmp_path):
    """The end-marker check passes what is whole: a progressive JPEG with Exif, bytes after the end marker (as
    some cameras append), a PNG with text chunks, at every size from 1x1 up."""
    for shape in ((1, 1), (7, 3), (48, 64), (300, 400)):
        img = np.random.default_rng(0).uniform(0, 1, (*shape, 3)).astype(np.float32)
        attrs = {"jpeg:progressive": 1, "Exif:ImageDescription": "plate " * 40, "ImageDescription": "a plate"}
        for suffix in ("jpg", "png"):
            path = write_image(tmp_path / f"p.{suffix}", img, oiio.UINT8, attrs=attrs)
            assert read_image(path).spec().height == shape[0]
            trailer = tmp_path / f"t.{suffix}"
            trailer.write_bytes(path.read_bytes() + b"\x00" * 64 + b"camera trailer")
            assert read_image(trailer).spec().width == shape[1]
