"""Evaluation: the shipped model (through ``fhdr_plugin``) and the classical baselines, scored on the same cases.

A case is an LDR input with its HDR ground truth, both relative to the LDR's white. From HDR-only images the
LDR is synthesised like a plain sRGB camera (no noise, no response jitter, 8-bit) at several exposures, each
chosen to clip a given fraction of the pixels, slight clipping included; in the paired layout the LDR is read
and the HDR aligned to its white (``training.data.load_pair``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import torch

from fhdr_plugin.imaging import color
from fhdr_plugin.node.engine import to_image, to_tensor
from fhdr_plugin.node.operation import LdrToHdrParams, predict_linear
from training.baselines import BASELINES
from training.data import Synthesis, expose, load_pair, paired_files, read_rgb, srgb_encode, synthesise, well_exposed
from training.highlights import figures, hollow
from training.metrics import METRICS, REGIONS, clipped_ratio, score
from training.views import brightest_view, is_panorama

log = logging.getLogger("fhdr.evaluate")

#: Clipped fractions of the synthesised exposures: slight to strong clipping.
FRACTIONS = (0.005, 0.02, 0.05, 0.10)
#: An image's barely clipped case: the largest of these clipped fractions at which the clipped pixels are, in
#: truth, at most ``BARELY_TRUTH`` times the plate's brightness there, with at least ``BARELY_PIXELS`` of them. Most
#: images with a lamp or the sun have none (their clipped pixels are far brighter at any exposure).
BARELY_FRACTIONS = tuple(float(f) for f in np.geomspace(1e-4, 1e-2, 11))
BARELY_TRUTH = 1.1
BARELY_PIXELS = 64
NETWORK_MODES = ("anchored", "raw")
INPUT_SPACE = "srgb_tx"
#: A plain sRGB camera: the same curve the linearised input assumes, so only clipping and 8 bits lose information.
CAMERA = Synthesis.plain(headroom=16.0)
METRIC_TITLES = {"mu_psnr": "mu-PSNR", "pu21_psnr": "PU21-PSNR", "mu_ssim": "mu-SSIM"}
SHEET_CELL = 192
#: Exposures (stops) of the contact sheet's columns: input, output and ground truth at each.
SHEET_STOPS = (-2.0, -4.0, -6.0)
#: The method whose per-case figures the report lists against the linearised input.
REPORTED = "fhdr_anchored"
BASELINE = "linearised"
#: What the report checks: mean clipped gain, share of cases won, whole-image guard, lift where the truth is bright,
#: no lift where it is not, channels the plate did not clip kept, no hollow highlights.
TARGET_GAIN_DB = 4.0
TARGET_WIN_SHARE = 0.9
#: How far (dB) the whole-image PU21-PSNR may fall below the linearised input's on any case (validation's guard too).
GUARD_DB = 0.5


@dataclass(frozen=True)
class Case:
    """One evaluation input: display-referred sRGB LDR in [0, 1] and linear HDR relative to its white."""

    image: str
    fraction: float | None
    ldr: np.ndarray
    hdr: np.ndarray
    barely: bool = False

    @property
    def name(self) -> str:
        """``image`` with the requested clipped fraction, e.g. ``lobby@2.0%``, or ``lobby@0.16% barely``."""
        if self.fraction is None:
            return self.image
        return f"{self.image}@{self.fraction:.2%} barely" if self.barely else f"{self.image}@{self.fraction:.1%}"

    @property
    def clipped(self) -> np.ndarray:
        """(H, W) mask of the input's clipped pixels: some channel at the 8-bit maximum."""
        return self.ldr.max(axis=-1) >= 1.0


def camera_view(hdr: np.ndarray) -> np.ndarray:
    """What a camera would see of an HDR image: a panorama's rectilinear view of its brightest part near the
    horizon (``views.brightest_view``), any other image whole."""
    return brightest_view(hdr) if is_panorama(hdr) else hdr


