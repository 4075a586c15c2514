"""The policy server behind `vla serve`: one port for the websocket protocol, /healthz and /metrics.

Life cycle (as Cog does it): the port opens at once and `/healthz` answers ``starting`` while
the backend warms up in the model thread, then ``ready`` (HTTP 200), or ``failed`` with the
reason (HTTP 503) if warm-up raised. A websocket client that connects while the server is
starting gets its metadata frame as soon as the server is ready.

Per connection: the metadata frame, then one reply per request, in order. A bad request (text
frame, broken msgpack, disallowed dtype, wrong keys, types or shapes) gets an error frame and
the connection stays open. Only a message over the size limit closes it, with code 1009 and
the reason, because the websocket layer stops reading it. Nothing a client sends can stop the
server or disturb other connections. /healthz and /metrics need no API key (probes, scrapers).
"""

from __future__ import annotations

import asyncio
import hmac
import http
import json
import logging
import ssl as ssl_module
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import websockets
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response as HttpResponse

from vla.protocol import PROTOCOL_VERSION
from vla.protocol.codec import DEFAULT_MAX_MESSAGE_BYTES, decode_map, encode
from vla.protocol.errors import BAD_FRAME, ProtocolError
from vla.protocol.jpeg import decode_jpeg, jpeg_available
from vla.protocol.memory import keep_large_buffers
from vla.protocol.messages import check_request, make_error, make_metadata, make_reply, peek_request_id
from vla.serving.batcher import Batcher
from vla.serving.metrics import ServerMetrics

log = logging.getLogger("vla.serving")

STARTING, READY, FAILED = "starting", "ready", "failed"
INTERNAL_ERROR = "internal_error"
READ_BYTES = 4 * 1024 * 1024  # socket read size per event-loop wake-up
ACTIVE_WINDOW_S = 2.0  # a connection that sent a request this recently counts as an active arm


def api_key_from_header(value: str | None) -> str | None:
    """The key in ``Authorization: Api-Key K`` (what openpi-client sends) or ``Bearer K``."""
    if not value:
        return None
    scheme, _, key = value.strip().partition(" ")
    if scheme.lower() in ("api-key", "bearer") and key.strip():
        return key.strip()
    return None


def _close_reason(text: str) -> str:
    """A close reason fits in 123 bytes of UTF-8."""
    data = text.encode("utf-8")[:120]
    return data.decode("utf-8", "ignore")


