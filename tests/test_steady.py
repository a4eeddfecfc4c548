"""Steadying a shot (``node/steady.py``, ``node/shot.py``, ``fhdr batch --steady``): the motion between frames,
what is kept, a real pan through the real model, and the batch over chunks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest
from conftest import ROOT, shared, write_image
from helpers import batch, pixels

from fhdr_plugin.host.batch import neighbours
from fhdr_plugin.host.frames import Job
from fhdr_plugin.imaging.color import REC709_LUMA
from fhdr_plugin.node import operation as node
from fhdr_plugin.node import scale, steady
from fhdr_plugin.params import LOSSY_BLEND_LOW, LdrToHdrParams
from training.data import Camera, Synthesis, downscale, expose, synthesise

ROTUNDA = "hdr-train/polyhaven_sepulchral_chapel_rotunda.exr"
#: Panorama pixels the view slides per frame, and the box downscale: frames move 1.5 px.
STEP, FACTOR = 3, 2
PARAMS = LdrToHdrParams.from_kwargs(tile=64)


def pan(frames: int, width: int = 128, height: int = 80, down: int = 0) -> list[np.ndarray]:
    """Ground-truth frames (white at 1, 3 % clipped) of a pan past the rotunda's brightest pixel: ``STEP``
    panorama pixels right (and ``down`` down) per frame, box-downscaled by ``FACTOR``."""
    buf = oiio.ImageBuf(str(shared(ROTUNDA)))
    hdr = np.nan_to_num(np.asarray(buf.get_pixels(oiio.FLOAT))[..., :3])
    wh, ww = FACTOR * height, FACTOR * width
    y, x = np.unravel_index(np.argmax(hdr.max(axis=-1)), hdr.shape[:2])
    top, left = max(0, y - wh // 2 - down * frames // 2), max(0, x - ww // 2 - STEP * frames // 2)
    shot = expose(hdr[top : top + wh + down * frames, left : left + ww + STEP * frames], 0.03)
    return [downscale(shot[down * t : down * t + wh, STEP * t : STEP * t + ww], FACTOR) for t in range(frames)]


def reconstructions(truth: list[np.ndarray]) -> list[steady.Reconstruction]:
    """Each frame through a plain 8-bit sRGB camera and the node's defaults."""
    rng = np.random.default_rng(0)
    out = []
    for frame in truth:
        ldr = synthesise(frame, rng, Synthesis.plain())
        linear, display = node.to_model_space(ldr, "srgb_tx")
        out.append(steady.Reconstruction(linear, display, node.predict_linear(ldr, "srgb_tx", PARAMS)[0]))
    return out


def blend() -> tuple[float, float]:
    params = PARAMS.blend.for_plate(lossy=False)
    return params.blend_low, params.blend_high


def test_the_motion_between_two_frames_is_found_to_a_fraction_of_a_pixel() -> None:
    """Frames half a pixel apart differ by their sampling too (the box downscale aliases), so they are found to
    0.2 px; a whole number of pixels to 0.05. Frames with nothing in common match below ``MATCH``."""
    across = [steady.key(f) for f in reconstructions(pan(3))]
    assert steady.shift_between(across[0], across[1])[:2] == pytest.approx((0.0, -1.5), abs=0.2)
    assert steady.shift_between(across[0], across[2])[:2] == pytest.approx((0.0, -3.0), abs=0.05)
    assert steady.shift_between(across[2], across[0])[:2] == pytest.approx((0.0, 3.0), abs=0.05)
    diagonal = [steady.key(f) for f in reconstructions(pan(3, down=4))]
    assert steady.shift_between(diagonal[0], diagonal[2])[:2] == pytest.approx((-4.0, -3.0), abs=0.05)
    assert min(steady.shift_between(across[0], k).match for k in (*across[1:], *diagonal)) > 0.5
    quarry = pixels(ROOT / "samples" / "quarry_ldr.png")[: across[0].shape[0], : across[0].shape[1], :3]
    for unlike in (across[0][::-1, ::-1], quarry @ REC709_LUMA):
        assert steady.shift_between(across[0], np.ascontiguousarray(unlike)).match < steady.MATCH