def enlarged(hdr: np.ndarray, zoom: float) -> np.ndarray:
    """``hdr`` (H, W, 3) resampled bilinearly to ``zoom`` times its size: the same scene as a camera with more
    pixels sees it, its highlights that many pixels wider (and softer than a real photograph that size)."""
    if zoom == 1.0:
        return hdr
    h, w = hdr.shape[:2]
    size = (round(h * zoom), round(w * zoom))
    return to_image(torch.nn.functional.interpolate(to_tensor(hdr), size=size, mode="bilinear", align_corners=False))


def synthetic_cases(
    files: list[Path],
    fractions: tuple[float, ...] = FRACTIONS,
    seed: int = 0,
    views: bool = True,
    camera: Synthesis = CAMERA,
    barely: bool = False,
    zoom: float = 1.0,
) -> Iterator[Case]:
    """Cases made from HDR-only images through ``camera``: one per image and clipped fraction, deterministic for
    ``seed``; with ``views``, of each panorama's ``camera_view`` rather than the whole panorama; with ``barely``,
    each image's barely clipped case too, where it has one; each image ``enlarged`` by ``zoom`` first."""
    for i, path in enumerate(files):
        hdr = np.maximum(read_rgb(path), 0.0)
        if views:
            hdr = camera_view(hdr)
        hdr = enlarged(hdr, zoom)
        for j, fraction in enumerate(fractions):
            rel = expose(hdr, fraction)
            if rel is None:
                log.warning("%s: black image, skipped", path.name)
                break
            ldr = synthesise(rel, np.random.default_rng((seed, i, j)), camera)
            yield Case(path.stem, fraction, ldr, rel.astype(np.float32))
        if barely:
            case = barely_case(path.stem, hdr, (seed, i, len(fractions)), camera)
            if case is not None:
                yield case


def barely_case(image: str, hdr: np.ndarray, seed: tuple[int, ...], camera: Synthesis) -> Case | None:
    """The barely clipped case of ``image`` (``BARELY_FRACTIONS``) through ``camera`` with the noise of ``seed``;
    None if it has none."""
    for fraction in reversed(BARELY_FRACTIONS):
        rel = expose(hdr, fraction)
        if rel is None:
            return None
        ldr = synthesise(rel, np.random.default_rng(seed), camera)
        clipped = ldr.max(axis=-1) >= 1.0
        if clipped.sum() < BARELY_PIXELS:
            continue
        linear = color.convert(ldr, INPUT_SPACE, color.LINEAR_SPACE)
        if clipped_ratio(rel, linear, clipped) <= BARELY_TRUTH:
            return Case(image, fraction, ldr, rel.astype(np.float32), barely=True)
    return None


def paired_cases(root: Path, stems: set[str] | None = None) -> list[Case]:
    """Cases of the paired layout ``root/LDR`` + ``root/HDR`` (only those of ``stems`` when given)."""
    cases = []
    for ldr_path, hdr_path in paired_files(root):
        if stems is None or ldr_path.stem in stems:
            ldr, hdr = load_pair(ldr_path, hdr_path)
            cases.append(Case(ldr_path.stem, None, ldr, hdr.astype(np.float32)))
    return cases


def predictions(case: Case, params: LdrToHdrParams) -> dict[str, np.ndarray]:
    """Every method's linear HDR for ``case``: the network in each mode, then the baselines."""
    out = {
        f"fhdr_{mode}": predict_linear(case.ldr, INPUT_SPACE, params.replace(mode=mode))[0] for mode in NETWORK_MODES
    }
    linear = color.convert(case.ldr, INPUT_SPACE, color.LINEAR_SPACE)
    out.update((name, fn(linear)) for name, fn in BASELINES.items())
    return out


def metric_keys(aligned: bool) -> list[str]:
    """The score keys of one table, in column order."""
    suffix = "_aligned" if aligned else ""
    return [f"{m}_{r}{suffix}" for m in METRICS for r in REGIONS]


