"""The package version, shared by the manifest check, provenance attributes and ``fhdr --version``."""

__version__ = "0.1.0"
