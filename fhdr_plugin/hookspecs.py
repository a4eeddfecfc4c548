"""Hook specifications of the ``fhdr`` host; plugins implement them with ``fhdr_plugin.hookimpl``."""

from __future__ import annotations

from typing import Any

import OpenImageIO as oiio
import pluggy

hookspec = pluggy.HookspecMarker("fhdr")
hookimpl = pluggy.HookimplMarker("fhdr")


@hookspec
def fhdr_register_operations() -> list[Any]:
    """Return the operations (``fhdr_plugin.registry.Operation``) this plugin provides."""


@hookspec
def fhdr_before_operation(name: str, buf: oiio.ImageBuf, params: dict[str, Any]) -> None:
    """Called before operation ``name`` runs on ``buf`` with ``params``."""


@hookspec
def fhdr_after_operation(name: str, result: oiio.ImageBuf, params: dict[str, Any]) -> None:
    """Called after operation ``name`` produced ``result``."""
