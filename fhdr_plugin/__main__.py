"""``python -m fhdr_plugin`` runs the ``fhdr`` command line."""

from fhdr_plugin.host.cli import main

main()