def nan_mean(values: list[float]) -> float:
    """The mean of ``values`` without the NaNs (scores over empty masks); NaN if nothing is left."""
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def summary(results: list[dict]) -> dict[str, dict[str, float]]:
    """Mean scores per method over every case."""
    return {
        method: {k: nan_mean([r["scores"][method][k] for r in results]) for k in scores}
        for method, scores in results[0]["scores"].items()
    }


def _row(label: str, values: list[float], width: int) -> str:
    cells = "".join(f"{v:>{width}.4f}" if abs(v) < 1.5 else f"{v:>{width}.2f}" for v in values)
    return f"{label:<18}{cells}"


def format_table(means: dict[str, dict[str, float]], aligned: bool) -> str:
    """A methods x metrics table (whole image and clipped pixels) of mean scores."""
    width = 10
    keys = metric_keys(aligned)
    head1 = "".join(f"{METRIC_TITLES[m]:>{2 * width}}" for m in METRICS)
    head2 = "".join(f"{r:>{width}}" for _ in METRICS for r in REGIONS)
    lines = [f"{'':<18}{head1}", f"{'method':<18}{head2}"]
    lines += [_row(method, [scores[k] for k in keys], width) for method, scores in means.items()]
    return "\n".join(lines)


def format_by_fraction(results: list[dict], key: str) -> str:
    """One score per method (rows) and requested clipped fraction (columns), averaged over images."""
    fractions = sorted({r["fraction"] for r in results if r["fraction"] is not None})
    if not fractions:
        return ""
    width = 10
    lines = [f"{'method':<18}" + "".join(f"{f:>{width}.1%}" for f in fractions)]
    for method in results[0]["scores"]:
        values = [nan_mean([r["scores"][method][key] for r in results if r["fraction"] == f]) for f in fractions]
        lines.append(_row(method, values, width))
    return "\n".join(lines)


def format_cases(results: list[dict]) -> str:
    """Per case: the truth's and the output's brightness over the clipped pixels (x the plate's there), PU21-PSNR
    of ``REPORTED`` against the linearised input, clipped pixels and whole image, the log-lift ratio, the change of
    the channels the plate did not clip, and the brightness (x the plate's) at the clipped areas' rim and inside."""
    names = [r["image"] if r["fraction"] is None else f"{r['image']}@{r['fraction']:.1%}" for r in results]
    width = max(len(n) for n in [*names, "case"]) + 2
    head = f"{'case':<{width}}{'clipped':>8}{'truth x':>9}{'out x':>8}{'PU21 clip':>11}{'linear':>8}{'gain':>7}"
    lines = [head + f"{'all diff':>9}{'lift':>6}{'kept ch':>8}{'rim out/truth':>15}{'inner out/truth':>17}"]
    for name, r in zip(names, results, strict=True):
        m, b = r["scores"][REPORTED], r["scores"][BASELINE]
        lines.append(
            f"{name:<{width}}{r['clipped']:>8.2%}{r['truth_ratio']:>9.2f}{r['ratio']:>8.2f}"
            f"{m['pu21_psnr_clipped']:>11.2f}{b['pu21_psnr_clipped']:>8.2f}"
            f"{m['pu21_psnr_clipped'] - b['pu21_psnr_clipped']:>7.2f}{m['pu21_psnr_all'] - b['pu21_psnr_all']:>9.2f}"
            f"{r['log_lift']:>6.2f}{r['unclipped_change']:>8.1%}"
            f"{r['out_edge']:>8.2f}/{r['truth_edge']:<6.2f}{r['out_inner']:>10.2f}/{r['truth_inner']:<6.2f}"
        )
    return "\n".join(lines)