def plate_key(frame: np.ndarray) -> np.ndarray:
    """What the motion is found on for an HDR frame through a plain 8-bit sRGB camera, without the network."""
    ldr = synthesise(frame, np.random.default_rng(0), Synthesis.plain())
    linear, display = node.to_model_space(ldr, "srgb_tx")
    return steady.key(steady.Reconstruction(linear, display, linear))


def fitted(windowed: list, whole: steady.Motion, where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The camera's motion fitted to the windows' (``flow``) at the pixels of ``where``: rows and columns."""
    motion = steady.similarity(windowed)(*np.nonzero(where))
    return whole.rows + motion[:, 0], whole.cols + motion[:, 1]


@pytest.mark.parametrize(("zoom", "roll"), [(1.02, 0.0), (1.0, 1.0), (0.99, -0.5)])
def test_the_motion_of_a_zoom_or_a_roll_is_found_where_the_frame_reconstructs(zoom: float, roll: float) -> None:
    """A neighbour ``zoom`` times larger and rolled by ``roll`` degrees about the centre moves each pixel by up to
    2.5 px: the motion found per window (``flow``) is within 0.25 px on the pixels the frame reconstructs, where
    the whole frame's one translation is off by far more."""
    frame = pan(1, width=256, height=160)[0]
    h, w = frame.shape[:2]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    a = np.deg2rad(roll)
    # the neighbour at q shows the frame at c + R(-a)(q - c) / zoom, so the frame at p is the neighbour at q(p)
    qy = cy + zoom * (np.cos(a) * (y - cy) + np.sin(a) * (x - cx))
    qx = cx + zoom * (-np.sin(a) * (y - cy) + np.cos(a) * (x - cx))
    iy = cy + (np.cos(a) * (y - cy) - np.sin(a) * (x - cx)) / zoom
    ix = cx + (np.sin(a) * (y - cy) + np.cos(a) * (x - cx)) / zoom
    other = steady.sampled(frame, iy, ix)[0]
    here, there = plate_key(frame), plate_key(other)
    where = here > 0.9
    true_rows, true_cols = (y - qy)[where], (x - qx)[where]
    whole = steady.shift_between(there, here)
    rows, cols = fitted(steady.flow(there, here, whole, where), whole, where)
    found = np.hypot(rows - true_rows, cols - true_cols)
    assert found.mean() < 0.25
    assert np.hypot(whole.rows - true_rows, whole.cols - true_cols).mean() > 2 * found.mean() + 0.2


def test_a_frame_full_of_highlights_finds_its_zoom_in_at_most_max_windows() -> None:
    """Every window holds a highlight here (more than ``MAX_WINDOWS``): an evenly spread share of them still finds
    the zoom everywhere."""
    h, w = 600, 900
    texture = steady.box_mean(np.random.default_rng(0).random((h, w)).astype(np.float32), 2)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    other = steady.sampled(texture[..., None], cy + (y - cy) / 1.01, cx + (x - cx) / 1.01)[0][..., 0]
    assert len(steady.windows(h)[0]) * len(steady.windows(w)[0]) > steady.MAX_WINDOWS
    everywhere = np.ones((h, w), dtype=bool)
    whole = steady.shift_between(other, texture)
    rows, cols = fitted(steady.flow(other, texture, whole, everywhere), whole, everywhere)
    # the frame at p is the neighbour at c + (p - c) * 1.01, so it moved by (p - c) * (1 - 1.01)
    error = np.hypot(rows - ((y - cy) * -0.01).ravel(), cols - ((x - cx) * -0.01).ravel())
    assert error.mean() < 0.1 and error.max() < 0.3


def test_similarity_fits_a_pan_zoom_and_roll_to_the_motions_found() -> None:
    def camera(y: float, x: float) -> tuple[float, float]:  # 2 % larger, rolled by 0.01 rad, moved (1, 0.5)
        return (1.0 + 0.02 * y - 0.01 * x, 0.5 + 0.02 * x + 0.01 * y)

    points = [((y, x), camera(y, x)) for y, x in ((0, 0), (100, 0), (0, 100), (50, 70))]
    assert steady.similarity(points)(np.array([20.0]), np.array([40.0]))[0] == pytest.approx(camera(20, 40))
    assert steady.similarity(points[:1])(np.zeros(1), np.ones(1))[0] == pytest.approx((1.0, 0.5))
    assert steady.similarity([])(np.zeros((2, 3)), np.zeros((2, 3))).shape == (2, 3, 2)
    assert not steady.similarity([])(np.zeros(1), np.zeros(1)).any()


def test_nearest_gives_each_point_the_motion_of_the_window_nearest_it() -> None:
    points = [((10.0, 10.0), (1.0, 0.0)), ((10.0, 100.0), (0.0, 2.0)), ((80.0, 50.0), (-1.0, -1.0))]
    ys, xs = np.array([0, 12, 60, 79, 30]), np.array([0, 90, 50, 10, 56])
    assert steady.nearest(points)(ys, xs).tolist() == [[1, 0], [0, 2], [-1, -1], [-1, -1], [0, 2]]
    assert not steady.nearest([])(ys, xs).any()


def test_moved_moves_by_a_fraction_and_says_what_came_from_inside() -> None:
    ramp = np.tile(np.arange(8, dtype=np.float32), (4, 1))[..., None]
    out, inside = steady.moved(ramp, (0.0, 1.25))
    assert out[:, 2:, 0] == pytest.approx(ramp[:, 2:, 0] - 1.25)
    assert not inside[:, :2].any() and inside[:, 2:].all()


def test_areas_of_are_the_connected_areas_of_the_points_across_corners_too() -> None:
    mask = np.random.default_rng(1).random((60, 90)) < 0.45
    mask[:, 89] = mask[:, 0] = True  # a row's end beside the next row's start: not neighbours
    mask[5:7] = False
    ys, xs = np.nonzero(mask)
    area = steady.areas_of((ys + 1000, xs + 3000))  # anywhere in the frame
    labels = np.full(mask.shape, -1)
    labels[ys, xs] = area
    found = np.full(mask.shape, -1)  # the same areas by a breadth-first fill, numbered as they are met
    count = 0
    for start in zip(ys, xs, strict=True):
        if found[start] >= 0:
            continue
        found[start], queue = count, [start]
        while queue:
            y, x = queue.pop()
            for v in range(max(y - 1, 0), min(y + 2, 60)):
                for u in range(max(x - 1, 0), min(x + 2, 90)):
                    if mask[v, u] and found[v, u] < 0:
                        found[v, u] = count
                        queue.append((v, u))
        count += 1
    assert np.array_equal(found[mask], labels[mask])
    assert count > 10
    shuffled = np.random.default_rng(2).permutation(len(ys))  # in any order, the same areas
    again = steady.areas_of((ys[shuffled], xs[shuffled]))
    assert len(np.unique(np.stack([again, area[shuffled]]), axis=1).T) == count == again.max() + 1


def test_each_highlight_takes_one_motion_the_one_that_fits_it_best() -> None:
    """Two highlights: in the first the neighbour's plate is the frame's moved one pixel left, except its left
    30 %, which did not move; the second did not move at all. The first takes the move everywhere, its left part
    too (a choice per pixel, as before session 38, left that part where it was), and the second takes no motion."""
    texture = np.random.default_rng(2).random((40, 100)).astype(np.float32)
    display = np.repeat(texture[..., None], 3, axis=-1)
    other = np.roll(display, -1, axis=1)
    other[:, :25] = display[:, :25]
    other[:, 70:] = display[:, 70:]
    first, second = np.zeros((40, 100), dtype=bool), np.zeros((40, 100), dtype=bool)
    first[10:30, 10:60], second[10:30, 75:95] = True, True
    ys, xs = np.nonzero(first | second)
    pan, still = (np.zeros(len(ys)), np.ones(len(ys))), (np.zeros(len(ys)), np.zeros(len(ys)))
    found, apart = steady.placed_by(other, display, (ys, xs), steady.areas_of((ys, xs)), [pan, still])
    on_first = first[ys, xs]
    assert found[on_first] == pytest.approx(other[ys[on_first], xs[on_first] - 1])
    assert found[~on_first] == pytest.approx(display[ys[~on_first], xs[~on_first]])
    assert (apart[~on_first] == 0).all() and apart[on_first][xs[on_first] >= 28].max() == 0


def test_a_frame_alone_after_a_cut_or_beside_a_black_frame_is_the_nodes_own_output() -> None:
    frames = reconstructions(pan(2))
    low, high = blend()
    assert np.array_equal(steady.steadied(frames[0], [], low, high), frames[0].output)
    other = steady.Reconstruction(*(np.ascontiguousarray(x[::-1, ::-1]) for x in vars(frames[1]).values()))
    assert np.array_equal(steady.steadied(frames[0], [(other, 1.0)], low, high), frames[0].output)
    assert not np.array_equal(steady.steadied(frames[0], [(frames[1], 1.0)], low, high), frames[0].output)
    black = steady.Reconstruction(*(np.zeros_like(x) for x in vars(frames[1]).values()))
    assert steady.shift_between(steady.key(black), steady.key(frames[0])) == (0.0, 0.0, 0.0)
    assert np.array_equal(steady.steadied(frames[0], [(black, 1.0)], low, high), frames[0].output)


def test_a_steadied_pan_keeps_what_the_plate_measured_flickers_less_and_keeps_its_lift() -> None:
    truth = pan(9)
    frames = reconstructions(truth)
    low, high = blend()
    steadied = [steady.steadied(frame, steady.around(frames, t, 2), low, high) for t, frame in enumerate(frames)]
    for frame, out in zip(frames, steadied, strict=True):
        kept = scale.blend_weight(frame.display, low, high) == 0
        assert np.array_equal(out[kept], frame.linear[kept])
        assert (out >= frame.linear).all()
    masks = [scale.matte(f.display, low, high)[..., 0] > 0 for f in frames]
    own = flicker([f.output for f in frames], truth, masks)
    steadier = flicker(steadied, truth, masks)
    plate = flicker([f.linear for f in frames], truth, masks)
    assert steadier < 0.6 * own and steadier < 1.25 * plate
    assert lift(steadied, frames, masks) > 0.98 * lift([f.output for f in frames], frames, masks) > 1.5


def test_a_locked_off_shot_under_new_grain_and_jpeg_steadies_the_blends_ramp_too() -> None:
    # A lossy plate's near-white channels take the network as far as the blend's ramp says, and the ramp follows
    # the display value, grain and codec included: the weight alone flickers. Steadied, the weight is the
    # averaged plate's. With the weight of each frame's own display value these channels flickered 2.5x the
    # plate's here, 1.4x with the averaged one.
    truth = pan(1)[0]
    rng = np.random.default_rng(0)
    camera = Camera(noise=0.006, jpeg_quality=80)
    params = LdrToHdrParams.from_kwargs(tile=64, blend_low=LOSSY_BLEND_LOW)
    frames = []
    for _ in range(7):
        ldr = camera.render(truth, rng)
        linear, display = node.to_model_space(ldr, "srgb_tx")
        frames.append(steady.Reconstruction(linear, display, node.predict_linear(ldr, "srgb_tx", params)[0]))
    low, high = LOSSY_BLEND_LOW, params.blend.blend_high
    steadied = [steady.steadied(frame, steady.around(frames, t, 2), low, high) for t, frame in enumerate(frames)]
    weights = [scale.matte(f.display, low, high)[..., 0] for f in frames]
    ramp = [(w > 0) & (w < 1) for w in weights]
    still = [truth] * len(frames)
    plate = flicker([f.linear for f in frames], still, ramp, shift=0.0)
    assert flicker(steadied, still, ramp, shift=0.0) < 1.6 * plate
    for frame, out, w in zip(frames, steadied, weights, strict=True):
        assert np.array_equal(out[w == 0], frame.linear[w == 0])
    clipped = [w == 1 for w in weights]
    assert lift(steadied, frames, clipped) > 0.98 * lift([f.output for f in frames], frames, clipped) > 1.2


def flicker(
    outputs: list[np.ndarray], truth: list[np.ndarray], masks: list[np.ndarray], shift: float = -STEP / FACTOR
) -> float:
    """Mean |change| of log2(output / truth) from a frame, moved by the pan (``shift`` px across), to the next, on
    its masked pixels."""
    errors = [np.log2((o + 1e-2) / (t + 1e-2)) for o, t in zip(outputs, truth, strict=True)]
    changes = []
    for before, after, mask in zip(errors, errors[1:], masks[1:], strict=False):
        there, inside = steady.moved(before, (0.0, shift))
        changes.append(np.abs(there - after)[mask & inside])
    return float(np.concatenate(changes).mean())


def lift(outputs: list[np.ndarray], frames: list[steady.Reconstruction], masks: list[np.ndarray]) -> float:
    """Mean output over mean plate on the masked pixels (luminance)."""
    luma = [0.2126, 0.7152, 0.0722]
    out = np.concatenate([(o @ luma)[m] for o, m in zip(outputs, masks, strict=True)])
    plate = np.concatenate([(f.linear @ luma)[m] for f, m in zip(frames, masks, strict=True)])
    return float(out.mean() / plate.mean())


def write_pan(folder: Path, frames: int) -> None:
    """The pan through a plain 8-bit sRGB camera as ``folder/pan.0001.png``…"""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for t, frame in enumerate(pan(frames, width=96, height=64)):
        write_image(folder / f"pan.{t + 1:04d}.png", synthesise(frame, rng, Synthesis.plain()))


def test_batch_steady_gives_every_chunk_the_frames_one_run_gives(tmp_path: Path) -> None:
    write_pan(tmp_path, 5)
    source = tmp_path / "pan.####.png"
    assert batch(source, tmp_path / "whole" / "h.####.exr", "--steady", "2", "--tile", "64")[0] == 0
    for part in ("1/2", "2/2"):
        assert batch(source, tmp_path / "chunks" / "h.####.exr", "--steady", "2", "--chunk", part)[0] == 0
    assert batch(source, tmp_path / "alone" / "h.####.exr", "--frames", "3")[0] == 0
    whole, alone = pixels(tmp_path / "whole" / "h.0003.exr"), pixels(tmp_path / "alone" / "h.0003.exr")
    for f in range(1, 6):
        assert np.array_equal(
            pixels(tmp_path / "whole" / f"h.{f:04d}.exr"), pixels(tmp_path / "chunks" / f"h.{f:04d}.exr")
        )
    spec = oiio.ImageBuf(str(tmp_path / "whole" / "h.0003.exr")).spec()
    assert spec.get_string_attribute("fhdr:steady") == "2 frames either side, 4 found"
    assert oiio.ImageBuf(str(tmp_path / "whole" / "h.0001.exr")).spec().get_string_attribute("fhdr:steady") == (
        "2 frames either side, 2 found"
    )
    changed = (whole != alone).any(axis=-1)
    display = pixels(tmp_path / "pan.0003.png")
    assert changed.any()
    assert (display[changed] > 0.9).any(axis=-1).all()


def test_batch_steady_leaves_out_a_neighbour_it_cannot_read_and_names_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_pan(tmp_path, 3)
    (tmp_path / "pan.0002.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    code, err = batch(tmp_path / "pan.####.png", tmp_path / "h.####.exr", "--steady", "1")
    assert code == 1 and "frame 2 failed" in err
    left_out = [r.getMessage() for r in caplog.records if "neighbour is left out" in r.getMessage()]
    assert left_out and all("pan.0002.png: cannot read" in m for m in left_out)
    assert sorted(p.name for p in tmp_path.glob("h.*")) == ["h.0001.exr", "h.0003.exr"]
    spec = oiio.ImageBuf(str(tmp_path / "h.0001.exr")).spec()
    assert spec.get_string_attribute("fhdr:steady") == "1 frame either side, 0 found"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steady", "9"], "--steady 9: frames either side must be 0 (off) to 8"),
        (["--steady", "1", "--mode", "raw"], "--steady steadies the anchored blend, not --mode raw"),
    ],
)
def test_batch_steady_refuses_what_it_cannot_do_before_any_frame(tmp_path: Path, args: list[str], message: str) -> None:
    write_pan(tmp_path, 2)
    code, err = batch(tmp_path / "pan.####.png", tmp_path / "h.####.exr", *args)
    assert code == 1 and message in err
    assert list(tmp_path.glob("h.*")) == []


