"""Calibration poses from a robot description: inside every safety limit, spread out, safe legs."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("vla_so101_description")

from vla.calibration.poses import PoseRegion, _leg_ok, calibration_poses, in_region, travel_plan  # noqa: E402
from vla.client.safety import SafetyLayer  # noqa: E402
from vla_so101_description.description import SO101  # noqa: E402


@pytest.fixture(scope="module")
def safety():
    return SafetyLayer(SO101.default_safety(), SO101.joint_names, SO101.kinematics.forward_kinematics)


def test_poses_meet_the_safety_limits_and_stay_in_the_region(safety):
    poses = calibration_poses(SO101, safety, n=30)
    assert len(poses) == 30
    region = PoseRegion()
    for q in poses:
        assert safety.violations(q) == []
        assert not SO101.outside_limits(q)
        p = SO101.kinematics.forward_kinematics(q)
        assert in_region(p, region) and p[2] >= region.min_height  # above the table
        assert q[SO101.index("gripper")] == SO101.gripper.open


def test_poses_are_spread_out_in_all_three_directions(safety):
    pts = np.array([SO101.kinematics.forward_kinematics(q) for q in calibration_poses(SO101, safety, n=30)])
    extent = pts.max(axis=0) - pts.min(axis=0)
    assert extent[0] > 0.15 and extent[1] > 0.3 and extent[2] > 0.15
    dists = np.linalg.norm(pts[:, None] - pts[None], axis=2) + np.eye(len(pts))
    assert dists.min() > 0.02  # no two poses on top of each other


def test_a_tighter_safety_box_is_obeyed_and_too_tight_a_box_is_a_clear_error():
    from vla.config import WorkspaceBox

    cfg = SO101.default_safety()
    cfg.workspace = WorkspaceBox(min=[0.15, -0.1, 0.0], max=[0.3, 0.1, 0.2])
    tight = SafetyLayer(cfg, SO101.joint_names, SO101.kinematics.forward_kinematics)
    for q in calibration_poses(SO101, tight, n=10):
        p = SO101.kinematics.forward_kinematics(q)
        assert np.all(p >= [0.15, -0.1, 0.0]) and np.all(p <= [0.3, 0.1, 0.2])
    cfg.workspace = WorkspaceBox(min=[0.15, -0.01, 0.0], max=[0.16, 0.01, 0.02])  # below the region's 5 cm
    with pytest.raises(ValueError, match="random poses put the tool point in the calibration region"):
        calibration_poses(SO101, SafetyLayer(cfg, SO101.joint_names, SO101.kinematics.forward_kinematics), n=10)


def test_the_travel_plan_visits_every_pose_by_legs_that_stay_above_the_table(safety):
    poses = calibration_poses(SO101, safety, n=30)
    home = np.asarray(SO101.home)
    plan = travel_plan(SO101, home, poses)
    visited = [q for q, is_pose in plan if is_pose]
    assert len(visited) == 30
    assert {tuple(q) for q in visited} == {tuple(q) for q in poses}
    here = home
    for q, _ in plan:
        assert _leg_ok(SO101, here, q, PoseRegion())
        here = q
