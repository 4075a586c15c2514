"""The policy server behind `vla serve`: one port for the websocket protocol, /healthz and /metrics.

Life cycle (vla.service.lifecycle): the port opens at once and `/healthz` answers ``starting``
while the backend warms up in the model thread, then ``ready`` (HTTP 200), or ``failed`` with
the reason (HTTP 503) if warm-up raised. A websocket client that connects while the server is
starting gets its metadata frame as soon as the server is ready.

Per connection: the metadata frame, then one reply per request, in order. A bad request (text
frame, broken msgpack, disallowed dtype, wrong keys, types or shapes) gets an error frame and
the connection stays open. Only a message over the size limit closes it, with code 1009 and
the reason. Nothing a client sends can stop the server or disturb other connections.
/healthz and /metrics need no API key (probes, scrapers).

The websocket layer is picows (a Cython websocket on asyncio's transports): each message is
decoded inside the callback that delivers it, straight from the read buffer, and each reply
is sent from the callback that completes it, with no task per request; with aiofastnet
installed picows also reads and writes through its Cython transport. A lone client of a fast
policy does not even pass through the batcher's queue (``Batcher.try_direct``). What is left
between vla and the raw-TCP floor (bench/transport.py) is mostly memory traffic the protocol
asks for: the client masks the 1.8 MB (RFC 6455) and the server unmasks it. The frames are
copied out of the read buffer, which picows reuses, only when they must outlive the callback:
a backend that promises to keep nothing it is given (``PolicyInfo.keeps_inputs=False``) and
is answered on the direct path reads views of the read buffer (vla.protocol.borrowed), and the
promise is checked after each such call. HTTP requests on the same port (health, metrics) are
answered at the handshake, as picows allows, and closed.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import ssl as ssl_module
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from vla.protocol import PROTOCOL_VERSION
from vla.protocol.borrowed import decode_map_borrowed, own_arrays, still_used
from vla.protocol.codec import DEFAULT_MAX_MESSAGE_BYTES, decode_map, encode
from vla.protocol.errors import BAD_FRAME, ProtocolError
from vla.protocol.frames import MessageAssembler
from vla.protocol.jpeg import decode_jpeg, jpeg_available
from vla.protocol.memory import keep_large_buffers
from vla.protocol.messages import check_request, make_error, make_metadata, make_reply, peek_request_id
from vla.serving.batcher import Batcher
from vla.service.auth import ApiKeyCheck, Unauthorized
from vla.service.lifecycle import FAILED, READY, STARTING, Lifecycle
from vla.service.limits import ServerLimits
from vla.service.logs import log_event
from vla.service.metrics import ARM_HEADER, ARM_QUERY, CONTENT_TYPE, ServiceMetrics
from vla.service.net import bind_listener, server_ssl_context

log = logging.getLogger("vla.serving")


class _ClientFaults(logging.Filter):
    """picows logs a client's protocol violations (an oversized frame, a bad close code) at ERROR;
    they are the client's fault and the server goes on, so they are logged at INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and "parser error" in str(record.msg):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


logging.getLogger("picows.server").addFilter(_ClientFaults())

__all__ = ["FAILED", "READY", "STARTING", "PolicyServer", "make_ssl_context"]

INTERNAL_ERROR = "internal_error"
ACTIVE_WINDOW_S = 2.0  # a connection that sent a request this recently counts as an active arm
MAX_PIPELINED = 8  # requests a connection may have waiting behind the one in progress
WS_ROUTE = "ws"
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)

make_ssl_context = server_ssl_context  # the name vla serve used before the service kit


def _close_reason(text: str) -> str:
    """A close reason fits in 123 bytes of UTF-8."""
    return text.encode("utf-8")[:120].decode("utf-8", "ignore")


def _backend_name(backend) -> str:
    """The name a backend reports (the metrics' policy label), for servers not given one."""
    try:
        return str(backend.info().name)
    except Exception:
        return type(backend).__name__


def _http(status: int, body: str, content_type: str, headers: dict[str, str] | None = None):
    data = body.encode("utf-8")
    extra = {"Content-Type": content_type, **(headers or {})}
    if status < 400:
        response = WSUpgradeResponse.create_ok_response(data, extra)
    else:
        response = WSUpgradeResponse.create_error_response(status, data, extra)
    return WSUpgradeResponseWithListener(response, None)


