"""The parameters of ``ldr_to_hdr``, declared once: each field carries its default, help and choices.

They come in groups, each read by one part of the node: ``BlendParams`` (how the network's output meets the plate:
``scale.py``, its torch twin ``maths.py``, the Nuke drop-in's knobs and the training loss) and ``EngineParams``
(which network runs where, and how: the engine cache key). ``LdrToHdrParams`` holds both groups and the colour
and output settings. The command line (``fhdr convert``, ``fhdr batch``), ``fhdr ops``, the manifest, the Python
API and the Nuke hook list the fields of every group by name, flat, and the values are checked once, when the
object is made. Adding a parameter is one ``param(...)`` line in its group (and its reading where it is used).
No torch here: listing parameters stays cheap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.imaging import color

#: ``tile``: pick the tile size from free memory.
AUTO_TILE = -1
#: ``tile``: run the whole frame in one pass.
NO_TILING = 0
#: The smallest tile size: below it, a frame's time goes to the halo around each tile.
MIN_TILE = 32
#: Feedback iterations a model may run; 0 means the count it was trained with.
ITERATIONS = range(1, 5)
MODES = ("anchored", "raw")
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
#: How an input's colour relates to its alpha; auto: as the file says (``oiio:UnassociatedAlpha``).
ALPHAS = ("auto", "premultiplied", "straight")
#: The working spaces a Nuke drop-in can be exported for (OCIO names).
WORKING_SPACES = ("lin_rec709", "ACEScg")
#: The file formats ``fhdr export`` writes, and the hosts it writes for.
FORMATS = ("torchscript", "onnx")
HOSTS = ("raw", "nuke")
#: ``blend_low``: chosen for the plate. A lossless plate's channels below full scale are measurements (8-bit's
#: 254 too), so only a channel at full scale takes the network; a lossy codec (JPEG) moves near-white values, in
#: clipped areas too, so the network blends in from 0.95.
AUTO_BLEND = -1.0
LOSSLESS_BLEND_LOW = 0.996
LOSSY_BLEND_LOW = 0.95
#: The largest expansion strength (the reconstruction's ratio to the plate, raised to this power).
MAX_STRENGTH = 4.0
#: The types a parameter may have, by name.
TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}

P = TypeVar("P", bound="Params")


@dataclass(frozen=True)
class ParamInfo:
    """What a parameter declares besides its default: help, choices, a check, and a command-line flag."""

    help: str
    choices: tuple[str, ...] = ()
    check: Callable[[Any], None] | None = None
    flag: str = ""


@dataclass(frozen=True)
class Described:
    """One parameter as listed to a user: name, type name, default, choices and help."""

    name: str
    type: str
    default: Any
    choices: tuple[str, ...]
    help: str


def param(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] = (),
    check: Callable[[Any], None] | None = None,
    flag: str = "",
) -> Any:
    """Declare a parameter field. ``check(value)`` raises an FhdrError on a bad value; ``flag``: the command
    line's spelling of a boolean (``--half/--float``)."""
    return field(default=default, metadata={"fhdr": ParamInfo(help, choices, check, flag)})


def group(cls: type[P]) -> Any:
    """Declare a field that holds a group of parameters (a ``Params`` class), whose fields are listed, set and
    shown by their own names, as if they were the holder's."""
    return field(default_factory=cls, metadata={"fhdr_group": cls})


def type_name(f: dataclasses.Field) -> str:
    """A parameter field's type by name (``str``, ``int``, ``float``, ``bool``), whether its module postpones
    annotations or not."""
    return f.type if isinstance(f.type, str) else f.type.__name__


def check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise an FhdrError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise FhdrError(f"unknown {what} {value!r}; choose from {', '.join(choices)}")


def check_tile(tile: int) -> None:
    """Raise an FhdrError unless ``tile`` is a tile size: at least ``MIN_TILE``, ``NO_TILING`` or ``AUTO_TILE``."""
    if tile not in (AUTO_TILE, NO_TILING) and tile < MIN_TILE:
        raise FhdrError(
            f"ldr_to_hdr: tile must be {AUTO_TILE} (from free memory), {NO_TILING} (no tiling) or at least "
            f"{MIN_TILE} pixels (each tile also runs a halo of the network's receptive radius around it), got {tile}"
        )


def check_iterations(iterations: int) -> None:
    """Raise an FhdrError unless ``iterations`` is a feedback count a model may run, or 0 (the model's own)."""
    if iterations and iterations not in ITERATIONS:
        raise FhdrError(f"ldr_to_hdr: iterations must be 1-4 (0 for the model's own), got {iterations}")


