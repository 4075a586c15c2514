"""`vla run` drives a policy server that speaks openpi's protocol."""

from __future__ import annotations

import asyncio
import http
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
import websockets
import websockets.asyncio.server as ws_server
from openpi_client import msgpack_numpy

from vla.builtins import TEST_CAMERAS
from vla.client.ticklog import read_log

VLA = str(Path(sys.executable).parent / "vla")


class OpenpiProtocolServer:
    """A minimal policy server that reproduces openpi's serve_policy wire behaviour
    (``openpi/serving/websocket_policy_server.py`` behind ``scripts/serve_policy.py``), encoded
    with openpi-client's own ``msgpack_numpy``: on connect it sends its metadata map first (an
    arbitrary dict, here without any of vla's fields); then, for every binary frame, it unpacks
    the observation, calls the policy, adds ``server_timing`` ({"infer_ms": ...}) to the
    policy's output dict (``{"actions": (H, A)}``) and sends it back. When the policy raises,
    it sends the traceback as a text frame and closes with code 1011, as openpi does. It
    answers ``GET /healthz`` with 200. It never checks an API key (neither does openpi).
    """

    def __init__(self, policy, metadata=None):
        self.policy = policy
        self.metadata = metadata or {}
        self.observations: list[dict] = []
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        async def main():
            self.server = await ws_server.serve(self._handler, "127.0.0.1", 0, compression=None, max_size=None,
                                                process_request=self._health)
            started.set()
            await self.server.wait_closed()

        self.thread = threading.Thread(target=lambda: self.loop.run_until_complete(main()), daemon=True)
        self.thread.start()
        assert started.wait(10)
        self.url = f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    @staticmethod
    def _health(connection, request):
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        return None

    async def _handler(self, websocket):
        packer = msgpack_numpy.Packer()
        await websocket.send(packer.pack(self.metadata))
        while True:
            try:
                obs = msgpack_numpy.unpackb(await websocket.recv())
                self.observations.append(obs)
                started = time.monotonic()
                action = self.policy(obs)
                action["server_timing"] = {"infer_ms": (time.monotonic() - started) * 1000}
                await websocket.send(packer.pack(action))
            except websockets.ConnectionClosed:
                break
            except Exception:
                await websocket.send(traceback.format_exc())
                await websocket.close(code=1011, reason="Internal server error. Traceback included in previous frame.")
                raise

    def stop(self):
        self.loop.call_soon_threadsafe(self.server.close)
        self.thread.join(5)


def ramp_policy(obs):
    """An openpi-style policy: reads the state, returns 25 actions (float64, as numpy defaults)."""
    if obs.get("task") == "explode":
        raise RuntimeError("the model failed")
    state = np.asarray(obs["observation.state"], dtype=np.float64)
    return {"actions": state + 0.002 * np.arange(1, 26)[:, None]}


@pytest.fixture
def openpi_server():
    server = OpenpiProtocolServer(ramp_policy, metadata={"robot": "so101", "note": "openpi metadata"})
    yield server
    server.stop()


def test_vla_run_drives_an_openpi_protocol_server(openpi_server, tmp_path):
    result = subprocess.run(
        [VLA, "run", "--robot", "kinematic", "--task", "pick up the cube", "--policy-url", openpi_server.url,
         "--merge", "weighted_average", "--duration", "2", "--log-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    log = next(tmp_path.glob("run_*.jsonl"))
    records = list(read_log(log))
    chunks = [r for r in records if r["type"] == "chunk"]
    ticks = [r for r in records if r["type"] == "tick"]
    assert len(chunks) >= 3
    assert not any(t["underflow"] for t in ticks)
    assert sum(1 for t in ticks if not t["hold"]) >= 50
    assert all(c["server_timing"]["infer_ms"] >= 0 for c in chunks)
    # the server saw our observation exactly as openpi-client encodes it
    obs = openpi_server.observations[0]
    assert obs["task"] == "pick up the cube"
    assert obs["observation.state"].dtype == np.float32 and obs["observation.state"].shape == (6,)
    for name, shape in TEST_CAMERAS.items():
        image = obs[f"observation.images.{name}"]
        assert image.dtype == np.uint8 and image.shape == tuple(shape)
    # no RTC fields for a weighted-average run
    assert "prev_chunk" not in obs


def test_an_openpi_server_error_is_logged_and_the_arm_holds(tmp_path):
    server = OpenpiProtocolServer(ramp_policy)
    try:
        result = subprocess.run(
            [VLA, "run", "--robot", "kinematic", "--task", "explode", "--policy-url", server.url,
             "--duration", "1.5", "--log-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )
    finally:
        server.stop()
    # every request failed: the run says so with the server's message instead of exiting 0
    assert result.returncode == 1, result.stderr
    assert "every request to the policy server failed" in result.stderr and "the model failed" in result.stderr
    records = list(read_log(next(tmp_path.glob("run_*.jsonl"))))
    errors = [r for r in records if r["type"] == "event" and r["event"] == "error"]
    assert errors and "the model failed" in errors[0]["message"]
    assert any(r["type"] == "event" and r["event"] == "disconnected" for r in records)
    ticks = [r for r in records if r["type"] == "tick"]
    assert ticks and all(t["hold"] for t in ticks)
    assert {tuple(t["command"]) for t in ticks} == {(0.0,) * 6}


def libero_style_policy(obs):
    """Reads only openpi's example keys, as pi0-FAST's LIBERO inputs do, and answers 10 actions
    padded to 7 columns (openpi pads actions to the model's width)."""
    state = np.asarray(obs["observation/state"], dtype=np.float64)
    assert obs["observation/image"].dtype == np.uint8 and obs["observation/image"].ndim == 3
    assert obs["observation/wrist_image"].dtype == np.uint8
    assert isinstance(obs["prompt"], str)
    actions = np.zeros((10, 7))
    actions[:, :6] = state + 0.002 * np.arange(1, 11)[:, None]
    actions[:, 6] = 99.0  # the padding column must never reach the arm
    return {"actions": actions}


def test_vla_run_with_the_pi0_fast_adapter_drives_openpis_own_keys(tmp_path):
    server = OpenpiProtocolServer(libero_style_policy)
    try:
        result = subprocess.run(
            [VLA, "run", "--robot", "kinematic", "--task", "put the cube in the bowl", "--policy-url", server.url,
             "--adapter", "pi0-fast", "--merge", "latest", "--duration", "2", "--log-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    obs = server.observations[0]
    assert obs["prompt"] == "put the cube in the bowl"
    assert "observation.state" not in obs and obs["observation/state"].shape == (6,)
    records = list(read_log(next(tmp_path.glob("run_*.jsonl"))))
    assert not [r for r in records if r["type"] == "event" and r["event"] == "error"]
    ticks = [r for r in records if r["type"] == "tick" and not r["hold"]]
    assert len(ticks) >= 30
    assert all(len(t["command"]) == 6 and max(abs(v) for v in t["command"]) < 3.0 for t in ticks)


def test_an_unknown_adapter_is_refused_before_the_arm_moves(tmp_path):
    result = subprocess.run(
        [VLA, "run", "--robot", "kinematic", "--task", "x", "--policy-url", "ws://127.0.0.1:9",
         "--adapter", "timed", "--duration", "1", "--log-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "--adapter timed" in result.stderr and "no client adapter" in result.stderr
