"""Command line of the training package: ``python -m training train|synthesise|export|evaluate|validate|fit-lift``."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import typer
from safetensors import SafetensorError

from fhdr_plugin.host.cli import with_params
from fhdr_plugin.imaging.io import write_atomic
from fhdr_plugin.manifest import manifest, manifest_path
from fhdr_plugin.node.encoding import ENCODINGS
from fhdr_plugin.node.operation import LdrToHdrParams
from fhdr_plugin.node.weights import load_model, save_weights
from fhdr_plugin.params import BlendParams
from training import lift
from training.data import (
    HDR_SUFFIXES,
    SOURCE_SHARE,
    HDRCrops,
    PairedCrops,
    Synthesis,
    expose,
    list_images,
    load_pair,
    paired_files,
    read_rgb,
    synthesise,
    write_ldr,
)
from training.evaluate import (
    CAMERA,
    FRACTIONS,
    evaluate,
    paired_cases,
    report,
    synthetic_cases,
    write_json,
    write_sheet,
)
from training.export import checkpoint_model, export, load_checkpoint, set_manifest_sha, validation_metadata
from training.scenes import folds as scene_folds
from training.scenes import shared_scenes
from training.train import Init, TrainConfig, decoding_metadata, torchrun_ranks, train
from training.validation import predictions, summarise, validate, validation_cases
from training.views import is_panorama, training_views

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help="Train and export FHDR weights.")


@app.callback()
def main() -> None:
    """Train, export and evaluate FHDR weights."""


#: Held out, every scene on one side: the perspective church, interiors with lamps and windows, a night square
#: with lamps, suns, and the overcast overpass whose highlights are barely above white (the over-expansion trap).
DEFAULT_VAL = ",".join(
    (
        "pfstools_nancy_church",
        "polyhaven_thatch_chapel",
        "polyhaven_leadenhall_market",
        "polyhaven_sepulchral_chapel_rotunda",
        "polyhaven_st_peters_square_night",
        "polyhaven512_lobby",
        "polyhaven512_workshop",
        "polyhaven1k_quarry_01",
        "polyhaven_quarry_02",
        "polyhaven1k_pedestrian_overpass",
    )
)


def split_images(folder: Path, val_stems: set[str]) -> tuple[list[Path], list[Path]]:
    """HDR files of ``folder`` split into (train, validation) by stem; a scene on both sides (``scenes.scene_of``)
    is an error."""
    files = list_images(folder, HDR_SUFFIXES)
    if not files:
        raise typer.BadParameter(f"{folder}: no .exr or .hdr files")
    train, val = [f for f in files if f.stem not in val_stems], [f for f in files if f.stem in val_stems]
    both = shared_scenes(train, val)
    if both:
        raise typer.BadParameter(f"{folder}: scene(s) {', '.join(both)} on both sides of the split: hold out all files")
    return train, val


def files_of_stems(folder: Path, stems: str) -> list[Path]:
    """The HDR files of ``folder`` named by the comma-separated ``stems``, in their order; every stem must match."""
    wanted = [s for s in stems.split(",") if s]
    files = {f.stem: f for f in list_images(folder, HDR_SUFFIXES)}
    missing = [s for s in wanted if s not in files]
    if missing or not wanted:
        raise typer.BadParameter(f"{folder}: no HDR image for stem(s) {', '.join(missing) or '(none given)'}")
    return [files[s] for s in wanted]


def init_weights(value: str) -> Init:
    """The weights ``--init`` names: a shipped model's name or a safetensors file, read without running code."""
    models = manifest().models
    path = models[value].path if value in models else Path(value)
    if not path.is_file():
        raise typer.BadParameter(f"--init {value}: no such file, nor a shipped model ({', '.join(models)})")
    try:
        return Init.load(path)
    except SafetensorError as e:
        raise typer.BadParameter(f"--init {path}: not a safetensors weights file ({e})") from e


