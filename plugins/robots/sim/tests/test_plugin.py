"""vla-sim as a plugin: conformance, registry, light entry point, and the expert served over the wire."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

VLA = str(Path(sys.executable).parent / "vla")


def test_conformance():
    from vla.testing import check_plugin

    found = check_plugin("vla-sim")
    assert "sim" in found["robots"] and "scripted" in found["policies"]


def test_registry_builds_the_robot_and_the_policy():
    from vla.plugins import get_spec
    from vla.policy import PolicyBackend
    from vla.robot import EpisodicRobot

    robot = get_spec("robots", "sim").build()
    try:
        assert isinstance(robot, EpisodicRobot)
    finally:
        robot.close()
    assert isinstance(get_spec("policies", "scripted").build(), PolicyBackend)


def test_entry_point_and_cli_group_do_not_import_mujoco():
    code = (
        "import sys, vla_sim.plugin, vla_sim.cli, vla_sim.config;"
        "heavy = [m for m in ('mujoco', 'torch', 'cv2', 'lerobot') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_vla_sim_clips_is_listed_in_help():
    result = subprocess.run([VLA, "sim", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "clips" in result.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"vla serve exited early:\n{proc.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("vla serve did not become ready")


def test_expert_served_by_vla_serve_in_another_process_solves_lift(sim_robot):
    """The expert needs nothing but the observation: served over the real WebSocket protocol, it lifts the cube."""
    from vla.protocol.client import PolicyClient

    port = _free_port()
    env = {**os.environ, "VLA_LOAD_PLUGINS": "vla-sim"}
    proc = subprocess.Popen(
        [VLA, "serve", "--policy", "scripted", "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        _wait_ready(port, proc)

        async def episode() -> bool:
            client = await PolicyClient.connect(f"ws://127.0.0.1:{port}")
            try:
                assert client.metadata["policy"] == "scripted" and client.metadata["horizon"] == 40
                sim_robot.reset("lift", 8)
                while not sim_robot.timed_out():
                    reply = await client.infer(sim_robot.observe(images=False))
                    actions = reply["actions"]
                    assert actions.shape == (40, 6) and actions.dtype == np.float32
                    for action in actions[:20]:
                        sim_robot.act(action)
                        if sim_robot.success():
                            return True
                return False
            finally:
                await client.close()

        assert asyncio.run(episode())
    finally:
        proc.terminate()
        proc.wait(10)
