"""`vla serve-rewarder` as a lab runs it (a real process on a loopback port) under the inputs that
broke the old service: a key set in vla.yaml, slow-loris connections, 100 simultaneous
requests, and decompression-bomb-sized frames. The heuristic rewarder (OpenCV) scores for real.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from vla.rewarding.frames import to_base64
from vla_heuristic.synthetic import TASK_GOALS, draw_scene

VLA = str(Path(sys.executable).parent / "vla")
GOAL = TASK_GOALS["pick_place"]
KEY = "lab-key-7"


class Rewarder:
    """A `vla serve-rewarder` process; ``port`` from its start-up line, ``peak_rss_mb`` from /proc."""

    def __init__(self, cwd: Path, *args: str, env: dict | None = None):
        base = {k: v for k, v in os.environ.items() if k != "VLA_API_KEY"}
        self.proc = subprocess.Popen(
            [VLA, "serve-rewarder", "--rewarder", "heuristic", "--port", "0", *args],
            cwd=cwd, env={**base, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.banner = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                assert self.proc.poll() is None, "vla serve-rewarder exited"
                continue
            match = re.search(r"on http://127\.0\.0\.1:(\d+)", line)
            if match:
                self.banner, self.port = line, int(match.group(1))
                break
        else:
            raise AssertionError("vla serve-rewarder printed no listening line")
        self._wait_ready()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.put(line)

    def _wait_ready(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, _ = self.request("GET", "/healthz")
            if status == 200:
                return
            time.sleep(0.2)
        raise AssertionError("the rewarder never became ready")

    def request(self, method, path, body=None, headers=None, timeout=60):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            payload = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
            conn.request(method, path, body=payload, headers={"Content-Type": "application/json", **(headers or {})})
            response = conn.getresponse()
            data = response.read()
            return response.status, (json.loads(data) if data[:1] in (b"{", b"[") else data)
        finally:
            conn.close()

    def peak_rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            assert self.proc.wait(timeout=15) == 0
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture
def rewarder(tmp_path):
    started = []

    def start(*args, config: str | None = None, env=None):
        if config is not None:
            (tmp_path / "vla.yaml").write_text(config)
        started.append(Rewarder(tmp_path, *args, env=env))
        return started[-1]

    yield start
    for r in started:
        r.stop()


@pytest.fixture(scope="module")
def frame():
    return to_base64(draw_scene("pick_place", True, seed=1)[0])


def test_the_api_key_in_vla_yaml_is_enforced(rewarder, frame):
    srv = rewarder(config=f"rewarder:\n  api_key: {KEY}\n")
    assert "api key required (from" in srv.banner and "vla.yaml" in srv.banner
    body = {"goal": GOAL, "frames": [frame]}
    status, reply = srv.request("POST", "/score", body)
    assert status == 401 and reply["error"]["code"] == "unauthorized"
    status, reply = srv.request("POST", "/score", body, {"Authorization": "Api-Key wrong"})
    assert status == 401 and reply["error"]["message"].startswith("wrong API key")
    status, reply = srv.request("POST", "/score", body, {"Authorization": f"Api-Key {KEY}"})
    assert status == 200 and reply["success"] is True
    assert srv.request("GET", "/healthz")[0] == 200  # probes carry no key


def test_host_and_port_come_from_vla_yaml_and_the_banner_says_so(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "vla.yaml").write_text(f"rewarder:\n  host: 127.0.0.1\n  port: {port}\n")
    base = {k: v for k, v in os.environ.items() if k != "VLA_API_KEY"}
    proc = subprocess.Popen([VLA, "serve-rewarder", "--rewarder", "heuristic"], cwd=tmp_path, env=base,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        while line and "on http://" not in line:
            line = proc.stderr.readline()
        assert f"on http://127.0.0.1:{port}" in line
        assert f"host from {tmp_path / 'vla.yaml'}" in line and f"port from {tmp_path / 'vla.yaml'}" in line
        assert "api key none (from default)" in line
        # and a second server on the same port is one line and exit 2
        busy = subprocess.run([VLA, "serve-rewarder", "--rewarder", "heuristic"], cwd=tmp_path, env=base,
                              capture_output=True, text=True, timeout=60)
        assert busy.returncode == 2
        assert busy.stderr.strip().splitlines()[-1].startswith(f"Error: port {port} on 127.0.0.1 is already in use")
        assert "Traceback" not in busy.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def test_300_slow_loris_connections_are_closed_within_15_s(rewarder, frame):
    srv = rewarder()
    sockets = []
    for _ in range(300):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        s.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\n")  # and never the rest of the headers
        sockets.append(s)
    started = time.monotonic()
    # a good client is served while the 300 hang on
    status, reply = srv.request("POST", "/score", {"goal": GOAL, "frames": [frame]}, timeout=10)
    assert status == 200 and reply["success"] is True
    closed_after = []
    for i, s in enumerate(sockets):
        # keep dribbling a header byte now and then, as a slow-loris client does
        s.settimeout(max(0.1, 20 - (time.monotonic() - started)))
        try:
            s.sendall(b"X")
            data = s.recv(4096)
            while data:  # whatever the server says before it closes (an error response) is fine
                data = s.recv(4096)
        except (ConnectionResetError, BrokenPipeError):
            pass
        except socket.timeout:
            pytest.fail(f"connection {i} still open after {time.monotonic() - started:.1f}s")
        closed_after.append(time.monotonic() - started)
        s.close()
    print(f"\n300 slow-loris connections: the last was closed after {max(closed_after):.1f}s")
    assert max(closed_after) < 15, f"the last slow-loris connection closed after {max(closed_after):.1f}s"
    assert srv.request("POST", "/score", {"goal": GOAL, "frames": [frame]})[0] == 200


def test_100_concurrent_requests_see_no_connection_resets(rewarder, frame):
    srv = rewarder()
    barrier = threading.Barrier(100)
    body = json.dumps({"goal": GOAL, "frames": [frame]}).encode()

    def one(_):
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
        barrier.wait()
        try:
            conn.request("POST", "/score", body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        except OSError as exc:  # a reset, a refused connection, a broken pipe
            return type(exc).__name__, None
        finally:
            conn.close()

    with ThreadPoolExecutor(100) as pool:
        results = list(pool.map(one, range(100)))
    statuses = [status for status, _ in results]
    assert statuses == [200] * 100, {s: statuses.count(s) for s in set(statuses)}
    assert all(reply["success"] is True for _, reply in results)


@pytest.fixture(scope="module")
def black_4096_png():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4096, 4096)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_64_frames_of_4096_png_are_refused_with_413_in_bounded_memory(rewarder, frame, black_4096_png):
    srv = rewarder()
    body = {"goal": GOAL, "frames": [black_4096_png] * 64}
    assert len(json.dumps(body)) > 4_000_000  # a 4 MB body of small files claiming 1 Gpx
    status, reply = srv.request("POST", "/score", body)
    assert status == 413 and reply["error"]["code"] == "too_many_pixels"
    assert "64 frame(s)" in reply["error"]["message"] and "16777216" in reply["error"]["message"]
    # what took the old service to 2.5 GB: four requests of eight such frames at once
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: srv.request("POST", "/score", {"goal": GOAL, "frames": [black_4096_png] * 8}),
                                range(4)))
    assert [s for s, _ in results] == [413] * 4
    # and a batch whose items add up past the budget
    batch = {"items": [{"goal": GOAL, "frames": [black_4096_png]}, {"goal": GOAL, "frames": [black_4096_png] * 2}]}
    status, reply = srv.request("POST", "/score/batch", batch)
    assert status == 413 and reply["error"]["code"] == "too_many_pixels"
    peak = srv.peak_rss_mb()
    print(f"\npeak RSS of the rewarder after the refused requests: {peak:.0f} MB")
    assert peak < 1024, f"peak RSS {peak:.0f} MB"
    # one 4096x4096 frame is within the budget and is decoded and scored
    status, reply = srv.request("POST", "/score", {"goal": GOAL, "frames": [black_4096_png]})
    assert status == 200 and reply["success"] is False
    assert srv.request("POST", "/score", {"goal": GOAL, "frames": [frame]})[1]["success"] is True
    print(f"peak RSS after decoding one 4096x4096 frame: {srv.peak_rss_mb():.0f} MB")
    assert srv.peak_rss_mb() < 1024


def test_the_rewarder_speaks_tls_and_the_client_trusts_a_ca_file(tmp_path, frame):
    """TLS as the policy server has it: a certificate for 127.0.0.1, and RewarderClient with its CA file."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    from vla.rewarding.client import RewarderClient
    from vla.rewarding.service import RewarderService, RunningService
    from vla.service.net import server_ssl_context
    from vla_heuristic.rewarder import HeuristicRewarder

    service = RewarderService("heuristic", HeuristicRewarder, api_key=KEY)
    with RunningService(service, ssl=server_ssl_context(str(cert), str(key))) as srv:
        assert srv.url.startswith("https://")
        assert service.wait_loaded(30)
        client = RewarderClient(srv.url, api_key=KEY, ca_file=str(cert), arm="arm05")
        scene = draw_scene("pick_place", True, seed=1)[0]
        assert client.score([scene], GOAL).success is True
        assert service.metrics.value("scores_total", arm="arm05") == 1
        with pytest.raises(ConnectionError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            RewarderClient(srv.url, api_key=KEY, retries=0).score([scene], GOAL)  # the system store does not know it
