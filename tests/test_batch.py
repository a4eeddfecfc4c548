"""``fhdr batch`` on real frame sequences with the real model: order, failures, resume, chunks, report, Ctrl-C."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shlex
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
from conftest import ROOT, shared
from helpers import batch, fhdr, interruptible, plate, unwritable

from fhdr_plugin.host.batch import LocalExecutor, plan, run_batch
from fhdr_plugin.imaging.color import config
from fhdr_plugin.params import LdrToHdrParams

FHDR = Path(sys.executable).with_name("fhdr")
OIIOTOOL = Path(sys.executable).with_name("oiiotool")
FAST = ["--tile", "64"]


def temp_files(folder: Path) -> list[str]:
    """Leftover temporary files (``.NAME.PID.tmp.exr`` and the report's ``.tmp``)."""
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def check_output(path: Path, source: Path) -> oiio.ImageSpec:
    """``path`` is a finished, finite half EXR of ``source``'s size and channels, written by fhdr."""
    buf = oiio.ImageBuf(str(path))
    assert buf.read(force=True), buf.geterror()
    spec, src = buf.spec(), oiio.ImageBuf(str(source)).spec()
    assert spec.format == oiio.TypeHalf
    assert (spec.x, spec.y, spec.width, spec.height) == (src.x, src.y, src.width, src.height)
    assert (spec.full_width, spec.full_height) == (src.full_width, src.full_height)
    assert spec.channelnames == src.channelnames
    assert spec.get_string_attribute("fhdr:model")
    assert np.isfinite(buf.get_pixels(oiio.FLOAT)).all()
    return spec


def read_report(path: Path) -> dict:
    return json.loads(path.read_text())


def test_sequence_in_frame_order(tmp_path: Path) -> None:
    inputs = plate(tmp_path / "in", range(1, 5))
    out = tmp_path / "out"
    out.mkdir()
    code, err = batch(
        tmp_path / "in/plate.####.png", out / "hdr.%04d.exr", "--frames", "4-1", "--report", tmp_path / "r.json", *FAST
    )
    assert code == 0, err
    for i, source in enumerate(inputs, start=1):
        check_output(out / f"hdr.{i:04d}.exr", source)
    assert temp_files(out) == []
    report = read_report(tmp_path / "r.json")
    assert [f["frame"] for f in report["frames"]] == [4, 3, 2, 1]
    assert "4 done" in err and "frames/s" in err


def test_a_report_that_cannot_be_written_fails_before_any_frame(tmp_path: Path) -> None:
    plate(tmp_path / "in", range(1, 3))
    (tmp_path / "taken").write_text("a file where the report's folder should be")
    code, err = batch(
        tmp_path / "in/plate.####.png", tmp_path / "out/hdr.####.exr", "--report", tmp_path / "taken/r.json"
    )
    assert code == 1 and f"output folder {tmp_path / 'taken'} is not a folder" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    code, err = batch(
        tmp_path / "in/plate.####.png", tmp_path / "out/hdr.####.exr", "--report", tmp_path / "new/r.json", *FAST
    )
    assert code == 0, err
    assert read_report(tmp_path / "new/r.json")["counts"]["done"] == 2  # a missing report folder is created


def test_a_batch_refused_before_its_first_frame_still_writes_its_report(tmp_path: Path) -> None:
    plate(tmp_path / "in", range(1, 3))
    (tmp_path / "taken").write_text("a file where the output folder should be")
    report = tmp_path / "reports/r.json"
    code, err = batch(tmp_path / "in/plate.####.png", tmp_path / "taken/hdr.####.exr", "--report", report)
    assert code == 1 and f"output folder {tmp_path / 'taken'} is not a folder" in err
    refused = read_report(report)
    assert refused["error"] in err and "is not a folder" in refused["error"]
    assert refused["frames"] == [] and refused["counts"] == {"done": 0, "skipped": 0, "failed": 0, "cancelled": 0}
    assert refused["input"] == str(tmp_path / "in/plate.####.png") and refused["settings"]["operation"] == "ldr_to_hdr"
    assert temp_files(report.parent) == []


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--op", "no_such_op"], "no_such_op"),
        (["--address", "auto"], "options of --executor ray"),
        (["--blend-low", "2"], "blend_low"),
    ],
)
def test_a_batch_refused_before_planning_its_frames_still_writes_its_report(
    tmp_path: Path, args: list[str], words: str
) -> None:
    plate(tmp_path / "in", range(1, 3))
    report = tmp_path / "r.json"
    code, err = batch(tmp_path / "in/plate.####.png", tmp_path / "out/hdr.####.exr", "--report", report, *args)
    assert code == 1 and words in err
    refused = read_report(report)
    assert words in refused["error"] and refused["error"] in err
    assert refused["frames"] == [] and refused["counts"]["done"] == 0
    assert refused["settings"] == {"operation": args[1] if args[0] == "--op" else "ldr_to_hdr", "executor": "local"}
    assert not (tmp_path / "out").exists()