@app.command("train")
@with_params(cfg=TrainConfig)
def train_cmd(
    data: Path = typer.Option(Path("../shared/data/hdr-train"), help="Folder of HDR images (.exr, .hdr)."),
    out: Path = typer.Option(Path("runs/fhdr"), help="Checkpoint folder (resumed if it holds last.pt)."),
    paired: Path | None = typer.Option(None, help="Train on (LDR, HDR) pairs of DIR/LDR + DIR/HDR instead of --data."),
    val: str = typer.Option(DEFAULT_VAL, help="Comma-separated stems held out for validation."),
    init: str | None = typer.Option(
        None, help="Start from these weights: a shipped model's name (e.g. fhdr-i2) or a safetensors file."
    ),
    headroom: float = typer.Option(256.0, help="Largest value the network can output, in multiples of white."),
    encoding: str = typer.Option(
        "mu-law", help="Output encoding: mu-law or linear (see fhdr_plugin/node/encoding.py)."
    ),
    clip_min: float = 0.002,
    clip_max: float = 0.12,
    jpeg: float = typer.Option(0.4, min=0.0, max=1.0, help="Probability that a crop's camera codes it as JPEG."),
    source: float = typer.Option(
        0.0,
        min=0.0,
        max=1.0,
        help=f"Probability that a crop is centred on the brightest {SOURCE_SHARE:.0%} of its clipped pixels.",
    ),
    shot_shift: float = typer.Option(
        1.0,
        min=0.0,
        max=1.0,
        help="With --consistency, how far (px) a shot's second frame moves; 0: the same view under new noise and JPEG.",
    ),
    views: int = typer.Option(8, help="Rectilinear views cut from each training panorama, besides its crops."),
    device: str = typer.Option("", help="torch device type to train on [default: CUDA when available, else CPU]."),
    *,
    cfg: TrainConfig,
) -> None:
    """Train FHDR on HDR-only data with synthesised LDR inputs, or on (LDR, HDR) pairs with --paired.

    Validation runs the node's default path on the whole held-out images (training/validation.py).
    Under torchrun (several GPUs or machines) every process runs this; only rank 0 logs.
    """
    rank = (torchrun_ranks() or (0,))[0]
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, format="%(asctime)s %(message)s")
    if encoding not in ENCODINGS:
        raise typer.BadParameter(f"--encoding must be one of {', '.join(ENCODINGS)}")
    if cfg.validate_every % cfg.checkpoint_every:
        raise typer.BadParameter("--validate-every must be a multiple of --checkpoint-every")
    if cfg.consistency and paired is not None:
        raise typer.BadParameter("--consistency needs HDR-only --data (a pair is one frame of its scene)")
    start = init_weights(init) if init else None
    val_stems = {s for s in val.split(",") if s}
    syn = Synthesis(
        headroom=headroom,
        encoding=encoding,
        clip_min=clip_min,
        clip_max=clip_max,
        jpeg=jpeg,
        source=source,
        shift=shot_shift,
    )
    crop, seed = cfg.crop, cfg.seed
    if paired is not None:
        pairs = paired_files(paired)
        train_set = PairedCrops([load_pair(a, b) for a, b in pairs if a.stem not in val_stems], crop, syn, seed)
        val_cases = paired_cases(paired, val_stems)
        logging.info("training on %d pairs, validating on %d", len(pairs) - len(val_cases), len(val_cases))
    else:
        train_files, val_files = split_images(data, val_stems)
        images = [read_rgb(f) for f in train_files]
        view_rng = np.random.default_rng(seed)
        images += [v for im in images if is_panorama(im) for v in training_views(im, view_rng, views)]
        images = [im for im in images if min(im.shape[:2]) >= crop]
        train_set = HDRCrops(images, crop, syn, seed)
        val_cases = list(synthetic_cases(val_files, FRACTIONS, seed, barely=True))
        logging.info(
            "training on %d images (%d with their views), validating on %d",
            len(train_files),
            len(images),
            len(val_files),
        )
    validator = None
    if val_cases:
        cases, meta = validation_cases(val_cases), decoding_metadata(syn)
        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")

        def validator(model):
            return validate(model, meta, cases, dev)

    train(cfg, train_set, validator, out, syn, device=device, init=start)


@app.command("synthesise")
def synthesise_cmd(
    hdr: Path = typer.Argument(..., help="Scene-linear HDR image."),
    out: Path = typer.Argument(..., help="8-bit sRGB LDR image to write (PNG, JPEG, TIFF)."),
    clipped: float = typer.Option(0.05, help="Fraction of pixels to clip."),
    crop: str = typer.Option("", help="x,y,width,height of the region to keep [default: all]."),
) -> None:
    """Make a camera-like 8-bit LDR image from an HDR one (no noise, plain sRGB), e.g. a sample or test input."""
    image = read_rgb(hdr)
    if crop:
        x, y, w, h = (int(v) for v in crop.split(","))
        image = image[y : y + h, x : x + w]
    rel = expose(np.maximum(image, 0.0), clipped)
    if rel is None:
        raise typer.BadParameter(f"{hdr}: the image is black")
    ldr = synthesise(rel, np.random.default_rng(0), Synthesis.plain())
    write_ldr(ldr, out)
    typer.echo(f"{out}: {ldr.shape[1]}x{ldr.shape[0]}, {np.mean(rel.max(-1) > 1):.1%} clipped")


