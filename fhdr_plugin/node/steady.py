"""Steadying a shot: a frame's reconstruction averaged with its neighbours', moved onto it (beyond the paper).

The network sees each frame alone, so on a pan the lift of a highlight jitters as its clipped shape changes by
sub-pixel amounts. ``steadied`` takes the reconstructions of frames around a frame, finds how far each moved
(``shift_between``: phase correlation of the plates' luminance, to a twentieth of a pixel, for the whole frame,
then ``flow``: the same in windows of 128 px around the highlights), moves it onto the frame (``placed_by``, one
motion for each highlight and its rim: the camera's pan, zoom and roll fitted to the windows' motions
(``similarity``) or, where another fits that highlight's plates far better, the whole frame's translation (a still
lamp while another light moves across the shot), none (a light the camera follows while the shot pans behind it)
or the nearest window's own motion (a light moving its own way among others, ``nearest``)), and averages the gain
of every reconstructed channel over the frames whose plate agrees with this one there (``AGREE``; in the blend's
ramp, where a lossy plate's grain and codec move the weight, the weight of the averaged display too): where the
scene moved otherwise (a passing car, parallax), or outside a neighbour's view, the frame keeps its own
reconstruction, and a neighbour that no move explains (across a cut, ``MATCH``) is left out. What the plate
measured is kept: a channel the blend leaves as the plate (weight 0) comes out as the plate, bit for bit, and so
does a frame without neighbours.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.imaging.color import REC709_LUMA
from fhdr_plugin.node.scale import WHITE, blend_weight

#: The most frames either side a frame is steadied by.
MAX_RADIUS = 8
#: The least ``Motion.match`` of a neighbour that steadies a frame: below it the frames have too little in common
#: (a cut, a flash, a whip pan), and the neighbour is left out.
MATCH = 0.3
#: The share of the mean spectral energy at which a frequency counts half in the phase correlation.
WHITEN = 0.1
#: Mean difference (display-referred, 0-1, over a 5x5 box) above which a neighbour's plate disagrees with the
#: frame's: the scene there is not where the frame's motion put it.
AGREE = 0.1
#: Radius (px) of the box the plates' difference is averaged over.
AGREE_RADIUS = 2
#: The motion is found to 1/REFINE of a pixel.
REFINE = 20
#: How much closer a later motion must fit the plates than the first, on average over a highlight and its rim,
#: for the highlight to take it.
PREFER = 0.5
#: How far apart (px) the windows ``flow`` finds the motion in are; each is twice as wide.
BLOCK = 64
#: The most windows ``flow`` finds the motion in, evenly spread over those that hold a highlight: enough for the
#: camera's four terms, and a bounded cost on a large frame full of highlights.
MAX_WINDOWS = 48


def check_radius(radius: int, mode: str = "anchored") -> None:
    """Refuse a ``--steady`` outside 0 (off) to ``MAX_RADIUS`` frames either side, or one for a blend ``mode``
    other than anchored (raw mode has no plate to keep)."""
    if not 0 <= radius <= MAX_RADIUS:
        raise FhdrError(f"--steady {radius}: frames either side must be 0 (off) to {MAX_RADIUS}")
    if radius and mode != "anchored":
        raise FhdrError(f"--steady steadies the anchored blend, not --mode {mode}")


def closeness(offset: int, radius: int) -> float:
    """How much a frame ``offset`` frames away counts when a frame is steadied by ``radius`` either side: a
    triangle, 1 at the frame itself, falling by ``1 / (radius + 1)`` a frame, so that the mean changes smoothly
    from one frame to the next as frames enter and leave it."""
    return (radius + 1 - abs(offset)) / (radius + 1)


def around(frames: Sequence[Reconstruction], t: int, radius: int) -> list[tuple[Reconstruction, float]]:
    """The frames of a shot (``frames``, in order) within ``radius`` of frame ``t``, less ``t`` itself, each with
    its ``closeness``: ``steadied``'s neighbours for a shot held in memory."""
    near = range(max(0, t - radius), min(len(frames), t + radius + 1))
    return [(frames[s], closeness(s - t, radius)) for s in near if s != t]


