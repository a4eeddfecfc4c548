"""The plugin contract of the ``fhdr`` host: hook markers, the hook specifications and the ``Operation`` type.

Plugins implement the hooks with ``fhdr_plugin.hookimpl`` and are found through the entry-point group named in
``plugin.toml``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import OpenImageIO as oiio
import pluggy

from fhdr_plugin.params import NoParams, Params

hookspec = pluggy.HookspecMarker("fhdr")
hookimpl = pluggy.HookimplMarker("fhdr")


@dataclass(frozen=True)
class Operation:
    """A named image operation: ``run(buf, params) -> ImageBuf``, ``params`` an object of the operation's
    ``params`` class, which declares and checks its parameters (``fhdr ops`` and the command line list them)."""

    name: str
    description: str
    run: Callable[[oiio.ImageBuf, Any], oiio.ImageBuf]
    plugin: str = ""
    params: type[Params] = NoParams


@hookspec
def fhdr_register_operations() -> list[Operation]:
    """Return the operations this plugin provides."""


@hookspec
def fhdr_before_operation(name: str, buf: oiio.ImageBuf, params: Params) -> None:
    """Called before operation ``name`` runs on ``buf`` with the checked parameter object ``params``."""


@hookspec
def fhdr_after_operation(name: str, result: oiio.ImageBuf, params: Params) -> None:
    """Called after operation ``name`` produced ``result`` with ``params``."""
