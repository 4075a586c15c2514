"""Listening sockets and TLS contexts.

A server binds its port before anything slow happens (loading a model), so that a busy port
is one line and exit code 2 at once, not a traceback minutes later.
"""

from __future__ import annotations

import errno
import socket
import ssl


class PortInUse(OSError):
    def __init__(self, host: str, port: int, hint: str = "stop what holds it or choose another port with --port"):
        self.host, self.port = host, port
        super().__init__(errno.EADDRINUSE, f"port {port} on {host} is already in use; {hint}")

    def __str__(self) -> str:
        return self.strerror


def _family(host: str) -> int:
    try:
        infos = socket.getaddrinfo(host or None, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(errno.EADDRNOTAVAIL, f"cannot listen on {host!r}: {exc}") from None
    return infos[0][0]


def bind_listener(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free one); ``PortInUse`` when taken."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR lets a restarted server take its port while old connections linger in
        # TIME_WAIT; it does not let two servers listen on one port (that is SO_REUSEPORT).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(host, port) from None
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now (what `vla up` checks before compose)."""
    try:
        bind_listener(host, port, backlog=1).close()
    except PortInUse:
        return False
    return True


def server_ssl_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def client_ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """Verify servers against the system CA store, or against ``ca_file`` (PEM) when given."""
    if ca_file is not None:
        try:
            return ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot read the CA file {ca_file}: {exc}") from None
    return ssl.create_default_context()
