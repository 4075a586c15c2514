"""Running the GPU host's services with Docker: compose assembly, image builds, and the
`vla up / down / ps / logs / build` commands.

The plugins' ``ServiceSpec``s say what runs (image, command, port, GPUs, health check,
volumes); this package alone knows about compose. Nothing here imports docker, torch or a
plugin at module top level, so `vla --help` stays fast.
"""
