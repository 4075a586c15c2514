"""vla.kinematics.so101 against MuJoCo's own kinematics of the simulated arm."""

from __future__ import annotations

import numpy as np
import pytest

from vla.config import SO101_JOINT_LIMITS
from vla.kinematics import so101


def test_forward_kinematics_matches_mujoco_tool_site_within_1mm(sim_robot):
    import mujoco

    model, data = sim_robot.model, sim_robot.data
    qadr = [model.joint(n).qposadr[0] for n in so101.JOINT_NAMES]
    site = model.site("tool").id
    rng = np.random.default_rng(1234)
    lo, hi = so101.JOINT_LIMITS[:, 0], so101.JOINT_LIMITS[:, 1]
    saved = data.qpos.copy()
    errors = []
    try:
        for _ in range(1000):
            q = rng.uniform(lo, hi)
            data.qpos[qadr] = q
            mujoco.mj_kinematics(model, data)
            errors.append(np.linalg.norm(so101.forward_kinematics(q) - data.site_xpos[site]))
    finally:
        data.qpos[:] = saved
        mujoco.mj_forward(model, data)
    assert max(errors) < 1e-3, f"worst FK error {max(errors) * 1000:.3f} mm"


def test_zero_pose_is_the_documented_tool_point():
    assert np.allclose(so101.forward_kinematics(np.zeros(6)), [0.391, 0.0, 0.227], atol=1.5e-3)


def test_limits_agree_with_the_lab_config_and_the_simulated_joints(sim_robot):
    model = sim_robot.model
    for name, (lo, hi) in SO101_JOINT_LIMITS.items():
        i = so101.JOINT_NAMES.index(name)
        assert so101.JOINT_LIMITS[i] == pytest.approx((lo, hi))
        assert tuple(model.joint(name).range) == pytest.approx((lo, hi), abs=1e-5)
        assert tuple(model.actuator(name).ctrlrange) == pytest.approx((lo, hi), abs=1e-5)


def test_inverse_kinematics_reaches_random_reachable_points():
    rng = np.random.default_rng(7)
    lo, hi = so101.JOINT_LIMITS[:, 0], so101.JOINT_LIMITS[:, 1]
    for _ in range(50):
        q_true = rng.uniform(lo * 0.8, hi * 0.8)
        target = so101.forward_kinematics(q_true)
        q0 = np.clip(q_true + rng.normal(0, 0.3, 6), lo, hi)
        q, pos_err, _ = so101.inverse_kinematics(target, q0, full_output=True, max_iter=200)
        assert pos_err < 1e-3
        assert np.linalg.norm(so101.forward_kinematics(q) - target) < 1e-3
        assert np.all(q >= lo - 1e-9) and np.all(q <= hi + 1e-9)
        assert q[5] == q0[5]  # the gripper is not the IK's to move


def test_inverse_kinematics_points_the_gripper_straight_down_over_the_table():
    from vla_sim.expert import topdown

    rng = np.random.default_rng(3)
    for _ in range(30):
        r, a, z = rng.uniform(0.14, 0.23), rng.uniform(-0.7, 0.7), rng.uniform(0.012, 0.05)
        target = [0.0388 + r * np.cos(a), r * np.sin(a), z]
        yaw = a + rng.uniform(-0.7, 0.7)
        guess = np.array([-a, 0.15, 0.25, 1.25, 0.0, 0.0])
        q, pos_err, rot_err = so101.inverse_kinematics(target, guess, topdown(yaw), full_output=True)
        assert pos_err < 1e-3 and rot_err < 0.02
        _, rot = so101.tool_pose(q)
        assert rot[2, 0] < -0.999  # approach axis points down


@pytest.mark.parametrize("bad", [np.zeros(4), np.full(6, np.nan)])
def test_bad_joint_vectors_are_refused_with_a_clear_error(bad):
    with pytest.raises(ValueError, match="joint positions"):
        so101.forward_kinematics(bad)
