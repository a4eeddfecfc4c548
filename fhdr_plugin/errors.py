"""The one exception type fhdr raises for problems a user can fix."""


class FhdrError(Exception):
    """A clear, one-line error about an input, an output, a setting or a model file."""
