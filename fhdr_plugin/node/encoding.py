"""How the network's [0, 1] output encodes linear HDR relative to the LDR's white.

``linear``: output × headroom (the first shipped weights). ``mu-law``: the output is the μ-law of
(HDR / headroom), so equal steps of the output are nearly equal ratios of light, and a headroom of
hundreds costs the LDR range no precision. Weights record their encoding in ``fhdr:encoding`` (absent
means ``linear``), the headroom in ``fhdr:headroom`` and μ in ``fhdr:mu``.
"""

from __future__ import annotations

import math

import numpy as np

ENCODINGS = ("linear", "mu-law")
MU = 5000.0


def decoding(meta: dict[str, str]) -> tuple[float, float]:
    """(headroom, μ) of the weights' output encoding; μ is 0 for ``linear``."""
    encoding = meta.get("fhdr:encoding", "linear")
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown output encoding {encoding!r}; known: {', '.join(ENCODINGS)}")
    return float(meta["fhdr:headroom"]), float(meta.get("fhdr:mu", MU)) if encoding == "mu-law" else 0.0


def decode(output: np.ndarray, meta: dict[str, str]) -> np.ndarray:
    """Linear HDR relative to white from the network's output, as the weights' metadata says it is encoded."""
    headroom, mu = decoding(meta)
    if not mu:
        return output * headroom
    return (np.expm1(np.clip(output, 0.0, 1.0) * math.log1p(mu)) / mu * headroom).astype(np.float32)


def encode(hdr_rel: np.ndarray, headroom: float, encoding: str, mu: float = MU) -> np.ndarray:
    """The network's training target for linear HDR relative to white: the inverse of ``decode``, in [0, 1]."""
    x = np.clip(hdr_rel / headroom, 0.0, 1.0)
    if encoding == "linear":
        return x.astype(np.float32)
    if encoding == "mu-law":
        return (np.log1p(mu * x) / math.log1p(mu)).astype(np.float32)
    raise ValueError(f"unknown output encoding {encoding!r}; known: {', '.join(ENCODINGS)}")
