"""Training, evaluation and export of the FHDR weights shipped with fhdr (run as ``python -m training``)."""