def describe(radius: int, found: int) -> str:
    """The ``fhdr:steady`` attribute of a frame steadied by ``found`` of ``radius`` frames either side."""
    return f"{radius} frame{'' if radius == 1 else 's'} either side, {found} found"


@dataclass(frozen=True)
class Reconstruction:
    """One frame's plate, linearised and display-referred, and the node's linear output for it (H, W, 3)."""

    linear: np.ndarray
    display: np.ndarray
    output: np.ndarray


def placed(frame: Reconstruction, origin: tuple[int, int], window: tuple[int, int, int, int]) -> Reconstruction:
    """``frame``, whose pixels start at ``origin`` (y, x), in the data window ``window`` (y, x, height, width)
    instead: cut where it covers the window, black (nothing reconstructed) where it does not, as an EXR reads
    outside its own data window."""
    top, left, height, width = window
    arrays = []
    for x in (frame.linear, frame.display, frame.output):
        out = np.zeros((height, width, x.shape[-1]), dtype=x.dtype)
        y0, x0 = max(top, origin[0]), max(left, origin[1])
        y1, x1 = min(top + height, origin[0] + x.shape[0]), min(left + width, origin[1] + x.shape[1])
        if y1 > y0 and x1 > x0:
            out[y0 - top : y1 - top, x0 - left : x1 - left] = x[
                y0 - origin[0] : y1 - origin[0], x0 - origin[1] : x1 - origin[1]
            ]
        arrays.append(out)
    return Reconstruction(*arrays)


class Motion(NamedTuple):
    """How far one frame moved to the next (rows, columns) and how well a move explains it (``match``: the phase
    correlation's peak, 1 for a pure move, near 0 for frames with nothing in common, such as across a cut)."""

    rows: float
    cols: float
    match: float


def spectrum(image: np.ndarray) -> np.ndarray:
    """The Fourier transform of ``image`` (H, W) less its mean, windowed (Hann): what ``motion`` compares."""
    h, w = image.shape
    return np.fft.fft2((image - image.mean()) * np.outer(np.hanning(h), np.hanning(w)))


def motion(fa: np.ndarray, fb: np.ndarray) -> Motion:
    """How far the image of spectrum ``fb`` is that of ``fa`` moved (``shift_between``, from their ``spectrum``)."""
    h, w = fa.shape
    cross = fb * np.conj(fa)
    magnitude = np.abs(cross)
    if not magnitude.max() > 0.0:  # a flat frame: nothing to match
        return Motion(0.0, 0.0, 0.0)
    weights = magnitude / (magnitude + WHITEN * magnitude.mean())
    cross *= weights / (magnitude + 1e-12)
    y, x = np.unravel_index(int(np.argmax(np.fft.ifft2(cross).real)), (h, w))
    coarse = np.array([y - h if y > h / 2 else y, x - w if x > w / 2 else x], dtype=np.float64)
    offsets = np.arange(-REFINE, REFINE + 1) / REFINE
    rows = np.exp(2j * np.pi * np.outer(coarse[0] + offsets, np.fft.fftfreq(h)))
    cols = np.exp(2j * np.pi * np.outer(np.fft.fftfreq(w), coarse[1] + offsets))
    fine = (rows @ cross @ cols).real / weights.sum()
    i, j = np.unravel_index(int(np.argmax(fine)), fine.shape)
    return Motion(float(coarse[0] + offsets[i]), float(coarse[1] + offsets[j]), float(fine[i, j]))


def shift_between(a: np.ndarray, b: np.ndarray) -> Motion:
    """How far image ``b`` (H, W) is ``a`` moved: ``b(p) ≈ a(p - (rows, cols))``, found by phase correlation
    (windowed; each frequency weighted by how far its energy stands above ``WHITEN`` of the mean, so that the
    frequencies only noise fills, as in a soft or enlarged image, neither move the peak nor lower it), its peak
    refined to ``1 / REFINE`` px by evaluating the correlation on a finer grid around it (a matrix DFT)."""
    return motion(spectrum(a), spectrum(b))


