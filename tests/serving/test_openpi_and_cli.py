"""openpi-client's own WebsocketClientPolicy against our server, and the real `vla serve` command."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import websockets

from vla.testing.policies import expected_chunk

websocket_client_policy = pytest.importorskip("openpi_client.websocket_client_policy")

VLA = str(Path(sys.executable).parent / "vla")
KEY = "lab-key-123"


def test_openpi_client_reads_metadata_and_gets_actions(helpers):
    with helpers.server_in_thread(helpers.small_policy()) as server:
        policy = websocket_client_policy.WebsocketClientPolicy(host="127.0.0.1", port=server.port)
        metadata = policy.get_server_metadata()
        assert metadata["protocol"] == "vla/1" and metadata["action_dim"] == 6
        for i in range(3):
            state = [0.1 * i, 0.2, -0.3, 0.0, 0.0, 0.4]
            result = policy.infer(helpers.observation(state, seed=i))
            assert result["actions"].shape == (10, 6)
            np.testing.assert_allclose(result["actions"], expected_chunk(state, horizon=10), atol=1e-6)
            assert result["server_timing"]["infer_ms"] >= 0
        # an error comes back as a map the openpi client can read; the connection stays usable
        bad = policy.infer({"observation.state": np.zeros(6, np.float32)})
        assert bad["error"]["code"] == "missing_key"
        ok = policy.infer(helpers.observation([0.0] * 6))
        assert ok["actions"].shape == (10, 6)


def test_openpi_client_with_and_without_the_key(helpers):
    with helpers.server_in_thread(helpers.small_policy(), api_key=KEY) as server:
        with pytest.raises(websockets.InvalidStatus):
            websocket_client_policy.WebsocketClientPolicy(host="127.0.0.1", port=server.port)
        with pytest.raises(websockets.InvalidStatus):
            websocket_client_policy.WebsocketClientPolicy(host="127.0.0.1", port=server.port, api_key="nope")
        policy = websocket_client_policy.WebsocketClientPolicy(host="127.0.0.1", port=server.port, api_key=KEY)
        assert policy.infer(helpers.observation([0.0] * 6))["actions"].shape == (10, 6)


def _read_lines(stream, sink: queue.Queue):
    for line in iter(stream.readline, ""):
        sink.put(line)


def test_vla_serve_command_with_lab_config_key_and_openpi_client(tmp_path, helpers):
    """`vla serve` as a lab runs it: plugin settings from vla.yaml, key from VLA_API_KEY."""
    (tmp_path / "vla.yaml").write_text(
        "plugins:\n  timed:\n    horizon: 12\n    step: 0.02\n    cameras:\n      front: [48, 64, 3]\n"
    )
    env = {**os.environ, "VLA_API_KEY": KEY, "VLA_CONFIG": str(tmp_path / "vla.yaml")}
    process = subprocess.Popen(
        [VLA, "serve", "--policy", "timed", "--port", "0", "--max-wait-ms", "2"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=tmp_path,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(process.stderr, lines), daemon=True).start()
    try:
        port, seen = None, []
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                assert process.poll() is None, f"vla serve exited: {''.join(seen)}"
                continue
            seen.append(line)
            match = re.search(r"vla serve: policy timed on ws://127\.0\.0\.1:(\d+)", line)
            if match:
                port = int(match.group(1))
        assert port, f"no listening line in: {''.join(seen)}"
        assert "api key required (from env:VLA_API_KEY)" in "".join(seen)

        with pytest.raises(websockets.InvalidStatus):
            websocket_client_policy.WebsocketClientPolicy(host="127.0.0.1", port=port)
        policy = websocket_client_policy.WebsocketClientPolicy(host="127.0.0.1", port=port, api_key=KEY)
        metadata = policy.get_server_metadata()
        assert metadata["horizon"] == 12 and metadata["cameras"] == {"front": [48, 64, 3]}
        state = [0.3, 0.1, 0.0, -0.2, 0.0, 0.5]
        obs = helpers.observation(state, cameras={"front": [48, 64, 3]})
        result = policy.infer(obs)
        np.testing.assert_allclose(result["actions"], expected_chunk(state, horizon=12, step=0.02), atol=1e-6)
        status, _, body = helpers.http_get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200 and '"ready"' in body
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0


def test_vla_serve_rejects_a_bad_plugin_config(tmp_path):
    (tmp_path / "vla.yaml").write_text("plugins:\n  timed:\n    horizon: many\n")
    result = subprocess.run(
        [VLA, "--config", str(tmp_path / "vla.yaml"), "serve", "--policy", "timed", "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "plugins.timed.horizon" in result.stderr


def test_vla_serve_unknown_policy(tmp_path):
    result = subprocess.run([VLA, "serve", "--policy", "nope", "--port", "0"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    assert "no policy named 'nope'" in result.stderr


def test_policy_client_drives_an_openpi_style_server(run_async):
    """`vla run` can use a server that speaks openpi's protocol: this one is set up as openpi's
    WebsocketPolicyServer is (msgpack_numpy both ways, metadata first, no request ids)."""
    import asyncio

    from openpi_client import msgpack_numpy
    from websockets.asyncio.server import serve

    from vla.protocol.client import PolicyClient

    async def handler(ws):
        packer = msgpack_numpy.Packer()
        await ws.send(packer.pack({"robot": "so101", "action_horizon": 5}))
        async for raw in ws:
            obs = msgpack_numpy.unpackb(raw)
            state = obs["observation.state"]
            await ws.send(packer.pack({"actions": np.tile(state, (5, 1)).astype(np.float64), "server_timing": {"infer_ms": 1.0}}))

    async def scenario():
        async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
            port = server.sockets[0].getsockname()[1]
            client = await PolicyClient.connect(f"ws://127.0.0.1:{port}")
            assert not client.is_vla_server and client.metadata["action_horizon"] == 5
            state = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], np.float32)
            for _ in range(2):
                reply = await client.infer({"observation.state": state, "task": "lift"})
                assert reply["actions"].dtype == np.float32 and reply["actions"].shape == (5, 6)
                np.testing.assert_allclose(reply["actions"][0], state)
            await client.close()

    run_async(scenario())
