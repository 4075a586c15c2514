"""The rewarder service behind `vla serve-rewarder`: one rewarder, scored over HTTP.

Routes (replies are JSON unless noted):
  POST /score        one frame or a short clip plus the goal -> score, success, details
  POST /score/batch  {"items": [...]} -> {"results": [...]}, one reply per item, in order
  GET  /healthz      {"status": "starting" | "ready" | "failed", ...}; 200 only when ready
  GET  /metrics      Prometheus text format

The rewarder is built in a background thread, so /healthz answers "starting" while a model
loads (a compose health check with a long start period waits for "ready"). The POST routes
need the API key when one is configured (``Authorization: Api-Key K`` or ``Bearer K``, the
header openpi-client sends); /healthz and /metrics stay open for health checks and scrapers.

Every refusal is a JSON body ``{"error": {"code": ..., "message": ...}}`` with a 4xx status
naming the problem; an exception while scoring answers 5xx. Neither stops the server.
The standard library's ThreadingHTTPServer serves each connection in its own thread, with
HTTP/1.1 keep-alive.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import numpy as np

from vla.rewarding.errors import RewarderError
from vla.rewarding.metrics import Metrics
from vla.rewarding.requests import Limits, ScoreRequest, clamp01, parse_batch_request, parse_body, parse_score_request
from vla.rewarding.smoothing import EpisodeSmoother

log = logging.getLogger("vla.rewarding")

STARTING, READY, FAILED = "starting", "ready", "failed"
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024


def jsonable(value: Any) -> Any:
    """Details from a rewarder, made JSON-safe (numpy scalars and arrays, tuples, NaN)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