def test_a_neighbour_in_another_data_window_is_taken_within_the_frames() -> None:
    frame = steady.Reconstruction(*(np.full((4, 6, 3), v, dtype=np.float32) for v in (0.5, 0.7, 0.9)))
    moved = steady.placed(frame, (2, 3), (0, 0, 5, 8))
    assert moved.output.shape == (5, 8, 3)
    assert (moved.output[2:, 3:] == 0.9).all() and (moved.output[:2] == 0).all() and (moved.output[:, :3] == 0).all()
    assert (steady.placed(frame, (-10, 0), (0, 0, 4, 6)).linear == 0).all()


def test_batch_steady_takes_exr_frames_whose_data_windows_differ(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for t, frame in enumerate(pan(3, width=96, height=64)):
        linear = node.to_model_space(synthesise(frame, rng, Synthesis.plain()), "srgb_tx")[0]
        left = 8 * t
        spec = oiio.ImageSpec(96 - left, 64, 3, oiio.HALF)
        spec.x, spec.full_x, spec.full_width, spec.full_height = left, 0, 96, 64
        buf = oiio.ImageBuf(spec)
        buf.set_pixels(oiio.ROI(), np.ascontiguousarray(linear[:, left:], dtype=np.float32))
        assert buf.write(str(tmp_path / f"pan.{t + 1:04d}.exr")), buf.geterror()
    assert batch(tmp_path / "pan.####.exr", tmp_path / "h.####.exr", "--steady", "1")[0] == 0
    assert batch(tmp_path / "pan.####.exr", tmp_path / "alone" / "h.####.exr", "--frames", "2")[0] == 0
    steadied = oiio.ImageBuf(str(tmp_path / "h.0002.exr"))
    assert steadied.spec().get_string_attribute("fhdr:steady") == "1 frame either side, 2 found"
    assert (steadied.spec().x, steadied.spec().width) == (8, 88)
    changed = (pixels(steadied) != pixels(tmp_path / "alone" / "h.0002.exr")).any(axis=-1)
    plate = pixels(tmp_path / "pan.0002.exr")
    assert changed.any() and (plate[changed] > 0.75).any(axis=-1).all()


def test_neighbours_are_the_frames_on_disk_nearest_first_and_count_less_further_away() -> None:
    found = {f: Path(f"p.{f}.png") for f in (1, 2, 4, 5, 9)}
    assert neighbours(found, 3, 2) == ((-1, found[2]), (1, found[4]), (-2, found[1]), (2, found[5]))
    assert neighbours(found, 9, 1) == ()
    assert [steady.closeness(d, 2) for d in (0, 1, -2)] == pytest.approx([1.0, 2 / 3, 1 / 3])
    shot = reconstructions(pan(1)) * 4
    assert [k for _, k in steady.around(shot, 0, 2)] == pytest.approx([2 / 3, 1 / 3])
    assert [k for _, k in steady.around(shot, 2, 3)] == pytest.approx([1 / 2, 3 / 4, 3 / 4])


def test_a_frame_named_one_way_as_a_neighbour_and_another_as_itself_is_converted_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ray worker is given its frame by absolute path and, before session 36, its neighbours as the driver named
    them: each frame went through the network twice. Frames are kept by their absolute path."""
    from fhdr_plugin.host.ray_executor import _absolute
    from fhdr_plugin.imaging.io import read_image
    from fhdr_plugin.node.shot import Shot

    write_pan(tmp_path, 3)
    monkeypatch.chdir(tmp_path)
    relative = [Path(f"pan.{t:04d}.png") for t in (1, 2, 3)]
    shot = Shot(1)
    for t in (1, 2):
        own = (tmp_path / relative[t - 1]).absolute()
        near = [(d, relative[t - 1 + d]) for d in (-1, 1) if 0 <= t - 1 + d < 3]
        shot.apply(read_image(own), PARAMS, own, near)
    assert sorted(shot.kept) == [str(tmp_path / p) for p in relative]
    job = _absolute(Job(2, relative[1], Path("h.0002.exr"), steady=1, neighbours=((-1, relative[0]), (1, relative[2]))))
    assert all(path.is_absolute() for path in (job.input, job.output, *(p for _, p in job.neighbours)))


def leaded_light(size: int = 24) -> np.ndarray:
    """The rotunda's brightest leaded window, ``size`` px square, 40 % of it clipped: a light to put in a shot."""
    light = pan(1, width=size, height=size)[0]
    return light / np.quantile(light.max(axis=-1), 0.6)


def steadied_change(truth: list[np.ndarray], t: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """How far (stops, the most of the channels) steadying frame ``t`` of the shot by 2 frames either side moves
    each pixel from that frame's own reconstruction, and which pixels the frame reconstructs."""
    frames = reconstructions(truth)
    low, high = blend()
    out = steady.steadied(frames[t], steady.around(frames, t, 2), low, high)
    reconstructed = scale.matte(frames[t].display, low, high)[..., 0] > 0
    return np.abs(np.log2((out + 1e-2) / (frames[t].output + 1e-2))).max(axis=-1), reconstructed


def test_a_light_moving_across_a_still_shot_leaves_the_still_lights_as_they_were() -> None:
    """A leaded window moves 1.5 px a frame across a locked-off interior with lamps of its own. The motion fitted to
    the windows that hold highlights is pulled towards the moving light's, so the lights that stay still take the
    whole frame's motion (none) where it fits their plates far better: each comes out as its own frame's
    reconstruction (with the fitted motion alone they changed by up to 0.7 stops), and the moving light is still
    steadied by its neighbours."""
    buf = oiio.ImageBuf(str(shared("hdr-train/polyhaven_thatch_chapel.exr")))
    interior = np.nan_to_num(np.asarray(buf.get_pixels(oiio.FLOAT))[..., :3])
    y, x = np.unravel_index(np.argmax(interior.max(axis=-1)), interior.shape[:2])
    top, left = int(np.clip(y - 160, 0, interior.shape[0] - 320)), int(np.clip(x - 256, 0, interior.shape[1] - 512))
    still = downscale(expose(interior[top : top + 320, left : left + 512], 0.01), FACTOR)
    window = leaded_light()
    truth, where = [], []
    rows, cols = np.mgrid[0:160, 0:256].astype(np.float64)
    for t in range(5):
        frame = still.copy()
        inside = (rows >= 60) & (rows < 84) & (cols >= 40 + 1.5 * t) & (cols <= 63 + 1.5 * t)
        frame[inside] = steady.sampled(window, rows - 60, cols - 40 - 1.5 * t)[0][inside]
        truth.append(frame.astype(np.float32))
        where.append(inside)
    change, reconstructed = steadied_change(truth)
    moving = reconstructed & where[2]
    still_lights = reconstructed & (np.abs(cols - 55) > 40)
    assert moving.sum() > 20 and still_lights.sum() > 20
    assert change[still_lights].max() < 0.02
    assert change[moving].mean() > 0.02


def test_a_light_the_camera_follows_stays_its_own_while_the_shot_pans_behind_it() -> None:
    """A tracking shot: a leaded window stays put in the frame while the rotunda pans past behind it. Every motion
    fitted to the shot is the pan's, which would slide the light's flat inside across itself; no motion at all
    fits its edges far better, so it comes out as its own frame's reconstruction (0.01 stops on average; with the
    pan's motions alone it changed by 0.26, and by 1.4 stops at most), and the windows behind are still steadied
    by their neighbours."""
    behind = pan(5, width=192, height=112)
    light = leaded_light()
    held = np.zeros(behind[0].shape[:2], dtype=bool)
    held[44:68, 24:48] = True
    truth = []
    for frame in behind:
        frame = frame.copy()
        frame[held] = light.reshape(-1, 3)
        truth.append(frame)
    change, reconstructed = steadied_change(truth)
    inside = reconstructed & held
    cols = np.arange(held.shape[1])[None, :]
    panning = reconstructed & (cols > 64)
    assert inside.sum() > 20 and panning.sum() > 20
    assert change[inside].mean() < 0.03
    assert change[panning].mean() > 0.02