@app.command("export")
def export_cmd(
    checkpoint: Path = typer.Argument(..., help="Checkpoint written by `train` (best.pt or last.pt)."),
    model: str = typer.Option("fhdr-i1", help="Model name in plugin.toml whose file is written."),
    note: list[str] = typer.Option([], help="Extra metadata as KEY=VALUE (e.g. fhdr:training_time=40min)."),
) -> None:
    """Write a checkpoint as the shipped safetensors weights and record their sha256 in plugin.toml."""
    extra = dict(n.split("=", 1) for n in note)
    path, sha = export(checkpoint, model, extra)
    typer.echo(f"{path} sha256 {sha}")


@app.command("evaluate")
@with_params(params=LdrToHdrParams)
def evaluate_cmd(
    data: Path = typer.Option(Path("../shared/data/hdr-train"), help="Folder of HDR images (.exr, .hdr)."),
    val: str = typer.Option(DEFAULT_VAL, help="Comma-separated stems of --data to evaluate on."),
    paired: Path | None = typer.Option(None, help="Evaluate on the (LDR, HDR) pairs of DIR/LDR + DIR/HDR instead."),
    fractions: str = typer.Option(
        ",".join(f"{f:g}" for f in FRACTIONS), help="Clipped fractions of the synthesised exposures."
    ),
    seed: int = typer.Option(0, help="Seed of the LDR synthesis."),
    views: bool = typer.Option(True, help="Score a panorama's rectilinear view of its brightest part, not all of it."),
    threads: int = typer.Option(0, help="torch CPU threads (0: torch's default)."),
    sheet_method: str = typer.Option("fhdr_anchored", help="Method shown in the contact sheet."),
    json_out: Path | None = typer.Option(None, "--json", help="Write per-case scores and means as JSON."),
    sheet: Path | None = typer.Option(None, help="Write a contact sheet (PNG): input, prediction, truth, error."),
    *,
    params: LdrToHdrParams,
) -> None:
    """Score the node with ``params`` (fhdr convert's options; by default its defaults, anchored, and raw) and
    classical baselines; print a table of metrics."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if threads:
        torch.set_num_threads(threads)
    if paired is not None:
        cases = paired_cases(paired)
    else:
        files = files_of_stems(data, val)
        cases = synthetic_cases(files, tuple(float(f) for f in fractions.split(",")), seed, views, barely=True)
    results, rows = evaluate(cases, params, sheet_method)
    typer.echo(report(results))
    meta = {**params.to_dict(), "seed": seed, "paired": str(paired or "")}
    if json_out is not None:
        write_json(results, meta, json_out)
    if sheet is not None:
        write_sheet(rows, sheet)


@app.command("validate")
@with_params(params=LdrToHdrParams)
def validate_cmd(
    checkpoint: Path | None = typer.Option(
        None, help="A training checkpoint (.pt) to score [default: --model's weights]."
    ),
    data: Path = typer.Option(Path("../shared/data/hdr-train"), help="Folder of HDR images (.exr, .hdr)."),
    val: str = typer.Option(DEFAULT_VAL, help="Comma-separated stems of --data to score on."),
    jpeg: int = typer.Option(0, help="Make the plates with a JPEG of this quality (0: the plain camera's PNG)."),
    zoom: float = typer.Option(
        1.0, min=0.1, help="Enlarge each view this many times before the camera, as a plate with more pixels sees it."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the summary and the per-case rows as JSON."),
    record: bool = typer.Option(
        False,
        help="Write the figures into the shipped model's metadata (fhdr:val_*, or fhdr:val_nolift_* with "
        "--no-context) and its new sha256 into plugin.toml; plain plates and the node's blend only.",
    ),
    *,
    params: LdrToHdrParams,
) -> None:
    """Score weights through the node with ``params`` on the validation cases of training (whole views of the
    held-out scenes at each clipped fraction, and barely clipped where they can be): the figures training logs,
    the highlight figures, and per case."""
    node_blend = replace(BlendParams(), context=params.blend.context)
    if record and (checkpoint is not None or jpeg or zoom != 1.0 or params.blend != node_blend):
        raise typer.BadParameter("--record scores a shipped model on plain plates at the node's blend: drop the rest")
    files = files_of_stems(data, val)
    camera = CAMERA if not jpeg else replace(CAMERA, jpeg=1.0, jpeg_quality=(jpeg, jpeg))
    params = replace(params, blend=params.blend.for_plate(lossy=bool(jpeg)))  # as the node reads such a file
    cases = validation_cases(synthetic_cases(files, FRACTIONS, 0, True, camera, barely=True, zoom=zoom))
    if checkpoint is not None:
        ck = load_checkpoint(checkpoint)
        model = checkpoint_model(ck)
        meta = decoding_metadata(Synthesis(**ck["synthesis"]))
    else:
        model, meta = load_model(manifest().model(params.engine.weights.model or None))
    engine = params.engine
    result = validate(model, meta, cases, engine.device or "cpu", engine.precision, params)
    for row in result["cases"]:
        typer.echo(
            f"{row['case']:45s} gain {row['pu21_clipped'] - row['base_clipped']:+6.2f} dB  lift {row['ratio']:7.2f}x "
            f"(truth {row['truth_ratio']:7.2f}x, log-lift ratio {row['log_lift']:.2f} of at most {row['reach']:.2f})  "
            f"kept channels changed {row['unclipped_change']:.1%}"
        )
    summary = {k: v for k, v in result.items() if k != "cases"}
    typer.echo(json.dumps(summary))
    if json_out is not None:
        write_atomic(json_out, lambda tmp: tmp.write_text(json.dumps(result, indent=1) + "\n"))
    if record:
        name = params.engine.weights.model or manifest().default_model
        prefix = "fhdr:val_" if params.blend.context else "fhdr:val_nolift_"
        figures = {
            **validation_metadata(result, prefix),
            f"{prefix}command": record_command(name, params.blend.context),
        }
        sha = save_weights(model, manifest().model(name).path, {**without_model(meta), **figures})
        set_manifest_sha(manifest_path(), name, sha)
        typer.echo(f"{name}: {prefix}* recorded, sha256 {sha}")


def record_command(model: str, context: bool) -> str:
    """The command line that records a shipped model's validation figures, as the metadata keeps it."""
    return f"python -m training validate --model {model}{'' if context else ' --no-context'} --record"