def make_ssl_context(cert: str, key: str) -> ssl_module.SSLContext:
    context = ssl_module.SSLContext(ssl_module.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


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
    ):
        self.backend = backend
        self.host = host
        self.requested_port = port
        self.requested_max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.api_key = api_key or None
        self.ssl = ssl
        self.max_message_bytes = max_message_bytes
        self.name = name or type(backend).__name__
        self.state = STARTING
        self.reason = "warming up the policy"
        self.metadata: dict[str, Any] | None = None
        self.metrics = ServerMetrics(self.name)
        # One model thread: backends need not be thread-safe, and calls never overlap.
        self.model_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vla-model")
        self.decode_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vla-decode")
        self.batcher: Batcher | None = None
        self._server: Server | None = None
        self._settled: asyncio.Event | None = None
        self._warmup_task: asyncio.Task | None = None
        self._last_request: dict[int, float] = {}  # id(connection) -> time of its last request

    # ------------------------------------------------------------------ life cycle

    @property
    def port(self) -> int:
        """The bound port (useful with port=0)."""
        assert self._server is not None, "server not started"
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"{'wss' if self.ssl else 'ws'}://{self.host}:{self.port}"

    async def start(self) -> None:
        keep_large_buffers()
        self._settled = asyncio.Event()
        self._server = await serve(
            self._handle,
            self.host,
            self.requested_port,
            process_request=self._process_request,
            compression=None,  # images and floats barely compress; deflate would cost milliseconds
            max_size=self.max_message_bytes,
            ssl=self.ssl,
            server_header=f"vla-serve websockets/{websockets.__version__}",
        )
        self._warmup_task = asyncio.get_running_loop().create_task(self._warm_up(), name="vla-warmup")
        log.info("listening on %s (policy %s: %s)", self.url, self.name, self.state)

    async def wait_settled(self, timeout: float | None = None) -> str:
        """Wait until warm-up finished (ready or failed); returns the state."""
        assert self._settled is not None
        await asyncio.wait_for(self._settled.wait(), timeout)
        return self.state

    async def stop(self) -> None:
        if self._warmup_task is not None and not self._warmup_task.done():
            self._warmup_task.cancel()
        if self._server is not None:
            self._server.close()
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
            self.name = info.name
            self.metrics.policy = info.name
            await loop.run_in_executor(self.model_executor, self.backend.warmup)
            # The backend's own max_batch is what it can take; --max-batch may only lower it.
            max_batch = max(1, min(self.requested_max_batch or info.max_batch, info.max_batch))
            self.metadata = make_metadata(
                info, max_batch=max_batch, max_message_bytes=self.max_message_bytes, jpeg=jpeg_available()
            )
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
            self.state, self.reason = READY, ""
            self.metrics.ready = 1
            log.info("policy %s ready on %s (max batch %d)", info.name, self.url, max_batch)
        except Exception as exc:
            self.state, self.reason = FAILED, f"{type(exc).__name__}: {exc}"
            log.exception("policy %s failed to start", self.name)
        finally:
            self._settled.set()

    def _active_clients(self) -> int:
        """Connections that sent a request lately: the ones worth waiting for when batching.
        An idle connection (a dashboard, an arm between episodes) should not delay the others."""
        horizon = time.perf_counter() - ACTIVE_WINDOW_S
        return max(1, sum(1 for seen in self._last_request.values() if seen >= horizon))

    def _on_batch(self, size: int, infer_ms: float) -> None:
        self.metrics.batch_size.observe(size)
        self.metrics.infer_latency.observe(infer_ms / 1000.0)

    # ------------------------------------------------------------------ HTTP

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.state, "policy": self.name, "protocol": PROTOCOL_VERSION}
        if self.reason:
            body["reason"] = self.reason
        return body

    def _process_request(self, connection: ServerConnection, request: HttpRequest) -> HttpResponse | None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            status = http.HTTPStatus.OK if self.state == READY else http.HTTPStatus.SERVICE_UNAVAILABLE
            return self._respond(connection, status, json.dumps(self.health()) + "\n", "application/json")
        if path == "/metrics":
            return self._respond(
                connection, http.HTTPStatus.OK, self.metrics.render(), "text/plain; version=0.0.4; charset=utf-8"
            )
        if self.api_key is not None:
            given = api_key_from_header(request.headers.get("Authorization"))
            if given is None or not hmac.compare_digest(given.encode(), self.api_key.encode()):
                self.metrics.error("unauthorized")
                why = "missing API key" if given is None else "wrong API key"
                response = self._respond(
                    connection,
                    http.HTTPStatus.UNAUTHORIZED,
                    f"{why}: send 'Authorization: Api-Key <key>' or 'Authorization: Bearer <key>'\n",
                    "text/plain; charset=utf-8",
                )
                response.headers["WWW-Authenticate"] = 'Bearer realm="vla"'
                return response
        return None

    @staticmethod
    def _respond(connection: ServerConnection, status: http.HTTPStatus, body: str, content_type: str) -> HttpResponse:
        response = connection.respond(status, body)
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = content_type
        return response

    # ------------------------------------------------------------------ websocket

    async def _handle(self, connection: ServerConnection) -> None:
        self.metrics.connections += 1
        # asyncio reads 256 KiB per wake-up; a 1.8 MB request would take eight loop turns.
        if isinstance(getattr(connection.transport, "max_size", None), int):
            connection.transport.max_size = READ_BYTES
        try:
            await self._settled.wait()
            if self.state != READY:
                await connection.close(1011, _close_reason(f"policy failed to start: {self.reason}"))
                return
            await connection.send(encode(self.metadata))
            async for raw in connection:
                started = time.perf_counter()
                self._last_request[id(connection)] = started
                reply = await self._answer(raw, started)
                await connection.send(encode(reply))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.metrics.connections -= 1
            self._last_request.pop(id(connection), None)

    async def _answer(self, raw: bytes | str, started: float) -> dict[str, Any]:
        request_id = None
        try:
            if isinstance(raw, str):
                raise ProtocolError(BAD_FRAME, "expected a binary msgpack frame, got a text frame")
            message = decode_map(raw, self.max_message_bytes)
            request_id = peek_request_id(message)
            request = check_request(message, self.metadata)
            if request.jpeg:
                await self._decode_jpeg(request)
            result = await self.batcher.submit(request)
        except ProtocolError as exc:
            self.metrics.error(exc.code)
            return make_error(exc.code, exc.message, request_id)
        except Exception as exc:  # a bug of ours: report it, keep the connection and the server
            log.exception("unexpected error while answering a request")
            self.metrics.error(INTERNAL_ERROR)
            return make_error(INTERNAL_ERROR, f"{type(exc).__name__}: {str(exc)[:300]}", request_id)
        total_s = time.perf_counter() - started
        self.metrics.requests += 1
        self.metrics.request_latency.observe(total_s)
        timing = {
            "infer_ms": result.infer_ms,
            "queue_ms": result.queue_ms,
            "total_ms": total_s * 1000.0,
            "batch_size": result.batch_size,
        }
        return make_reply(result.actions, request, timing)

    async def _decode_jpeg(self, request) -> None:
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