def flow(
    other: np.ndarray, frame: np.ndarray, whole: Motion, where: np.ndarray
) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """How far image ``frame`` (H, W) is ``other`` moved, window by window: in each of the windows of ``2 * BLOCK``
    px (``windows``, ``BLOCK`` apart) that hold a pixel of ``where`` (H, W; at most ``MAX_WINDOWS`` of them, evenly
    spread), the motion between the two images there, ``other`` first moved by the ``whole`` frame's translation;
    a window where no move explains the two (``MATCH``), or one that would move by more than a quarter of its
    size, is left out. Each window's centre (y, x) and its motion (rows, columns) beyond ``whole``: what
    ``similarity`` and ``nearest`` spread over the frame."""
    h, w = frame.shape
    (ys, sy), (xs, sx) = windows(h), windows(w)
    inside = np.cumsum(np.cumsum(np.pad(where, ((1, 0), (1, 0))).astype(np.int64), 0), 1)
    held = [
        (y0, x0)
        for y0 in ys
        for x0 in xs
        if inside[y0 + sy, x0 + sx] - inside[y0, x0 + sx] - inside[y0 + sy, x0] + inside[y0, x0] > 0
    ]
    if len(held) > MAX_WINDOWS:
        held = [held[i] for i in np.linspace(0, len(held) - 1, MAX_WINDOWS).round().astype(int)]
    found = []
    there = moved(other[..., None], (whole.rows, whole.cols))[0][..., 0] if held else other
    for y0, x0 in held:
        local = shift_between(there[y0 : y0 + sy, x0 : x0 + sx], frame[y0 : y0 + sy, x0 : x0 + sx])
        if local.match >= MATCH and max(abs(local.rows), abs(local.cols)) <= min(sy, sx) / 4:
            found.append(((y0 + (sy - 1) / 2, x0 + (sx - 1) / 2), (local.rows, local.cols)))
    return found