def _check_strength(strength: float) -> None:
    if not 0.0 <= strength <= MAX_STRENGTH:
        raise FhdrError(f"ldr_to_hdr: strength must be 0-{MAX_STRENGTH:g} (1: as trained, 0: none), got {strength}")


def _check_colorspace(name: str) -> None:
    if name:
        color.resolve(name)


def _check_output_colorspace(name: str) -> None:
    if not name:
        raise FhdrError("output_colorspace must name a colour space (e.g. lin_rec709, ACEScg), not be empty")
    color.resolve(name)


def _coerce(name: str, kind: type, value: Any) -> Any:
    """``value`` as ``kind`` (an int is a float; nothing else is converted)."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FhdrError(f"{name} must be of type {kind.__name__}, got {value!r}")
    return value


def _group(f: dataclasses.Field) -> type[Params] | None:
    return f.metadata.get("fhdr_group")


@dataclass(frozen=True)
class Params:
    """Base of a parameter object: fields declared with ``param`` or ``group``, checked when the object is made."""

    #: The prefix of error messages (the operation's or the writer's name).
    where = "parameters"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = _group(f)
            if kind is not None:
                if not isinstance(value, kind):
                    raise FhdrError(f"{self.where}: {f.name} must be a {kind.__name__}, got {value!r}")
                continue
            info: ParamInfo = f.metadata["fhdr"]
            value = _coerce(f"{self.where}: {f.name}", TYPES[type_name(f)], value)
            object.__setattr__(self, f.name, value)
            if info.choices and value not in info.choices:
                raise FhdrError(f"{self.where}: {f.name} must be one of {', '.join(info.choices)}, got {value!r}")
            if info.check:
                info.check(value)

    @classmethod
    def fields(cls) -> list[dataclasses.Field]:
        """Every parameter field, the fields of each group in its place, in declaration order."""
        out: list[dataclasses.Field] = []
        for f in dataclasses.fields(cls):
            kind = _group(f)
            out += kind.fields() if kind is not None else [f]
        return out

    @classmethod
    def names(cls) -> list[str]:
        """The names of ``fields``, in their order: the keyword arguments ``from_kwargs`` takes."""
        return [f.name for f in cls.fields()]

    @classmethod
    def from_kwargs(cls: type[P], **values: Any) -> P:
        """The object of keyword arguments named as ``fields`` lists them, rejecting unknown names and bad values."""
        known = cls.names()
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise FhdrError(f"{cls.where}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(known)}")
        own: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            kind = _group(f)
            if kind is None:
                if f.name in values:
                    own[f.name] = values[f.name]
            else:
                own[f.name] = kind.from_kwargs(**{g.name: values[g.name] for g in kind.fields() if g.name in values})
        return cls(**own)

    def replace(self: P, **changes: Any) -> P:
        """A copy with ``changes`` (named as ``fields`` lists them), checked like a new object."""
        return self.from_kwargs(**{**self.to_dict(), **changes})

    @classmethod
    def describe(cls) -> list[Described]:
        """The parameters in declaration order, as ``fhdr ops`` lists them."""
        return [
            Described(f.name, type_name(f), f.default, f.metadata["fhdr"].choices, f.metadata["fhdr"].help)
            for f in cls.fields()
        ]

    def to_dict(self) -> dict[str, Any]:
        """The values by name, flat (for reports, hooks and keyword calls)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out.update(value.to_dict() if _group(f) is not None else {f.name: value})
        return out


@dataclass(frozen=True)
class NoParams(Params):
    """The parameters of an operation that takes none."""


