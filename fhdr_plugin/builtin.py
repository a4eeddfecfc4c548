"""The built-in plugin: registers ``ldr_to_hdr`` through the same hook a third-party plugin uses.

The node (and with it torch) is imported when the operation first runs, not when the plugin is registered.
"""

from __future__ import annotations

import inspect
from typing import Any

import OpenImageIO as oiio

from fhdr_plugin.hookspecs import Operation, hookimpl
from fhdr_plugin.manifest import manifest
from fhdr_plugin.params import LdrToHdrParams


def ldr_to_hdr(buf: oiio.ImageBuf, **params: Any) -> oiio.ImageBuf:
    """Turn an LDR ImageBuf into a scene-linear HDR ImageBuf (see ``LdrToHdrParams`` for ``params``)."""
    from fhdr_plugin import node

    return node.apply(buf, LdrToHdrParams.from_kwargs(**params))


ldr_to_hdr.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter("buf", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=oiio.ImageBuf)]
    + [inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default) for p in LdrToHdrParams.describe()],
    return_annotation=oiio.ImageBuf,
)


@hookimpl
def fhdr_register_operations() -> list[Operation]:
    """The built-in operations."""
    spec = manifest().operations["ldr_to_hdr"]
    return [Operation("ldr_to_hdr", spec.description, ldr_to_hdr, plugin="fhdr", params=LdrToHdrParams)]