class RewarderService:
    """Holds one rewarder and turns parsed requests into replies. Transport-free, so it is testable."""

    def __init__(
        self,
        name: str,
        build: Callable[[], Any],
        *,
        api_key: str | None = None,
        ema_alpha: float | None = None,
        threshold: float | None = None,
        limits: Limits | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ):
        self.name = name
        self._build = build
        self.api_key = api_key or None
        self.smoother = EpisodeSmoother(ema_alpha) if ema_alpha else None
        self.threshold_override = threshold
        self.limits = limits or Limits()
        self.max_body_bytes = max_body_bytes
        self.metrics = Metrics(name)
        self.state = STARTING
        self.error: str | None = None
        self.rewarder: Any = None
        self._score_lock = threading.Lock()
        self._ready = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    def load(self) -> None:
        """Build the rewarder (may take minutes for a model); sets ready or failed."""
        try:
            rewarder = self._build()
            warmup = getattr(rewarder, "warmup", None)
            if callable(warmup):
                warmup()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self.state = FAILED
            log.error("rewarder %s failed to load: %s", self.name, self.error)
        else:
            self.rewarder = rewarder
            self.state = READY
            self.metrics.ready = 1
        finally:
            self._ready.set()

    def load_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.load, name=f"load-{self.name}", daemon=True)
        thread.start()
        return thread

    def wait_loaded(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    @property
    def threshold(self) -> float | None:
        if self.threshold_override is not None:
            return self.threshold_override
        return float(self.rewarder.threshold) if self.rewarder is not None else None

    def health(self) -> dict:
        body = {"status": self.state, "rewarder": self.name}
        if self.state == READY:
            body.update(
                threshold=self.threshold,
                smoothing={"ema_alpha": self.smoother.alpha} if self.smoother is not None else None,
                limits={
                    "max_body_bytes": self.max_body_bytes,
                    "max_pixels": self.limits.max_pixels,
                    "max_frames": self.limits.max_frames,
                    "max_batch": self.limits.max_batch,
                },
            )
        if self.error:
            body["error"] = self.error
        return body

    def check_key(self, header: str | None) -> None:
        if self.api_key is None:
            return
        scheme, _, token = (header or "").strip().partition(" ")
        if scheme.lower() not in ("api-key", "bearer") or not token.strip():
            raise RewarderError(
                "unauthorized", "this rewarder needs an API key: send 'Authorization: Api-Key <key>'", 401
            )
        if not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            raise RewarderError("unauthorized", "the API key is wrong", 401)

    def _require_ready(self) -> None:
        if self.state == STARTING:
            raise RewarderError("not_ready", f"rewarder {self.name!r} is still loading; retry later", 503)
        if self.state == FAILED:
            raise RewarderError("failed", f"rewarder {self.name!r} failed to load: {self.error}", 503)

    # ------------------------------------------------------------------ scoring
    def _call(self, fn, *args):
        # Rewarders that hold one model are not thread-safe unless they say so.
        if getattr(self.rewarder, "thread_safe", False):
            return fn(*args)
        with self._score_lock:
            return fn(*args)

    def _reply(self, request: ScoreRequest, result: Any, seconds: float) -> dict:
        raw = clamp01(getattr(result, "score", float("nan")))
        score = raw
        threshold = self.threshold
        if self.smoother is not None and request.episode_id is not None:
            score = self.smoother.update(request.episode_id, raw, request.reset)
            self.metrics.episodes = len(self.smoother)
        success = score >= threshold
        self.metrics.scored(len(request.frames), success, seconds)
        reply = {
            "score": score,
            "raw_score": raw,
            "success": bool(success),
            "threshold": threshold,
            "rewarder": self.name,
            "frames": len(request.frames),
            "details": jsonable(dict(getattr(result, "details", {}) or {})),
        }
        if request.episode_id is not None:
            reply["episode_id"] = request.episode_id
            reply["smoothed"] = self.smoother is not None
        return reply

    def _score_one(self, request: ScoreRequest) -> Any:
        try:
            return self._call(self.rewarder.score, request.frames, request.goal)
        except RewarderError:
            raise
        except (ValueError, LookupError) as exc:
            # rewarders refuse goals they have no rule for, frames of the wrong kind, ...
            raise RewarderError("rejected", str(exc), 422) from None
        except Exception as exc:
            log.exception("rewarder %s failed", self.name)
            raise RewarderError("rewarder_failed", f"{type(exc).__name__}: {exc}", 500) from None

    def score(self, request: ScoreRequest) -> dict:
        self._require_ready()
        start = time.perf_counter()
        result = self._score_one(request)
        return self._reply(request, result, time.perf_counter() - start)

    def score_batch(self, requests: list[ScoreRequest]) -> list[dict]:
        self._require_ready()
        batch = getattr(self.rewarder, "score_batch", None)
        start = time.perf_counter()
        if callable(batch):
            try:
                results = self._call(batch, [(r.frames, r.goal) for r in requests])
            except RewarderError:
                raise
            except (ValueError, LookupError) as exc:
                raise RewarderError("rejected", str(exc), 422) from None
            except Exception as exc:
                log.exception("rewarder %s failed", self.name)
                raise RewarderError("rewarder_failed", f"{type(exc).__name__}: {exc}", 500) from None
            per_item = (time.perf_counter() - start) / len(requests)
            return [self._reply(r, res, per_item) for r, res in zip(requests, results)]
        replies = []
        for i, r in enumerate(requests):
            t0 = time.perf_counter()
            try:
                result = self._score_one(r)
            except RewarderError as exc:
                raise RewarderError(exc.code, f"items[{i}]: {exc.message}", exc.status) from None
            replies.append(self._reply(r, result, time.perf_counter() - t0))
        return replies


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "vla-rewarder"
    # headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms) on every kept-alive request
    disable_nagle_algorithm = True
    service: RewarderService  # set on the subclass made by make_server

    def log_message(self, fmt, *args):  # route access logs through logging, not stderr
        log.debug("%s " + fmt, self.address_string(), *args)

    # ------------------------------------------------------------------ replies
    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, route: str) -> None:
        self.service.metrics.request(route, status)
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _error(self, exc: RewarderError, route: str) -> None:
        self.service.metrics.error(exc.code)
        self._json(exc.status, exc.to_json(), route)

    # ------------------------------------------------------------------ GET
    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path in ("/healthz", "/health"):
            body = self.service.health()
            self._json(200 if body["status"] == READY else 503, body, "/healthz")
        elif path == "/metrics":
            self.service.metrics.request("/metrics", 200)
            self._send(200, self.service.metrics.render().encode(), "text/plain; version=0.0.4; charset=utf-8")
        else:
            self._error(RewarderError("not_found", f"no route GET {path}; see /healthz, /metrics, POST /score", 404), "other")

    do_HEAD = do_GET

    # ------------------------------------------------------------------ POST
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise RewarderError("length_required", "send the body with a Content-Length, not chunked", 411)
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise RewarderError("length_required", "a POST needs a Content-Length header", 411)
        try:
            size = int(length)
            if size < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise RewarderError("bad_request", f"Content-Length {length!r} is not a whole number", 400) from None
        if size > self.service.max_body_bytes:
            # Read and drop a moderately oversized body so the client sees the 413 rather than a
            # reset while it is still sending; past that, close without reading.
            if size <= 4 * self.service.max_body_bytes:
                remaining = size
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    remaining -= len(chunk)
            else:
                self.close_connection = True
            raise RewarderError(
                "body_too_large",
                f"the body is {size} bytes; the limit is {self.service.max_body_bytes} bytes",
                413,
            )
        return self.rfile.read(size)

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        route = path if path in ("/score", "/score/batch") else "other"
        try:
            if route == "other":
                self.close_connection = True
                raise RewarderError("not_found", f"no route POST {path}; use /score or /score/batch", 404)
            try:
                self.service.check_key(self.headers.get("Authorization"))
            except RewarderError:
                self.close_connection = True
                raise
            body = self._read_body()
            obj = parse_body(body, self.headers.get("Content-Type"))
            if route == "/score":
                reply = self.service.score(parse_score_request(obj, self.service.limits))
            else:
                reply = {"results": self.service.score_batch(parse_batch_request(obj, self.service.limits))}
        except RewarderError as exc:
            self._error(exc, route)
        except Exception as exc:  # a bug must not take the server down
            log.exception("unexpected error on %s", path)
            self._error(RewarderError("internal", f"{type(exc).__name__}: {exc}", 500), route)
        else:
            self._json(200, reply, route)


class RewarderHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_server(service: RewarderService, host: str = "127.0.0.1", port: int = 18080) -> RewarderHTTPServer:
    handler = type("RewarderHandler", (_Handler,), {"service": service})
    return RewarderHTTPServer((host, port), handler)


class RunningService:
    """A service serving in a background thread (tests, the bench, in-process use)."""

    def __init__(self, service: RewarderService, host: str = "127.0.0.1", port: int = 0):
        self.service = service
        self.server = make_server(service, host, port)
        self.host, self.port = self.server.server_address[:2]
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="rewarder-http", daemon=True)

    def __enter__(self) -> RunningService:
        self.service.load_in_background()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

