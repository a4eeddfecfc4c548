"""Steadiness on a shot: a slow pan over an HDR panorama, and the temporal error of fhdr, the plate and the truth.

    python benchmarks/temporal.py                       # 24 frames of 256x160, 1.5 px per frame, tiles of 96
    python benchmarks/temporal.py --hdr ../shared/data/hdr-train/polyhaven1k_sunrise.exr --frames 32
    python benchmarks/temporal.py --zoom 2.5            # the same shot enlarged: 640x400, 3.75 px per frame
    python benchmarks/temporal.py --push 0.01           # a push-in: the view 1 % narrower every frame

Each frame is the panorama box-downscaled by 2 from a crop window that slides 3 panorama pixels (1.5 frame
pixels) per frame, so highlights move across the frame, cross tile borders and change their clipped shape by
sub-pixel amounts, as on a real pan. A plain sRGB 8-bit camera (``training.data.Camera()``) at one exposure for
the whole shot makes the LDR frames; ``--noise`` gives it sensor noise, drawn anew every frame as on real footage,
``--jpeg`` JPEG compression (the frames then blended from 0.95, as the node blends a JPEG file), and ``--step 0``
locks the camera off, so that only they change from frame to frame (the same plate under new noise and JPEG
draws). For each pair of frames, frame t is moved by the pan (1.5 px: the mean of its pixels 1 and 2 to the
right) and compared with frame t+1 over the reconstructed pixels (blend weight > 0 in frame t+1): the mean
absolute log2 ratio (stops), for fhdr's output,
the linearised plate and the ground truth (whose error is that of the half-pixel move alone). The flicker is the
same measurement on log(output / truth): how much the error itself changes from frame to frame, which a steady
reconstruction keeps as low as the linearised plate's; the lift is the mean output over the plate on the
reconstructed pixels (a flicker bought by no lift at all is no gain). ``--shot interior`` pans over a bright
interior (lamps and windows), ``--shot windows`` over a rotunda's small leaded windows, ``--shot sunset`` over the
sunset panorama; ``--zoom`` enlarges every frame (its highlights deeper than the network sees, where the node's
coarser levels act); ``--push R`` narrows the view by R a frame about its centre as it pans (a push-in, each
frame read bilinearly from the downscaled panorama), so the frames move apart by a zoom as well as a translation
and each pair is compared through that move; ``--object V`` puts a leaded window in front that moves V px a frame
to the right on its own (0: the camera follows it), compared inside through its own move and reported apart as
well. ``--steady N`` (default 2) measures the same again for ``fhdr batch --steady N``: each frame's
reconstruction steadied by N frames either side (``fhdr_plugin.node.steady``). Printed, never asserted. See
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import OpenImageIO as oiio

from fhdr_plugin.imaging import color
from fhdr_plugin.node import operation as node
from fhdr_plugin.node import scale, steady
from fhdr_plugin.params import AUTO_BLEND, LOSSY_BLEND_LOW, LdrToHdrParams
from training.data import Camera, downscale, expose
from training.evaluate import enlarged

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "hdr-train"
#: The shots ``--shot`` names: a sunset sky, an interior with lamps and windows, and a rotunda's leaded windows.
SHOTS = {
    "sunset": DATA / "polyhaven1k_sunset.exr",
    "interior": DATA / "polyhaven_thatch_chapel.exr",
    "windows": DATA / "polyhaven_sepulchral_chapel_rotunda.exr",
}
#: Panorama pixels the window slides per frame; frames are the window downscaled by FACTOR.
STEP, FACTOR = 3, 2
#: Light (relative to white) below which log ratios are not told apart.
FLOOR = 1e-2
#: Size (frame px) of ``--object``'s light, and the width (px) of its edge, where it is not measured.
LIGHT_SIZE, LIGHT_EDGE = 24, 2


def panorama(path: Path) -> np.ndarray:
    """The panorama's RGB (H, W, 3) float32."""
    buf = oiio.ImageBuf(str(path))
    pixels = np.asarray(buf.get_pixels(oiio.FLOAT), dtype=np.float32)
    if buf.has_error or pixels.ndim != 3:
        raise SystemExit(f"{path}: cannot read: {buf.geterror()}")
    return np.nan_to_num(np.maximum(pixels[..., :3], 0.0))


