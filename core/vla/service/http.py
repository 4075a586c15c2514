"""aiohttp servers with what every vla HTTP service needs.

    app = make_app(lifecycle=life, metrics=metrics, auth=ApiKeyCheck(key), limits=ServerLimits())
    app.router.add_post("/score", handler)
    served = await serve(app, host, port, limits=limits, ssl=None)   # PortInUse when taken
    ...
    await served.close()

``make_app`` adds ``GET /healthz`` and ``GET /metrics``, the API-key check (every route but
the open ones), JSON error bodies ``{"error": {"code", "message"}}`` for every refusal, request
metrics by arm, and an access log at debug level. ``serve`` adds what aiohttp does not do by
itself: a connection cap (503, never a reset) and the listen backlog, on a socket bound up
front. aiohttp's keep-alive timer, armed when a connection opens and re-armed after each
response, closes a connection whose headers do not arrive within ``header_timeout_s``;
``read_body`` bounds the body's size and time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Awaitable, Callable

from aiohttp import web

from vla.service.auth import OPEN_PATHS, ApiKeyCheck, Unauthorized
from vla.service.limits import ServerLimits
from vla.service.logs import log_event
from vla.service.metrics import ServiceMetrics, arm_from

log = logging.getLogger("vla.service")

APP_LIFECYCLE = web.AppKey("vla_lifecycle", object)
APP_METRICS = web.AppKey("vla_metrics", object)
APP_LIMITS = web.AppKey("vla_limits", ServerLimits)
APP_STATE = web.AppKey("vla_state", dict)
REQUEST_ARM = web.RequestKey("vla_arm", str) if hasattr(web, "RequestKey") else "vla_arm"  # aiohttp >= 3.14  # mutable after start-up: the running server's connection count
_REFUSED_BODY = json.dumps(
    {"error": {"code": "too_many_connections", "message": "the server is at its connection limit; retry shortly"}}
).encode()


class HttpError(Exception):
    """A refusal with a stable code, turned into a JSON error response by ``make_app``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


def request_arm(request: web.Request) -> str:
    """The arm label of the caller (``X-Vla-Arm`` header or ``?arm=``), bounded by the server's metrics."""
    arm = request.get(REQUEST_ARM)
    if arm is None:
        metrics = request.app.get(APP_METRICS)
        raw = request.headers.get("X-Vla-Arm") or request.query.get("arm")
        arm = metrics.arm(raw) if metrics is not None else arm_from(request.headers, request.query)
        request[REQUEST_ARM] = arm
    return arm


async def read_body(request: web.Request) -> bytes:
    """The request body, refused (411/413/408) before or while reading when it breaks the limits."""
    limits: ServerLimits = request.app[APP_LIMITS]
    if request.headers.get("Transfer-Encoding", "").lower() not in ("", "identity"):
        raise HttpError(411, "length_required", "send the body with a Content-Length, not chunked")
    if request.content_length is None:
        raise HttpError(411, "length_required", "a request with a body needs a Content-Length header")
    if request.content_length > limits.max_body_bytes:
        raise HttpError(
            413, "body_too_large",
            f"the body is {request.content_length} bytes; the limit is {limits.max_body_bytes} bytes",
            {"Connection": "close"},
        )
    try:
        return await asyncio.wait_for(request.read(), limits.body_timeout_s)
    except asyncio.TimeoutError:
        raise HttpError(408, "body_timeout", f"the body did not arrive within {limits.body_timeout_s:g} s",
                        {"Connection": "close"}) from None


def _route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource if request.match_info.route is not None else None
    return resource.canonical if resource is not None else "other"