def test_disk_io_overlaps_the_model_within_bounded_queues(tmp_path: Path) -> None:
    plate(tmp_path, range(1, 9))
    jobs = plan(str(tmp_path / "plate.#.png"), str(tmp_path / "h.#.exr"))
    executor = LocalExecutor(LdrToHdrParams.from_kwargs(tile=64), depth=2)
    results = {r.frame: r for r in executor.run(jobs)}
    assert [r.status for r in results.values()] == ["done"] * 8

    def model_end(frame: int) -> float:
        return results[frame].process_at + results[frame].process_s

    for f in range(1, 8):
        assert results[f + 1].read_at < model_end(f), "the next frame is read while the model runs"
        assert results[f].write_at < model_end(f + 1), "a frame is written while the model runs the next"
    for f in range(1, 5):
        assert results[f + 4].read_at >= model_end(f), "the reader runs at most depth + 1 frames ahead"


def test_progress_follows_each_frame_and_its_failures(tmp_path: Path) -> None:
    plate(tmp_path, (1, 3))
    seen = []
    results = run_batch(
        LocalExecutor(LdrToHdrParams.from_kwargs(tile=64)),
        str(tmp_path / "plate.#.png"),
        str(tmp_path / "h.#.exr"),
        {},
        frames="1-3",
        quiet=True,
        on_progress=lambda result, done, total: seen.append((result.frame, result.status, done, total)),
    )
    assert seen == [(1, "done", 1, 3), (2, "failed", 2, 3), (3, "done", 3, 3)]
    assert [r.status for r in results] == ["done", "failed", "done"]


def test_cancel_between_frames_stops_as_an_interrupt_does(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plate(tmp_path, range(1, 5))
    executor = LocalExecutor(LdrToHdrParams.from_kwargs(tile=64))
    report_path, finished = tmp_path / "r.json", []
    results = run_batch(
        executor,
        str(tmp_path / "plate.#.png"),
        str(tmp_path / "h.#.exr"),
        {"tile": 64},
        report=report_path,
        on_progress=lambda result, done, total: finished.append(done),
        cancelled=lambda: bool(finished),
    )
    assert [r.status for r in results] == ["done", "cancelled", "cancelled", "cancelled"]
    assert finished == [1]
    assert sorted(p.name for p in tmp_path.glob("h.*")) == ["h.0001.exr"] and temp_files(tmp_path) == []
    report = read_report(report_path)
    assert report["counts"] == {"done": 1, "skipped": 0, "failed": 0, "cancelled": 3}
    assert report["cancelled_frames"] == "2-4" and report["settings"]["tile"] == 64
    assert "1 done, 3 cancelled" in capsys.readouterr().err
    before = run_batch(
        executor, str(tmp_path / "plate.#.png"), str(tmp_path / "b.#.exr"), {}, quiet=True, cancelled=lambda: True
    )
    assert [r.status for r in before] == ["cancelled"] * 4 and list(tmp_path.glob("b.*")) == []


def test_frames_found_on_disk_and_other_wildcards(tmp_path: Path) -> None:
    plate(tmp_path, (3, 5), name="p_{:03d}.png")
    code, err = batch(tmp_path / "p_@@@.png", tmp_path / "o.#.exr", "--report", tmp_path / "r.json", *FAST)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.glob("o.*")) == ["o.0003.exr", "o.0005.exr"]
    code, err = batch(tmp_path / "p_*.png", tmp_path / "g.%d.exr", *FAST)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.glob("g.*")) == ["g.3.exr", "g.5.exr"]
    code, err = batch(tmp_path / "p_*.png", tmp_path / "m.%d.exr", "--frames", "3-4", *FAST)
    assert code == 1 and f"frame 4 failed: {tmp_path / 'p_*.png'}: no file for frame 4" in err, err
    assert sorted(p.name for p in tmp_path.glob("m.*")) == ["m.3.exr"]


