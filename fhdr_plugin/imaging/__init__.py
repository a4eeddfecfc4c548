"""Images in and out: reading and atomic writing through OpenImageIO (``io``), colour through OpenColorIO
(``color``), channel layouts and frame sequences."""
