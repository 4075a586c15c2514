"""The SO-100 plugin: added without touching core, it conforms, keeps its own limits and drives the
Feetech bus through LeRobot's so100_follower (an emulated bus: a physical arm cannot run here)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vla.description import get_description
from vla.description.rotations import rpy_to_matrix, top_down
from vla.testing import check_plugin
from vla.testing.safety import check_safety_property
from vla_so100 import constants as c
from vla_so100.config import SO100Config
from vla_so100.description import SO100

VLA = str(Path(sys.executable).parent / "vla")
K = SO100.kinematics


def test_conforms_and_is_listed_with_the_robots():
    assert check_plugin("vla-so100") == {"robots": ["so100"]}
    assert get_description("so100") is SO100
    listed = subprocess.run([VLA, "plugins", "list", "--kind", "robots"], capture_output=True, text=True, check=True)
    assert any(line.split()[:4] == ["vla-so100", "0.1.0", "robots", "so100"] for line in listed.stdout.splitlines())


def test_its_own_limits_are_the_urdf_ranges_around_mid_travel():
    for (name, *_, (lo, hi)), (vlo, vhi) in zip(c.URDF_JOINTS, SO100.limits):
        assert vhi - vlo == pytest.approx(hi - lo) and vlo == pytest.approx(-vhi), name
    assert SO100.limits_by_name()["shoulder_lift"] == pytest.approx((-1.75, 1.75))  # URDF 0..3.5
    assert SO100.limits_by_name()["gripper"] == pytest.approx((-0.2, 2.0))
    assert SO100.limits != get_description("so101").limits


def urdf_walk(q) -> np.ndarray:
    """The tool point by walking the URDF's joints directly (Rodrigues turns about each axis)."""
    yaw = c.BASE_YAW
    t = np.eye(4)
    t[:3, :3] = [[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]]
    for (name, xyz, rpy, axis, _), angle in zip(c.URDF_JOINTS, np.asarray(q[:5]) + np.asarray(c.ZERO_OFFSETS)):
        step = np.eye(4)
        step[:3, :3], step[:3, 3] = rpy_to_matrix(rpy), xyz
        a = np.asarray(axis, float)
        kx = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
        turn = np.eye(4)
        turn[:3, :3] = np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx
        t = t @ step @ turn
    return (t @ np.append(c.TOOL_XYZ, 1.0))[:3]


def test_forward_kinematics_walks_the_urdf_chain():
    rng = np.random.default_rng(5)
    for _ in range(200):
        q = rng.uniform(SO100.lower, SO100.upper)
        np.testing.assert_allclose(K.forward_kinematics(q), urdf_walk(q), atol=1e-9)
    p, r = K.tool_pose(np.zeros(6))
    assert p[0] > 0.35 and abs(p[1]) < 1e-6 and p[2] > 0.2  # mid-travel: reaching forward, in vla's x
    assert r[0, 0] > 0.95  # the jaws point forward


def test_it_reaches_the_table_top_down_with_inverse_kinematics():
    rng = np.random.default_rng(0)
    for _ in range(30):
        r, a, z = rng.uniform(0.15, 0.25), rng.uniform(-0.6, 0.6), rng.uniform(0.01, 0.06)
        target = [r * math.cos(a), r * math.sin(a), z]
        guesses = [np.zeros(6), np.array([a, 0.5, 0.5, -0.5, 0, 0]), np.array([a, -0.5, 0.5, 0.5, 0, 0]),
                   np.array([a, 0.5, -0.5, 0.5, 0, 0])]
        best = min((K.inverse_kinematics(target, g, top_down(a), full_output=True, max_iter=200) for g in guesses),
                   key=lambda s: s[1] + 0.1 * s[2])
        q, pos_err, rot_err = best
        assert pos_err < 1e-3 and rot_err < 0.05, (target, pos_err, rot_err)
        assert SO100.outside_limits(q) == []


def test_no_command_leaves_the_so100_limits():
    check_safety_property(SO100)


