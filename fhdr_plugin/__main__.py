"""``python -m fhdr_plugin`` runs the ``fhdr`` command line."""

from fhdr_plugin.cli import main

main()
