"""The ``fhdr`` command line (typer): convert images, list operations and models, locate host hooks."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import signal
import sys
import sysconfig
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.host.registry import DEFAULT_OPERATION, registry
from fhdr_plugin.host.terminal import INTERRUPTED_EXIT, TERMINATED_EXIT, Terminated, sigterm_as_interrupt
from fhdr_plugin.imaging.io import WriteOptions
from fhdr_plugin.manifest import BUILTIN_OPERATION, PACKAGE_DIR, manifest
from fhdr_plugin.params import TYPES, ExportParams, LdrToHdrParams, ModelParams, Params, type_name
from fhdr_plugin.version import __version__

if TYPE_CHECKING:
    from fhdr_plugin.host.batch import LocalExecutor
    from fhdr_plugin.host.ray_executor import RayExecutor

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Turn LDR images into scene-linear HDR EXRs with FHDR.",
)
log = logging.getLogger("fhdr")


class Executor(str, Enum):
    local = "local"
    ray = "ray"


def with_params(
    on_refusal: Callable[[dict[str, Any], str], None] | None = None, **classes: type[Params]
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command one option per field of each parameter class, and call it with one object per class
    (``params=LdrToHdrParams`` → the command's ``params`` argument), made and checked from those options;
    ``on_refusal(values, error)`` is told of options refused before the command runs."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = [p for name, p in inspect.signature(command).parameters.items() if name not in classes]
        fields = {name: cls.names() for name, cls in classes.items()}
        names = [p.name for p in own] + [f for group in fields.values() for f in group]
        clashes = sorted({n for n in names if names.count(n) > 1})

        @functools.wraps(command)
        def run(**values: Any) -> None:
            given = dict(values)
            with reporting():
                try:
                    if clashes:
                        raise FhdrError(_clash_message(command.__name__, clashes))
                    objects = {
                        name: cls.from_kwargs(**{f: _plain(values.pop(f)) for f in fields[name]})
                        for name, cls in classes.items()
                    }
                except FhdrError as exc:
                    if on_refusal is not None:
                        on_refusal(given, str(exc))
                    raise
            command(**values, **objects)

        taken = {p.name for p in own}
        options = []
        for f in (f for cls in classes.values() for f in cls.fields()):
            if f.name not in taken:
                taken.add(f.name)
                options.append(_option(f))
        run.__signature__ = inspect.Signature(own + options)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in own + options}
        return run

    return decorate


def _clash_message(command: str, clashes: list[str]) -> str:
    """Why ``fhdr COMMAND`` cannot run: operation parameters named like its own options."""
    ops = registry().operations
    parts = []
    for name in clashes:
        owners = [f"{op} (plugin {o.plugin})" for op, o in sorted(ops.items()) if name in o.params.names()]
        parts.append(f"--{name.replace('_', '-')} of {', '.join(owners) or 'fhdr'}")
    return (
        f"fhdr {command} cannot offer {'; '.join(parts)}: a parameter is named like one of the command's own "
        "options; rename it (the Python API still runs the operation)"
    )


def _plain(value: Any) -> Any:
    """An option's value as the parameter object takes it (a choice's Enum member as its string)."""
    return value.value if isinstance(value, Enum) else value


def _option(f: dataclasses.Field) -> inspect.Parameter:
    """A typer option for a parameter field: its help with the default, its choices (as an Enum), its flag."""
    info = f.metadata["fhdr"]
    shown = "on" if f.default is True else "off" if f.default is False else repr(f.default)
    option = typer.Option(
        *([info.flag] if info.flag else []),
        help=f"{info.help.rstrip('.')} (default: {shown}).",
        show_default=False,
    )
    kind: type = TYPES[type_name(f)]
    default = f.default
    if info.choices:
        kind = Enum(f.name.title().replace("_", ""), {c: c for c in info.choices}, type=str)  # type: ignore[misc]
        default = kind(f.default)
    return inspect.Parameter(
        f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option]
    )


def _command_params() -> type[Params]:
    """The options of convert and batch: the parameters of every registered operation
    (``Registry.command_params``); the built-in operation's alone when the plugins cannot be loaded, so that
    the command runs far enough to report why in one line."""
    try:
        return registry().command_params()
    except FhdrError:
        return LdrToHdrParams


COMMAND_PARAMS = _command_params()
#: ``--op`` of convert and batch.
OPERATION = typer.Option(DEFAULT_OPERATION, "--op", help="Registered operation to run (fhdr ops lists them).")


class Settings:
    """Options of the top-level command, shared by the sub-commands."""

    debug = False
    quiet = False


@contextmanager
def reporting() -> Iterator[None]:
    """Turn errors into one line on stderr and a non-zero exit (a traceback with --debug); SIGINT exits 130 and
    SIGTERM 143, each after the write in progress."""
    try:
        with sigterm_as_interrupt():
            yield
    except FhdrError as exc:
        if Settings.debug:
            raise
        typer.echo(f"fhdr: error: {exc}", err=True)
        raise typer.Exit(1) from None
    except Terminated:
        typer.echo("fhdr: terminated", err=True)
        raise typer.Exit(TERMINATED_EXIT) from None
    except KeyboardInterrupt:
        typer.echo("fhdr: interrupted", err=True)
        raise typer.Exit(INTERRUPTED_EXIT) from None
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


@app.command()
@with_params(params=COMMAND_PARAMS, options=WriteOptions)
def convert(
    input: Path = typer.Argument(..., help="Input image (anything OpenImageIO reads)."),
    output: Path = typer.Argument(..., help="Output EXR."),
    op: str = OPERATION,
    *,
    params: Params,
    options: WriteOptions,
) -> None:
    """Convert one LDR image into a scene-linear HDR EXR (or run another operation with --op)."""
    from fhdr_plugin.host.frames import engine_line, engine_of
    from fhdr_plugin.host.pipeline import convert_file

    with reporting():
        params = registry().for_operation(op, params)
        engine = engine_of(params) if log.isEnabledFor(logging.DEBUG) else {}
        if engine:
            log.debug("%s", engine_line(engine, params.to_dict().get("precision", "")))
        convert_file(input, output, params, options, op)
        log.info("wrote %s", output)


def _refuse_batch(values: dict[str, Any], error: str) -> None:
    """Write the ``--report`` of a batch refused before it plans its frames (a bad option, an unknown operation,
    an executor it cannot start), when one is asked for: ``values`` are batch's options as given."""
    if values.get("report") is None:
        return
    from fhdr_plugin.host.batch import report_refusal

    asked = {"operation": values["op"], "executor": Executor(values["executor"]).value}
    report_refusal(
        values["report"], values["in_pattern"], values["out_pattern"], asked, error, values["frames"], values["chunk"]
    )


