"""The host: the plugin contract and registry, the command line, batches of frames and the executors that run them.

Data flows into the node through one typed call: ``cli`` → ``pipeline`` / ``batch`` → ``registry`` → the operation.
"""
