"""The SO-101 description: its numbers against the published URDF, its kinematics, its safety property."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from vla.description import get_description
from vla.description.rotations import rpy_to_matrix, top_down
from vla.testing import check_plugin
from vla.testing.safety import check_safety_property
from vla_so101_description.description import SO101

K = SO101.kinematics


def urdf_tool_point(path, q: dict[str, float], tip: str = "gripper_frame_link") -> np.ndarray:
    """The position of link ``tip`` by walking the URDF's joints from the root (an independent
    reading of the published file: origin xyz/rpy, then a turn about the joint's axis)."""
    root = ET.parse(path).getroot()
    by_child = {j.find("child").get("link"): j for j in root.findall("joint")}
    chain = []
    link = tip
    while link in by_child:
        joint = by_child[link]
        chain.append(joint)
        link = joint.find("parent").get("link")
    t = np.eye(4)
    for joint in reversed(chain):
        origin = joint.find("origin")
        step = np.eye(4)
        step[:3, :3] = rpy_to_matrix([float(v) for v in origin.get("rpy", "0 0 0").split()])
        step[:3, 3] = [float(v) for v in origin.get("xyz", "0 0 0").split()]
        t = t @ step
        if joint.get("type") == "revolute":
            axis = np.array([float(v) for v in joint.find("axis").get("xyz").split()])
            angle = q.get(joint.get("name"), 0.0)
            kx = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
            turn = np.eye(4)
            turn[:3, :3] = np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx
            t = t @ turn
    return t[:3, 3]


def test_registers_the_kinematic_test_arm_and_conforms():
    assert check_plugin("vla-so101-description") == {"robots": ["kinematic"]}
    assert get_description("kinematic") is SO101
    assert get_description("sim") is SO101 and get_description("so101") is SO101


def test_limits_are_the_published_urdf_limits():
    root = ET.parse(SO101.model_path("urdf")).getroot()
    limits = {j.get("name"): j.find("limit") for j in root.findall("joint") if j.get("type") == "revolute"}
    for name, (lo, hi) in SO101.limits_by_name().items():
        published = (float(limits[name].get("lower")), float(limits[name].get("upper")))
        if name == "wrist_roll":
            # the URDF centres the roll's travel on its origin's 0.0487 rad offset; vla centres the
            # same span on zero, where LeRobot's full-turn calibration reads zero (constants.py)
            assert published[1] - published[0] == pytest.approx(hi - lo, abs=1e-4)
            assert (published[0] + published[1]) / 2 == pytest.approx(0.0486795, abs=1e-4)
        else:
            assert published == pytest.approx((lo, hi)), name


def test_forward_kinematics_is_the_published_urdf_within_a_millimetre():
    path = SO101.model_path("urdf")
    rng = np.random.default_rng(11)
    worst = 0.0
    for _ in range(300):
        q = rng.uniform(SO101.lower, SO101.upper)
        ours = K.forward_kinematics(q)
        theirs = urdf_tool_point(path, dict(zip(SO101.joint_names, q)))
        worst = max(worst, float(np.linalg.norm(ours - theirs)))
    assert worst < 1e-3, f"worst difference from the URDF: {worst * 1000:.2f} mm"


def test_zero_pose_is_the_documented_tool_point():
    assert np.allclose(K.forward_kinematics(np.zeros(6)), [0.391, 0.0, 0.227], atol=1.5e-3)


def test_inverse_kinematics_reaches_random_reachable_points():
    rng = np.random.default_rng(7)
    lo, hi = SO101.lower, SO101.upper
    for _ in range(50):
        q_true = rng.uniform(lo * 0.8, hi * 0.8)
        target = K.forward_kinematics(q_true)
        q0 = np.clip(q_true + rng.normal(0, 0.3, 6), lo, hi)
        q, pos_err, _ = K.inverse_kinematics(target, q0, full_output=True, max_iter=200)
        assert pos_err < 1e-3
        assert np.linalg.norm(K.forward_kinematics(q) - target) < 1e-3
        assert np.all(q >= lo - 1e-9) and np.all(q <= hi + 1e-9)
        assert q[5] == q0[5]  # the gripper is not the IK's to move


def test_inverse_kinematics_points_the_gripper_straight_down_over_the_table():
    rng = np.random.default_rng(3)
    for _ in range(30):
        r, a, z = rng.uniform(0.14, 0.23), rng.uniform(-0.7, 0.7), rng.uniform(0.012, 0.05)
        target = [0.0388 + r * np.cos(a), r * np.sin(a), z]
        yaw = a + rng.uniform(-0.7, 0.7)
        guess = np.array([-a, 0.15, 0.25, 1.25, 0.0, 0.0])
        q, pos_err, rot_err = K.inverse_kinematics(target, guess, top_down(yaw), full_output=True)
        assert pos_err < 1e-3 and rot_err < 0.02
        _, rot = K.tool_pose(q)
        assert rot[2, 0] < -0.999  # approach axis points down


@pytest.mark.parametrize("bad", [np.zeros(4), np.full(6, np.nan)])
def test_bad_joint_vectors_are_refused_with_a_clear_error(bad):
    with pytest.raises(ValueError, match="joint positions"):
        K.forward_kinematics(bad)


def test_description_helpers():
    assert SO101.index("gripper") == 5
    assert SO101.outside_limits([0, 0, 2.0, 0, 0, 0]) == ["elbow_flex"]
    assert SO101.gripper_fraction(SO101.gripper.closed) == pytest.approx(0.0)
    assert SO101.gripper_fraction(SO101.gripper.open) == pytest.approx(1.0)
    safety = SO101.default_safety()
    assert list(safety.joints) == list(SO101.joint_names) and safety.workspace is not None
    assert safety.gripper.min == pytest.approx(-0.174533)
    assert np.all(SO101.clamp([9, -9, 0, 0, 0, 0]) == [SO101.upper[0], SO101.lower[1], 0, 0, 0, 0])


def test_no_command_leaves_the_so101_limits():
    check_safety_property(SO101)
