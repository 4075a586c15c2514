"""`vla dashboard`: a live web page of a fleet run, on the service kit's aiohttp server.

Routes:

- ``GET /``: the page (a jinja2 template; plain JavaScript, no front-end build), which polls
  ``/api/arms`` once per refresh and redraws;
- ``GET /api/arms``: one snapshot as JSON: every arm's state from its status file (see
  ``vla.fleet.status``) merged with the supervisor's view, every service's health and request
  rates, and the G1 alarm; ``seq`` numbers the snapshots;
- ``GET /api/stream``: the same snapshots as server-sent events, one per refresh;
- ``GET /api/arms/{label}/frame.jpg``: the arm's latest camera frame;
- ``/healthz`` and ``/metrics`` from the kit.

Services are read from their own ``/healthz`` and ``/metrics`` (the policy server answers both
on its websocket port); request rates are the change of ``*_requests_total`` between two
scrapes, per service and per arm label. A service that does not answer shows as ``down`` with
the reason; it never stops the page.

Limits: the kit's connection cap and header timeout, at most ``max_streams`` event streams at
once (503 beyond), and each stream ends after ``stream_max_s`` (a browser reconnects by itself).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import attrs
from aiohttp import web

from vla.fleet.status import ALARM_UNDERFLOWS_PER_MIN, FRAME_FILE, STALE_AFTER_S, read_status

_LABEL = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
SUPERVISOR_FILE = "supervisor.json"


@attrs.define
class ServiceTarget:
    name: str
    url: str  # http(s)://host:port, where /healthz and /metrics live


def http_base(url: str) -> str:
    """The HTTP address of a service given as ws://, wss://, http:// or https://."""
    url = url.rstrip("/")
    for scheme, http in (("ws://", "http://"), ("wss://", "https://")):
        if url.startswith(scheme):
            return http + url[len(scheme):]
    return url


def parse_service(text: str) -> ServiceTarget:
    name, sep, url = text.partition("=")
    if not sep or not name or not re.match(r"^(https?|wss?)://", url):
        raise ValueError(f"expected NAME=URL with an http://, https://, ws:// or wss:// URL, got {text!r}")
    return ServiceTarget(name, http_base(url))


def request_totals(metrics_text: str) -> tuple[float, dict[str, float]]:
    """Sum of a service's ``*_requests_total`` (without its own /metrics and /healthz scrapes), and per arm."""
    from prometheus_client.parser import text_string_to_metric_families

    total, by_arm = 0.0, {}
    for family in text_string_to_metric_families(metrics_text):
        if not family.name.endswith("_requests"):
            continue
        for sample in family.samples:
            if not sample.name.endswith("_requests_total"):
                continue
            if sample.labels.get("route") in ("/metrics", "/healthz", "/health"):
                continue
            total += sample.value
            arm = sample.labels.get("arm")
            if arm:
                by_arm[arm] = by_arm.get(arm, 0.0) + sample.value
    return total, by_arm


class ServiceWatch:
    """Scrapes each service's /healthz and /metrics; keeps the last two totals for rates."""

    def __init__(self, targets: list[ServiceTarget], timeout_s: float = 2.0):
        self.targets = targets
        self.timeout_s = timeout_s
        self._previous: dict[str, tuple[float, float, dict[str, float]]] = {}
        self.state: dict[str, dict[str, Any]] = {
            t.name: {"name": t.name, "url": t.url, "health": "unknown", "reason": "not scraped yet",
                     "requests_per_s": None, "requests_total": None, "arms": {}} for t in targets}

    async def scrape(self, session) -> None:
        await asyncio.gather(*(self._scrape_one(session, t) for t in self.targets))

    async def _scrape_one(self, session, target: ServiceTarget) -> None:
        import aiohttp

        entry = self.state[target.name]
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        now = time.time()
        try:
            async with session.get(target.url + "/healthz", timeout=timeout) as r:
                try:
                    body = await r.json(content_type=None)
                except ValueError:
                    body = {}
                entry["health"] = str(body.get("status") or ("ready" if r.status == 200 else f"http {r.status}"))
                entry["reason"] = body.get("reason") or ""
            async with session.get(target.url + "/metrics", timeout=timeout) as r:
                text = await r.text()
            total, by_arm = request_totals(text)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            entry.update(health="down", reason=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                         requests_per_s=None)
            return
        prev = self._previous.get(target.name)
        entry["requests_total"] = total
        if prev is not None and now > prev[0]:
            dt = now - prev[0]
            entry["requests_per_s"] = round(max(0.0, total - prev[1]) / dt, 3)
            entry["arms"] = {a: round(max(0.0, v - prev[2].get(a, 0.0)) / dt, 3) for a, v in by_arm.items()}
        self._previous[target.name] = (now, total, by_arm)


def arm_rows(fleet_dir: Path) -> list[dict[str, Any]]:
    """Every arm's status (sorted by label) with the supervisor's outcome and cause merged in."""
    arms_dir = fleet_dir / "arms"
    try:
        supervisor = json.loads((fleet_dir / SUPERVISOR_FILE).read_text())
    except (OSError, ValueError):
        supervisor = {}
    rows = []
    now = time.time()
    folders = sorted(p for p in arms_dir.iterdir() if p.is_dir()) if arms_dir.is_dir() else []
    for folder in folders:
        status = read_status(folder) or {"label": folder.name, "state": "starting"}
        status["label"] = folder.name
        sup = supervisor.get("arms", {}).get(folder.name, {})
        status["outcome"] = sup.get("outcome")
        status["cause"] = sup.get("cause")
        status["starts"] = sup.get("starts")
        status["stale"] = status.get("state") == "running" and now - float(status.get("updated_at") or 0) > STALE_AFTER_S
        status["has_frame"] = (folder / FRAME_FILE).is_file()
        status["alarm"] = bool(status.get("underflows_last_min", 0) > ALARM_UNDERFLOWS_PER_MIN)
        rows.append(status)
    return rows


