"""The built-in plugin: registers ``ldr_to_hdr`` through the same hook a third-party plugin uses."""

from __future__ import annotations

from typing import Any

import OpenImageIO as oiio

from fhdr_plugin import node
from fhdr_plugin.hookspecs import hookimpl
from fhdr_plugin.manifest import manifest
from fhdr_plugin.registry import Operation


def ldr_to_hdr(buf: oiio.ImageBuf, **params: Any) -> oiio.ImageBuf:
    """Turn an LDR ImageBuf into a scene-linear HDR ImageBuf (see ``LdrToHdrParams`` for ``params``)."""
    return node.apply(buf, node.LdrToHdrParams.from_kwargs(**params))


@hookimpl
def fhdr_register_operations() -> list[Operation]:
    """The built-in operations."""
    spec = manifest().operations["ldr_to_hdr"]
    return [Operation("ldr_to_hdr", spec.description, ldr_to_hdr, plugin="fhdr")]