def test_bad_and_missing_frames_are_reported_and_skipped(tmp_path: Path) -> None:
    inputs = plate(tmp_path, range(1, 5))
    inputs[1].write_bytes(inputs[1].read_bytes()[:60])
    report_path = tmp_path / "r.json"
    code, err = batch(
        tmp_path / "plate.####.png", tmp_path / "h.####.exr", "--frames", "1-5", "--report", report_path, *FAST
    )
    assert code == 1
    assert sorted(p.name for p in tmp_path.glob("h.*")) == ["h.0001.exr", "h.0003.exr", "h.0004.exr"]
    check_output(tmp_path / "h.0003.exr", inputs[2])
    assert "failed frames: 2,5" in err
    assert re.search(r"frame 2 failed: .*plate\.0002\.png", err)
    report = read_report(report_path)
    status = {f["frame"]: f["status"] for f in report["frames"]}
    assert status == {1: "done", 2: "failed", 3: "done", 4: "done", 5: "failed"}
    errors = {f["frame"]: f["error"] for f in report["frames"]}
    assert "no such file" in errors[5] and "plate.0005.png" in errors[5]
    assert errors[1] == errors[3] == ""
    assert report["counts"] == {"done": 3, "skipped": 0, "failed": 2, "cancelled": 0}
    assert report["failed_frames"] == "2,5"


def test_skip_existing_resumes(tmp_path: Path) -> None:
    plate(tmp_path, range(1, 5))
    pattern, out = tmp_path / "plate.####.png", tmp_path / "h.####.exr"
    assert batch(pattern, out, "--frames", "1-2", *FAST)[0] == 0
    first = (tmp_path / "h.0001.exr").stat().st_mtime_ns
    whole = (tmp_path / "h.0002.exr").read_bytes()
    (tmp_path / "h.0002.exr").write_bytes(whole[:-40])  # its header reads, its last pixels are gone (a cut copy)
    (tmp_path / "h.0003.exr").write_bytes(b"not an exr")
    time.sleep(0.01)
    code, err = batch(pattern, out, "--skip-existing", "--report", tmp_path / "r.json", *FAST)
    assert code == 0, err
    assert (tmp_path / "h.0001.exr").stat().st_mtime_ns == first
    status = {f["frame"]: f["status"] for f in read_report(tmp_path / "r.json")["frames"]}
    assert status == {1: "skipped", 2: "done", 3: "done", 4: "done"}
    for f in (2, 3):
        check_output(tmp_path / f"h.{f:04d}.exr", tmp_path / f"plate.{f:04d}.png")


@pytest.mark.parametrize("where", ["output", "report"])
def test_a_folder_it_cannot_write_in_is_refused_before_any_frame(tmp_path: Path, where: str) -> None:
    plate(tmp_path, range(1, 3))
    locked = tmp_path / "locked"
    locked.mkdir()
    out = (locked if where == "output" else tmp_path) / "h.####.exr"
    report = (locked if where == "report" else tmp_path) / "r.json"
    with unwritable(locked):
        code, err = batch(tmp_path / "plate.####.png", out, "--report", report, *FAST)
        assert code == 1 and f"output folder {locked} is not writable" in err, err
        assert "frame 1" not in err and list(locked.iterdir()) == []
    assert list(tmp_path.glob("h.*")) == []
    if where == "output":  # the refusal is reported in the report, which can be written
        assert f"output folder {locked} is not writable" in read_report(report)["error"]
    else:
        assert not report.exists()


