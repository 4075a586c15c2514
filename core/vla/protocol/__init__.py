"""The policy wire protocol: msgpack maps over WebSocket, arrays encoded as openpi-client does.

Submodules: ``codec`` (msgpack + ndarrays, limits), ``messages`` (metadata, request, reply,
error), ``errors``, ``jpeg`` (OpenCV, imported lazily), ``memory`` (allocator tuning) and
``client`` (``PolicyClient``). This package module itself stays light (no numpy), because
deployment code reads ``PROTOCOL_VERSION`` from it.
"""

from vla.protocol.errors import PolicyError, ProtocolError

PROTOCOL_VERSION = "vla/1"

__all__ = ["PROTOCOL_VERSION", "PolicyError", "ProtocolError"]
