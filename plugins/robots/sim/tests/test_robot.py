"""The simulated arm as a vla robot: observations, actions, timing, seeding, rendering."""

from __future__ import annotations

import numpy as np
import pytest

from vla.robot import EpisodicRobot
from vla_sim.config import SimConfig
from vla_sim.robot import HOME_Q
from vla_sim.tasks import ENV_STATE_DIM, TASKS


def test_it_is_an_episodic_robot_with_the_so101_joints(sim_robot):
    assert isinstance(sim_robot, EpisodicRobot)
    assert sim_robot.joint_names == ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
    assert sim_robot.cameras == {"front": (224, 224, 3), "wrist": (224, 224, 3)}
    assert sim_robot.control_hz == 30.0


def test_observation_keys_shapes_and_units(sim_robot):
    sim_robot.reset("pick_place", 1)
    obs = sim_robot.observe()
    assert set(obs) == {
        "observation.state",
        "observation.environment_state",
        "observation.images.front",
        "observation.images.wrist",
        "task",
    }
    assert obs["task"] == TASKS["pick_place"].goal
    state = obs["observation.state"]
    assert state.dtype == np.float32 and state.shape == (6,)
    np.testing.assert_allclose(state, HOME_Q, atol=0.02)  # radians, the home pose
    env = obs["observation.environment_state"]
    assert env.dtype == np.float32 and env.shape == (ENV_STATE_DIM,)
    for name in ("front", "wrist"):
        img = obs[f"observation.images.{name}"]
        assert img.dtype == np.uint8 and img.shape == (224, 224, 3)
        assert img.std() > 10  # a scene, not a blank frame


def test_front_camera_sees_the_red_cube_where_it_was_placed(sim_robot):
    sim_robot.reset("pick_place", 2)
    img = sim_robot.render("front").astype(int)
    red = (img[..., 0] > 150) & (img[..., 1] < 80) & (img[..., 2] < 80)
    assert red.sum() > 20
    # move the cube off the table's visible area: the red blob disappears (RGB order, not BGR)
    adr = sim_robot.model.joint("red_cube").qposadr[0]
    sim_robot.data.qpos[adr : adr + 3] = (2.0, 2.0, 0.015)
    import mujoco

    mujoco.mj_forward(sim_robot.model, sim_robot.data)
    img = sim_robot.render("front").astype(int)
    assert ((img[..., 0] > 150) & (img[..., 1] < 80) & (img[..., 2] < 80)).sum() < 5


def test_act_advances_one_control_period_and_tracks_the_command(sim_robot):
    sim_robot.reset("lift", 0)
    target = HOME_Q + np.array([0.2, 0.1, -0.1, 0.1, 0.3, 0.5])
    for _ in range(30):
        sim_robot.act(target)
    assert sim_robot.elapsed_s == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(sim_robot.joint_positions(), target, atol=0.01)


def test_commands_beyond_the_limits_are_clamped_to_them(sim_robot):
    sim_robot.reset("lift", 0)
    q = HOME_Q.copy()
    q[4] = 10.0
    for _ in range(60):
        sim_robot.act(q)
    assert sim_robot.joint_positions()[4] <= 2.79253 + 0.01


@pytest.mark.parametrize("bad", [np.zeros(5), np.full(6, np.inf), [[0.0] * 6]])
def test_bad_actions_are_refused_and_the_arm_does_not_move(sim_robot, bad):
    sim_robot.reset("lift", 0)
    before = sim_robot.joint_positions().copy()
    t = sim_robot.elapsed_s
    with pytest.raises(ValueError, match="sim act"):
        sim_robot.act(bad)
    assert sim_robot.elapsed_s == t
    np.testing.assert_array_equal(sim_robot.joint_positions(), before)


def test_same_seed_same_scene_and_goal_text_works_as_task(sim_robot):
    sim_robot.reset("push_left", 42)
    a = sim_robot.environment_state()
    sim_robot.reset(TASKS["push_left"].goal, 42)
    np.testing.assert_array_equal(sim_robot.environment_state(), a)
    sim_robot.reset("push_left", 43)
    assert not np.allclose(sim_robot.environment_state(), a)
    assert sim_robot.max_episode_s == TASKS["push_left"].max_episode_s


def test_unknown_task_and_bad_config_are_refused():
    from vla_sim.robot import SimRobot

    with pytest.raises(ValueError, match="unknown sim task"):
        SimRobot(SimConfig(task="fold laundry"))
    with pytest.raises(ValueError, match="cameras"):
        SimConfig(cameras=["top"])
    with pytest.raises(ValueError, match="control_hz"):
        SimConfig(control_hz=0)


def test_cameras_are_rendered_only_on_observe(sim_robot, monkeypatch):
    calls = []
    original = sim_robot.render
    monkeypatch.setattr(sim_robot, "render", lambda cam: calls.append(cam) or original(cam))
    sim_robot.reset("lift", 0)
    for _ in range(10):
        sim_robot.act(HOME_Q)
    sim_robot.observe(images=False)
    assert calls == []
    sim_robot.observe()
    assert calls == ["front", "wrist"]


def test_same_reset_and_commands_replay_the_same_episode(sim_robot, expert):
    """`vla eval` films episodes afterwards by replaying their commands, which needs determinism."""
    sim_robot.reset("pick_place", 7)
    commands = []
    for _ in range(4):
        for action in expert.infer([sim_robot.observe(images=False)])[0][:20]:
            sim_robot.act(action)
            commands.append(action)
    first = sim_robot.environment_state().copy(), sim_robot.joint_positions().copy()
    sim_robot.observe()  # rendering in between must not disturb the physics
    sim_robot.reset("pick_place", 7)
    for action in commands:
        sim_robot.act(action)
    np.testing.assert_array_equal(sim_robot.environment_state(), first[0])
    np.testing.assert_array_equal(sim_robot.joint_positions(), first[1])


def test_a_held_cube_stays_in_the_hand_through_a_fast_swing(sim_robot, expert):
    from .conftest import run_expert_episode

    assert run_expert_episode(sim_robot, expert, "lift", 12)
    q = sim_robot.joint_positions().astype(float)
    for pan in list(np.linspace(q[0], q[0] + 0.6, 8)) + list(np.linspace(q[0] + 0.6, q[0] - 0.3, 12)):
        target = q.copy()
        target[0] = pan
        sim_robot.act(target)
    for _ in range(15):
        sim_robot.act(target)
    assert sim_robot.success()  # still lifted and still touching the pads


def test_a_cube_pushed_off_the_table_is_an_incident_and_the_sim_needs_no_calibration(sim_robot):
    sim_robot.reset("lift", 0)
    assert sim_robot.incidents() == []
    assert sim_robot.calibration_status().calibrated
    d = sim_robot.data
    name, adr = next(iter(sim_robot._free_adr.items()))
    d.qpos[adr : adr + 3] = (0.9, 0.0, 0.3)  # beyond the table's edge: it falls to the floor
    for _ in range(300):
        sim_robot.act(sim_robot.joint_positions())
    assert sim_robot.incidents() == [f"{name} knocked off the table"]
