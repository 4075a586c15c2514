"""The safety layer: clamps, rejections, and the property that no command leaves the limits."""

import numpy as np
import pytest

from vla.client.safety import GRIPPER, JOINT_LIMIT, STEP_LIMIT, WORKSPACE, ChunkRejected, SafetyConfigError, SafetyLayer
from vla.config import JointLimit, SafetyConfig, WorkspaceBox
from vla.testing.safety import check_safety_property
from vla_so101_description.description import SO101

JOINT_NAMES = SO101.joint_names
forward_kinematics = SO101.kinematics.forward_kinematics


def so101_safety():
    return SO101.default_safety()


@pytest.fixture
def layer():
    return SafetyLayer(so101_safety(), JOINT_NAMES, forward_kinematics)


def test_joint_limits_and_gripper_range_are_clamped_and_counted(layer):
    last = np.zeros(6)
    cmd, clamps = layer.limit([0.0, 0.0, 0.0, 0.0, 0.1, 5.0], last)
    assert clamps == (GRIPPER, STEP_LIMIT)  # the gripper is clamped to 1.745, then the step to 0.2
    assert cmd[5] == pytest.approx(0.2)
    config = so101_safety()
    config.joints["wrist_roll"] = JointLimit(-0.5, 0.5, max_step=10.0)
    roll = SafetyLayer(config, JOINT_NAMES, forward_kinematics)
    cmd, clamps = roll.limit([0, 0, 0, 0, 2.0, 0], last)
    assert clamps == (JOINT_LIMIT,) and cmd[4] == pytest.approx(0.5)
    assert roll.counts[JOINT_LIMIT] == 1


def test_step_limit_bounds_every_joint_per_tick(layer):
    last = np.zeros(6)
    cmd, clamps = layer.limit([0.5, -0.5, 0.05, 0, 0, 0], last)
    assert STEP_LIMIT in clamps
    assert cmd[:3] == pytest.approx([0.2, -0.2, 0.05])


def test_workspace_box_pulls_the_tool_back_along_the_segment():
    config = so101_safety()
    for limit in config.joints.values():
        limit.max_step = 10.0
    config.workspace = WorkspaceBox(min=[-0.15, -0.45, 0.15], max=[0.5, 0.45, 0.45])
    layer = SafetyLayer(config, JOINT_NAMES, forward_kinematics)
    last = np.zeros(6)  # tool at z = 0.227
    target = np.array([0.0, 1.2, 0.0, 0.0, 0.0, 0.0])  # shoulder forward: the tool dives toward the table
    assert forward_kinematics(target)[2] < 0.15
    cmd, clamps = layer.limit(target, last)
    assert clamps == (WORKSPACE,)
    z = forward_kinematics(cmd)[2]
    assert 0.15 <= z < 0.152  # as far as the box allows, not just held
    assert 0 < cmd[1] < 1.2


def test_bad_chunks_are_rejected_whole_with_a_reason(layer):
    good = np.zeros((4, 6), np.float32)
    assert layer.check_chunk(good).shape == (4, 6)
    cases = {
        "non_finite": np.array([[0, 0, 0, 0, 0, np.nan]] * 3),
        "wrong_shape": np.zeros((4, 5)),
        "bad_dtype": np.array([["a"] * 6]),
        "bad_type": None,
    }
    for code, chunk in cases.items():
        with pytest.raises(ChunkRejected) as info:
            layer.check_chunk(chunk)
        assert info.value.code == code
    assert layer.counts["rejected_chunk"] == len(cases)
    with pytest.raises(ChunkRejected, match="wrong_shape"):
        layer.check_chunk(np.zeros((0, 6)))
    with pytest.raises(ChunkRejected, match="non_finite"):
        layer.check_chunk(np.full((2, 6), np.inf))


def test_limits_that_do_not_fit_the_robot_are_refused():
    with pytest.raises(SafetyConfigError, match="elbow_flex"):
        SafetyLayer(SafetyConfig(joints={n: JointLimit(-1, 1) for n in JOINT_NAMES if n != "elbow_flex"}),
                    JOINT_NAMES, forward_kinematics)
    with pytest.raises(SafetyConfigError, match="forward kinematics"):
        SafetyLayer(so101_safety(), JOINT_NAMES, None)


# ------------------------------------------------------------------ properties


def test_the_property_check_catches_a_broken_safety_layer(monkeypatch):
    """vla.testing.safety.check_safety_property, which every robot plugin runs with its own
    description (the SO-101's is in vla-so101-description's tests), can fail: with the step limit switched off it finds a command that breaks it."""
    from vla.client import safety

    def no_step_limit(self, target, last):
        return np.clip(np.asarray(target, float), self.lower, self.upper), ()

    monkeypatch.setattr(safety.SafetyLayer, "limit", no_step_limit)
    with pytest.raises(AssertionError):
        check_safety_property(SO101, examples=50, client_examples=5)
