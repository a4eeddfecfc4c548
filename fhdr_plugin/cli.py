"""The ``fhdr`` command line (typer): convert images, list operations and models, locate host hooks."""

from __future__ import annotations

import logging
import sys
import sysconfig
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.manifest import PACKAGE_DIR, manifest
from fhdr_plugin.version import __version__

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Turn LDR images into scene-linear HDR EXRs with FHDR.",
)
log = logging.getLogger("fhdr")


class Mode(str, Enum):
    anchored = "anchored"
    raw = "raw"


class Precision(str, Enum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


#: The options of the ``ldr_to_hdr`` node and of the EXR writer, shared by ``convert`` and ``batch``.
InputColorspace = Annotated[str, typer.Option(help="OCIO name of the input's space (default: from the file).")]
OutputColorspace = Annotated[str, typer.Option(help="OCIO name of the output space (e.g. ACEScg).")]
ModeOption = Annotated[Mode, typer.Option(help="anchored: keep well-exposed pixels; raw: network output.")]
Iterations = Annotated[int, typer.Option(help="Feedback iterations 1-4 (default: the model's own).")]
ModelName = Annotated[str, typer.Option(help="Shipped model name (default: the default model).")]
DeviceName = Annotated[str, typer.Option(help="cuda, cuda:N, mps or cpu (default: best available).")]
PrecisionOption = Annotated[Precision, typer.Option(help="Compute precision.")]
TileSize = Annotated[int, typer.Option(help="Tile size in pixels; 0: no tiling; -1: from free memory.")]
HalfOrFloat = Annotated[bool, typer.Option("--half/--float", help="Write half (default) or float EXR.")]
Compression = Annotated[str, typer.Option(help="EXR compression (zip, piz, dwaa, none, …).")]


class Executor(str, Enum):
    local = "local"
    ray = "ray"


class Settings:
    """Options of the top-level command, shared by the sub-commands."""

    debug = False
    quiet = False


@contextmanager
def reporting() -> Iterator[None]:
    """Turn errors into one line on stderr and a non-zero exit (a traceback with --debug)."""
    try:
        yield
    except FhdrError as exc:
        if Settings.debug:
            raise
        typer.echo(f"fhdr: error: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("fhdr: interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as exc:
        if Settings.debug:
            raise
        typer.echo(f"fhdr: internal error: {type(exc).__name__}: {exc} (rerun with --debug for a traceback)", err=True)
        raise typer.Exit(2) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fhdr {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors on stderr (for farms)."),
) -> None:
    """fhdr: single-image HDR reconstruction for VFX pipelines."""
    Settings.debug, Settings.quiet = debug, quiet
    level = logging.DEBUG if debug else logging.ERROR if quiet else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr, format="fhdr: %(message)s")


def node_params(
    input_colorspace: str,
    output_colorspace: str,
    mode: Mode,
    iterations: int,
    model: str,
    device: str,
    precision: Precision,
    tile: int,
) -> dict[str, Any]:
    """The ``ldr_to_hdr`` parameters of a command line."""
    return {
        "input_colorspace": input_colorspace,
        "output_colorspace": output_colorspace,
        "mode": mode.value,
        "iterations": iterations,
        "model": model,
        "device": device,
        "precision": precision.value,
        "tile": tile,
    }


@app.command()
def convert(
    input: Path = typer.Argument(..., help="Input image (anything OpenImageIO reads)."),
    output: Path = typer.Argument(..., help="Output EXR."),
    input_colorspace: InputColorspace = "",
    output_colorspace: OutputColorspace = "lin_rec709",
    mode: ModeOption = Mode.anchored,
    iterations: Iterations = 0,
    model: ModelName = "",
    device: DeviceName = "",
    precision: PrecisionOption = Precision.auto,
    tile: TileSize = -1,
    half: HalfOrFloat = True,
    compression: Compression = "zip",
) -> None:
    """Convert one LDR image into a scene-linear HDR EXR."""
    from fhdr_plugin.pipeline import convert_file

    with reporting():
        params = node_params(input_colorspace, output_colorspace, mode, iterations, model, device, precision, tile)
        convert_file(input, output, params, half=half, compression=compression)
        log.info("wrote %s", output)


@app.command()
def batch(
    in_pattern: str = typer.Argument(..., help="Input frames: shot.####.png, shot.%04d.png, shot.@@@@.png or a glob."),
    out_pattern: str = typer.Argument(..., help="Output EXR frames, e.g. hdr/shot.####.exr."),
    frames: str = typer.Option("", help="oiiotool-style range: 1001-1100, 1001-1100x4, 1,5,9-12 (default: on disk)."),
    chunk: str = typer.Option("", help="I/N: only the I-th (from 1) of N contiguous chunks of the frames."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Leave frames whose output exists (resume)."),
    report: Path | None = typer.Option(None, help="Write per-frame status, timings and settings to this JSON file."),
    input_colorspace: InputColorspace = "",
    output_colorspace: OutputColorspace = "lin_rec709",
    mode: ModeOption = Mode.anchored,
    iterations: Iterations = 0,
    model: ModelName = "",
    device: DeviceName = "",
    precision: PrecisionOption = Precision.auto,
    tile: TileSize = -1,
    half: HalfOrFloat = True,
    compression: Compression = "zip",
    executor: Executor = typer.Option(Executor.local, help="local: this process; ray: a Ray cluster (ray extra)."),
    address: str = typer.Option("", help="Ray cluster to join: ray://HOST:10001, HOST:6379, auto; none: start one."),
    ray_cpus: int = typer.Option(0, help="CPUs of the local Ray instance started without --address; 0: all."),
    ray_workers: int = typer.Option(0, help="Ray workers, one model each; 0: one per GPU, or one per node."),
) -> None:
    """Convert a frame sequence; exits 1 if any frame failed (listed in the summary and the report)."""
    from fhdr_plugin.batch import FAILED, run_batch

    with reporting():
        params = node_params(input_colorspace, output_colorspace, mode, iterations, model, device, precision, tile)
        results = run_batch(
            in_pattern,
            out_pattern,
            params,
            frames=frames,
            chunk_spec=chunk,
            skip_existing=skip_existing,
            half=half,
            compression=compression,
            report=report,
            quiet=Settings.quiet,
            executor=executor.value,
            address=address,
            ray_cpus=ray_cpus,
            ray_workers=ray_workers,
        )
    if any(r.status == FAILED for r in results):
        raise typer.Exit(1)


@app.command()
def ops() -> None:
    """List the registered operations and their parameters."""
    from fhdr_plugin.registry import registry

    with reporting():
        reg = registry()
        for name, op in sorted(reg.operations.items()):
            typer.echo(f"{name}  ({op.plugin}) {op.description}")
            spec = manifest().operations.get(name)
            for p in spec.params if spec else ():
                choices = f" [{'|'.join(p.choices)}]" if p.choices else ""
                typer.echo(f"  {p.name}: {p.type} = {p.default!r}{choices}  {p.help}")


@app.command()
def models() -> None:
    """List the shipped models with their metadata (checked against plugin.toml's sha256)."""
    from fhdr_plugin.weights import model_metadata

    with reporting():
        m = manifest()
        for name, spec in m.models.items():
            default = " (default)" if name == m.default_model else ""
            typer.echo(f"{name}{default}: {spec.path.relative_to(PACKAGE_DIR)} sha256 {spec.sha256}")
            for key, value in sorted(model_metadata(spec).items()):
                typer.echo(f"  {key}: {value}")


@app.command()
def hooks() -> None:
    """Print where the host hook scripts are and how to point a host at them."""
    with reporting():
        folder = next((p for p in (PACKAGE_DIR / "hooks", PACKAGE_DIR.parent / "hooks") if p.is_dir()), None)
        if folder is None:
            raise FhdrError("the hooks folder is missing from this installation")
        typer.echo(str(folder))
        for script in sorted(folder.rglob("*.py")):
            typer.echo(f"  {script.relative_to(folder)}")
        typer.echo(f"Nuke: export NUKE_PATH={folder / 'nuke'}:$NUKE_PATH")
        python = f"{sys.version_info.major}.{sys.version_info.minor}"
        typer.echo(
            f"      export FHDR_PYTHONPATH={sysconfig.get_paths()['purelib']}"
            f"  (when fhdr is not installed in Nuke's Python, which must then be Python {python})"
        )
        typer.echo(f"Any Python host: exec(open('{folder / 'generic_host.py'}').read()) or add it to sys.path")


class ExportFormat(str, Enum):
    torchscript = "torchscript"
    onnx = "onnx"


@app.command()
def export(
    output: Path = typer.Argument(..., help="File to write (.pt for TorchScript, .onnx for ONNX)."),
    format: ExportFormat = typer.Option(..., "--format", "-f", help="torchscript (Nuke's Inference node) or onnx."),
    model: str = typer.Option("", help="Shipped model name (default: the default model)."),
    iterations: int = typer.Option(0, help="Feedback iterations 1-4 (default: the model's own)."),
) -> None:
    """Write a self-contained model: RGB LDR in [0, 1] in, linear HDR (network output x headroom) out."""
    from fhdr_plugin.export import export_model
    from fhdr_plugin.weights import load_model

    with reporting():
        if iterations and not 1 <= iterations <= 4:
            raise FhdrError(f"iterations must be 1-4 (0 for the model's own), got {iterations}")
        spec = manifest().model(model or None)
        net, meta = load_model(spec, iterations or None)
        export_model(net, {**meta, "fhdr:model": spec.name}, format.value, output)
        log.info("wrote %s (%s, %s)", output, format.value, spec.name)


def main() -> None:
    """Entry point of the ``fhdr`` console script; a usage error (unknown option, bad value) is one line too."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:
        message, code = exc.format_message(), exc.exit_code
        if message:
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx else "fhdr"
            typer.echo(f"fhdr: error: {message} (see '{where} --help')", err=True)
    except typer.Abort:
        typer.echo("fhdr: aborted", err=True)
        code = 1
    sys.exit(code if isinstance(code, int) else 0)
