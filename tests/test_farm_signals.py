"""How a farm stops fhdr, and what --debug and a mistyped colour space tell it: SIGTERM exits 143 and SIGINT 130
(128 + the signal, as a shell reports them), after the write in progress, leaving no partial file; ``--debug``
says which device, precision and tile the engine chose; a colour-space name in the wrong case is suggested."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import write_image
from helpers import FHDR, interruptible, plate, plate_frame
from typer.testing import CliRunner

from fhdr_plugin.host.cli import app
from fhdr_plugin.manifest import manifest

ENGINE_LINE = f"fhdr: engine: model {manifest().default_model}, device cpu, precision "


def start(*args: object) -> subprocess.Popen:
    return subprocess.Popen(
        [*FHDR, *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )


def read_until(proc: subprocess.Popen, text: str, seconds: float = 300) -> list[str]:
    """The stderr lines of ``proc`` up to the first that contains ``text``."""
    lines, deadline = [], time.monotonic() + seconds
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            pytest.fail(f"fhdr ended before {text!r}: {''.join(lines)}")
        lines.append(line)
        if text in line:
            return lines
    pytest.fail(f"no {text!r} within {seconds} s: {''.join(lines)}")


@pytest.mark.parametrize(
    ("sig", "code", "said"), [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")]
)
def test_a_signal_stops_convert_with_its_own_code(tmp_path: Path, sig: signal.Signals, code: int, said: str) -> None:
    """A long convert (small tiles, near-white noise in every one of them so that each runs), signalled once it has
    said which engine it runs: it stops with the signal's code and one line, no output, no temporary file."""
    src = write_image(tmp_path / "plate.png", plate_frame(1, shape=(384, 512), low=0.5, high=1.0))
    out = tmp_path / "out"
    out.mkdir()
    proc = start("--debug", "convert", src, out / "o.exr", "--tile", "32", "--precision", "float32")
    head = read_until(proc, "fhdr: engine:")
    assert head[-1].startswith(ENGINE_LINE + "float32, tile 32"), head
    time.sleep(0.5)
    proc.send_signal(sig)
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == code, head + [rest]
    assert rest.strip().splitlines()[-1] == f"fhdr: {said}", rest
    assert "Traceback" not in rest
    assert list(out.iterdir()) == []


def test_sigterm_stops_a_batch_after_the_write_in_progress(tmp_path: Path) -> None:
    """SIGTERM once the first frame is written: exit 143, the report lists what was written and what was not,
    every output written is whole, no temporary file."""
    plate(tmp_path / "in", range(1, 13), shape=(64, 96))
    out = tmp_path / "out"
    args = [tmp_path / "in/plate.####.png", out / "h.####.exr", "--tile", "32", "--report", tmp_path / "r.json"]
    proc = start("--debug", "batch", *args)
    head = read_until(proc, "frame 1 done")
    assert any(line.startswith(ENGINE_LINE) and "executor local with 1 worker" in line for line in head), head
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 143, head + [rest]
    assert "fhdr: terminated" in rest and "resume with --skip-existing" in rest, rest
    report = json.loads((tmp_path / "r.json").read_text())
    done = [f["frame"] for f in report["frames"] if f["status"] == "done"]
    assert done and report["counts"]["cancelled"] == 12 - len(done) > 0
    assert sorted(p.name for p in out.iterdir()) == [f"h.{f:04d}.exr" for f in done]


def test_a_colour_space_in_the_wrong_case_is_suggested(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["convert", str(tmp_path / "in.png"), str(tmp_path / "o.exr"), "--output-colorspace", "acescgg"]
    )
    assert result.exit_code == 1
    assert "unknown colour space 'acescgg'; did you mean ACEScg," in result.stderr
