"""`vla serve` as a lab starts it: host, port and key from vla.yaml with their sources named,
`--set` for plugin settings, and one-line errors (exit 2) for what a new user gets wrong."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from openpi_client import websocket_client_policy

from vla.testing.policies import expected_chunk

VLA = str(Path(sys.executable).parent / "vla")
KEY = "from-the-lab-file"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_without_key() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("VLA_API_KEY", "VLA_CONFIG")}


def start(cwd: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """`vla serve ARGS` in ``cwd``; returns the process and what it printed up to its start-up line."""
    proc = subprocess.Popen([VLA, "serve", *args], cwd=cwd, env=env_without_key(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    deadline = time.monotonic() + 30
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert proc.poll() is None, f"vla serve exited: {''.join(seen)}"
            continue
        seen.append(line)
        if "vla serve: policy" in line:
            return proc, "".join(seen)
    proc.kill()
    raise AssertionError(f"no start-up line in {''.join(seen)}")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0


def test_host_port_and_key_from_vla_yaml_with_their_sources(tmp_path):
    port = free_port()
    config = tmp_path / "vla.yaml"
    config.write_text(f"policy_server:\n  host: 127.0.0.1\n  port: {port}\n  api_key: {KEY}\n"
                      "plugins:\n  timed:\n    horizon: 12\n    cameras: {}\n")
    proc, line = start(tmp_path, "--policy", "timed", "--set", "step=0.03")
    try:
        assert f"on ws://127.0.0.1:{port}" in line
        assert f"host from {config}" in line and f"port from {config}" in line
        assert f"api key required (from {config})" in line
        with pytest.raises(Exception):  # no key: refused at the handshake
            websocket_client_policy.WebsocketClientPolicy(host="127.0.0.1", port=port)
        policy = websocket_client_policy.WebsocketClientPolicy(host="127.0.0.1", port=port, api_key=KEY)
        state = [0.1, 0.2, 0.0, 0.0, 0.0, 0.3]
        reply = policy.infer({"observation.state": np.asarray(state, np.float32), "task": "wave"})
        # horizon from vla.yaml, step from --set
        np.testing.assert_allclose(reply["actions"], expected_chunk(state, horizon=12, step=0.03), atol=1e-6)
    finally:
        stop(proc)


def test_flags_win_over_vla_yaml(tmp_path):
    (tmp_path / "vla.yaml").write_text(f"policy_server:\n  port: {free_port()}\n  api_key: {KEY}\n")
    port = free_port()
    proc, line = start(tmp_path, "--policy", "timed", "--port", str(port), "--api-key", "flag-key")
    try:
        assert f"on ws://127.0.0.1:{port}" in line and "port from --port" in line
        assert "api key required (from --api-key)" in line and "host from default" in line
        websocket_client_policy.WebsocketClientPolicy(host="127.0.0.1", port=port, api_key="flag-key")
    finally:
        stop(proc)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def serve_once(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([VLA, "serve", *args], cwd=cwd, env=env_without_key(), capture_output=True, text=True,
                          timeout=120)


def test_a_busy_port_is_one_line_and_exit_2(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        line = one_line_error(serve_once(tmp_path, "--policy", "timed", "--port", str(port)))
    assert f"port {port} on 127.0.0.1 is already in use" in line and "port from --port" in line


def test_an_unknown_policy_is_one_line_and_exit_2(tmp_path):
    line = one_line_error(serve_once(tmp_path, "--policy", "no-such-policy"))
    assert "no-such-policy" in line


def test_a_bad_setting_is_one_line_and_exit_2(tmp_path):
    line = one_line_error(serve_once(tmp_path, "--policy", "timed", "--set", "horizon=many"))
    assert "plugins.timed.horizon" in line


@pytest.mark.lerobot
def test_a_missing_checkpoint_is_one_line_and_exit_2(tmp_path):
    pytest.importorskip("vla_lerobot")
    line = one_line_error(serve_once(tmp_path, "--policy", "lerobot", "--set", f"path={tmp_path / 'nothing-here'}"))
    assert "no LeRobot checkpoint here" in line and "nothing-here" in line
    line = one_line_error(serve_once(tmp_path, "--policy", "lerobot"))
    assert "no checkpoint configured" in line


def test_openpi_clients_drive_a_vla_policy_with_openpi_keys(tmp_path):
    """openpi-client with the keys of openpi's LIBERO example, through `vla serve --adapter pi0`."""
    pytest.importorskip("vla_openpi")
    port = free_port()
    cameras = {"front": [48, 64, 3], "wrist": [24, 32, 3]}
    (tmp_path / "vla.yaml").write_text(
        "plugins:\n  timed:\n    horizon: 10\n    cameras:\n"
        + "".join(f"      {name}: {shape}\n" for name, shape in cameras.items())
    )
    proc, line = start(tmp_path, "--policy", "timed", "--port", str(port), "--adapter", "pi0")
    try:
        policy = websocket_client_policy.WebsocketClientPolicy(host="127.0.0.1", port=port)
        rng = np.random.default_rng(0)
        state = [0.2, -0.1, 0.3, 0.0, 0.1, 0.4]
        obs = {
            "observation/image": rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
            "observation/wrist_image": rng.integers(0, 256, (24, 32, 3), dtype=np.uint8),
            "observation/state": np.asarray(state),  # float64, as openpi's examples send it
            "prompt": "put the red cube in the blue bowl",
        }
        reply = policy.infer(obs)
        np.testing.assert_allclose(reply["actions"], expected_chunk(state, horizon=10), atol=1e-6)
        # a wrong shape under an openpi key is an error frame naming its vla key; the connection goes on
        error = policy.infer({**obs, "observation/image": np.zeros((8, 8, 3), np.uint8)})["error"]
        assert error["code"] == "bad_shape" and "observation.images.front" in error["message"]
        np.testing.assert_allclose(policy.infer(obs)["actions"], expected_chunk(state, horizon=10), atol=1e-6)
        assert "observation/image -> observation.images.front" in line and "prompt -> task" in line
    finally:
        stop(proc)


def test_an_explicit_key_map(tmp_path):
    port = free_port()
    (tmp_path / "vla.yaml").write_text("plugins:\n  timed:\n    horizon: 5\n    cameras:\n      front: [16, 16, 3]\n")
    proc, line = start(tmp_path, "--policy", "timed", "--port", str(port), "--key-map", "cam=observation.images.front",
                       "--key-map", "joints=observation.state", "--key-map", "instruction=task")
    try:
        assert "cam -> observation.images.front" in line
        policy = websocket_client_policy.WebsocketClientPolicy(host="127.0.0.1", port=port)
        reply = policy.infer({"cam": np.zeros((16, 16, 3), np.uint8), "joints": np.zeros(6, np.float32), "instruction": "x"})
        assert reply["actions"].shape == (5, 6)
    finally:
        stop(proc)
