"""fhdr: single-image LDR to scene-linear HDR reconstruction with FHDR, as an OIIO/OCIO node."""

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.host.builtin import ldr_to_hdr
from fhdr_plugin.host.hookspecs import Operation, hookimpl
from fhdr_plugin.host.registry import run_operation
from fhdr_plugin.params import LdrToHdrParams
from fhdr_plugin.version import __version__

__all__ = ["FhdrError", "LdrToHdrParams", "Operation", "__version__", "hookimpl", "ldr_to_hdr", "run_operation"]
