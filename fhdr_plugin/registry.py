"""The plugin manager of the ``fhdr`` host: finds plugins through entry points and runs operations by name."""

from __future__ import annotations

import functools
from typing import Any

import OpenImageIO as oiio
import pluggy

from fhdr_plugin import builtin, hookspecs
from fhdr_plugin.errors import FhdrError
from fhdr_plugin.hookspecs import Operation
from fhdr_plugin.manifest import manifest

__all__ = ["Operation", "Registry", "plugin_manager", "registry", "run_operation"]


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

    def run(self, name: str, buf: oiio.ImageBuf, **params: Any) -> oiio.ImageBuf:
        """Run operation ``name`` on ``buf``, calling the before and after hooks of every plugin."""
        op = self.get(name)
        self.pm.hook.fhdr_before_operation(name=name, buf=buf, params=params)
        result = op.run(buf, **params)
        self.pm.hook.fhdr_after_operation(name=name, result=result, params=params)
        return result


def plugin_manager() -> pluggy.PluginManager:
    """A plugin manager with the hook specs, the built-in plugin, then every plugin of the manifest's
    entry-point group."""
    pm = pluggy.PluginManager("fhdr")
    pm.add_hookspecs(hookspecs)
    pm.register(builtin, name="fhdr")
    pm.load_setuptools_entrypoints(manifest().entry_point_group)
    return pm


@functools.lru_cache(maxsize=1)
def registry() -> Registry:
    """The process-wide registry, built on first use."""
    return Registry(plugin_manager())


def run_operation(name: str, buf: oiio.ImageBuf, **params: Any) -> oiio.ImageBuf:
    """Run the registered operation ``name`` on ``buf``."""
    return registry().run(name, buf, **params)
