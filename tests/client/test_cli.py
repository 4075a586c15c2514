"""`vla run` from a lab folder: arm files, per-arm safety limits, and clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from vla.builtins import TimedPolicyConfig
from vla.client.ticklog import read_log
from vla.testing.policies import TimedPolicy

VLA = str(Path(sys.executable).parent / "vla")

TIGHT_SAFETY = """\
joints:
  shoulder_pan: {min: -0.05, max: 0.05, max_step: 0.2}
  shoulder_lift: {min: -1.7, max: 1.7, max_step: 0.2}
  elbow_flex: {min: -1.6, max: 1.6, max_step: 0.2}
  wrist_flex: {min: -1.6, max: 1.6, max_step: 0.2}
  wrist_roll: {min: -2.7, max: 2.7, max_step: 0.2}
  gripper: {min: -0.17, max: 1.7, max_step: 0.2}
gripper: {joint: gripper, min: -0.02, max: 1.0}
workspace: {min: [-0.15, -0.45, 0.0], max: [0.5, 0.45, 0.45]}
"""


def make_lab(root: Path, safety: str = TIGHT_SAFETY) -> Path:
    (root / "arms").mkdir()
    (root / "safety").mkdir()
    (root / "vla.yaml").write_text(
        "log_dir: logs\nclient:\n  connect_timeout_s: 0.5\n  merge: latest\narms:\n  bench-arm: arms/bench-arm.yaml\n"
    )
    (root / "arms" / "bench-arm.yaml").write_text("robot: kinematic\nconfig:\n  control_hz: 20\nsafety: ../safety/tight.yaml\n")
    (root / "safety" / "tight.yaml").write_text(safety)
    return root


def vla(*args, cwd, timeout=60, env=None):
    base = {k: v for k, v in os.environ.items() if k != "VLA_API_KEY"}
    return subprocess.run([VLA, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**base, **(env or {})})


def test_the_arm_file_picks_robot_rate_and_safety_limits(policy_server, tmp_path):
    lab = make_lab(tmp_path)
    server = policy_server(TimedPolicy(TimedPolicyConfig(batch_cost_ms=10.0, horizon=40, step=0.01)))
    result = vla("run", "--arm", "bench-arm", "--task", "wave", "--policy-url", server.url, "--duration", "1.5", cwd=lab)
    assert result.returncode == 0, result.stderr
    records = list(read_log(next((lab / "logs").glob("run_*.jsonl"))))
    header = records[0]
    assert header["robot"] == "kinematic" and header["arm"] == "bench-arm"
    assert header["control_hz"] == 20 and header["merge"] == "latest"
    assert header["safety"].endswith("tight.yaml")
    ticks = [r for r in records if r["type"] == "tick"]
    assert 28 <= len(ticks) <= 32  # 20 Hz from the arm file
    commands = np.array([r["command"] for r in ticks])
    # the policy ramps shoulder_pan up and the gripper down by 10 mrad a tick: the file's limits hold them
    assert commands[:, 0].max() <= 0.05 + 1e-9 and commands[:, 0].max() > 0.04
    assert commands[:, 5].min() >= -0.02 - 1e-9
    clamps = {c for r in ticks for c in r["clamps"]}
    assert {"joint_limit", "gripper"} <= clamps


def test_a_safety_file_that_misses_a_joint_is_refused_by_name(tmp_path):
    lab = make_lab(tmp_path, TIGHT_SAFETY.replace("  elbow_flex: {min: -1.6, max: 1.6, max_step: 0.2}\n", ""))
    result = vla("run", "--arm", "bench-arm", "--task", "wave", "--policy-url", "ws://127.0.0.1:9", cwd=lab)
    assert result.returncode == 1
    assert "tight.yaml" in result.stderr and "elbow_flex" in result.stderr


def test_an_unreachable_server_is_a_clear_error(tmp_path, free_port):
    lab = make_lab(tmp_path)
    url = f"ws://127.0.0.1:{free_port}"
    result = vla("run", "--arm", "bench-arm", "--task", "wave", "--policy-url", url, cwd=lab)
    assert result.returncode == 1
    assert f"cannot reach the policy server at {url}" in result.stderr


def test_an_unknown_robot_is_a_clear_error(tmp_path):
    result = vla("run", "--robot", "no-such-arm", "--task", "wave", cwd=tmp_path)
    assert result.returncode == 1
    assert "no robot named 'no-such-arm'" in result.stderr


def test_the_api_key_comes_from_the_environment(policy_server, tmp_path):
    lab = make_lab(tmp_path)
    server = policy_server(TimedPolicy(TimedPolicyConfig(horizon=40, step=0.001)), api_key="s3cret")
    args = ("run", "--arm", "bench-arm", "--task", "wave", "--policy-url", server.url, "--duration", "1")
    refused = vla(*args, cwd=lab)
    assert refused.returncode == 1 and "unauthorized" in refused.stderr
    accepted = vla(*args, cwd=lab, env={"VLA_API_KEY": "s3cret"})
    assert accepted.returncode == 0, accepted.stderr