def test_convert_into_a_folder_it_cannot_write_in_fails_with_the_folder(tmp_path: Path) -> None:
    [src] = plate(tmp_path, [1])
    locked = tmp_path / "locked"
    locked.mkdir()
    with unwritable(locked):
        run = fhdr("convert", src, locked / "h.exr", *FAST)
        assert run.returncode == 1 and f"output folder {locked} is not writable" in run.stderr, run.stderr
        assert list(locked.iterdir()) == []


def test_chunks_together_cover_the_range_once(tmp_path: Path) -> None:
    plate(tmp_path, range(1, 6))
    done: list[list[int]] = []
    for i in (1, 2, 3):
        report = tmp_path / f"chunk{i}.json"
        code, err = batch(
            tmp_path / "plate.####.png",
            tmp_path / "h.####.exr",
            "--frames",
            "1-5",
            "--chunk",
            f"{i}/3",
            "--report",
            report,
            *FAST,
        )
        assert code == 0, err
        done.append([f["frame"] for f in read_report(report)["frames"] if f["status"] == "done"])
    assert done == [[1, 2], [3, 4], [5]]
    assert sorted(p.name for p in tmp_path.glob("h.*")) == [f"h.{f:04d}.exr" for f in range(1, 6)]
    code, err = batch(tmp_path / "plate.####.png", tmp_path / "e.####.exr", "--frames", "1-2", "--chunk", "3/3", *FAST)
    assert code == 0 and "nothing to do" in err
    assert list(tmp_path.glob("e.*")) == []


def test_report_records_settings_and_timings(tmp_path: Path) -> None:
    plate(tmp_path, range(1, 3))
    report_path = tmp_path / "r.json"
    args = [
        "--mode",
        "raw",
        "--compression",
        "piz",
        "--float",
        "--output-colorspace",
        "ACEScg",
        "--report",
        report_path,
    ]
    code, err = batch(tmp_path / "plate.####.png", tmp_path / "h.####.exr", *args, *FAST)
    assert code == 0, err
    report = read_report(report_path)
    assert report["input"].endswith("plate.####.png") and report["output"].endswith("h.####.exr")
    settings = report["settings"]
    assert (settings["mode"], settings["compression"], settings["half"], settings["tile"]) == ("raw", "piz", False, 64)
    assert settings["output_colorspace"] == "ACEScg"
    assert report["engine"]["device"] == "cpu" and report["engine"]["model"]
    assert report["fhdr_version"] and report["started"]
    assert report["counts"]["done"] == 2 and report["frames_per_second"] > 0
    for entry in report["frames"]:
        assert entry["status"] == "done"
        assert entry["read_s"] > 0 and entry["process_s"] > 0 and entry["write_s"] > 0
        assert Path(entry["output"]).exists()
    spec = oiio.ImageBuf(str(tmp_path / "h.0001.exr")).spec()
    assert spec.format == oiio.TypeFloat
    assert spec.get_string_attribute("compression") == "piz"
    assert spec.get_string_attribute("fhdr:mode") == "raw"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plate.####.png", "plate.0001.png/h.####.exr"], "is not a folder"),
        (["plate.####.png", "h.*.exr"], "frame-number field"),
        (["plate.####.png", "h.####.png"], "must be an .exr"),
        (["plate.####.png", "h.####.exr", "--frames", "1-"], "bad frame range"),
        (["plate.####.png", "h.####.exr", "--chunk", "4/3"], "bad chunk"),
        (["nothing.####.png", "h.####.exr"], "no frames match"),
        (["plate.####.png", "h.####.exr", "--frames", "1-10y1"], "--frames '1-10y1' selects no frames"),
        (["plate.####.png", "h.####.exr", "--compression", "lzma"], "unknown EXR compression"),
        (["plate.####.png", "h.####.exr", "--output-colorspace", "nope"], "unknown colour space"),
    ],
)
def test_settings_errors_stop_before_any_frame(tmp_path: Path, args: list[str], message: str) -> None:
    plate(tmp_path, range(1, 3))
    code, err = batch(*(str(tmp_path / a) if "#" in a or "*" in a else a for a in args))
    assert code == 1
    assert message in err
    assert list(tmp_path.glob("h.*")) == []