def test_vla_init_writes_so100_arm_files_that_vla_doctor_accepts(tmp_path):
    subprocess.run([VLA, "init", str(tmp_path / "lab"), "--robot", "so100"], check=True, capture_output=True)
    from vla.config import load_safety

    safety = load_safety(tmp_path / "lab" / "safety" / "so100.yaml")
    assert (safety.joints["shoulder_lift"].min, safety.joints["shoulder_lift"].max) == pytest.approx((-1.75, 1.75))
    assert (safety.gripper.min, safety.gripper.max) == pytest.approx((-0.2, 2.0))
    doctor = subprocess.run([VLA, "--config", str(tmp_path / "lab" / "vla.yaml"), "doctor", "--no-network"],
                            capture_output=True, text=True)
    arm = [line for line in doctor.stdout.splitlines() if " arm arm01" in line]
    assert arm and "robot so100, config checked by SO100Config" in arm[0] and not any("FAIL" in x for x in arm)


# A calibration as `lerobot-calibrate` writes it: offsets make the mid pose read 2047.
CALIBRATION = {
    "shoulder_pan": {"id": 1, "drive_mode": 0, "homing_offset": 0, "range_min": 700, "range_max": 3400},
    "shoulder_lift": {"id": 2, "drive_mode": 0, "homing_offset": 0, "range_min": 900, "range_max": 3200},
    "elbow_flex": {"id": 3, "drive_mode": 0, "homing_offset": 0, "range_min": 1000, "range_max": 3100},
    "wrist_flex": {"id": 4, "drive_mode": 0, "homing_offset": 0, "range_min": 950, "range_max": 3150},
    "wrist_roll": {"id": 5, "drive_mode": 0, "homing_offset": 0, "range_min": 0, "range_max": 4095},
    "gripper": {"id": 6, "drive_mode": 0, "homing_offset": 0, "range_min": 2000, "range_max": 3400},
}


@pytest.mark.lerobot
def test_the_driver_reads_and_commands_so100_radians_over_the_feetech_protocol(tmp_path):
    from vla_so100.robot import SO100Robot
    from vla_so101.testing import FakeFeetechBus

    (tmp_path / "arm01.json").write_text(json.dumps(CALIBRATION))
    with FakeFeetechBus(positions={cal["id"]: 2047 for cal in CALIBRATION.values()}) as bus:
        with SO100Robot(SO100Config(port=bus.port, id="arm01", calibration_dir=str(tmp_path), cameras={},
                                    reply_timeout_ms=1000.0)) as robot:
            assert robot.joint_names == SO100.joint_names and robot.robot_type == "so100_follower"
            state = robot.observe()["observation.state"]
            assert np.all(np.abs(state[:5]) < 0.05)  # the mid pose reads zero
            target = np.array([0.4, -0.6, 0.8, -0.3, 1.0, SO100.gripper.open])
            robot.act(target)
            after = robot.observe()["observation.state"]
            np.testing.assert_allclose(after[:5], target[:5], atol=2 * math.pi / 4096)
            grip = bus.servo(6)
            assert grip.actual == CALIBRATION["gripper"]["range_max"]  # fully open: the calibrated end


def test_calibration_status_reads_the_calibration_file_without_connecting(tmp_path):
    from vla_so100.robot import SO100Robot

    robot = SO100Robot(SO100Config(id="arm07", calibration_dir=str(tmp_path)))
    status = robot.calibration_status()
    assert not status.calibrated and "arm07.json" in status.detail and "vla robot calibrate" in status.detail
    entry = {"id": 1, "drive_mode": 0, "homing_offset": 0, "range_min": 700, "range_max": 3300}
    (tmp_path / "arm07.json").write_text(json.dumps({j: dict(entry) for j in robot.joint_names}))
    status = robot.calibration_status()
    assert status.calibrated and str(tmp_path / "arm07.json") in status.detail
    broken = {j: dict(entry) for j in robot.joint_names}
    broken["gripper"]["range_max"] = 100  # below range_min: a calibration that went wrong
    del broken["wrist_roll"]
    (tmp_path / "arm07.json").write_text(json.dumps(broken))
    status = robot.calibration_status()
    assert not status.calibrated and "wrist_roll" in status.detail
    del broken["gripper"]
    broken["wrist_roll"] = dict(entry)
    broken["gripper"] = dict(entry, range_max=100)
    (tmp_path / "arm07.json").write_text(json.dumps(broken))
    assert "gripper" in robot.calibration_status().detail and not robot.calibration_status().calibrated
    (tmp_path / "arm07.json").write_text("{not json")
    assert "cannot be read" in robot.calibration_status().detail
