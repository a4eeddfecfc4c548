"""``ldr_to_hdr`` over the frames of a shot, each steadied by its neighbours (``steady``; the batch's ``--steady``).

A frame's output depends only on its own plate and the plates of up to ``radius`` frames either side, whichever
frames a run converts or in which order, so chunks on a farm give the frames a single run gives. Reconstructions
are kept for the frames that follow: in frame order each plate goes through the network once.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import OpenImageIO as oiio

from fhdr_plugin.errors import FhdrError
from fhdr_plugin.imaging.io import read_image
from fhdr_plugin.node import operation, steady
from fhdr_plugin.node.engine import engine_for
from fhdr_plugin.params import LdrToHdrParams

log = logging.getLogger("fhdr")

#: A kept reconstruction: its data window's origin (y, x) and the arrays.
Kept = tuple[tuple[int, int], steady.Reconstruction]


class Shot:
    """Converts frames of one shot, each steadied by up to ``radius`` frames either side."""

    def __init__(self, radius: int) -> None:
        steady.check_radius(radius)
        self.radius = radius
        self.params: LdrToHdrParams | None = None
        self.kept: OrderedDict[str, Kept] = OrderedDict()

    def apply(
        self, buf: oiio.ImageBuf, params: LdrToHdrParams, path: Path, neighbours: Sequence[tuple[int, Path]]
    ) -> oiio.ImageBuf:
        """``ldr_to_hdr`` with ``params`` of the frame read from ``path`` into ``buf``, steadied by the frames of
        ``neighbours`` (how far each is from this one, and its file; those that cannot be read are left out with a
        warning; one whose data window differs is taken within the frame's, black outside its own)."""
        steady.check_radius(self.radius, params.blend.mode)
        if params != self.params:
            self.params, self.kept = params, OrderedDict()
        plate = operation.prepare(buf, params, str(path))
        engine, meta = engine_for(plate.params.engine)
        origin, own = self._reconstruction(path, lambda: plate)
        window = (*origin, *own.linear.shape[:2])
        near = [(d, p) for d, p in neighbours if 0 < abs(d) <= self.radius]
        found = [(self._neighbour(p, params, window), steady.closeness(d, self.radius)) for d, p in near]
        others = [(r, k) for r, k in found if r is not None]
        blend = plate.params.blend.for_plate(lossy=False)
        hdr = steady.steadied(own, others, blend.blend_low, blend.blend_high)
        note = steady.describe(self.radius, len(others))
        return operation.finish(plate, hdr, engine, meta, {"fhdr:steady": note})

    def _reconstruction(self, path: Path, plate: Callable[[], operation.Plate]) -> Kept:
        """The data window's origin (y, x) and the reconstruction kept for the frame at ``path`` (under its
        absolute path, so that a frame named one way as a neighbour and another as itself is converted once), or
        those of ``plate()``, kept for the frames that follow."""
        key = os.path.abspath(path)
        if key not in self.kept:
            p = plate()
            engine, meta = engine_for(p.params.engine)
            hdr = operation.reconstruct(engine, meta, p.linear, p.display, p.params)
            spec = p.buf.spec()
            self.kept[key] = (spec.y, spec.x), steady.Reconstruction(p.linear, p.display, hdr)
            while len(self.kept) > 2 * self.radius + 2:
                self.kept.popitem(last=False)
        self.kept.move_to_end(key)
        return self.kept[key]

    def _neighbour(
        self, path: Path, params: LdrToHdrParams, window: tuple[int, int, int, int]
    ) -> steady.Reconstruction | None:
        """The reconstruction of the frame at ``path`` in the data ``window`` (y, x, height, width) of the frame
        it steadies; None, with a warning, when it cannot be read."""
        try:
            origin, found = self._reconstruction(path, lambda: operation.prepare(read_image(path), params, str(path)))
        except FhdrError as exc:
            log.warning("--steady: a neighbour is left out: %s", exc)
            return None
        if (*origin, *found.linear.shape[:2]) == window:
            return found
        return steady.placed(found, origin, window)
