"""The rewarder service behind `vla serve-rewarder`: one rewarder, scored over HTTP (aiohttp).

Routes (replies are JSON unless noted):
  POST /score        one frame or a short clip plus the goal -> score, success, details
  POST /score/batch  {"items": [...]} -> {"results": [...]}, one reply per item, in order
  GET  /healthz      {"status": "starting" | "ready" | "failed", ...}; 200 only when ready
  GET  /metrics      Prometheus text format

The rewarder is built in a background thread, so /healthz answers "starting" while a model
loads. The POST routes need the API key when one is configured; /healthz and /metrics stay
open for health checks and scrapers (vla.service.auth).

Memory stays bounded whatever clients send, in this order:
  1. the body: its Content-Length against ``max_body_bytes`` (413 before reading), and
     against a budget of body bytes in flight across all connections (a request waits for room);
  2. the frames: each image's size is read from its header, and the request's total against
     ``Limits.max_request_pixels`` (413) before anything is decoded;
  3. decoding and scoring: at most ``Limits.max_decodes`` requests hold decoded pixels at once;
     the others wait with their small encoded bodies, not with decoded frames.
Every refusal is a JSON body ``{"error": {"code": ..., "message": ...}}`` with a 4xx status;
an exception while scoring answers 5xx. Neither stops the server.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import attrs
import numpy as np

from vla.rewarding.errors import RewarderError
from vla.rewarding.requests import (
    Limits,
    ScoreRequest,
    check_pixel_budget,
    clamp01,
    parse_batch_request,
    parse_body,
    parse_score_request,
)
from vla.rewarding.smoothing import EpisodeSmoother
from vla.service.auth import ApiKeyCheck
from vla.service.lifecycle import FAILED, READY, STARTING, Lifecycle
from vla.service.limits import ServerLimits

log = logging.getLogger("vla.rewarding")

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
# Bodies read but not yet answered, all connections together: 100 clients at once each
# sending 32 MB would otherwise hold 3.2 GB before the first was decoded.
DEFAULT_INFLIGHT_BODY_BYTES = 256 * 1024 * 1024
PARSE_WORKERS = 4

__all__ = ["FAILED", "READY", "STARTING", "RewarderService", "RunningService", "jsonable"]


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


class _ByteBudget:
    """Bytes of request bodies held at once; a request waits until its body fits."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.used = 0
        self._changed = asyncio.Condition()

    async def acquire(self, size: int) -> None:
        size = min(size, self.capacity)  # one body larger than the budget still gets in alone
        async with self._changed:
            await self._changed.wait_for(lambda: self.used + size <= self.capacity)
            self.used += size

    async def release(self, size: int) -> None:
        async with self._changed:
            self.used -= min(size, self.capacity)
            self._changed.notify_all()