class Dashboard:
    def __init__(self, fleet_dir: str | Path, services: list[ServiceTarget] = (), refresh_s: float = 1.0,
                 max_streams: int = 16, stream_max_s: float = 600.0, title: str = "vla fleet"):
        self.fleet_dir = Path(fleet_dir)
        self.watch = ServiceWatch(list(services))
        self.refresh_s = refresh_s
        self.max_streams = max_streams
        self.stream_max_s = stream_max_s
        self.title = title
        self.seq = 0
        self.streams = 0
        self._scraper: asyncio.Task | None = None

    def snapshot(self) -> dict[str, Any]:
        self.seq += 1
        arms = arm_rows(self.fleet_dir)
        for arm in arms:  # the policy server's own count of this arm's requests, where it has one
            for svc in self.watch.state.values():
                rate = svc.get("arms", {}).get(arm["label"])
                if rate is not None:
                    arm.setdefault("service_requests_per_s", {})[svc["name"]] = rate
        alarms = [a["label"] for a in arms if a["alarm"]]
        return {
            "seq": self.seq,
            "generated_at": round(time.time(), 3),
            "fleet": str(self.fleet_dir),
            "arms": arms,
            "services": list(self.watch.state.values()),
            "g1_alarm": {"arms": alarms, "limit_per_min": ALARM_UNDERFLOWS_PER_MIN,
                         "text": (f"G1: queue underflows more than {ALARM_UNDERFLOWS_PER_MIN}/min on "
                                  + ", ".join(alarms)) if alarms else ""},
        }

    # ------------------------------------------------------------------ app

    def app(self) -> web.Application:
        from vla.service.http import make_app
        from vla.service.lifecycle import Lifecycle
        from vla.service.metrics import ServiceMetrics

        metrics = ServiceMetrics("vla_dashboard", "dashboard", "fleet")
        life = Lifecycle("dashboard", "fleet", metrics)
        life.ready()
        app = make_app(lifecycle=life, metrics=metrics)
        app.router.add_get("/", self.page)
        app.router.add_get("/api/arms", self.api_arms)
        app.router.add_get("/api/stream", self.api_stream)
        app.router.add_get("/api/arms/{label}/frame.jpg", self.frame)
        app.on_startup.append(self._start_scraper)
        app.on_cleanup.append(self._stop_scraper)
        return app

    async def _start_scraper(self, app) -> None:
        self._scraper = asyncio.get_running_loop().create_task(self._scrape_forever())

    async def _stop_scraper(self, app) -> None:
        if self._scraper is not None:
            self._scraper.cancel()
            try:
                await self._scraper
            except asyncio.CancelledError:
                pass

    async def _scrape_forever(self) -> None:
        import aiohttp

        if not self.watch.targets:
            return
        async with aiohttp.ClientSession() as session:
            while True:
                await self.watch.scrape(session)
                await asyncio.sleep(max(self.refresh_s, 0.5))

    async def page(self, request: web.Request) -> web.Response:
        from vla.fleet.render import render_dashboard

        html = render_dashboard(self.snapshot(), title=self.title, refresh_ms=int(self.refresh_s * 1000))
        return web.Response(text=html, content_type="text/html", charset="utf-8")

    async def api_arms(self, request: web.Request) -> web.Response:
        return web.json_response(self.snapshot(), headers={"Cache-Control": "no-store"})

    async def api_stream(self, request: web.Request) -> web.StreamResponse:
        from vla.service.http import HttpError

        if self.streams >= self.max_streams:
            raise HttpError(503, "too_many_streams", f"at most {self.max_streams} event streams at once")
        self.streams += 1
        try:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
            await response.prepare(request)
            end = time.time() + self.stream_max_s
            while time.time() < end:
                data = json.dumps(self.snapshot())
                await response.write(f"id: {self.seq}\nevent: arms\ndata: {data}\n\n".encode())
                await asyncio.sleep(self.refresh_s)
            return response
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        finally:
            self.streams -= 1

    async def frame(self, request: web.Request) -> web.Response:
        from vla.service.http import HttpError

        label = request.match_info["label"]
        if not _LABEL.match(label):
            raise HttpError(400, "bad_label", "an arm label is 1-64 letters, digits, '_', '.' or '-'")
        path = self.fleet_dir / "arms" / label / FRAME_FILE
        try:
            data = path.read_bytes()
        except OSError:
            raise HttpError(404, "no_frame", f"arm {label!r} has no camera frame yet") from None
        return web.Response(body=data, content_type="image/jpeg", headers={"Cache-Control": "no-store"})


class DashboardThread:
    """The dashboard on its own event loop in a thread (how `vla fleet run --dashboard` runs it)."""

    def __init__(self, dashboard: Dashboard, host: str, port: int):
        from vla.service.net import bind_listener

        self.dashboard = dashboard
        self.sock = bind_listener(host, port)  # PortInUse now, before any arm starts
        self.host, self.port = host, self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.loop = asyncio.new_event_loop()
        self._served = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vla-dashboard", daemon=True)

    def _run(self) -> None:
        from vla.service.http import serve

        asyncio.set_event_loop(self.loop)
        self._served = self.loop.run_until_complete(serve(self.dashboard.app(), self.host, self.port, sock=self.sock))
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self._served.close())
        self.loop.close()

    def start(self) -> DashboardThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the dashboard did not start within 10 s")
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