@app.command()
@with_params(on_refusal=_refuse_batch, params=COMMAND_PARAMS, options=WriteOptions)
def batch(
    in_pattern: str = typer.Argument(..., help="Input frames: shot.####.png, shot.%04d.png, shot.@@@@.png or a glob."),
    out_pattern: str = typer.Argument(..., help="Output EXR frames, e.g. hdr/shot.####.exr."),
    frames: str = typer.Option("", help="oiiotool-style range: 1001-1100, 1001-1100x4, 1,5,9-12 (default: on disk)."),
    chunk: str = typer.Option("", help="I/N: only the I-th (from 1) of N contiguous chunks of the frames."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Leave frames whose output exists (resume)."),
    steady: int = typer.Option(
        0, help="Steady highlights on a moving shot: each frame's lift averaged over N frames either side (0: off)."
    ),
    report: Path | None = typer.Option(None, help="Write per-frame status, timings and settings to this JSON file."),
    executor: Executor = typer.Option(Executor.local, help="local: this process; ray: a Ray cluster (ray extra)."),
    address: str = typer.Option("", help="Ray cluster to join: ray://HOST:10001, HOST:6379, auto; none: start one."),
    ray_cpus: int = typer.Option(0, help="CPUs of the local Ray instance started without --address; 0: all."),
    ray_workers: int = typer.Option(0, help="Ray workers, one model each; 0: one per GPU, or one per node."),
    op: str = OPERATION,
    *,
    params: Params,
    options: WriteOptions,
) -> None:
    """Convert a frame sequence; exits 1 if any frame failed (listed in the summary and the report)."""
    from fhdr_plugin.host.batch import FAILED, run_batch

    with reporting():
        try:
            params = registry().for_operation(op, params)
            if steady:
                if op != BUILTIN_OPERATION:
                    raise FhdrError(f"--steady: only {BUILTIN_OPERATION} can be steadied, not {op}")
                from fhdr_plugin.node.steady import check_radius

                check_radius(steady, params.blend.mode)
            runner = _runner(executor, params, options, skip_existing, op, address, ray_cpus, ray_workers)
        except FhdrError as exc:
            given = {"in_pattern": in_pattern, "out_pattern": out_pattern, "frames": frames, "chunk": chunk}
            _refuse_batch({**given, "report": report, "op": op, "executor": executor}, str(exc))
            raise
        settings = {
            "operation": op,
            **params.to_dict(),
            **options.to_dict(),
            "skip_existing": skip_existing,
            "steady": steady,
        }
        results = run_batch(
            runner,
            in_pattern,
            out_pattern,
            settings,
            frames=frames,
            chunk_spec=chunk,
            steady=steady,
            report=report,
            quiet=Settings.quiet,
        )
    if any(r.status == FAILED for r in results):
        raise typer.Exit(1)


def _runner(
    executor: Executor,
    params: Params,
    options: WriteOptions,
    skip_existing: bool,
    op: str,
    address: str,
    ray_cpus: int,
    ray_workers: int,
) -> LocalExecutor | RayExecutor:
    """The executor batch runs its frames on: this process, or a Ray cluster (its options refused without it)."""
    from fhdr_plugin.host.batch import LocalExecutor

    if executor is Executor.ray:
        from fhdr_plugin.host.ray_executor import RayExecutor

        return RayExecutor(
            params,
            options,
            skip_existing=skip_existing,
            operation=op,
            address=address,
            cpus=ray_cpus,
            workers=ray_workers,
            quiet=Settings.quiet,
        )
    if address or ray_cpus or ray_workers:
        raise FhdrError("--address, --ray-cpus and --ray-workers are options of --executor ray")
    return LocalExecutor(params, options, skip_existing=skip_existing, operation=op)


@app.command()
def ops() -> None:
    """List the registered operations and their parameters."""
    with reporting():
        reg = registry()
        for name, op in sorted(reg.operations.items()):
            typer.echo(f"{name}  ({op.plugin}) {op.description}")
            for p in op.params.describe():
                choices = f" [{'|'.join(p.choices)}]" if p.choices else ""
                typer.echo(f"  {p.name}: {p.type} = {p.default!r}{choices}  {p.help}")


@app.command()
def models() -> None:
    """List the shipped models with their metadata (checked against plugin.toml's sha256); a model that fails the
    check is reported and the others are still listed."""
    from fhdr_plugin.node.weights import model_metadata

    with reporting():
        m = manifest()
        broken = []
        for name, spec in m.models.items():
            default = " (default)" if name == m.default_model else ""
            typer.echo(f"{name}{default}: {spec.path.relative_to(PACKAGE_DIR)} sha256 {spec.sha256}")
            try:
                meta = model_metadata(spec)
            except FhdrError as exc:
                broken.append(name)
                typer.echo(f"fhdr: error: {exc}", err=True)
                continue
            for key, value in sorted(meta.items()):
                typer.echo(f"  {key}: {value}")
        if broken:
            raise FhdrError(f"{len(broken)} of {len(m.models)} models cannot be used: {', '.join(broken)}")


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


@app.command()
@with_params(weights=ModelParams, written=ExportParams)
def export(
    output: Path = typer.Argument(..., help="File to write (.pt or .torchscript: TorchScript; .onnx: ONNX)."),
    *,
    weights: ModelParams,
    written: ExportParams,
) -> None:
    """Write a self-contained model: by default RGB LDR in [0, 1] in, linear HDR (the network's output, decoded)
    out; with --host nuke, Nuke's drop-in (scene-linear in and out)."""
    from fhdr_plugin.exports.export import export_model, format_for
    from fhdr_plugin.node.weights import load_model

    with reporting():
        fmt = format_for(output, written.format)
        nuke = written.host == "nuke"
        if nuke and fmt != "torchscript":
            raise FhdrError(f"{output}: --host nuke writes TorchScript (.pt), not {fmt}")
        if not nuke and (written.matte or written.working_space != ExportParams().working_space):
            raise FhdrError("--working-space and --matte are options of --host nuke")
        spec = manifest().model(weights.model or None)
        net, meta = load_model(spec, weights.iterations or None)
        if nuke:
            from fhdr_plugin.exports.dropin import export_nuke

            export_nuke(net, {**meta, "fhdr:model": spec.name}, output, written.working_space, written.matte)
        else:
            export_model(net, {**meta, "fhdr:model": spec.name}, fmt, output)
        count = f"{net.iterations} iteration{'' if net.iterations == 1 else 's'}"
        what = f"{fmt} for nuke, {written.working_space}{', matte' if written.matte else ''}" if nuke else fmt
        log.info("wrote %s (%s, %s, %s)", output, what, spec.name, count)


def _command_path(exc: typer.TyperException) -> str:
    """``fhdr COMMAND`` of a usage error: its context's, else (an option missing its value is raised without
    one) the command named on the command line, else ``fhdr``."""
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        return ctx.command_path
    words = [a for a in sys.argv[1:] if not a.startswith("-")]
    commands = typer.main.get_command(app).commands
    return f"fhdr {words[0]}" if words and words[0] in commands else "fhdr"


def main() -> None:
    """Entry point of the ``fhdr`` console script; a usage error (unknown option, bad value) is one line too."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:
        message, code = exc.format_message(), exc.exit_code
        if message:
            typer.echo(f"fhdr: error: {message} (see '{_command_path(exc)} --help')", err=True)
    except typer.Abort:
        typer.echo("fhdr: aborted", err=True)
        code = 1
    except Terminated:
        code = TERMINATED_EXIT
    except KeyboardInterrupt:
        code = INTERRUPTED_EXIT
    # The work is over (its outputs written or not): a signal arriving now must not turn the exit into a crash.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(code if isinstance(code, int) else 0)