class RewarderService:
    """Holds one rewarder and turns parsed requests into replies; ``make_app`` puts it on HTTP."""

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
        server_limits: ServerLimits | None = None,
        inflight_body_bytes: int = DEFAULT_INFLIGHT_BODY_BYTES,
    ):
        from vla.service.metrics import ServiceMetrics

        self.name = name
        self._build = build
        self.auth = ApiKeyCheck(api_key)
        self.smoother = EpisodeSmoother(ema_alpha) if ema_alpha else None
        self.threshold_override = threshold
        self.limits = limits or Limits()
        self.server_limits = attrs.evolve(server_limits or ServerLimits(), max_body_bytes=max_body_bytes)
        self.inflight_body_bytes = inflight_body_bytes
        self.metrics = ServiceMetrics("vla_rewarder", "rewarder", name)
        m = self.metrics
        self.scores_total = m.counter("scores_total", "Scores returned.", ("arm",))
        self.successes_total = m.counter("successes_total", "Scores at or above the success threshold.", ("arm",))
        self.frames_total = m.counter("frames_total", "Frames scored.", ("arm",))
        self.score_seconds = m.histogram("score_seconds", "Time the rewarder took for one request (decoding excluded).")
        self.episodes = m.gauge("episodes", "Episodes with smoothing state.")
        self.decodes_in_flight = m.gauge("decodes_in_flight", "Requests decoding or being scored now.")
        self.lifecycle = Lifecycle("rewarder", name, m)
        self.rewarder: Any = None
        self._score_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    @property
    def state(self) -> str:
        return self.lifecycle.state

    @property
    def api_key_required(self) -> bool:
        return self.auth.enabled

    def load(self) -> None:
        """Build the rewarder (may take minutes for a model); sets ready or failed."""
        try:
            rewarder = self._build()
            warmup = getattr(rewarder, "warmup", None)
            if callable(warmup):
                warmup()
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            log.error("rewarder %s failed to load: %s", self.name, reason)
            self.lifecycle.fail(reason)
        else:
            self.rewarder = rewarder
            self.lifecycle.ready()
            log.info("rewarder %s ready (threshold %s)", self.name, self.threshold)

    def load_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.load, name=f"load-{self.name}", daemon=True)
        thread.start()
        return thread

    def wait_loaded(self, timeout: float | None = None) -> bool:
        return self.lifecycle.wait(timeout)

    @property
    def threshold(self) -> float | None:
        if self.threshold_override is not None:
            return self.threshold_override
        return float(self.rewarder.threshold) if self.rewarder is not None else None

    def health_extra(self) -> dict:
        if self.state != READY:
            return {}
        return {
            "threshold": self.threshold,
            "smoothing": {"ema_alpha": self.smoother.alpha} if self.smoother is not None else None,
            "auth": "api-key" if self.auth.enabled else "none",
            "limits": {
                "max_body_bytes": self.server_limits.max_body_bytes,
                "max_pixels": self.limits.max_pixels,
                "max_request_pixels": self.limits.max_request_pixels,
                "max_frames": self.limits.max_frames,
                "max_batch": self.limits.max_batch,
            },
        }

    def health(self) -> dict:
        return self.lifecycle.health(**self.health_extra())

    def _require_ready(self) -> None:
        if self.state == STARTING:
            raise RewarderError("not_ready", f"rewarder {self.name!r} is still loading; retry later", 503)
        if self.state == FAILED:
            raise RewarderError("failed", f"rewarder {self.name!r} failed to load: {self.lifecycle.reason}", 503)

    # ------------------------------------------------------------------ scoring (any thread)
    def _call(self, fn, *args):
        # Rewarders that hold one model are not thread-safe unless they say so.
        if getattr(self.rewarder, "thread_safe", False):
            return fn(*args)
        with self._score_lock:
            return fn(*args)

    def _reply(self, request: ScoreRequest, result: Any, seconds: float, arm: str) -> dict:
        raw = clamp01(getattr(result, "score", float("nan")))
        score = raw
        threshold = self.threshold
        if self.smoother is not None and request.episode_id is not None:
            score = self.smoother.update(request.episode_id, raw, request.reset)
            self.episodes.set(len(self.smoother))
        success = score >= threshold
        self.scores_total.labels(arm).inc()
        self.frames_total.labels(arm).inc(len(request.frames))
        if success:
            self.successes_total.labels(arm).inc()
        self.score_seconds.observe(seconds)
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

    def _guarded(self, fn, *args):
        try:
            return self._call(fn, *args)
        except RewarderError:
            raise
        except (ValueError, LookupError) as exc:
            # rewarders refuse goals they have no rule for, frames of the wrong kind, ...
            raise RewarderError("rejected", str(exc), 422) from None
        except Exception as exc:
            log.exception("rewarder %s failed", self.name)
            raise RewarderError("rewarder_failed", f"{type(exc).__name__}: {exc}", 500) from None

    def score(self, request: ScoreRequest, arm: str = "unnamed") -> dict:
        self._require_ready()
        request = request.decoded()
        start = time.perf_counter()
        result = self._guarded(self.rewarder.score, request.frames, request.goal)
        return self._reply(request, result, time.perf_counter() - start, arm)

    def score_batch(self, requests: list[ScoreRequest], arm: str = "unnamed") -> list[dict]:
        self._require_ready()
        requests = [r.decoded() for r in requests]
        batch = getattr(self.rewarder, "score_batch", None)
        if callable(batch):
            start = time.perf_counter()
            results = self._guarded(batch, [(r.frames, r.goal) for r in requests])
            per_item = (time.perf_counter() - start) / len(requests)
            return [self._reply(r, res, per_item, arm) for r, res in zip(requests, results)]
        replies = []
        for i, r in enumerate(requests):
            t0 = time.perf_counter()
            try:
                result = self._guarded(self.rewarder.score, r.frames, r.goal)
            except RewarderError as exc:
                raise RewarderError(exc.code, f"items[{i}]: {exc.message}", exc.status) from None
            replies.append(self._reply(r, result, time.perf_counter() - t0, arm))
        return replies

    # ------------------------------------------------------------------ HTTP
    def make_app(self):
        """The aiohttp application: the kit's /healthz, /metrics and auth, plus the score routes."""
        from aiohttp import web

        from vla.service.http import json_error, make_app, read_body, request_arm

        app = make_app(
            lifecycle=self.lifecycle, metrics=self.metrics, auth=self.auth, limits=self.server_limits,
            health_extra=self.health_extra,
        )
        parse_pool = ThreadPoolExecutor(PARSE_WORKERS, thread_name_prefix="vla-parse")
        score_pool = ThreadPoolExecutor(max(1, self.limits.max_decodes), thread_name_prefix="vla-score")
        state: dict[str, Any] = {}

        async def on_startup(_app) -> None:
            state["slots"] = asyncio.Semaphore(max(1, self.limits.max_decodes))
            state["bodies"] = _ByteBudget(self.inflight_body_bytes)

        async def on_cleanup(_app) -> None:
            parse_pool.shutdown(wait=False, cancel_futures=True)
            score_pool.shutdown(wait=False, cancel_futures=True)

        def parse(body: bytes, content_type: str | None, batch: bool) -> list[ScoreRequest]:
            obj = parse_body(body, content_type)
            if batch:
                requests = parse_batch_request(obj, self.limits)
            else:
                requests = [parse_score_request(obj, self.limits)]
            check_pixel_budget(requests, self.limits)
            return requests

        async def answer(request: web.Request, batch: bool):
            loop = asyncio.get_running_loop()
            arm = request_arm(request)
            try:
                self._require_ready()
                size = request.content_length or 0
                await state["bodies"].acquire(size)
                try:
                    body = await read_body(request)
                    parsed = await loop.run_in_executor(parse_pool, parse, body, request.content_type, batch)
                    del body
                    async with state["slots"]:
                        self.decodes_in_flight.inc()
                        try:
                            if batch:
                                reply = {"results": await loop.run_in_executor(score_pool, self.score_batch, parsed, arm)}
                            else:
                                reply = await loop.run_in_executor(score_pool, self.score, parsed[0], arm)
                        finally:
                            self.decodes_in_flight.dec()
                finally:
                    await state["bodies"].release(size)
            except RewarderError as exc:
                headers = {"Retry-After": "5"} if exc.status == 503 else None
                return json_error(exc.status, exc.code, exc.message, headers)
            return web.json_response(reply)

        async def score_route(request: web.Request):
            return await answer(request, batch=False)

        async def batch_route(request: web.Request):
            return await answer(request, batch=True)

        app.router.add_post("/score", score_route)
        app.router.add_post("/score/batch", batch_route)

        async def health_alias(request: web.Request):  # what older clients and probes ask for
            return web.json_response(self.health(), status=self.lifecycle.http_status)

        app.router.add_get("/health", health_alias)

        app.on_startup.append(on_startup)
        app.on_cleanup.append(on_cleanup)
        return app


class RunningService:
    """A service serving in a background thread with its own event loop (tests, benches, in-process use)."""

    def __init__(self, service: RewarderService, host: str = "127.0.0.1", port: int = 0, ssl=None):
        from vla.service.net import bind_listener

        self.service = service
        self._sock = bind_listener(host, port, service.server_limits.backlog)
        self.host, self.port = host, self._sock.getsockname()[1]
        self.url = f"{'https' if ssl else 'http'}://{host}:{self.port}"
        self._ssl = ssl
        self._loop = asyncio.new_event_loop()
        self._served = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rewarder-http", daemon=True)

    def _run(self) -> None:
        from vla.service.http import serve

        asyncio.set_event_loop(self._loop)

        async def main():
            self._served = await serve(self.service.make_app(), self.host, self.port, ssl=self._ssl, sock=self._sock)
            self._ready.set()

        self._loop.run_until_complete(main())
        self._loop.run_forever()
        self._loop.run_until_complete(self._served.close())
        self._loop.close()

    def __enter__(self) -> RunningService:
        self.service.load_in_background()
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the rewarder service did not start within 10 s")
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
