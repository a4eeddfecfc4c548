"""The node: FHDR (``model``), its weights, the encoding of its output, the blend with the plate (``scale`` in
numpy, ``maths`` in torch), the tiled engine, and the ``ldr_to_hdr`` operation itself (``operation``)."""
