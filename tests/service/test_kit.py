"""The service kit (vla.service) on real sockets: API keys, life cycle, metrics with bounded arm
labels, the aiohttp server's connection cap and timeouts, the httpx client's retry rule, logs."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time

import attrs
import httpx
import pytest
from aiohttp import web

from vla.service.auth import ApiKeyCheck, Unauthorized, parse_api_key
from vla.service.http import make_app, read_body, serve
from vla.service.httpclient import Retry, ServiceUnreachable, make_async_client, make_client
from vla.service.lifecycle import FAILED, READY, STARTING, Lifecycle
from vla.service.limits import ServerLimits
from vla.service.logs import JsonFormatter, TextFormatter, log_event
from vla.service.metrics import MAX_ARMS, ServiceMetrics, arm_label
from vla.service.net import PortInUse, bind_listener, port_free


def test_api_key_headers_and_the_check():
    assert parse_api_key("Api-Key abc") == "abc"
    assert parse_api_key("Bearer abc") == "abc"
    assert parse_api_key("bearer  abc ") == "abc"
    assert parse_api_key("Basic abc") is None and parse_api_key("Bearer") is None and parse_api_key(None) is None
    check = ApiKeyCheck("s3cret")
    assert check.enabled and check.allows("Api-Key s3cret") and check.allows("Bearer s3cret")
    with pytest.raises(Unauthorized) as missing:
        check.check(None)
    with pytest.raises(Unauthorized) as wrong:
        check.check("Bearer s3cre")
    assert missing.value.reason == "missing API key" and wrong.value.reason == "wrong API key"
    assert "Authorization: Api-Key <key>" in wrong.value.message
    assert not ApiKeyCheck(None).enabled and ApiKeyCheck("").allows(None)


def test_life_cycle_states_and_health_bodies():
    metrics = ServiceMetrics("vla_test", "thing", "t1")
    life = Lifecycle("thing", "t1", metrics, reason="loading")
    assert life.state == STARTING and life.http_status == 503 and life.health()["reason"] == "loading"
    assert metrics.value("ready") == 0
    life.ready()
    assert life.state == READY and life.http_status == 200 and metrics.value("ready") == 1
    assert life.health(extra=1) | {"uptime_s": 0} == {"status": "ready", "thing": "t1", "uptime_s": 0, "extra": 1}
    life.fail("OSError: no weights")
    assert life.state == FAILED and life.health()["reason"] == "OSError: no weights" and metrics.value("ready") == 0


def test_arm_labels_are_cleaned_and_bounded():
    assert arm_label("arm01") == "arm01" and arm_label(None) == "unnamed" and arm_label("") == "unnamed"
    assert arm_label('a"b\nc{d}') == "abcd" and len(arm_label("x" * 500)) == 32
    metrics = ServiceMetrics("vla_test", "thing", "t1")
    labels = [metrics.arm(f"arm{i}") for i in range(MAX_ARMS + 10)]
    assert labels[:MAX_ARMS] == [f"arm{i}" for i in range(MAX_ARMS)]
    assert set(labels[MAX_ARMS:]) == {"other"}
    assert metrics.arm("arm3") == "arm3"  # a known arm stays itself
    metrics.requests.labels("arm3", "/x", "200").inc(2)
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=0.0.4")
    assert b'vla_test_requests_total{arm="arm3",code="200",route="/x",thing="t1"} 2.0' in body
    assert b"_created" not in body


class Served:
    """An aiohttp app from the kit on its own loop in a thread."""

    def __init__(self, app, limits=None):
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        async def main():
            self.served = await serve(app, "127.0.0.1", 0, limits=limits)
            started.set()

        threading.Thread(target=lambda: (self.loop.run_until_complete(main()), self.loop.run_forever()), daemon=True).start()
        assert started.wait(10)
        self.url = self.served.url

    def close(self):
        asyncio.run_coroutine_threadsafe(self.served.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def kit_app():
    servers = []

    def start(*, key=None, limits=None, handler=None):
        metrics = ServiceMetrics("vla_test", "thing", "t1")
        life = Lifecycle("thing", "t1", metrics)
        life.ready()
        limits = limits or ServerLimits()
        app = make_app(lifecycle=life, metrics=metrics, auth=ApiKeyCheck(key), limits=limits)

        async def echo(request):
            return web.json_response({"got": len(await read_body(request))})

        app.router.add_post("/echo", handler or echo)
        servers.append(Served(app, limits))
        servers[-1].metrics = metrics
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def test_the_app_checks_keys_answers_health_and_counts_by_arm(kit_app):
    srv = kit_app(key="k")
    with httpx.Client(base_url=srv.url) as http:
        refused = http.post("/echo", content=b"abc")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
        assert refused.headers["WWW-Authenticate"] == 'Bearer realm="vla"'
        ok = http.post("/echo", content=b"abc", headers={"Authorization": "Bearer k", "X-Vla-Arm": "arm02"})
        assert ok.status_code == 200 and ok.json() == {"got": 3}
        assert http.post("/echo?arm=arm03", content=b"x", headers={"Authorization": "Api-Key k"}).status_code == 200
        assert http.get("/healthz").json()["status"] == "ready"
        missing = http.get("/nope", headers={"Authorization": "Bearer k"})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        text = http.get("/metrics").text
    assert 'vla_test_requests_total{arm="arm02",code="200",route="/echo",thing="t1"} 1.0' in text
    assert 'vla_test_requests_total{arm="arm03",code="200",route="/echo",thing="t1"} 1.0' in text
    assert 'vla_test_errors_total{arm="unnamed",code="unauthorized",thing="t1"} 1.0' in text


def test_bodies_over_the_limit_are_refused_before_they_are_read(kit_app):
    srv = kit_app(limits=ServerLimits(max_body_bytes=1000))
    with httpx.Client(base_url=srv.url) as http:
        reply = http.post("/echo", content=b"x" * 5000)
        assert reply.status_code == 413 and reply.json()["error"]["code"] == "body_too_large"
        assert http.post("/echo", content=b"x" * 999).json() == {"got": 999}


def test_connections_over_the_cap_get_503_not_a_reset(kit_app):
    srv = kit_app(limits=ServerLimits(max_connections=3))
    port = srv.served.port
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    try:
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", port), timeout=5)
        data = extra.recv(4096)
        extra.close()
        assert data.startswith(b"HTTP/1.1 503") and b"too_many_connections" in data
    finally:
        for s in idle:
            s.close()
    time.sleep(0.2)
    assert httpx.get(srv.url + "/healthz").status_code == 200


def test_a_connection_that_never_finishes_its_headers_is_closed(kit_app):
    srv = kit_app(limits=ServerLimits(header_timeout_s=1.0))
    s = socket.create_connection(("127.0.0.1", srv.served.port), timeout=10)
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:
        pass
    assert time.monotonic() - started < 5
    s.close()


def test_a_slow_body_is_cut_off(kit_app):
    srv = kit_app(limits=ServerLimits(body_timeout_s=1.0))
    s = socket.create_connection(("127.0.0.1", srv.served.port), timeout=10)
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    reply = s.recv(4096)
    s.close()
    assert reply.startswith(b"HTTP/1.1 408") and b"body_timeout" in reply


def test_a_taken_port_is_one_clear_error():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(PortInUse) as info:
            bind_listener("127.0.0.1", port)
        assert str(info.value) == f"port {port} on 127.0.0.1 is already in use; stop what holds it or choose another port with --port"
        assert not port_free("127.0.0.1", port)
    assert port_free("127.0.0.1", port)


def test_the_client_retries_503_and_connection_errors_with_backoff(kit_app):
    calls = []

    async def flaky(request):
        calls.append(time.monotonic())
        if len(calls) < 3:
            return web.json_response({"error": {"code": "busy", "message": "later"}}, status=503, headers={"Retry-After": "0.1"})
        return web.json_response({"ok": True, "arm": request.headers.get("X-Vla-Arm"), "auth": request.headers.get("Authorization")})

    srv = kit_app(key="k", handler=flaky)
    with make_client(srv.url, api_key="k", arm="arm09", retry=Retry(attempts=3, backoff_s=0.05)) as client:
        reply = client.request("POST", "/echo", content=b"x")
    assert reply.status_code == 200 and reply.json() == {"ok": True, "arm": "arm09", "auth": "Api-Key k"}
    assert len(calls) == 3 and calls[1] - calls[0] >= 0.09  # Retry-After was honoured
    calls.clear()
    with make_client(srv.url, api_key="k", retry=Retry(attempts=2, backoff_s=0.01)) as client:
        last = client.request("POST", "/echo", content=b"x")
    assert last.status_code == 503 and last.json()["error"]["code"] == "busy"  # the last answer, as it is

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    with make_client(f"http://127.0.0.1:{dead}", retry=Retry(attempts=3, backoff_s=0.01)) as client:
        with pytest.raises(ServiceUnreachable, match="after 3 attempt"):
            client.request("GET", "/healthz")

    async def async_side():
        async with make_async_client(srv.url, api_key="k", auth_scheme="Bearer") as client:
            return await client.request("POST", "/echo", content=b"x")

    calls[:] = [0, 0]  # the flaky handler answers at once from here on
    reply = asyncio.run(async_side())
    assert reply.status_code == 200 and reply.json()["auth"] == "Bearer k"
    with pytest.raises(TypeError, match="unexpected options"):
        make_async_client(srv.url, retries=3)


def test_log_lines_carry_their_fields_as_text_and_as_json():
    record = logging.LogRecord("vla.test", logging.INFO, __file__, 1, "refused", (), None)
    record.vla_fields = {"arm": "arm01", "code": "unauthorized", "reason": "wrong API key"}
    text = TextFormatter().format(record)
    assert text.endswith('INFO vla.test refused arm=arm01 code=unauthorized reason="wrong API key"')
    body = json.loads(JsonFormatter().format(record))
    assert body["event"] == "refused" and body["level"] == "info" and body["arm"] == "arm01" and body["ts"].endswith("Z")
    seen = []

    class Keep(logging.Handler):
        def emit(self, r):
            seen.append(r)

    log = logging.getLogger("vla.test.kit")
    log.addHandler(Keep())
    log.setLevel(logging.INFO)
    log_event(log, "ready", url="ws://x")
    log_event(log, "request", logging.DEBUG, route="/x")  # below the level: not even formatted
    assert [r.getMessage() for r in seen] == ["ready"] and seen[0].vla_fields == {"url": "ws://x"}


def test_limits_refuse_a_small_backlog():
    with pytest.raises(ValueError, match="backlog must be at least 128"):
        ServerLimits(backlog=5)
    assert attrs.evolve(ServerLimits(), max_connections=10).max_connections == 10