@dataclass(frozen=True)
class BlendParams(Params):
    """How the network's output meets the plate (``scale.blend`` and its torch twin ``maths.blend``)."""

    where = "ldr_to_hdr"

    mode: str = param(
        "anchored",
        "anchored: keep the linearised input where well exposed, expand near saturation; raw: the network's "
        "output as trained",
        choices=MODES,
    )
    blend_low: float = param(
        AUTO_BLEND,
        f"anchored mode: display value of a channel where the network starts to blend into it; {AUTO_BLEND:g}: "
        f"{LOSSLESS_BLEND_LOW:g} for a lossless plate (only a clipped channel is reconstructed), "
        f"{LOSSY_BLEND_LOW:g} for a lossy one (JPEG, WebP: the codec moved its near-white values)",
    )
    blend_high: float = param(
        1.0, "anchored mode: display value where the network fully takes over (never darker than the input)"
    )
    strength: float = param(
        1.0,
        "anchored mode: expansion strength in log space; 1: as trained, 0: the linearised input, >1: exaggerated",
        check=_check_strength,
    )
    context: bool = param(
        True,
        "anchored mode: brighten large highlights (windows, lamps, suns) from the whole frame's context with the "
        "model's lift head, when it has one; off: the network's expansion alone",
        flag="--context/--no-context",
    )
    coarse: bool = param(
        True,
        "anchored mode: expand a clipped area deeper than the network sees (a window or a flame on a 2K or 4K "
        "plate) from the frame at half, quarter, ... resolution too; off: the full-resolution pass alone",
        flag="--coarse/--no-coarse",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        low = self.for_plate(lossy=False).blend_low
        if not 0.0 <= low < self.blend_high <= 1.0:
            raise FhdrError(f"{self.where}: need 0 <= blend_low < blend_high <= 1 (or blend_low {AUTO_BLEND:g})")

    def for_plate(self, lossy: bool) -> BlendParams:
        """These parameters with ``blend_low`` chosen for a plate stored lossily or not, when it is automatic."""
        if self.blend_low != AUTO_BLEND:
            return self
        low = LOSSY_BLEND_LOW if lossy else LOSSLESS_BLEND_LOW
        return dataclasses.replace(self, blend_low=min(low, self.blend_high - 1e-3))


@dataclass(frozen=True)
class ModelParams(Params):
    """Which shipped network: its name and feedback iterations (``weights.load_model``)."""

    where = "ldr_to_hdr"

    model: str = param("", "shipped model name; empty: the default model")
    iterations: int = param(
        0,
        "feedback iterations: 0 for the count the model was trained with, the only count it accepts (fhdr models "
        "shows fhdr:iterations: fhdr-i2 2, fhdr-i1 1)",
        check=check_iterations,
    )


@dataclass(frozen=True)
class EngineParams(Params):
    """Which network runs, where and how: the key of the engine cache (``engine.engine_for``)."""

    where = "ldr_to_hdr"

    weights: ModelParams = group(ModelParams)
    device: str = param("", "torch device (cuda, cuda:1, mps, cpu); empty: CUDA, then MPS, then CPU")
    precision: str = param(
        "auto",
        "compute precision; auto: bfloat16 on CUDA and on CPUs with native bfloat16, float32 elsewhere",
        choices=PRECISIONS,
    )
    tile: int = param(AUTO_TILE, "tile size in pixels; 0: no tiling; -1: chosen from free memory", check=check_tile)


def _check_format(name: str) -> None:
    if name:
        check_choice("export format", name, FORMATS)


def _check_working_space(name: str) -> None:
    check_choice("working space", name, WORKING_SPACES)


@dataclass(frozen=True)
class ExportParams(Params):
    """What ``fhdr export`` writes: the file format, the host it is for, and the drop-in's working space and matte."""

    where = "export"

    format: str = param(
        "", "torchscript (Nuke's Inference node) or onnx; empty: from the extension", check=_check_format
    )
    host: str = param(
        "raw",
        "raw: display-referred LDR in, the decoded network out (any host); nuke: a drop-in for Nuke's Inference "
        "node, scene-linear working space in and out, fhdr convert's anchored result (torchscript)",
        choices=HOSTS,
    )
    working_space: str = param(
        "lin_rec709", "--host nuke: the working space the module takes and returns", check=_check_working_space
    )
    matte: bool = param(False, "--host nuke: return fhdr.matte as a fourth channel", flag="--matte/--no-matte")


@dataclass(frozen=True)
class LdrToHdrParams(Params):
    """Parameters of ``ldr_to_hdr``: the colour spaces and alpha, the blend, the engine, and the matte."""

    where = "ldr_to_hdr"

    input_colorspace: str = param(
        "",
        "OCIO name of the input's space; empty: the file's oiio:ColorSpace, else sRGB for integer files, "
        "linear for float",
        check=_check_colorspace,
    )
    output_colorspace: str = param(
        color.LINEAR_SPACE, "OCIO name of the output space (e.g. lin_rec709, ACEScg)", check=_check_output_colorspace
    )
    alpha: str = param(
        "auto",
        "the input's colour against its alpha; auto: the file's convention (straight for PNG, premultiplied for "
        "EXR); premultiplied: for renders saved premultiplied as PNG",
        choices=ALPHAS,
    )
    blend: BlendParams = group(BlendParams)
    engine: EngineParams = group(EngineParams)
    matte: bool = param(
        False,
        "add a channel fhdr.matte (0-1): how much of each pixel came from the network (the blend weight)",
        flag="--matte/--no-matte",
    )