def test_beachball_keeps_windows_and_channels(tmp_path: Path) -> None:
    pattern = shared("exr-suite/Beachball/singlepart.0001.exr").parent / "singlepart.####.exr"
    report = tmp_path / "r.json"
    code, err = batch(pattern, tmp_path / "bb.####.exr", "--frames", "1-2", "--tile", "512", "--report", report)
    assert code == 0, err
    for f in (1, 2):
        spec = check_output(tmp_path / f"bb.{f:04d}.exr", Path(str(pattern).replace("####", f"{f:04d}")))
        assert len(spec.channelnames) == 20
    assert [e["status"] for e in read_report(report)["frames"]] == ["done", "done"]


def test_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    plate(tmp_path, range(1, 17))
    report = tmp_path / "r.json"
    cmd = [str(FHDR), "batch", str(tmp_path / "plate.#.png"), str(tmp_path / "h.#.exr"), "--report", str(report), *FAST]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob("h.*.exr")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err
    assert "interrupted" in err and "frame 1 done" in err
    assert temp_files(tmp_path) == []
    written = sorted(tmp_path.glob("h.*.exr"))
    assert 1 <= len(written) < 16
    for path in written:
        check_output(path, tmp_path / path.name.replace("h.", "plate.").replace(".exr", ".png"))
    entries = read_report(report)["frames"]
    assert {e["frame"] for e in entries if e["status"] == "done"} == {int(p.name.split(".")[1]) for p in written}
    assert all(e["status"] in ("done", "cancelled") for e in entries)


def test_progress_bar_on_a_terminal_and_quiet_otherwise(tmp_path: Path) -> None:
    plate(tmp_path, range(1, 3))
    cmd = [str(FHDR), "batch", str(tmp_path / "plate.#.png"), str(tmp_path / "h.#.exr"), *FAST]
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(cmd, stderr=follower, stdout=subprocess.DEVNULL)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=120) == 0
    shown = b"".join(chunks).decode(errors="replace")
    assert "2/2" in shown and "frame/s" in shown and "<" in shown
    assert "frame 1 done" not in shown
    quiet = subprocess.run([str(FHDR), "--quiet", *cmd[1:]], capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and quiet.stderr == ""


def chain_commands() -> list[str]:
    """The shell lines of the first ``sh`` block of docs/oiiotool-chain.md."""
    text = (ROOT / "docs" / "oiiotool-chain.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block, "docs/oiiotool-chain.md has no sh block"
    return [line for line in block[1].splitlines() if line.strip() and not line.startswith("#")]


def test_documented_oiiotool_chain(tmp_path: Path) -> None:
    if not OIIOTOOL.exists():
        pytest.skip(f"{OIIOTOOL} not installed")
    tools = {"oiiotool": str(OIIOTOOL), "fhdr": str(FHDR), "mkdir": "mkdir"}
    outputs = []
    for line in chain_commands():
        words = shlex.split(line)
        done = subprocess.run([tools[words[0]], *words[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{line}\n{done.stderr}"
        outputs.append(done.stdout)
    hdr = sorted(tmp_path.glob("hdr/shot.*.exr"))
    assert [p.name for p in hdr] == [f"shot.{f:04d}.exr" for f in range(1001, 1005)]
    for path in hdr:
        spec = oiio.ImageBuf(str(path)).spec()
        assert (spec.width, spec.height) == (64, 48)
        assert config().equivalent(spec.get_string_attribute("oiio:ColorSpace"), "ACEScg")
    stats = outputs[-1]
    assert stats.count("Stats Max") == 4
    maxima = [float(v) for v in re.findall(r"Stats Max: ([\d.e+-]+)", stats)]
    assert maxima and max(maxima) > 1.0