def pan(hdr: np.ndarray, frames: int, width: int, height: int, clipped: float, step: int = STEP) -> list[np.ndarray]:
    """Ground-truth HDR frames (white at 1) of a horizontal pan past the panorama's brightest pixel, ``step``
    panorama pixels a frame (0: a locked-off shot)."""
    wh, ww = FACTOR * height, FACTOR * width
    span = ww + step * (frames - 1)
    if hdr.shape[0] < wh or hdr.shape[1] < span:
        raise SystemExit(f"the panorama ({hdr.shape[1]}x{hdr.shape[0]}) is smaller than the pan ({span}x{wh})")
    y, x = np.unravel_index(np.argmax(hdr.max(axis=-1)), hdr.shape[:2])
    top = int(np.clip(y - wh // 2, 0, hdr.shape[0] - wh))
    left = int(np.clip(x - ww // 2 - step * frames // 2, 0, hdr.shape[1] - span))
    shot = expose(hdr[top : top + wh, left : left + span], clipped)
    if shot is None:
        raise SystemExit("the panorama is black where the pan runs")
    return [downscale(shot[:, step * t : step * t + ww], FACTOR) for t in range(frames)]


#: A pair's move: frame t's values (H, W, ...) on frame t+1's pixels, and which of them frame t saw.
Move = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def push(
    hdr: np.ndarray, frames: int, width: int, height: int, clipped: float, step: int, rate: float
) -> list[np.ndarray]:
    """Ground-truth HDR frames of a push-in past the panorama's brightest pixel: the view narrows by ``rate`` a frame
    about its centre while it pans ``step`` panorama pixels a frame, each frame read bilinearly from the panorama
    box-downscaled by ``FACTOR`` (the n-th frame's pixels are (1 - ``rate``)^n of the first's)."""
    margin = 2
    span = width + step * (frames - 1) // FACTOR + 2 * margin
    source = pan(hdr, 1, span, height + 2 * margin, clipped, 0)[0]
    return [
        steady.sampled(source, *view(height, width, (1.0 - rate) ** t, margin, margin + step / FACTOR * t))[0]
        for t in range(frames)
    ]


def view(height: int, width: int, ratio: float, down: float, right: float) -> tuple[np.ndarray, np.ndarray]:
    """The points (rows, columns, each (height, width)) a frame of that size reads: ``ratio`` times as far from
    its centre as its own pixels, and ``down`` and ``right`` pixels further."""
    cy, cx = (height - 1) / 2, (width - 1) / 2
    rows = down + cy + (np.arange(height, dtype=np.float64)[:, None] - cy) * ratio
    cols = right + cx + (np.arange(width, dtype=np.float64)[None, :] - cx) * ratio
    return np.broadcast_to(rows, (height, width)), np.broadcast_to(cols, (height, width))


def moves_of(args: argparse.Namespace, frames: int, scale: float) -> list[Move]:
    """The move of each pair of the shot ``args`` makes, in frames ``scale`` times the pan's size."""
    shift = args.step / FACTOR * scale
    if not args.push:
        return [panned(shift)] * (frames - 1)
    return [pushed(shift / (1.0 - args.push) ** t, 1.0 - args.push) for t in range(frames - 1)]


class Light(NamedTuple):
    """A light moving its own way through a shot: its truth (h, w, 3), where its first frame puts its top-left
    corner (row, column) and how far it moves right a frame (px), all in the shot's frames before ``--zoom``."""

    patch: np.ndarray
    top: float
    left: float
    speed: float

    @classmethod
    def from_windows(cls, height: int, width: int, speed: float) -> Light:
        """The rotunda's brightest leaded window (``SHOTS["windows"]``, downscaled like the frames, 40 % of it
        clipped), crossing the frame's left half a little below the middle."""
        hdr = panorama(SHOTS["windows"])
        y, x = np.unravel_index(np.argmax(hdr.max(axis=-1)), hdr.shape[:2])
        r = LIGHT_SIZE * FACTOR // 2
        patch = downscale(hdr[y - r : y + r, x - r : x + r], FACTOR)
        return cls(patch / np.quantile(patch.max(axis=-1), 0.6), 0.45 * height, 0.2 * width, speed)

    def at(self, t: int, scale: float = 1.0) -> tuple[float, float]:
        """Its top-left corner in frame ``t`` of frames ``scale`` times the shot's size."""
        return self.top * scale, (self.left + self.speed * t) * scale

    def over(self, frame: np.ndarray, t: int) -> np.ndarray:
        """``frame`` (the shot's size) with the light in front, where frame ``t`` has it (bilinear)."""
        top, left = self.at(t)
        rows, cols = np.mgrid[0 : frame.shape[0], 0 : frame.shape[1]].astype(np.float64)
        found, inside = steady.sampled(self.patch, rows - top, cols - left)
        inside &= (rows - top < self.patch.shape[0] - 1) & (cols - left < self.patch.shape[1] - 1)
        return np.where(inside[..., None], found, frame).astype(np.float32)

    def inside(self, shape: tuple[int, int], t: int, scale: float, margin: float) -> np.ndarray:
        """Which pixels of a frame of ``shape`` (``scale`` times the shot's size) lie ``margin`` px or more inside
        the light in frame ``t``."""
        top, left = self.at(t, scale)
        h, w = (n * scale for n in self.patch.shape[:2])
        rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
        return (
            (rows >= top + margin)
            & (rows <= top + h - 1 - margin)
            & (cols >= left + margin)
            & (cols <= left + w - 1 - margin)
        )

    def carried(self, moves: list[Move], shape: tuple[int, int], scale: float) -> list[Move]:
        """``moves`` with the light's pixels moved its own way: inside it (2 px in) by its speed; on its edge,
        which the pair's two frames may see on either side of it, unknown."""
        pairs, shift = [], (0.0, self.speed * scale)
        for t, camera in enumerate(moves):
            inner = self.inside(shape, t + 1, scale, LIGHT_EDGE)
            edge = self.inside(shape, t + 1, scale, -LIGHT_EDGE) & ~inner

            def move(prev: np.ndarray, camera: Move = camera, inner: np.ndarray = inner, edge: np.ndarray = edge):
                values = prev if prev.ndim == 3 else prev[..., None]
                out, known = camera(prev)
                own, seen = steady.moved(values, shift)
                own = own if prev.ndim == 3 else own[..., 0]
                mask = inner if prev.ndim == 2 else inner[..., None]
                return np.where(mask, own, out), np.where(inner, seen, known & ~edge)

            pairs.append(move)
        return pairs


def panned(shift: float) -> Move:
    """The move of a pan: frame t moved left by ``shift`` pixels (linear between its two nearest columns), known on
    the columns it covers."""

    def move(prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = int(shift)
        frac = shift - k
        width = prev.shape[1] - k - 1
        out = np.zeros_like(prev)
        out[:, :width] = (1.0 - frac) * prev[:, k : k + width] + frac * prev[:, k + 1 : k + 1 + width]
        known = np.zeros(prev.shape[:2], dtype=bool)
        known[:, :width] = True
        return out, known

    return move


def pushed(shift: float, ratio: float) -> Move:
    """The move of a push-in: frame t read, bilinear, at each pixel's point of the scene in frame t, which is
    ``ratio`` times as far from the frame's centre and ``shift`` pixels to the right (the pan)."""

    def move(prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values = prev if prev.ndim == 3 else prev[..., None]
        out, known = steady.sampled(values, *view(*prev.shape[:2], ratio, 0.0, shift))
        return (out if prev.ndim == 3 else out[..., 0]), known

    return move


def temporal_error(frames: list[np.ndarray], masks: list[np.ndarray], moves: list[Move]) -> float:
    """Mean |log2| ratio of frame t moved onto frame t+1 (``moves``, one a pair) to frame t+1, over the masked
    pixels of t+1 that frame t saw."""
    errors = []
    for prev, cur, mask, move in zip(frames, frames[1:], masks[1:], moves, strict=False):
        before, known = move(prev)
        ratio = np.log2((before + FLOOR) / (cur + FLOOR))
        errors.append(np.abs(ratio)[mask & known].ravel())
    return float(np.concatenate(errors).mean())


def flicker(outputs: list[np.ndarray], truth: list[np.ndarray], masks: list[np.ndarray], moves: list[Move]) -> float:
    """Mean |change| (stops) of log2(output / truth) from frame t, moved onto frame t+1 (``moves``), to frame t+1,
    over the masked pixels of t+1 that frame t saw."""
    errors = [np.log2((out + FLOOR) / (tru + FLOOR)) for out, tru in zip(outputs, truth, strict=True)]
    changes = []
    for prev, cur, mask, move in zip(errors, errors[1:], masks[1:], moves, strict=False):
        before, known = move(prev)
        changes.append(np.abs(before - cur)[mask & known].ravel())
    return float(np.concatenate(changes).mean())


def lift(outputs: list[np.ndarray], plates: list[np.ndarray], masks: list[np.ndarray]) -> float:
    """Mean luminance of the outputs over the plates' on the masked pixels."""
    out = np.concatenate([(o @ color.REC709_LUMA)[m] for o, m in zip(outputs, masks, strict=True)])
    plate = np.concatenate([(p @ color.REC709_LUMA)[m] for p, m in zip(plates, masks, strict=True)])
    return float(out.mean() / max(plate.mean(), 1e-12))


def run(args: argparse.Namespace) -> dict[str, float]:
    """Make the shot, convert every frame in order, and measure the three temporal errors."""
    hdr = panorama(args.hdr or SHOTS[args.shot])
    if args.push:
        shot = push(hdr, args.frames, args.width, args.height, args.clipped, args.step, args.push)
    else:
        shot = pan(hdr, args.frames, args.width, args.height, args.clipped, args.step)
    light = Light.from_windows(args.height, args.width, args.object) if args.object is not None else None
    if light is not None:
        shot = [light.over(frame, t) for t, frame in enumerate(shot)]
    truth = [enlarged(frame, args.zoom) for frame in shot]
    zoom = truth[0].shape[1] / shot[0].shape[1]
    moves = moves_of(args, len(truth), zoom)
    if light is not None:
        moves = light.carried(moves, truth[0].shape[:2], zoom)
    rng = np.random.default_rng(0)
    camera = Camera(noise=args.noise, jpeg_quality=args.jpeg or None)
    ldr = [camera.render(frame, rng) for frame in truth]
    params = LdrToHdrParams.from_kwargs(
        blend_low=LOSSY_BLEND_LOW if args.jpeg else AUTO_BLEND,
        precision=args.precision,
        tile=args.tile,
        strength=args.strength,
        model=args.model,
        context=args.context,
        coarse=args.coarse,
    )
    start = time.perf_counter()
    fhdr = [node.predict_linear(frame, "srgb_tx", params)[0] for frame in ldr]
    seconds = (time.perf_counter() - start) / len(ldr)
    linear = [color.convert(frame, "srgb_tx", color.LINEAR_SPACE) for frame in ldr]
    mattes = [scale.matte_of(frame, params.blend)[..., 0] for frame in ldr]
    masks = [matte > 0 for matte in mattes]
    start = time.perf_counter()
    steadied = steadied_shot(ldr, fhdr, params, args.steady)
    steady_seconds = (time.perf_counter() - start) / len(ldr)
    result = {
        "frames": args.frames,
        "size": f"{truth[0].shape[1]}x{truth[0].shape[0]}",
        "reconstructed_share": float(np.mean(masks)),
        "fhdr": temporal_error(fhdr, masks, moves),
        "linearised_input": temporal_error(linear, masks, moves),
        "ground_truth": temporal_error(truth, masks, moves),
        "flicker_fhdr": flicker(fhdr, truth, masks, moves),
        "flicker_linearised_input": flicker(linear, truth, masks, moves),
        "lift_fhdr": lift(fhdr, linear, masks),
        "lift_truth": lift(truth, linear, masks),
        "seconds_per_frame": seconds,
        "steady": args.steady,
        "flicker_steady": flicker(steadied, truth, masks, moves),
        "lift_steady": lift(steadied, linear, masks),
        "steady_seconds_per_frame": steady_seconds,
    }
    for part, masked in (("ramp", [(m > 0) & (m < 1) for m in mattes]), ("clipped", [m == 1 for m in mattes])):
        plate = flicker(linear, truth, masked, moves) if any(m.any() for m in masked[1:]) else 0.0
        for name, outputs in (("fhdr", fhdr), ("steady", steadied)):
            result[f"{part}_flicker_{name}_over_input"] = (
                flicker(outputs, truth, masked, moves) / plate if plate else float("nan")
            )
    if light is not None:
        on = [m & light.inside(m.shape, t, zoom, LIGHT_EDGE) for t, m in enumerate(masks)]
        plate = flicker(linear, truth, on, moves)  # 0 where the light moves by whole pixels: no resampling
        result["object_flicker_fhdr"] = flicker(fhdr, truth, on, moves)
        result["object_flicker_linearised_input"] = plate
        result["object_flicker_steady"] = flicker(steadied, truth, on, moves)
        result["object_flicker_over_input"] = result["object_flicker_fhdr"] / plate if plate else float("nan")
        result["object_flicker_steady_over_input"] = result["object_flicker_steady"] / plate if plate else float("nan")
        result["object_lift_fhdr"], result["object_lift_steady"] = lift(fhdr, linear, on), lift(steadied, linear, on)
        result["object_lift_truth"] = lift(truth, linear, on)
    result["fhdr_over_input"] = result["fhdr"] / result["linearised_input"]
    result["flicker_over_input"] = result["flicker_fhdr"] / result["flicker_linearised_input"]
    result["flicker_steady_over_input"] = result["flicker_steady"] / result["flicker_linearised_input"]
    return result


def steadied_shot(
    ldr: list[np.ndarray], outputs: list[np.ndarray], params: LdrToHdrParams, radius: int
) -> list[np.ndarray]:
    """Each frame's output steadied by ``radius`` frames either side, as ``fhdr batch --steady`` does it."""
    frames = [
        steady.Reconstruction(*node.to_model_space(f, "srgb_tx"), out) for f, out in zip(ldr, outputs, strict=True)
    ]
    blend = params.blend.for_plate(lossy=False)
    return [
        steady.steadied(frame, steady.around(frames, t, radius), blend.blend_low, blend.blend_high)
        for t, frame in enumerate(frames)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shot", choices=sorted(SHOTS), default="interior", help="the panorama to pan over")
    ap.add_argument("--hdr", type=Path, default=None, help="another panorama to pan over (instead of --shot)")
    ap.add_argument("--model", default="", help="shipped model name [default: the default model]")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--height", type=int, default=160)
    ap.add_argument("--clipped", type=float, default=0.03, help="share of the shot's pixels the camera clips")
    ap.add_argument("--step", type=int, default=STEP, help="panorama pixels the view moves a frame (0: locked off)")
    ap.add_argument("--push", type=float, default=0.0, help="how much narrower the view gets a frame (a push-in)")
    ap.add_argument(
        "--object",
        type=float,
        default=None,
        help="a light moving this many px a frame to the right through the shot on its own (a leaded window)",
    )
    ap.add_argument("--noise", type=float, default=0.0, help="the camera's sensor noise, a new draw every frame")
    ap.add_argument("--jpeg", type=int, default=0, help="the camera's JPEG quality (0: none)")
    ap.add_argument("--tile", type=int, default=96, help="engine tile size (tile borders cross the highlights)")
    ap.add_argument("--precision", default="float32")
    ap.add_argument("--strength", type=float, default=1.0)
    ap.add_argument(
        "--context", action=argparse.BooleanOptionalAction, default=True, help="the model's lift head on or off"
    )
    ap.add_argument(
        "--coarse", action=argparse.BooleanOptionalAction, default=True, help="the node's coarser levels on or off"
    )
    ap.add_argument(
        "--zoom", type=float, default=1.0, help="enlarge every frame this many times (a pan shot with more pixels)"
    )
    ap.add_argument("--steady", type=int, default=2, help="frames either side for the steadied figures (0: none)")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = ap.parse_args()
    if args.object is not None and args.push:
        ap.error("--object moves a light through a pan, not a push-in")
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['frames']} frames of {result['size']}, {100 * result['reconstructed_share']:.1f}% reconstructed")
    print("temporal error over the reconstructed pixels (mean |log2| of frame t moved by the pan / frame t+1):")
    for key in ("fhdr", "linearised_input", "ground_truth"):
        print(f"  {key:17s} {result[key]:.4f} stops")
    print(f"fhdr / linearised input: {result['fhdr_over_input']:.2f} ({result['seconds_per_frame']:.2f} s/frame)")
    print("flicker (mean |change| of log2(output / truth) from frame to frame over the reconstructed pixels):")
    print(f"  fhdr {result['flicker_fhdr']:.4f}, linearised input {result['flicker_linearised_input']:.4f} stops")
    print(f"  fhdr / linearised input: {result['flicker_over_input']:.2f}")
    print(
        f"lift over the plate on the reconstructed pixels: fhdr {result['lift_fhdr']:.2f}x, truth "
        f"{result['lift_truth']:.2f}x"
    )
    if args.object is not None:
        print(
            f"the moving light: flicker {result['object_flicker_fhdr']:.4f} stops, linearised input "
            f"{result['object_flicker_linearised_input']:.4f} ({result['object_flicker_over_input']:.2f}x), lift "
            f"{result['object_lift_fhdr']:.2f}x (truth {result['object_lift_truth']:.2f}x); steadied "
            f"{result['object_flicker_steady']:.4f} stops ({result['object_flicker_steady_over_input']:.2f}x), lift "
            f"{result['object_lift_steady']:.2f}x"
        )
    print(
        f"steadied by {result['steady']} frames either side (fhdr batch --steady {result['steady']}): flicker "
        f"{result['flicker_steady_over_input']:.2f}x the linearised input's, lift {result['lift_steady']:.2f}x "
        f"(+{result['steady_seconds_per_frame']:.2f} s/frame)"
    )
    print(
        "flicker / the linearised input's, per frame → steadied: where the plate clipped "
        f"{result['clipped_flicker_fhdr_over_input']:.2f} → {result['clipped_flicker_steady_over_input']:.2f}, "
        f"in the blend's ramp {result['ramp_flicker_fhdr_over_input']:.2f} → "
        f"{result['ramp_flicker_steady_over_input']:.2f}"
    )


if __name__ == "__main__":
    main()