class PolicyServer:
    """Serve one ``PolicyBackend``. Use ``await start()`` then ``await stop()``, or ``async with``."""

    def __init__(
        self,
        backend,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        max_batch: int | None = None,
        max_wait_ms: float = 5.0,
        api_key: str | None = None,
        ssl: ssl_module.SSLContext | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        name: str | None = None,
        limits: ServerLimits | None = None,
        key_map: dict[str, str] | None = None,
        sock=None,
    ):
        self.backend = backend
        self.host = host
        self.requested_port = port
        self.requested_max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.auth = ApiKeyCheck(api_key)
        self.ssl = ssl
        self.max_message_bytes = max_message_bytes
        self.limits = limits or ServerLimits()
        # A client's keys -> vla's (the reverse of `vla run --adapter`): openpi's example
        # clients send observation/image, ..., prompt. Keys not in the map pass unchanged.
        self.key_map = dict(key_map or {})
        self.name = name or _backend_name(backend)
        self.metrics = ServiceMetrics("vla_policy", "policy", self.name, connection_labels=("arm",))
        self.infer_seconds = self.metrics.histogram("infer_seconds", "Duration of one batched model call.")
        self.batch_size = self.metrics.histogram("batch_size", "Observations per model call.", buckets=BATCH_BUCKETS)
        self.lifecycle = Lifecycle("policy", self.name, self.metrics, reason="warming up the policy")
        self.metadata: dict[str, Any] | None = None
        self.metadata_frame: bytes | None = None
        # One model thread: backends need not be thread-safe, and calls never overlap.
        self.model_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vla-model")
        self.decode_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vla-decode")
        self.batcher: Batcher | None = None
        self.borrow = False  # requests' arrays may be views of the read buffer (see the module's docstring)
        self._server: asyncio.Server | None = None
        self._sock = sock  # a listening socket bound by the caller, or None: bound in start()
        self._warmup_task: asyncio.Task | None = None
        self._connections: set[_Connection] = set()
        self._last_request: dict[int, float] = {}  # id(connection) -> time of its last request

    # ------------------------------------------------------------------ life cycle

    @property
    def state(self) -> str:
        return self.lifecycle.state

    @property
    def reason(self) -> str:
        return self.lifecycle.reason

    @property
    def api_key(self) -> bool:
        return self.auth.enabled

    @property
    def port(self) -> int:
        """The bound port (useful with port=0)."""
        assert self._sock is not None, "server not started"
        return self._sock.getsockname()[1]

    @property
    def url(self) -> str:
        return f"{'wss' if self.ssl else 'ws'}://{self.host}:{self.port}"

    def bind(self) -> None:
        """Take the port now (``PortInUse`` when it is taken), before anything slow happens."""
        if self._sock is None:
            self._sock = bind_listener(self.host, self.requested_port, self.limits.backlog)

    async def start(self) -> None:
        keep_large_buffers()
        self.bind()
        self._server = await ws_create_server(
            self._route,
            sock=self._sock,
            ssl=self.ssl,
            backlog=self.limits.backlog,
            # a slow-loris handshake is dropped after this; so is an HTTP request that never ends
            websocket_handshake_timeout=self.limits.header_timeout_s,
            max_frame_size=self.max_message_bytes,
            # picows doubles the read buffer as a message needs (an arm's 1.8 MB requests) and keeps
            # it; idle connections (up to max_connections of them) stay at this
            read_buffer_init_size=64 * 1024,
            enable_auto_ping=True,
            auto_ping_idle_timeout=30.0,
            auto_ping_reply_timeout=30.0,
            logger_name="server",
        )
        self._warmup_task = asyncio.get_running_loop().create_task(self._warm_up(), name="vla-warmup")
        log_event(log, "listening", url=self.url, policy=self.name, state=self.state,
                  auth="api-key" if self.auth.enabled else "none")

    async def wait_settled(self, timeout: float | None = None) -> str:
        """Wait until warm-up finished (ready or failed); returns the state."""
        return await self.lifecycle.wait_settled(timeout)

    async def stop(self) -> None:
        if self._warmup_task is not None and not self._warmup_task.done():
            self._warmup_task.cancel()
        if self._server is not None:
            self._server.close()
            for connection in list(self._connections):
                connection.close(WSCloseCode.GOING_AWAY, "server stopping")
            await self._server.wait_closed()
        if self.batcher is not None:
            await self.batcher.stop()
        self.model_executor.shutdown(wait=False, cancel_futures=True)
        self.decode_executor.shutdown(wait=False, cancel_futures=True)

    async def __aenter__(self) -> PolicyServer:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def _warm_up(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            info = await loop.run_in_executor(self.model_executor, self.backend.info)
            await loop.run_in_executor(self.model_executor, self.backend.warmup)
            # The backend's own max_batch is what it can take; --max-batch may only lower it.
            max_batch = max(1, min(self.requested_max_batch or info.max_batch, info.max_batch))
            self.metadata = make_metadata(
                info, max_batch=max_batch, max_message_bytes=self.max_message_bytes, jpeg=jpeg_available()
            )
            self.metadata_frame = bytes(encode(self.metadata))
            self.batcher = Batcher(
                self.backend,
                self.model_executor,
                action_dim=info.action_dim,
                max_batch=max_batch,
                max_wait_s=self.max_wait_s,
                active_clients=self._active_clients,
                on_batch=self._on_batch,
            )
            self.batcher.start()
            self.borrow = not info.keeps_inputs
            self.lifecycle.ready()
            log_event(log, "ready", policy=info.name, url=self.url, max_batch=max_batch)
        except Exception as exc:
            self.lifecycle.fail(f"{type(exc).__name__}: {exc}")
            log.exception("policy %s failed to start", self.name)
        for connection in list(self._connections):
            connection.settled()

    def _active_clients(self) -> int:
        """Connections that sent a request lately: the ones worth waiting for when batching.
        An idle connection (a dashboard, an arm between episodes) should not delay the others."""
        horizon = time.perf_counter() - ACTIVE_WINDOW_S
        return max(1, sum(1 for seen in self._last_request.values() if seen >= horizon))

    def _on_batch(self, size: int, infer_ms: float) -> None:
        self.batch_size.observe(size)
        self.infer_seconds.observe(infer_ms / 1000.0)

    # ------------------------------------------------------------------ HTTP and the handshake

    def health(self) -> dict[str, Any]:
        return self.lifecycle.health(protocol=PROTOCOL_VERSION, auth="api-key" if self.auth.enabled else "none")

    def _route(self, request: WSUpgradeRequest):
        path, _, query = request.path.decode("latin-1").partition("?")
        if path == "/healthz":
            return _http(self.lifecycle.http_status, json.dumps(self.health()) + "\n", "application/json")
        if path == "/metrics":
            body, content_type = self.metrics.render()
            return _http(200, body.decode("utf-8"), content_type)
        params = parse_qs(query) if query else {}
        arm = self.metrics.arm(request.headers.get(ARM_HEADER) or (params.get(ARM_QUERY) or [None])[0])
        if request.method != b"GET":
            return _http(405, f"{request.method.decode('latin-1')} is not served here; open a websocket with GET\n",
                         "text/plain; charset=utf-8", {"Allow": "GET"})
        try:
            self.auth.check(request.headers.get("Authorization"))
        except Unauthorized as exc:
            self.metrics.errors.labels(arm, exc.code).inc()
            log_event(log, "refused", arm=arm, code=exc.code, reason=exc.reason)
            return _http(401, exc.message + "\n", "text/plain; charset=utf-8", {"WWW-Authenticate": 'Bearer realm="vla"'})
        if len(self._connections) >= self.limits.max_connections:
            self.metrics.errors.labels(arm, "too_many_connections").inc()
            return _http(503, "the server is at its connection limit; retry shortly\n", "text/plain; charset=utf-8",
                         {"Retry-After": "1"})
        return _Connection(self, arm)

    # ------------------------------------------------------------------ requests

    def prepare(self, raw: memoryview | bytes, connection: _Connection):
        """Decode and check one message, inside the frame callback. Returns the checked request
        (or an error reply) and weak references to the views of ``raw`` its arrays borrow;
        raises nothing."""
        request_id = None
        try:
            if self.borrow and self.batcher.inline:  # only the direct path can use views
                decoded = decode_map_borrowed(raw, self.max_message_bytes)
                message, views = decoded.message, decoded.views
            else:
                message, views = decode_map(raw, self.max_message_bytes), []
            request_id = peek_request_id(message)
            if self.key_map:
                message = {self.key_map.get(k, k): v for k, v in message.items()}
            return check_request(message, self.metadata), views
        except ProtocolError as exc:
            connection.count_error(exc.code)
            return make_error(exc.code, exc.message, request_id), []
        except Exception as exc:  # a bug of ours: report it, keep the connection and the server
            log.exception("unexpected error while checking a request")
            connection.count_error(INTERNAL_ERROR)
            return make_error(INTERNAL_ERROR, f"{type(exc).__name__}: {str(exc)[:300]}", request_id), []

    def returned(self, views: list) -> None:
        """Check, once a request's arrays may no longer be used, that nothing kept one: if the
        backend did, it broke its promise (keeps_inputs=False); say so, and copy from now on."""
        if self.borrow and still_used(views):
            self.borrow = False
            log.error("policy %s kept an array it was given although its PolicyInfo says keeps_inputs=False; "
                      "requests are copied from now on (the array it kept shows a reused buffer)", self.name)

    async def decode_jpeg(self, request) -> None:
        loop = asyncio.get_running_loop()
        cameras = self.metadata["cameras"]
        prefix = "observation.images."
        keys = list(request.jpeg)
        images = await asyncio.gather(
            *(
                loop.run_in_executor(self.decode_executor, decode_jpeg, request.jpeg[k], tuple(cameras[k[len(prefix):]]))
                for k in keys
            )
        )
        for key, image in zip(keys, images):
            request.observation[key] = image


class _Connection(WSListener):
    """One client: its messages in order, one in progress at a time, replies from callbacks."""

    def __init__(self, server: PolicyServer, arm: str):
        super().__init__()
        self.server = server
        self.arm = arm
        self.transport: WSTransport | None = None
        self._assembler = MessageAssembler(server.max_message_bytes)
        self._queue: collections.deque = collections.deque()  # (checked request or error reply, arrival time)
        self._busy = False
        self._paused = False
        self._metadata_sent = False
        self._future: asyncio.Future | None = None  # the request in the batcher, if any
        self._direct_failed = False  # the policy call for the message being received raised
        self._ok = server.metrics.requests.labels(arm, WS_ROUTE, "ok")
        self._latency = server.metrics.latency.labels(arm, WS_ROUTE)

    # ------------------------------------------------------------------ picows callbacks

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.server._connections.add(self)
        self.server.metrics.connections.labels(self.arm).inc()
        if self.server.lifecycle.settled:
            self.settled()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        server = self.server
        if self in server._connections:
            server._connections.discard(self)
            server.metrics.connections.labels(self.arm).dec()
        server._last_request.pop(id(self), None)
        self._queue.clear()
        if self._future is not None and not self._future.done():
            self._future.cancel()  # the batcher skips requests nobody waits for

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if transport.is_close_frame_sent:
            # picows goes on parsing what arrives in the 10 ms between its close frame (an
            # oversized frame, a protocol error) and the disconnect; none of it is answered
            return
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
            return
        if kind in (WSMsgType.PING, WSMsgType.PONG):
            return
        message = self._assembler.feed(frame)
        if message is not None:
            self._received(*message)

    # ------------------------------------------------------------------ state

    def settled(self) -> None:
        """The server finished warming up: send the metadata, or close with the failure."""
        transport = self.transport
        if transport is None or self._metadata_sent or transport.is_close_frame_sent:
            return
        if self.server.state != READY:
            self.close(WSCloseCode.INTERNAL_ERROR, f"policy failed to start: {self.server.reason}")
            return
        self._metadata_sent = True
        transport.send(WSMsgType.BINARY, self.server.metadata_frame)
        self._next()

    def close(self, code: WSCloseCode, reason: str) -> None:
        if self.transport is not None and not self.transport.is_close_frame_sent:
            self.transport.send_close(code, _close_reason(reason).encode("utf-8"))
            self.transport.disconnect()

    def count_error(self, code: str) -> None:
        self.server.metrics.errors.labels(self.arm, code).inc()
        self.server.metrics.requests.labels(self.arm, WS_ROUTE, code).inc()

    # ------------------------------------------------------------------ requests, in order

    def _received(self, data: memoryview, text: bool) -> None:
        started = time.perf_counter()
        server = self.server
        server._last_request[id(self)] = started
        views: list = []
        self._direct_failed = False
        if not self._metadata_sent:
            # Clients wait for the metadata before they send; one that does not is told so.
            self.count_error("not_ready")
            item = make_error("not_ready", f"the server is {server.state}; wait for the metadata frame")
        elif text:
            self.count_error(BAD_FRAME)
            item = make_error(BAD_FRAME, "expected a binary msgpack frame, got a text frame")
        else:
            item, views = server.prepare(data, self)  # decoded now: the read buffer is reused after this call
        self._queue.append((item, started))
        if len(self._queue) > MAX_PIPELINED and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.underlying_transport.pause_reading()
        if not self._busy:
            self._next()
        if views:
            if self._busy or self._queue:  # not answered yet: it must outlive the read buffer
                own_arrays(item.observation)
            del item
            if not self._direct_failed:  # a failed call's traceback may hold its inputs for a while
                server.returned(views)

    def _next(self) -> None:
        while self._queue and not self._busy:
            item, started = self._queue.popleft()
            if isinstance(item, dict):  # an error reply: it goes out in its turn
                self._send(item)
                continue
            self._busy = True
            if item.jpeg:
                asyncio.get_running_loop().create_task(self._decode_then_submit(item, started))
            else:
                self._submit(item, started)
        if self._paused and len(self._queue) <= MAX_PIPELINED // 2 and self.transport is not None:
            self._paused = False
            self.transport.underlying_transport.resume_reading()

    def _submit(self, request, started: float) -> None:
        batcher = self.server.batcher
        try:
            result = batcher.try_direct(request)
        except ProtocolError as exc:
            self._direct_failed = True
            self.count_error(exc.code)
            self._finish(make_error(exc.code, exc.message, request.request_id))
            return
        if result is not None:
            self._finish(self._reply(result, request, started))
            return
        future = self._future = batcher.submit_nowait(request)
        future.add_done_callback(lambda done: self._answered(done, request, started))

    def _reply(self, result, request, started: float) -> dict:
        total_s = time.perf_counter() - started
        self._ok.inc()
        self._latency.observe(total_s)
        timing = {
            "infer_ms": result.infer_ms,
            "queue_ms": result.queue_ms,
            "total_ms": total_s * 1000.0,
            "batch_size": result.batch_size,
        }
        return make_reply(result.actions, request, timing)

    async def _decode_then_submit(self, request, started: float) -> None:
        try:
            await self.server.decode_jpeg(request)
        except ProtocolError as exc:
            self.count_error(exc.code)
            self._finish(make_error(exc.code, exc.message, request.request_id))
            return
        except Exception as exc:
            log.exception("JPEG decoding failed")
            self.count_error(INTERNAL_ERROR)
            self._finish(make_error(INTERNAL_ERROR, f"{type(exc).__name__}: {str(exc)[:300]}", request.request_id))
            return
        self._submit(request, started)

    def _answered(self, future: asyncio.Future, request, started: float) -> None:
        self._future = None
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            reply = self._reply(future.result(), request, started)
        elif isinstance(error, ProtocolError):
            self.count_error(error.code)
            reply = make_error(error.code, error.message, request.request_id)
        else:
            log.error("request failed: %s: %s", type(error).__name__, error)
            self.count_error(INTERNAL_ERROR)
            reply = make_error(INTERNAL_ERROR, f"{type(error).__name__}: {str(error)[:300]}", request.request_id)
        self._finish(reply)

    def _finish(self, reply: dict) -> None:
        self._busy = False
        self._send(reply)
        self._next()

    def _send(self, reply: dict) -> None:
        transport = self.transport
        if transport is None or transport.is_close_frame_sent or transport.is_disconnected:
            return
        try:
            transport.send(WSMsgType.BINARY, encode(reply))
        except Exception:  # the peer went away mid-reply; on_ws_disconnected cleans up
            log.debug("could not send a reply", exc_info=True)

