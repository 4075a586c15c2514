"""The calibration marker, the true camera, the distractor cube and the lighting factor.

All on the real MuJoCo scene: the marker must change nothing but pixels, camera_truth must be
MuJoCo's own camera, and the variations must leave each seed's task layout as it was.
"""

from __future__ import annotations

import numpy as np
import pytest

from vla_sim.config import SimConfig
from vla_sim.robot import SimRobot
from vla_sim.scene import DISTRACTOR, MARKER
from vla_sim.tasks import ENV_STATE_DIM, sample_distractor, sample_layout

from .conftest import run_expert_episode


def magenta(img) -> np.ndarray:
    img = img.astype(int)
    return (img[..., 0] - img[..., 1] > 80) & (img[..., 2] - img[..., 1] > 80)


def orange(img) -> np.ndarray:
    import cv2

    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    return (hsv[..., 0] >= 8) & (hsv[..., 0] <= 18) & (hsv[..., 1] > 150) & (hsv[..., 2] > 100)


@pytest.fixture(scope="module")
def marked():
    robot = SimRobot(SimConfig(marker=True, cameras=["front"], image_width=320, image_height=240))
    yield robot
    robot.close()


# ------------------------------------------------------------------ camera truth


def test_camera_truth_is_mujocos_own_front_camera(marked):
    import mujoco

    import vla_sim

    truth = vla_sim.camera_truth("front", 320, 240)
    m, d = marked.model, marked.data
    mujoco.mj_forward(m, d)
    cam = m.camera("front").id
    np.testing.assert_allclose(truth.position, d.cam_xpos[cam], atol=1e-9)
    xmat = d.cam_xmat[cam].reshape(3, 3)  # columns: MuJoCo's camera x, y, z in the world
    np.testing.assert_allclose(truth.R_array, np.stack([xmat[:, 0], -xmat[:, 1], -xmat[:, 2]]), atol=1e-9)
    assert truth.source == "sim-truth"
    f = truth.K_array[1, 1]
    assert np.degrees(2 * np.arctan(120 / f)) == pytest.approx(m.cam_fovy[cam])
    np.testing.assert_allclose(marked.camera_intrinsics("front"), truth.K_array)
    with pytest.raises(ValueError, match="wrist camera moves"):
        vla_sim.camera_truth("wrist")


def test_the_marker_centroid_is_where_camera_truth_projects_the_tool_site(marked):
    """Where nothing hides the ball, the rendering and the camera model agree to a fraction of a pixel."""
    import mujoco

    import vla_sim
    from vla.calibration.marker import detect_marker

    truth = vla_sim.camera_truth("front", 320, 240)
    marked.reset("lift", 0)
    m, d = marked.model, marked.data
    qadr = [m.joint(n).qposadr[0] for n in marked.joint_names]
    errors = []
    for q in ([0.0, -0.3, 0.2, 0.0, 0.0, 1.2], [0.4, -0.5, 0.6, 0.2, 0.5, 1.2], [-0.4, 0.0, 0.0, -0.4, 0.0, 1.2]):
        d.qpos[qadr] = q
        mujoco.mj_forward(m, d)
        det = detect_marker(marked.render("front"))
        if det.found and det.roundness > 0.8:
            errors.append(np.hypot(*(np.array(det.uv) - truth.project(marked.tool_point()[None])[0])))
    assert errors and max(errors) < 0.75, errors


def test_the_marker_is_visual_only_and_absent_unless_asked_for(marked):
    import mujoco

    plain = SimRobot(SimConfig(cameras=["front"], image_width=320, image_height=240))
    try:
        assert mujoco.mj_name2id(plain.model, mujoco.mjtObj.mjOBJ_GEOM, MARKER) == -1
        g = marked.model.geom(MARKER)
        assert g.contype[0] == 0 and g.conaffinity[0] == 0
        # the same commands give the same motion, contacts and all, with and without it
        trajectories = []
        for robot in (plain, marked):
            robot.reset("pick_place", 4)
            states = []
            for k in range(90):
                robot.act(np.asarray(robot.description.home) + [0.3 * np.sin(k / 15), 0.6, -0.4, 0.2, 0.0, 0.5])
                states.append(robot.environment_state().copy())
                states.append(robot.joint_positions().copy())
            trajectories.append(np.concatenate(states))
        np.testing.assert_array_equal(trajectories[0], trajectories[1])
        plain.reset("lift", 0)
        marked.reset("lift", 0)
        assert magenta(plain.render("front")).sum() == 0
        assert magenta(marked.render("front")).sum() > 20
    finally:
        plain.close()


def test_show_calibration_marker_turns_it_on_in_a_running_scene():
    robot = SimRobot(SimConfig(cameras=["front"], image_width=160, image_height=120))
    try:
        robot.reset("lift", 2)
        before = robot.environment_state().copy()
        assert magenta(robot.render("front")).sum() == 0
        robot.show_calibration_marker(True)
        assert magenta(robot.render("front")).sum() > 0
        np.testing.assert_allclose(robot.environment_state(), before, atol=1e-6)  # same episode, same layout
    finally:
        robot.close()


# ------------------------------------------------------------------ benchmark variations


