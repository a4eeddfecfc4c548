"""The built-in plugin: registers ``ldr_to_hdr`` through the same hook a third-party plugin uses.

The node (and with it torch) is imported when the operation first runs, not when the plugin is registered.
"""

from __future__ import annotations

import inspect
from typing import Any

import OpenImageIO as oiio

from fhdr_plugin.host.hookspecs import Operation, hookimpl
from fhdr_plugin.manifest import BUILTIN_OPERATION, manifest
from fhdr_plugin.params import LdrToHdrParams

#: The name the built-in operation is registered under.
OPERATION = BUILTIN_OPERATION


def run(buf: oiio.ImageBuf, params: LdrToHdrParams) -> oiio.ImageBuf:
    """The operation as the registry runs it, with checked parameters."""
    from fhdr_plugin.node import operation as node

    return node.apply(buf, params)


def ldr_to_hdr(buf: oiio.ImageBuf, **params: Any) -> oiio.ImageBuf:
    """Turn an LDR ImageBuf into a scene-linear HDR ImageBuf (see ``LdrToHdrParams`` for ``params``), through the
    registry, so every plugin's hooks run around it."""
    from fhdr_plugin.host.registry import run_operation

    return run_operation(OPERATION, buf, **params)


ldr_to_hdr.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter("buf", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=oiio.ImageBuf)]
    + [inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default) for p in LdrToHdrParams.describe()],
    return_annotation=oiio.ImageBuf,
)


@hookimpl
def fhdr_register_operations() -> list[Operation]:
    """The built-in operations."""
    spec = manifest().operations[OPERATION]
    return [Operation(OPERATION, spec.description, run, plugin="fhdr", params=LdrToHdrParams)]
