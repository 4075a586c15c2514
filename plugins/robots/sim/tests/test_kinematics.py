"""The SO-101 description's kinematics and limits against MuJoCo's own model of the simulated arm."""

from __future__ import annotations

import numpy as np
import pytest

from vla_so101_description.description import SO101


def test_forward_kinematics_matches_mujoco_tool_site_within_1mm(sim_robot):
    import mujoco

    model, data = sim_robot.model, sim_robot.data
    qadr = [model.joint(n).qposadr[0] for n in SO101.joint_names]
    site = model.site("tool").id
    rng = np.random.default_rng(1234)
    lo, hi = SO101.lower, SO101.upper
    saved = data.qpos.copy()
    errors = []
    try:
        for _ in range(1000):
            q = rng.uniform(lo, hi)
            data.qpos[qadr] = q
            mujoco.mj_kinematics(model, data)
            errors.append(np.linalg.norm(SO101.kinematics.forward_kinematics(q) - data.site_xpos[site]))
    finally:
        data.qpos[:] = saved
        mujoco.mj_forward(model, data)
    assert max(errors) < 1e-3, f"worst FK error {max(errors) * 1000:.3f} mm"


def test_the_simulated_joints_have_the_description_limits(sim_robot):
    model = sim_robot.model
    for name, (lo, hi) in SO101.limits_by_name().items():
        assert tuple(model.joint(name).range) == pytest.approx((lo, hi), abs=1e-5)
        assert tuple(model.actuator(name).ctrlrange) == pytest.approx((lo, hi), abs=1e-5)