def acceptance(results: list[dict]) -> list[str]:
    """The acceptance checks on ``REPORTED`` against the linearised input, one line each, PASS or FAIL."""
    gains = [r["scores"][REPORTED]["pu21_psnr_clipped"] - r["scores"][BASELINE]["pu21_psnr_clipped"] for r in results]
    drops = [r["scores"][REPORTED]["pu21_psnr_all"] - r["scores"][BASELINE]["pu21_psnr_all"] for r in results]
    bright = [r for r in results if r["truth_ratio"] >= 2.0]
    flat = [r for r in results if r["truth_ratio"] <= BARELY_TRUTH]
    kept = [r["unclipped_change"] for r in results if not math.isnan(r["unclipped_change"])]
    lifts = [r["log_lift"] for r in bright if not math.isnan(r["log_lift"])]
    hollow_cases = [r for r in results if hollow(r)]
    wins = sum(g > 0 for g in gains)
    checks = [
        (
            f"mean clipped PU21 gain {np.mean(gains):+.2f} dB (target >= {TARGET_GAIN_DB:g})",
            np.mean(gains) >= TARGET_GAIN_DB,
        ),
        (f"cases won {wins}/{len(gains)} (target >= {TARGET_WIN_SHARE:.0%})", wins >= TARGET_WIN_SHARE * len(gains)),
        (f"worst whole-image difference {min(drops):+.2f} dB (target >= -{GUARD_DB:g})", min(drops) >= -GUARD_DB),
        (
            f"truth >= 2x the plate: output >= 1.5x on {sum(r['ratio'] >= 1.5 for r in bright)}/{len(bright)}",
            all(r["ratio"] >= 1.5 for r in bright),
        ),
        (
            f"truth <= {BARELY_TRUTH}x the plate: output <= {BARELY_TRUTH}x on "
            f"{sum(r['ratio'] <= BARELY_TRUTH for r in flat)}/{len(flat)}",
            all(r["ratio"] <= BARELY_TRUTH for r in flat),
        ),
        (
            f"unclipped channels: largest mean change {max(kept, default=0.0):.1%} (target <= 2%)",
            all(k <= 0.02 for k in kept),
        ),
        (
            f"truth >= 2x: median log-lift ratio {nan_mean([np.median(lifts)] if lifts else []):.2f} (target >= 0.55),"
            f" lowest {min(lifts, default=math.nan):.2f} (target >= 0.30)",
            bool(lifts) and np.median(lifts) >= 0.55 and min(lifts) >= 0.30,
        ),
        (
            f"dimmer inside than at the rim where the truth is brighter inside: {len(hollow_cases)} cases",
            not hollow_cases,
        ),
    ]
    return [f"{'PASS' if ok else 'FAIL'}  {text}" for text, ok in checks]


def report(results: list[dict]) -> str:
    """The text report: tables of mean scores, unaligned and aligned, PU21-PSNR by clipped fraction, the
    per-case figures of ``REPORTED`` against the linearised input, and the acceptance checks."""
    means = summary(results)
    images = len({r["image"] for r in results})
    parts = [
        f"{len(results)} cases ({images} images); 'clipped' = the input's clipped pixels",
        "\nScores as predicted (no scale alignment):",
        format_table(means, aligned=False),
        "\nScores after aligning each prediction's scale to the ground truth (log least squares, well-exposed):",
        format_table(means, aligned=True),
    ]
    by_fraction = format_by_fraction(results, "pu21_psnr_clipped")
    if by_fraction:
        parts += ["\nPU21-PSNR over clipped pixels (no alignment), by requested clipped fraction:", by_fraction]
    parts += [
        f"\nPer case, {REPORTED} against the linearised input ('x': mean luminance over the clipped pixels "
        "relative to the plate's):",
        format_cases(results),
        "",
        *acceptance(results),
    ]
    return "\n".join(parts)


def exposed(linear: np.ndarray, stops: float) -> np.ndarray:
    """Display rendering of linear values at ``stops`` of exposure: scaled, clipped, sRGB-encoded."""
    return srgb_encode(np.maximum(linear, 0.0) * 2.0**stops)


