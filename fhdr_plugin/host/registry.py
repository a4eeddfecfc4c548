"""The plugin manager of the ``fhdr`` host: finds plugins through entry points and runs operations by name."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import OpenImageIO as oiio
import pluggy

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.host import builtin, hookspecs
from fhdr_plugin.host.hookspecs import Operation
from fhdr_plugin.manifest import manifest
from fhdr_plugin.params import Params

__all__ = ["DEFAULT_OPERATION", "Operation", "Registry", "plugin_manager", "registry", "run_operation"]

#: The operation ``fhdr convert`` and ``fhdr batch`` run unless ``--op`` names another.
DEFAULT_OPERATION = builtin.OPERATION


@dataclasses.dataclass(frozen=True)
class _Options(Params):
    """Option values as the command line gives them: checked once, when ``for_operation`` makes the operation's
    own object from them."""

    def __post_init__(self) -> None:
        """Nothing to check yet."""


class Registry:
    """Operations contributed by every registered plugin, with the before/after hooks around each run."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.operations: dict[str, Operation] = {}
        for ops in pm.hook.fhdr_register_operations():
            for op in ops:
                if op.name in self.operations:
                    raise FhdrError(f"operation {op.name!r} is registered twice")
                self.operations[op.name] = op

    def get(self, name: str) -> Operation:
        """The operation called ``name``; an FhdrError listing the known ones otherwise."""
        if name not in self.operations:
            raise FhdrError(f"unknown operation {name!r}; known: {', '.join(sorted(self.operations))}")
        return self.operations[name]

    def params(self, name: str, params: Params | None = None, **values: Any) -> Params:
        """The checked parameter object of operation ``name``: ``params`` itself (an object of the operation's
        class), or one made from keyword ``values`` (the defaults when there are none)."""
        op = self.get(name)
        if params is None:
            return op.params.from_kwargs(**values)
        if not isinstance(params, op.params):
            raise FhdrError(f"{name}: takes one {op.params.__name__} or keyword values, not {type(params).__name__}")
        if values:
            raise FhdrError(
                f"{name}: takes one {op.params.__name__} or keyword values, not both ({', '.join(values)} given too)"
            )
        return params

    def command_params(self) -> type[Params]:
        """One parameter class with the fields of every operation, by name (the default operation's first, then
        each other's new ones): the options of ``fhdr convert`` and ``fhdr batch``, whose values ``for_operation``
        turns into the chosen operation's own object."""
        ops = [self.get(DEFAULT_OPERATION), *(op for name, op in self.operations.items() if name != DEFAULT_OPERATION)]
        fields: dict[str, dataclasses.Field] = {}
        for op in ops:
            for f in op.params.fields():
                fields.setdefault(f.name, f)
        spec = [(f.name, f.type, dataclasses.field(default=f.default, metadata=f.metadata)) for f in fields.values()]
        return dataclasses.make_dataclass("CommandParams", spec, bases=(_Options,), frozen=True)

    def for_operation(self, name: str, values: Params) -> Params:
        """The parameter object of operation ``name`` from the command line's ``values`` (a ``command_params``
        object): the options given, the operation's own defaults for the rest (a name two operations share may
        default differently); an FhdrError when an option that is not the operation's was given."""
        own = set(self.get(name).params.names())
        defaults = {f.name: f.default for f in type(values).fields()}
        given = {k: v for k, v in values.to_dict().items() if v != defaults[k]}
        foreign = sorted(k for k in given if k not in own)
        if foreign:
            options = ", ".join("--" + k.replace("_", "-") for k in foreign)
            raise FhdrError(f"{options}: not a parameter of {name} (fhdr ops lists them)")
        return self.params(name, **given)

    def run(self, name: str, buf: oiio.ImageBuf, params: Params | None = None, **values: Any) -> oiio.ImageBuf:
        """Run operation ``name`` on ``buf`` with ``params`` (see ``params``), checked once here, calling the
        before and after hooks of every plugin with the same object."""
        if not isinstance(buf, oiio.ImageBuf):
            raise FhdrError(
                f"{name}: takes an OpenImageIO ImageBuf, not {type(buf).__name__} "
                "(OpenImageIO.ImageBuf(path) reads a file; hooks/generic_host.py converts files and arrays)"
            )
        return self.run_with(name, buf, self.params(name, params, **values), self.get(name).run)

    def run_with(
        self, name: str, buf: oiio.ImageBuf, params: Params, run: Callable[[oiio.ImageBuf, Any], oiio.ImageBuf]
    ) -> oiio.ImageBuf:
        """Operation ``name`` as ``run`` computes it (the batch's steady mode: ``ldr_to_hdr`` with the frames
        around), its ``params`` checked and every plugin's hooks called around it as ``run`` (the method) does."""
        checked = self.params(name, params)
        self.pm.hook.fhdr_before_operation(name=name, buf=buf, params=checked)
        result = run(buf, checked)
        self.pm.hook.fhdr_after_operation(name=name, result=result, params=checked)
        return result


def plugin_manager() -> pluggy.PluginManager:
    """A plugin manager with the hook specs, the built-in plugin, then every plugin of the manifest's
    entry-point group."""
    pm = pluggy.PluginManager("fhdr")
    pm.add_hookspecs(hookspecs)
    pm.register(builtin, name="fhdr")
    group = manifest().entry_point_group
    try:
        pm.load_setuptools_entrypoints(group)
    except Exception as exc:  # an installed plugin's import or hooks: named in one line, not a traceback
        broken = [ep for ep in entry_points(group=group) if not pm.has_plugin(ep.name)]
        which = f"plugin {broken[0].name} ({broken[0].value})" if broken else "a plugin"
        raise FhdrError(f"{which} of {group} cannot be loaded: {type(exc).__name__}: {exc}") from exc
    return pm


@functools.lru_cache(maxsize=1)
def registry() -> Registry:
    """The process-wide registry, built on first use."""
    return Registry(plugin_manager())


def run_operation(name: str, buf: oiio.ImageBuf, params: Params | None = None, **values: Any) -> oiio.ImageBuf:
    """Run the registered operation ``name`` on ``buf`` with a parameter object or keyword values."""
    return registry().run(name, buf, params, **values)
