"""Errors of the policy protocol, each with a short machine-readable code.

``ProtocolError`` is raised while checking a message; the server turns it into an error frame
``{"error": {"code": ..., "message": ...}}``. ``PolicyError`` is what a client raises when it
receives such a frame.
"""

from __future__ import annotations

# Codes a server sends. Clients may match on them; the message is for people.
BAD_FRAME = "bad_frame"  # a text frame where a binary msgpack frame was expected
BAD_MSGPACK = "bad_msgpack"  # not decodable msgpack (truncated, trailing bytes, bad UTF-8...)
BAD_MESSAGE = "bad_message"  # decodable, but not a map
BAD_NDARRAY = "bad_ndarray"  # an ndarray map that does not describe a valid array
BAD_DTYPE = "bad_dtype"  # a dtype outside the allow-list (object, void, complex, ...)
MISSING_KEY = "missing_key"
UNKNOWN_KEY = "unknown_key"
BAD_TYPE = "bad_type"
BAD_SHAPE = "bad_shape"
BAD_VALUE = "bad_value"  # NaN/inf state, negative delay, ...
BAD_JPEG = "bad_jpeg"
TOO_LARGE = "too_large"
JPEG_UNSUPPORTED = "jpeg_unsupported"
INFERENCE_FAILED = "inference_failed"  # the backend raised; details are in the server log
BAD_POLICY_OUTPUT = "bad_policy_output"  # the backend answered something that is not a chunk
NOT_READY = "not_ready"


class ProtocolError(ValueError):
    """A message that breaks the protocol. ``code`` is one of the constants above."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class PolicyError(RuntimeError):
    """The server answered a request with an error frame."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
