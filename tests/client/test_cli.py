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
    assert result.returncode == 2  # a configuration error, found before anything connects
    assert "tight.yaml" in result.stderr and "elbow_flex" in result.stderr


def test_an_unreachable_server_is_a_clear_error(tmp_path, free_port):
    lab = make_lab(tmp_path)
    url = f"ws://127.0.0.1:{free_port}"
    result = vla("run", "--arm", "bench-arm", "--task", "wave", "--policy-url", url, cwd=lab)
    assert result.returncode == 1
    assert f"cannot reach the policy server at {url}" in result.stderr


def test_an_unknown_robot_is_a_clear_error(tmp_path):
    result = vla("run", "--robot", "no-such-arm", "--task", "wave", cwd=tmp_path)
    assert result.returncode == 2
    assert "no robot named 'no-such-arm'" in result.stderr


def test_the_api_key_comes_from_the_environment(policy_server, tmp_path):
    lab = make_lab(tmp_path)
    server = policy_server(TimedPolicy(TimedPolicyConfig(horizon=40, step=0.001)), api_key="s3cret")
    args = ("run", "--arm", "bench-arm", "--task", "wave", "--policy-url", server.url, "--duration", "1")
    refused = vla(*args, cwd=lab)
    assert refused.returncode == 1 and "unauthorized" in refused.stderr
    accepted = vla(*args, cwd=lab, env={"VLA_API_KEY": "s3cret"})
    assert accepted.returncode == 0, accepted.stderr


def test_an_unknown_arm_is_an_error_whatever_else_is_given(tmp_path):
    lab = make_lab(tmp_path)
    for args in (("--arm", "arm99"), ("--arm", "arm99", "--robot", "kinematic"),
                 ("--arm", "arm99", "--robot", "kinematic", "--safety", str(lab / "safety" / "tight.yaml"))):
        result = vla("run", *args, "--task", "wave", "--policy-url", "ws://127.0.0.1:9", cwd=lab)
        assert result.returncode == 2, (args, result.stderr)
        assert "arms.arm99: no such arm (known: bench-arm)" in result.stderr, result.stderr
    result = vla("run", "--task", "wave", "--robot", "kinematic", cwd=lab, env={"ARM_ID": "arm99"})
    assert result.returncode == 2 and "arm99" in result.stderr


def test_arm_id_from_the_environment_selects_the_arm_and_its_safety_file(policy_server, tmp_path):
    """Lab scripts export ARM_ID on each arm's computer; `vla run` then needs no --arm."""
    lab = make_lab(tmp_path)
    server = policy_server(TimedPolicy(TimedPolicyConfig(horizon=40, step=0.01)))
    result = vla("run", "--task", "wave", "--policy-url", server.url, "--duration", "0.5", cwd=lab,
                 env={"ARM_ID": "bench-arm"})
    assert result.returncode == 0, result.stderr
    header = next(read_log(next((lab / "logs").glob("run_*.jsonl"))))
    assert header["arm"] == "bench-arm" and header["safety"].endswith("tight.yaml") and header["control_hz"] == 20


def test_a_robot_that_disagrees_with_the_arm_file_is_refused(tmp_path):
    lab = make_lab(tmp_path)
    result = vla("run", "--arm", "bench-arm", "--robot", "sim", "--task", "wave", cwd=lab)
    assert result.returncode == 2
    assert "says robot 'kinematic', not 'sim'" in result.stderr


def test_a_bad_client_setting_is_refused_before_anything_starts(tmp_path):
    lab = make_lab(tmp_path)
    (lab / "vla.yaml").write_text((lab / "vla.yaml").read_text().replace("merge: latest", "merge: rtcc"))
    for command in (("run", "--arm", "bench-arm", "--task", "wave"), ("config", "show"), ("doctor", "--no-network"),
                    ("eval", "--robot", "kinematic", "--task", "wave")):
        result = vla(*command, cwd=lab)
        assert result.returncode == 2, (command, result.stderr)
        assert "vla.yaml: client.merge: expected one of latest, weighted_average, rtc, got 'rtcc'" in result.stderr, command


def test_a_run_whose_requests_all_fail_exits_1_with_the_servers_message_and_report_counts_them(policy_server, tmp_path):
    import json

    lab = make_lab(tmp_path)
    server = policy_server(TimedPolicy(TimedPolicyConfig(horizon=40, fail_task="wave")))
    result = vla("run", "--arm", "bench-arm", "--task", "wave", "--policy-url", server.url, "--duration", "30", cwd=lab)
    assert result.returncode == 1, result.stderr
    assert "refused all 10 requests so far" in result.stderr and "on purpose" in result.stderr, result.stderr
    assert "10 of 10 requests failed" in result.stdout and "errors" in result.stdout
    log = next((lab / "logs").glob("run_*.jsonl"))
    report = vla("report", str(log), cwd=lab)
    assert report.returncode == 0, report.stderr
    summary = json.loads(report.stdout[: report.stdout.rindex("}") + 1])
    assert summary["errors"] == 10 and summary["most_common_error"] and "on purpose" in summary["most_common_error_message"]