def without_model(meta: dict[str, str]) -> dict[str, str]:
    """A loaded model's metadata as its file stores it (``load_model`` adds ``fhdr:model``)."""
    return {k: v for k, v in meta.items() if k != "fhdr:model"}


@app.command("fit-lift")
def fit_lift_cmd(
    model: str = typer.Option(
        "", help="Shipped model whose lift head is fitted (its file is rewritten) [default: the default model]."
    ),
    data: Path = typer.Option(Path("../shared/data/hdr-train"), help="Folder of HDR images (.exr, .hdr)."),
    val: str = typer.Option(DEFAULT_VAL, help="Comma-separated stems held out: scored, never fitted on."),
    steps: int = typer.Option(3000, help="Adam steps of the head."),
    per_frame: int = typer.Option(3000, help="Pixels sampled from each training frame."),
    factors: str = typer.Option(
        "0,0.5,0.6,0.65,0.7,0.75,1",
        help="Scales of the fitted head to choose from by cross-fitting on the training scenes: the fewest cases "
        "below the whole-image guard, then the fewest barely clipped beyond 1.1x, then the best clipped-pixel PU21.",
    ),
    folds: int = typer.Option(5, help="Scene folds of the training images the scale is chosen by (cross-fitting)."),
    draws: int = typer.Option(
        1,
        help="Draws of the cross-fitting, pooled to choose the scale (seeds SEED, SEED+1...: new frames, samples, "
        "heads); the head itself is fitted on the first.",
    ),
    over_weight: float = typer.Option(
        1.0, help="How much more an over-lift costs the fit than an under-lift (1: L1, the median gain)."
    ),
    consistency: float = typer.Option(
        0.0,
        help="Weight of the consistency term: the change of the head's error between two frames a third of a pixel "
        "apart, through their own camera draws (0: none).",
    ),
    json_out: Path | None = typer.Option(
        None, "--json", help="Write the cross-fitted figures of each scale and the validation's, with their cases."
    ),
    seed: int = typer.Option(0, help="Seed of the sampling and of the head's initial weights."),
    threads: int = typer.Option(0, help="torch CPU threads (0: torch's default)."),
) -> None:
    """Fit the lift head of a shipped model on whole frames of the training images, its scale chosen by
    cross-fitting (each fold of training scenes scored through the node with a head fitted on the other folds),
    score it on the validation cases and write it into the model's weights file (sha256 into plugin.toml)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if threads:
        torch.set_num_threads(threads)
    spec = manifest().model(model)
    net, meta = load_model(spec)
    net.lift = None
    train_files, val_files = split_images(data, {s for s in val.split(",") if s})
    if draws < 1:
        raise typer.BadParameter("--draws must be at least 1")
    parts = [files for files in scene_folds(train_files, folds) if files]
    scales = [float(f) for f in factors.split(",")]
    rows: dict[float, list[dict]] = {f: [] for f in scales}
    drawn = {
        d: lift.collect(net, meta, synthetic_cases(train_files, FRACTIONS, d), per_frame, d)
        for d in range(seed, seed + draws)
    }
    paired = {
        d: lift.collect(
            net, meta, synthetic_cases(train_files, lift.PAIR_FRACTIONS, d), per_frame, d, lift.pair_samples
        )
        if consistency
        else None
        for d in drawn
    }
    samples = drawn[seed]

    def fitted(draw: int, held: set[str]) -> lift.LiftHead:
        pairs = paired[draw].without(held) if paired[draw] is not None else None
        return lift.fit(
            drawn[draw].without(held), steps, seed=draw, over=over_weight, pairs=pairs, consistency=consistency
        )

    for draw in drawn:
        for files in parts:
            head = fitted(draw, {f.stem for f in files})
            cases = validation_cases(synthetic_cases(files, FRACTIONS, draw, barely=True))
            predicted = predictions(net, meta, cases)
            for factor in scales:
                net.lift = lift.scaled(head, factor) if factor else None
                rows[factor] += validate(net, meta, cases, predicted=predicted)["cases"]
    scored = {factor: summarise(rows[factor]) for factor in scales}
    for factor in scales:
        typer.echo(f"scale {factor:g}: {json.dumps({k: v for k, v in scored[factor].items() if k != 'cases'})}")
    factor = lift.choose_scale(scored)
    head = fitted(seed, set())
    val_cases = validation_cases(synthetic_cases(val_files, FRACTIONS, 0, barely=True))
    predicted = predictions(net, meta, val_cases)
    net.lift = None
    without = validate(net, meta, val_cases, predicted=predicted)
    net.lift = lift.scaled(head, factor) if factor else None
    chosen = validate(net, meta, val_cases, predicted=predicted) if factor else without
    command = fit_command(spec.name, steps, per_frame, factors, folds, draws, over_weight, consistency, seed, threads)
    extra = lift.metadata(samples, steps, factor, scored[factor], chosen, without, command, scales, paired[seed])
    keep = {k: v for k, v in without_model(meta).items() if not k.startswith(("fhdr:lift", "fhdr:val_"))}
    sha = save_weights(net, spec.path, {**keep, **extra})
    set_manifest_sha(manifest_path(), spec.name, sha)
    typer.echo(f"{spec.path}: lift head scale {factor:g}, sha256 {sha}")
    if json_out is not None:
        report = {"crossfit": {f"{f:g}": scored[f] for f in scales}, "validation": chosen, "validation_nolift": without}
        write_atomic(json_out, lambda tmp: tmp.write_text(json.dumps(report, indent=1) + "\n"))


def fit_command(
    model: str,
    steps: int,
    per_frame: int,
    factors: str,
    folds: int,
    draws: int,
    over_weight: float,
    consistency: float,
    seed: int,
    threads: int,
) -> str:
    """The command line that fits a lift head with these options, as the metadata records it (the thread count
    too: the fit repeats exactly only with the same number of threads)."""
    return (
        f"python -m training fit-lift --model {model} --steps {steps} --per-frame {per_frame} --factors {factors} "
        f"--folds {folds}"
        + (f" --draws {draws}" if draws != 1 else "")
        + (f" --over-weight {over_weight:g}" if over_weight != 1 else "")
        + (f" --consistency {consistency:g}" if consistency else "")
        + f" --seed {seed}"
        + (f" --threads {threads}" if threads else "")
    )


if __name__ == "__main__":
    app()