def nearest(
    points: Sequence[tuple[tuple[float, float], tuple[float, float]]],
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The motion (rows, columns) at any point (y, x) that ``points`` (each a point and its motion) give the nearest
    of them (none: no motion): a light that moves its own way, followed by the window around it. Returns a function
    of two arrays of rows and columns, each (n,), to the motion (n, 2)."""

    def motion_at(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        if not points:
            return np.zeros((len(y), 2))
        at = np.array([p for p, _ in points], dtype=np.float32)
        motions = np.array([m for _, m in points], dtype=np.float64)
        y, x = np.asarray(y, dtype=np.float32), np.asarray(x, dtype=np.float32)
        which = np.empty(len(y), dtype=np.int64)
        for s in range(0, len(y), 1 << 14):  # the (n, windows) distances a slice at a time
            part = slice(s, s + (1 << 14))
            apart = np.square(y[part, None] - at[:, 0])
            apart += np.square(x[part, None] - at[:, 1])
            which[part] = apart.argmin(axis=1)
        return motions[which]

    return motion_at


def similarity(
    points: Sequence[tuple[tuple[float, float], tuple[float, float]]],
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The motion (rows, columns) at any point (y, x) that fits ``points`` (each a point and its motion) best, least
    squares: a camera's pan, zoom and roll (a translation, a scaling and a rotation) from two points on, otherwise
    that of the one point (none: no motion). Returns a function of arrays of rows and columns that broadcast, to
    the motion (..., 2)."""
    if not points:
        return lambda y, x: np.zeros((*np.broadcast_shapes(np.shape(y), np.shape(x)), 2))
    at = np.array([p for p, _ in points], dtype=np.float64)
    motions = np.array([m for _, m in points], dtype=np.float64)
    centre = at.mean(axis=0)
    ty, tx, zoom, roll = motions.mean(axis=0).tolist() + [0.0, 0.0]
    if len(points) >= 2:
        dy, dx = (at - centre).T
        one, zero = np.ones(len(at)), np.zeros(len(at))
        # rows: ty + zoom dy - roll dx; columns: tx + zoom dx + roll dy
        design = np.concatenate([np.column_stack([one, zero, dy, -dx]), np.column_stack([zero, one, dx, dy])])
        target = np.concatenate([motions[:, 0], motions[:, 1]])
        ty, tx, zoom, roll = np.linalg.lstsq(design, target, rcond=None)[0]

    def motion_at(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        vy, vx = np.asarray(y) - centre[0], np.asarray(x) - centre[1]
        return np.stack(np.broadcast_arrays(ty + zoom * vy - roll * vx, tx + zoom * vx + roll * vy), axis=-1)

    return motion_at


def windows(n: int) -> tuple[np.ndarray, int]:
    """Where ``flow``'s windows start along an axis of ``n`` px (``BLOCK`` apart, the last one flush with the end),
    and their size: ``2 * BLOCK``, or ``n`` when the axis is shorter."""
    size = min(2 * BLOCK, n)
    return np.unique(np.append(np.arange(0, n - size + 1, BLOCK), n - size)), size


def sampled(x: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (H, W, C) read at the points (``rows``, ``cols``), two arrays of one shape S, bilinear, the edges
    replicated: (*S, C); and which points (S) lie inside ``x``."""
    h, w, c = x.shape
    inside = (rows >= 0.0) & (rows <= h - 1) & (cols >= 0.0) & (cols <= w - 1)
    rows = np.clip(rows, 0.0, h - 1).astype(np.float32)
    cols = np.clip(cols, 0.0, w - 1).astype(np.float32)
    r0 = np.minimum(rows.astype(np.int64), max(h - 2, 0))
    c0 = np.minimum(cols.astype(np.int64), max(w - 2, 0))
    fy, fx = (rows - r0)[..., None], (cols - c0)[..., None]
    flat = x.reshape(h * w, c)
    at = r0 * w + c0
    down, right = np.where(r0 + 1 < h, w, 0), np.where(c0 + 1 < w, 1, 0)
    top = (1.0 - fx) * np.take(flat, at, axis=0) + fx * np.take(flat, at + right, axis=0)
    bottom = (1.0 - fx) * np.take(flat, at + down, axis=0) + fx * np.take(flat, at + down + right, axis=0)
    return ((1.0 - fy) * top + fy * bottom).astype(np.float32), inside


def _taps(n: int, shift: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of ``n`` output positions: the source index before it, the fraction towards the next, and whether
    the source lies inside."""
    source = np.arange(n, dtype=np.float64) - shift
    inside = (source >= 0.0) & (source <= n - 1)
    source = np.clip(source, 0.0, n - 1)
    before = np.minimum(np.floor(source).astype(np.int64), max(n - 2, 0))
    return before, (source - before).astype(np.float32), inside


def moved(x: np.ndarray, shift: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (H, W, C) moved by ``shift`` (rows, columns), bilinear: ``out(p) = x(p - shift)`` (``sampled`` for one
    motion everywhere, a row and a column at a time); and which pixels (H, W) came from inside ``x``."""
    h, w = x.shape[:2]
    rows, fy, inside_y = _taps(h, shift[0])
    cols, fx, inside_x = _taps(w, shift[1])
    nxt_rows, nxt_cols = np.minimum(rows + 1, h - 1), np.minimum(cols + 1, w - 1)
    fy, fx = fy[:, None, None], fx[None, :, None]
    y = (1.0 - fy) * x[rows] + fy * x[nxt_rows]
    out = (1.0 - fx) * y[:, cols] + fx * y[:, nxt_cols]
    return out.astype(np.float32), inside_y[:, None] & inside_x[None, :]


def box_mean(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean of ``x`` (H, W) over a (2r+1)² box around each pixel, the edges replicated."""
    k = 2 * radius + 1
    table = np.pad(np.pad(x.astype(np.float64), radius, mode="edge"), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    h, w = x.shape
    total = table[k:, k:] - table[:h, k:] - table[k:, :w] + table[:h, :w]
    return (total / (k * k)).astype(np.float32)


def gain(frame: Reconstruction) -> np.ndarray:
    """output / plate per channel (H, W, 3): 1 where the output is the plate."""
    return (np.maximum(frame.output, 1e-6) / np.maximum(frame.linear, 1e-6)).astype(np.float32)


def key(frame: Reconstruction) -> np.ndarray:
    """What the motion is found on: the display-referred plate's luminance (H, W), as even in its noise as the
    camera's encoding makes it."""
    return (frame.display @ REC709_LUMA).astype(np.float32)


#: The neighbours a point looks for after it in raster order (right, and the three below): with those before it,
#: which find it, all eight, across corners too.
AFTER = ((0, 1), (1, -1), (1, 0), (1, 1))


def areas_of(points: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Which connected area of ``points`` (rows, columns, each (n,); neighbours across corners too: a highlight and
    its rim) each point lies in, numbered from 0 in the order of the areas' first points: (n,). Found over the
    points alone, however far apart they lie in the frame: each point's neighbours are looked up among the points'
    sorted raster indices, then the smallest point number spreads along these links, each number following the
    point it names, until nothing changes."""
    ys, xs = (np.asarray(a, dtype=np.int64) for a in points)
    width = int(xs.max()) + 3  # a column either side, so that no neighbour wraps to another row
    index = (ys + 1) * width + xs + 1
    order = np.argsort(index, kind="stable")
    ranked = index[order]
    ends = []
    for dy, dx in AFTER:
        wanted = index + dy * width + dx
        at = np.minimum(np.searchsorted(ranked, wanted), len(ranked) - 1)
        there = ranked[at] == wanted
        ends.append((np.nonzero(there)[0], order[at[there]]))
    first = np.concatenate([a for a, _ in ends])
    second = np.concatenate([b for _, b in ends])
    label = np.arange(len(index))
    while True:
        least = label.copy()
        np.minimum.at(least, first, label[second])
        np.minimum.at(least, second, label[first])
        least = least[least[least]]
        if np.array_equal(least, label):
            return np.unique(label, return_inverse=True)[1].ravel()
        label = least


def placed_by(
    other: np.ndarray,
    display: np.ndarray,
    points: tuple[np.ndarray, np.ndarray],
    area: np.ndarray,
    motions: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """A neighbour's ``other`` (H, W, C; its display-referred plate last) moved onto the frame of plate ``display``
    (H, W, 3) at ``points`` (rows, columns, each (n,)) by the first of ``motions`` (each the rows and the columns
    of a motion at the points), or by a later one in each connected area of the points (``area``, from
    ``areas_of``) whose plates it fits, on average over the area, with less than ``PREFER`` times the difference:
    (n, C). And the plates' mean difference over ``AGREE_RADIUS`` around each point (n,), infinite where the
    neighbour did not see it."""
    ys, xs = points
    # The boxes around the points lie within their bounding box grown by AGREE_RADIUS + 1, whose border rows
    # and columns hold no point: the box means there are those of the whole frame.
    h, w = display.shape[:2]
    top, left = max(int(ys.min()) - AGREE_RADIUS - 1, 0), max(int(xs.min()) - AGREE_RADIUS - 1, 0)
    bottom, right = min(int(ys.max()) + AGREE_RADIUS + 2, h), min(int(xs.max()) + AGREE_RADIUS + 2, w)
    differ = np.zeros((bottom - top, right - left), dtype=np.float32)
    at = (ys - top, xs - left)
    size = np.bincount(area)

    def fit(move: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        found, inside = sampled(other, ys - move[0], xs - move[1])
        differ[at] = np.abs(found[:, -3:] - display[ys, xs]).mean(axis=-1)
        apart = np.where(inside, box_mean(differ, AGREE_RADIUS)[at], np.inf)
        return found, apart, np.bincount(area, weights=differ[at], minlength=len(size)) / size

    found, apart, score = fit(motions[0])
    for move in motions[1:]:
        their_found, their_apart, their_score = fit(move)
        better = their_score < PREFER * score
        closer = better[area]
        found = np.where(closer[:, None], their_found, found)
        apart = np.where(closer, their_apart, apart)
        score = np.where(better, their_score, score)
    return found, apart


def steadied(
    frame: Reconstruction, neighbours: Sequence[tuple[Reconstruction, float]], low: float, high: float
) -> np.ndarray:
    """The node's linear output for ``frame`` (H, W, 3) steadied by ``neighbours`` (other frames of the shot, the
    same size, each with how much it counts, ``closeness``), over the frames whose plates agree with its own there
    (the neighbours moved onto it; one a move does not explain, ``MATCH``, is left out), per channel the blend
    (``low``, ``high``) reconstructs here:

    - a channel the plate clipped (blend weight 1): its gain over the plate moves to the mean over the frames that
      reconstructed it;
    - a channel in the blend's ramp (weight between 0 and 1: a lossy plate's near-white values, whose weight
      follows the display value and so its noise and its codec): the weight is that of the display value averaged
      over the frames, and the gain is the network's whole gain (each frame's gain over 1, over its weight)
      averaged over them.
    """
    own = gain(frame)
    weight = blend_weight(frame.display, low, high) * (frame.linear <= WHITE)
    reconstructs = weight.max(axis=-1) > 0
    if not reconstructs.any():
        return frame.output.copy()
    near = box_mean(reconstructs.astype(np.float32), AGREE_RADIUS) > 0  # and the boxes the plates are compared in
    ys, xs = np.nonzero(near)
    area = areas_of((ys, xs))
    w = weight[ys, xs]
    total, count = w * own[ys, xs], w  # count: the frames' weights, what either mean divides by
    excess = own[ys, xs] - 1.0
    seen, looks = frame.display[ys, xs].astype(np.float64), np.ones((len(ys), 1))
    here = key(frame)
    target = spectrum(here)
    for other, counts in neighbours:
        there = key(other)
        whole = motion(spectrum(there), target)
        if whole.match < MATCH:
            continue
        stacked = np.concatenate([gain(other), blend_weight(other.display, low, high), other.display], axis=-1)
        windowed = flow(there, here, whole, near)
        fitted, local = similarity(windowed)(ys, xs), nearest(windowed)(ys, xs)
        candidates = [
            (whole.rows + fitted[:, 0], whole.cols + fitted[:, 1]),
            (np.full(len(ys), whole.rows), np.full(len(ys), whole.cols)),
            (np.zeros(len(ys)), np.zeros(len(ys))),
            (whole.rows + local[:, 0], whole.cols + local[:, 1]),
        ]
        found, apart = placed_by(stacked, frame.display, (ys, xs), area, candidates)
        theirs, reconstructed, display = found[:, :3], found[:, 3:6], found[:, 6:]
        looked = counts * (apart < AGREE)[:, None]
        total = total + looked * reconstructed * theirs
        count = count + looked * reconstructed
        excess = excess + looked * (theirs - 1.0)
        seen = seen + looked * display
        looks = looks + looked
    linear = frame.linear[ys, xs]
    weights = np.maximum(count, 1e-12)
    clipped = frame.output[ys, xs] * np.power(total / weights / own[ys, xs], w)
    steadier = blend_weight((seen / looks).astype(np.float32), low, high)
    ramp = np.maximum(linear * (1.0 + steadier * excess / weights), linear)
    alone = (looks == 1.0) | (w == 0)
    out = frame.output.copy()
    out[ys, xs] = np.where(alone, frame.output[ys, xs], np.where(w >= 1.0, clipped, ramp))
    return out.astype(np.float32)
