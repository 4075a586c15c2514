"""Limits every listening socket of vla has: connections, backlog, timeouts, body size.

What they protect against, as measured on the old rewarder: a listen backlog of 5 reset 74
of 100 simultaneous requests; 300 half-sent requests held 303 threads for as long as the
client liked. The defaults here keep a server answering its good clients under both.
"""

from __future__ import annotations

import attrs

MIN_BACKLOG = 128


def _at_least(minimum):
    def check(_inst, attribute, value):
        if value < minimum:
            raise ValueError(f"{attribute.name} must be at least {minimum}, got {value}")

    return check


@attrs.frozen
class ServerLimits:
    # Beyond this many open connections a new one is answered 503 and closed (never reset).
    max_connections: int = attrs.field(default=256, validator=_at_least(1))
    # Connections the kernel queues before accept; the kernel caps it at net.core.somaxconn.
    backlog: int = attrs.field(default=1024, validator=_at_least(MIN_BACKLOG))
    # The request line and headers (or the WebSocket handshake) must arrive within this, and a
    # kept-alive connection with no new request is closed after it: a slow-loris client holds
    # a connection for at most this long whatever it sends.
    header_timeout_s: float = attrs.field(default=10.0, validator=_at_least(0.01))
    # The whole body must arrive within this.
    body_timeout_s: float = attrs.field(default=30.0, validator=_at_least(0.01))
    # Larger bodies are answered 413 from the Content-Length, before they are read.
    max_body_bytes: int = attrs.field(default=32 * 1024 * 1024, validator=_at_least(1))