def make_app(
    *,
    lifecycle,
    metrics: ServiceMetrics,
    auth: ApiKeyCheck | None = None,
    limits: ServerLimits | None = None,
    health_extra: Callable[[], dict[str, Any]] | None = None,
    open_paths: frozenset[str] = OPEN_PATHS,
    health_route: bool = True,
    metrics_route: bool = True,
) -> web.Application:
    auth = auth or ApiKeyCheck(None)
    limits = limits or ServerLimits()

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        started = time.perf_counter()
        arm = request_arm(request)
        route = _route_of(request)
        try:
            if request.path not in open_paths:
                auth.check(request.headers.get("Authorization"))
            response = await handler(request)
        except Unauthorized as exc:
            response = json_error(401, exc.code, exc.message, {"WWW-Authenticate": 'Bearer realm="vla"'})
            log_event(log, "refused", logging.INFO, arm=arm, route=request.path, code=exc.code, reason=exc.reason)
        except HttpError as exc:
            response = json_error(exc.status, exc.code, exc.message, exc.headers)
            log_event(log, "refused", logging.DEBUG, arm=arm, route=request.path, code=exc.code)
        except web.HTTPException as exc:
            code = exc.reason.lower().replace(" ", "_")
            text = f"{request.method} {request.path}: {exc.reason}"
            response = json_error(exc.status, code, text, {k: v for k, v in exc.headers.items() if k.lower() == "allow"})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not take the server down; the client learns what broke
            log.exception("unexpected error on %s %s", request.method, request.path)
            response = json_error(500, "internal", f"{type(exc).__name__}: {str(exc)[:300]}")
        if response.status >= 400:
            body = getattr(response, "body", None)
            code = _error_code(body) or str(response.status)
            metrics.errors.labels(arm, code).inc()
        metrics.requests.labels(arm, route, str(response.status)).inc()
        if request.path not in ("/metrics", "/healthz", "/health"):
            metrics.latency.labels(arm, route).observe(time.perf_counter() - started)
        log_event(log, "request", logging.DEBUG, arm=arm, method=request.method, route=request.path,
                  status=response.status, ms=round((time.perf_counter() - started) * 1000, 2))
        return response

    app = web.Application(middlewares=[middleware], client_max_size=limits.max_body_bytes)
    app[APP_LIFECYCLE] = lifecycle
    app[APP_METRICS] = metrics
    app[APP_LIMITS] = limits
    app[APP_STATE] = {"connections": lambda: 0}

    async def healthz(request: web.Request) -> web.Response:
        extra = health_extra() if health_extra is not None else {}
        return web.json_response(lifecycle.health(**extra), status=lifecycle.http_status)

    async def metrics_handler(request: web.Request) -> web.Response:
        metrics.connections.set(request.app[APP_STATE]["connections"]())
        body, content_type = metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    if health_route:
        app.router.add_get("/healthz", healthz)
    if metrics_route:
        app.router.add_get("/metrics", metrics_handler)
    return app


def _error_code(body: Any) -> str | None:
    if not isinstance(body, (bytes, bytearray)) or not body.startswith(b'{"error"'):
        return None
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


class _Refuse(asyncio.Protocol):
    """What a connection over the cap gets: a 503 with a JSON body, then the close."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
            f"Connection: close\r\nContent-Length: {len(_REFUSED_BODY)}\r\n\r\n"
        ).encode()
        transport.write(head + _REFUSED_BODY)  # type: ignore[attr-defined]
        transport.close()


class _CappedSite(web.BaseSite):
    """aiohttp's SockSite with a cap on open connections."""

    def __init__(self, runner: web.AppRunner, sock, limits: ServerLimits, ssl_context=None, on_refused=None):
        super().__init__(runner, ssl_context=ssl_context, backlog=limits.backlog)
        self._sock = sock
        self._limits = limits
        self._on_refused = on_refused
        host, port = sock.getsockname()[:2]
        self._name = f"{'https' if ssl_context else 'http'}://{host}:{port}"

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        cap = self._limits.max_connections

        def factory():
            if len(server.connections) >= cap:
                if self._on_refused is not None:
                    self._on_refused()
                return _Refuse()
            return server()

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(factory, sock=self._sock, ssl=self._ssl_context, backlog=self._backlog)


class Served:
    """A running aiohttp app: its URL and port, and ``close()``."""

    def __init__(self, runner: web.AppRunner, site: _CappedSite, host: str, port: int, ssl: bool):
        self.runner, self.site = runner, site
        self.host, self.port = host, port
        self.url = f"{'https' if ssl else 'http'}://{host}:{port}"

    @property
    def connections(self) -> int:
        server = self.runner.server
        return len(server.connections) if server is not None else 0

    async def close(self) -> None:
        await self.runner.cleanup()


async def serve(app: web.Application, host: str, port: int, *, limits: ServerLimits | None = None, ssl=None,
                sock=None) -> Served:
    """Start ``app`` on host:port (0: any free port). Raises ``PortInUse`` before starting anything."""
    from vla.service.net import bind_listener

    limits = limits or app.get(APP_LIMITS) or ServerLimits()
    sock = sock or bind_listener(host, port, limits.backlog)
    metrics = app.get(APP_METRICS)
    runner = web.AppRunner(
        app,
        access_log=None,  # the middleware logs each request as a structured event
        keepalive_timeout=limits.header_timeout_s,
        handle_signals=False,
        shutdown_timeout=2.0,
    )
    await runner.setup()
    app[APP_STATE]["connections"] = lambda: len(runner.server.connections) if runner.server is not None else 0
    refused = (lambda: metrics.errors.labels("unnamed", "too_many_connections").inc()) if metrics is not None else None
    site = _CappedSite(runner, sock, limits, ssl_context=ssl, on_refused=refused)
    await site.start()
    return Served(runner, site, host, sock.getsockname()[1], ssl is not None)
