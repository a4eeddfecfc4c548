"""fhdr: single-image LDR to scene-linear HDR reconstruction with FHDR, as an OIIO/OCIO node."""

from typing import Any

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.hookspecs import hookimpl
from fhdr_plugin.registry import run_operation
from fhdr_plugin.version import __version__

__all__ = ["FhdrError", "__version__", "hookimpl", "ldr_to_hdr", "run_operation"]


def __getattr__(name: str) -> Any:
    """``ldr_to_hdr`` is imported on first use, so that importing any fhdr module does not load torch."""
    if name == "ldr_to_hdr":
        from fhdr_plugin.builtin import ldr_to_hdr

        return ldr_to_hdr
    raise AttributeError(f"module 'fhdr_plugin' has no attribute {name!r}")