@pytest.mark.parametrize("task", ["pick_place", "push_left", "lift"])
def test_the_distractor_cube_leaves_the_layout_alone_and_keeps_clear_of_it(task):
    robot = SimRobot(SimConfig(distractor=True, cameras=["front"]))
    plain = SimRobot(SimConfig(cameras=["front"]))
    try:
        positions = set()
        for seed in range(6):
            robot.reset(task, seed)
            plain.reset(task, seed)
            env = robot.environment_state()
            assert env.shape == (ENV_STATE_DIM,)  # the distractor is not in the privileged state
            np.testing.assert_allclose(env, plain.environment_state(), atol=2e-3)  # same layout for the seed
            layout = sample_layout(task, seed)
            x, y, _ = sample_distractor(task, seed, layout)
            a = robot.model.joint(DISTRACTOR).qposadr[0]
            np.testing.assert_allclose(robot.data.qpos[a : a + 2], (x, y), atol=2e-3)
            for cx, cy, _yaw in layout.cubes.values():
                assert np.hypot(x - cx, y - cy) >= 0.07
            assert np.hypot(x - layout.bowl[0], y - layout.bowl[1]) >= 0.088
            positions.add((round(x, 4), round(y, 4)))
            assert orange(robot.render("front")).sum() > 15  # in view
            assert orange(plain.render("front")).sum() == 0
        assert len(positions) == 6
        assert sample_distractor(task, 3, sample_layout(task, 3)) == sample_distractor(task, 3, sample_layout(task, 3))
    finally:
        robot.close()
        plain.close()


def test_the_expert_still_solves_a_task_with_the_distractor(expert):
    robot = SimRobot(SimConfig(distractor=True))
    try:
        assert all(run_expert_episode(robot, expert, task, 1) for task in ("lift", "push_left", "pick_place"))
    finally:
        robot.close()


def test_lighting_scales_every_light_by_a_per_seed_factor():
    robot = SimRobot(SimConfig(lighting=[0.7, 1.3], cameras=["front"]))
    plain = SimRobot(SimConfig(cameras=["front"]))
    try:
        factors, brightness = {}, {}
        for seed in range(8):
            robot.reset("lift", seed)
            factors[seed] = robot.lighting_factor
            brightness[seed] = robot.render("front").mean()
            np.testing.assert_allclose(robot.model.vis.headlight.diffuse, plain.model.vis.headlight.diffuse * robot.lighting_factor, atol=1e-6)
        assert all(0.7 <= f <= 1.3 for f in factors.values()) and len(set(factors.values())) == 8
        robot.reset("lift", 3)
        assert robot.lighting_factor == factors[3]  # the same seed, the same light
        order = sorted(factors, key=factors.get)
        assert brightness[order[0]] < brightness[order[-1]]  # dimmer light, darker frame
        plain.reset("lift", 0)
        assert plain.lighting_factor == 1.0
    finally:
        robot.close()
        plain.close()


@pytest.mark.parametrize("bad", [[1.3, 0.7], [0.0, 1.0], [1.0], "bright", [True, 1.2]])
def test_a_bad_lighting_range_is_refused(bad):
    with pytest.raises(ValueError, match="lighting must be"):
        SimConfig(lighting=bad)


def test_the_options_come_from_an_arm_file_through_the_plugins_config_class():
    from vla.config import structure

    cfg = structure(SimConfig, {"distractor": True, "lighting": [0.8, 1.2], "marker": False}, "arm.yaml", "config")
    assert cfg.distractor and cfg.lighting == [0.8, 1.2]
    assert SimConfig().distractor is False and SimConfig().lighting is None and SimConfig().marker is False


# ------------------------------------------------------------------ action noise (DART recordings)


def _hold_still(robot: SimRobot, seed: int, ticks: int = 30) -> np.ndarray:
    """Joint positions while the arm is commanded to stay where the episode put it."""
    robot.reset("lift", seed)
    target = robot.joint_positions().astype(float)
    seen = []
    for _ in range(ticks):
        robot.act(target)
        seen.append(robot.joint_positions().copy())
    return np.asarray(seen)


def test_action_noise_drifts_the_arm_joints_per_seed_and_leaves_the_gripper_alone():
    plain = SimRobot(SimConfig(cameras=["front"]))
    noisy = SimRobot(SimConfig(cameras=["front"], action_noise=0.05, action_noise_s=0.3))
    try:
        still = _hold_still(plain, 4)
        drift = _hold_still(noisy, 4)
        off = np.abs(drift - still)
        assert off[:, :-1].max() > 0.02  # the arm wanders a few centimetres' worth...
        assert off[:, -1].max() < 1e-3  # ...the gripper is as commanded
        np.testing.assert_array_equal(_hold_still(noisy, 4), drift)  # the same seed, the same noise
        assert np.abs(_hold_still(noisy, 5) - drift)[:, :-1].max() > 1e-3
        assert _hold_still(plain, 4)[:, :-1].std(axis=0).max() < 1e-3  # no noise: the arm holds still
    finally:
        plain.close()
        noisy.close()


def test_the_expert_steers_back_and_still_lifts_under_action_noise():
    from vla_sim.config import ScriptedConfig
    from vla_sim.expert import ScriptedPolicy

    # as bench/distill_act.py records: 10 Hz, chunks of 10 asked for every 5 ticks
    robot = SimRobot(SimConfig(cameras=["front"], control_hz=10, action_noise=0.02))
    expert = ScriptedPolicy(ScriptedConfig(control_hz=10, horizon=10))
    try:
        results = [run_expert_episode(robot, expert, "lift", seed, execute=5) for seed in range(6)]
        assert sum(results) >= 5, results
    finally:
        robot.close()


def test_a_negative_action_noise_is_refused():
    with pytest.raises(ValueError, match="action_noise"):
        SimConfig(action_noise=-0.1)
