"""Fixtures for the fleet tests: a lab folder of kinematic arms, the real policy server in a
thread, and `vla fleet run` as a real process (its arms are real processes too).

The arms are the kinematic test arm (no hardware here); everything between them and the
policy (websocket protocol, control loop, safety layer, process supervision) is the real one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

VLA = [sys.executable, "-m", "vla"]

SAFETY = """\
joints:
  shoulder_pan: {{min: -1.5, max: 1.5, max_step: {step}}}
  shoulder_lift: {{min: -1.5, max: 1.5, max_step: {step}}}
  elbow_flex: {{min: -1.5, max: 1.5, max_step: {step}}}
  wrist_flex: {{min: -1.5, max: 1.5, max_step: {step}}}
  wrist_roll: {{min: -2.5, max: 2.5, max_step: {step}}}
  gripper: {{min: 0.0, max: 1.5, max_step: {step}}}
"""


def PolicyThread(batch_cost_ms: float = 10.0):
    """The timed test policy served by the real PolicyServer on a loopback port."""
    from vla.builtins import TimedPolicyConfig
    from vla.testing.policies import TimedPolicy
    from vla.testing.server_thread import ServerThread

    return ServerThread(TimedPolicy(TimedPolicyConfig(batch_cost_ms=batch_cost_ms)))


@pytest.fixture
def policy():
    server = PolicyThread()
    yield server
    server.stop()


def write_lab(root: Path, arms: dict[str, dict]) -> Path:
    """vla.yaml with one arm file and one safety file per arm (``arms``: id -> extra kinematic config)."""
    (root / "arms").mkdir(parents=True, exist_ok=True)
    lines = ["lab: testlab", "log_dir: logs", "arms:"]
    for i, (arm_id, extra) in enumerate(arms.items()):
        lines.append(f"  {arm_id}: arms/{arm_id}.yaml")
        config = {"cameras": {"front": [48, 64, 3], "wrist": [48, 64, 3]}, **extra}
        (root / "arms" / f"{arm_id}.yaml").write_text(
            f"robot: kinematic\nsafety: {arm_id}_safety.yaml\nconfig: {json.dumps(config)}\n")
        (root / "arms" / f"{arm_id}_safety.yaml").write_text(SAFETY.format(step=0.2 + 0.01 * i))
    lines.append("plugins:\n  kinematic:\n    cameras: {front: [48, 64, 3], wrist: [48, 64, 3]}")
    (root / "vla.yaml").write_text("\n".join(lines) + "\n")
    return root / "vla.yaml"


@pytest.fixture
def lab(tmp_path):
    def make(arms: dict[str, dict] | None = None) -> Path:
        return write_lab(tmp_path / "lab", arms or {"arm01": {}, "arm02": {}})

    return make


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FleetProcess:
    """`vla fleet run ARGS` in its own process, its output in a file."""

    def __init__(self, config: Path, out: Path, *args: str):
        self.out = out
        self.output = out.parent / f"{out.name}.output.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, COLUMNS="200")
        self._file = open(self.output, "wb")
        self.proc = subprocess.Popen([*VLA, "--config", str(config), "fleet", "run", "--out", str(out), *args],
                                     stdout=self._file, stderr=subprocess.STDOUT, env=env, cwd=config.parent)

    def status(self, label: str) -> dict:
        try:
            return json.loads((self.out / "arms" / label / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def wait_for(self, predicate, timeout: float = 60.0, what: str = "condition"):
        end = time.time() + timeout
        while time.time() < end:
            if predicate():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"the fleet exited ({self.proc.returncode}) before {what}:\n{self.text()}")
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}:\n{self.text()}")

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._file.close()

    def text(self) -> str:
        return self.output.read_text(errors="replace")[-5000:]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def fleet_process():
    started = []

    def start(config: Path, out: Path, *args: str) -> FleetProcess:
        started.append(FleetProcess(config, out, *args))
        return started[-1]

    yield start
    for f in started:
        f.kill()