def _cell(img: np.ndarray, width: int, label: str) -> np.ndarray:
    """``img`` (display values) resized to ``width`` pixels across, with ``label`` written in its corner."""
    h, w, _ = img.shape
    height = max(1, round(h * width / w))
    src = oiio.ImageBuf(oiio.ImageSpec(w, h, 3, oiio.FLOAT))
    src.set_pixels(src.roi, np.ascontiguousarray(img, dtype=np.float32))
    dst = oiio.ImageBufAlgo.resize(src, roi=oiio.ROI(0, width, 0, height, 0, 1, 0, 3))
    if label and not oiio.ImageBufAlgo.render_text(dst, 4, 14, label, 12, textcolor=(1.0, 1.0, 0.3)):
        log.warning("cannot draw labels on the contact sheet: %s", dst.geterror())
    return np.asarray(dst.get_pixels(oiio.FLOAT), dtype=np.float32).reshape(height, width, 3)


def sheet_row(case: Case, pred: np.ndarray, method: str, width: int = SHEET_CELL) -> np.ndarray:
    """One row of the contact sheet: input, prediction and ground truth at each of ``SHEET_STOPS``."""
    linear = color.convert(case.ldr, INPUT_SPACE, color.LINEAR_SPACE)
    cells = []
    for stops in SHEET_STOPS:
        cells += [
            (exposed(linear, stops), f"input {case.name} {stops:+g}"),
            (exposed(pred, stops), f"{method} {stops:+g}"),
            (exposed(case.hdr, stops), f"truth {stops:+g}"),
        ]
    return np.concatenate([_cell(img, width, label) for img, label in cells], axis=1)


def write_sheet(rows: list[np.ndarray], path: Path) -> None:
    """Stack the rows into one 8-bit PNG (or any format OIIO writes)."""
    sheet = np.concatenate(rows, axis=0)
    buf = oiio.ImageBuf(oiio.ImageSpec(sheet.shape[1], sheet.shape[0], 3, oiio.UINT8))
    buf.set_pixels(buf.roi, np.clip(sheet, 0.0, 1.0))
    if not buf.write(str(path)):
        raise OSError(f"{path}: cannot write: {buf.geterror()}")


def _finite_or_none(x: object) -> object:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite_or_none(v) for v in x]
    return x


def write_json(results: list[dict], meta: dict, path: Path) -> None:
    """Per-case scores and their means as JSON (non-finite values as null)."""
    doc = {"meta": meta, "mean": summary(results), "cases": results}
    path.write_text(json.dumps(_finite_or_none(doc), indent=1) + "\n")


def evaluate(
    cases: Iterator[Case], params: LdrToHdrParams, sheet_method: str = "fhdr_anchored"
) -> tuple[list[dict], list[np.ndarray]]:
    """Score every method on every case; returns (results, contact-sheet rows)."""
    results, rows = [], []
    for case in cases:
        preds = predictions(case, params)
        if sheet_method not in preds:
            raise ValueError(f"unknown method {sheet_method!r}; methods: {', '.join(preds)}")
        mask = well_exposed(case.ldr)
        scores = {name: score(p, case.hdr, case.clipped, mask) for name, p in preds.items()}
        linear = preds[BASELINE]
        truth_ratio = clipped_ratio(case.hdr, linear, case.clipped)
        ratio = clipped_ratio(preds[REPORTED], linear, case.clipped)
        results.append(
            {
                "image": case.image,
                "fraction": case.fraction,
                "barely": case.barely,
                "clipped": float(case.clipped.mean()),
                "truth_ratio": truth_ratio,
                "ratio": ratio,
                **figures(preds[REPORTED], case.hdr, linear, case.ldr, case.clipped, ratio, truth_ratio),
                "size": [case.ldr.shape[1], case.ldr.shape[0]],
                "scores": scores,
            }
        )
        rows.append(sheet_row(case, preds[sheet_method], sheet_method))
        log.info("%s: %.2f%% clipped, scored", case.name, 100 * case.clipped.mean())
    if not results:
        raise ValueError("no evaluation cases")
    return results, rows
