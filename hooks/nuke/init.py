"""fhdr's Nuke init.py: makes ``fhdr_plugin`` importable in Nuke's own Python.

Nuke runs the ``init.py`` of every folder on ``NUKE_PATH``, in interactive and render sessions alike. When fhdr is
not installed into Nuke's Python, set ``FHDR_PYTHONPATH`` to the site-packages folder of an environment, built
with the same Python version as Nuke's, where fhdr is installed (``fhdr hooks`` prints it); separate several
folders with ``os.pathsep``. They are added after Nuke's own folders, ``.pth`` files included.
"""

import os
import site

for folder in filter(None, os.environ.get("FHDR_PYTHONPATH", "").split(os.pathsep)):
    site.addsitedir(folder)
