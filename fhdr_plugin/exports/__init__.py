"""Self-contained models for other hosts: TorchScript and ONNX of the network (``export``), and the Nuke drop-in
that runs the whole node (``dropin``)."""
