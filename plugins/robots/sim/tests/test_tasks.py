"""Success checks say no on failed episodes, and yes only for the physical situation they name."""

from __future__ import annotations

import numpy as np
import pytest

from vla_sim.robot import HOME_Q
from vla_sim.tasks import TASK_IDS, TASKS, WorldState, check_success, resolve_task, sample_layout

from .conftest import run_expert_episode


@pytest.mark.parametrize("task", TASK_IDS)
def test_holding_the_arm_still_fails_every_task(sim_robot, task):
    sim_robot.reset(task, 11)
    start = sim_robot.environment_state()
    while not sim_robot.timed_out():
        sim_robot.act(HOME_Q)
        assert not sim_robot.success()
    assert sim_robot.elapsed_s == pytest.approx(TASKS[task].max_episode_s, abs=0.05)
    # nothing moved the objects either: the scene is at rest
    cubes = [slice(7 * i, 7 * i + 3) for i in range(3)]
    for s in cubes:
        np.testing.assert_allclose(sim_robot.environment_state()[s], start[s], atol=2e-3)


def test_a_cube_lifted_but_not_in_the_bowl_is_not_pick_place_success(sim_robot, expert):
    """The expert stopped once the red cube is in the air: lifted, carried, but not placed."""
    sim_robot.reset("pick_place", 3)
    lifted = False
    while not sim_robot.timed_out() and not lifted:
        for action in expert.infer([sim_robot.observe(images=False)])[0][:10]:
            sim_robot.act(action)
            if sim_robot.world_state().poses["red_cube"][2] > 0.05:
                lifted = True
                break
    assert lifted
    assert not sim_robot.success()


def test_success_does_not_latch_after_the_cube_leaves_the_goal(sim_robot, expert):
    assert run_expert_episode(sim_robot, expert, "lift", 4)
    for _ in range(30):  # open the gripper: the cube drops, and it is no longer lifted
        q = sim_robot.joint_positions().astype(float)
        q[5] = 1.2
        sim_robot.act(q)
    assert not sim_robot.success()


def _world(touching=frozenset(), **poses):
    base = {
        "red_cube": [0.2, 0.0, 0.015, 1, 0, 0, 0],
        "green_cube": [0.2, 0.1, 0.015, 1, 0, 0, 0],
        "yellow_cube": [0.25, -0.1, 0.015, 1, 0, 0, 0],
        "blue_bowl": [0.2, 0.15, 0.0, 1, 0, 0, 0],
        "line": [0.22, 0.0, 0.0, 1, 0, 0, 0],
    }
    base.update(poses)
    return WorldState({k: np.asarray(v, float) for k, v in base.items()}, {}, frozenset(touching))


def test_pick_place_check():
    assert check_success("pick_place", _world(red_cube=[0.2, 0.15, 0.019, 1, 0, 0, 0]))
    assert not check_success("pick_place", _world(red_cube=[0.2, 0.21, 0.015, 1, 0, 0, 0]))  # beside it
    assert not check_success("pick_place", _world(red_cube=[0.2, 0.15, 0.06, 1, 0, 0, 0]))  # above it
    held = frozenset({("red_cube", "fixed_jaw_pad")})
    assert not check_success("pick_place", _world(red_cube=[0.2, 0.15, 0.019, 1, 0, 0, 0], touching=held))


def test_push_left_check_needs_the_whole_cube_past_the_line():
    assert check_success("push_left", _world(green_cube=[0.2, -0.03, 0.015, 1, 0, 0, 0]))
    assert not check_success("push_left", _world(green_cube=[0.2, -0.01, 0.015, 1, 0, 0, 0]))  # on the line
    assert not check_success("push_left", _world(green_cube=[0.2, 0.05, 0.015, 1, 0, 0, 0]))  # right of it
    yaw45 = [np.cos(np.pi / 8), 0, 0, np.sin(np.pi / 8)]
    assert not check_success("push_left", _world(green_cube=[0.2, -0.02, 0.015, *yaw45]))  # a corner on it


def test_lift_check_needs_height_and_a_hold():
    held = frozenset({("yellow_cube", "moving_jaw_pad")})
    assert check_success("lift", _world(yellow_cube=[0.2, 0, 0.08, 1, 0, 0, 0], touching=held))
    assert not check_success("lift", _world(yellow_cube=[0.2, 0, 0.04, 1, 0, 0, 0], touching=held))
    assert not check_success("lift", _world(yellow_cube=[0.2, 0, 0.08, 1, 0, 0, 0]))  # falling, not held


def test_tasks_resolve_by_id_or_goal_and_reject_others():
    for task in TASKS.values():
        assert resolve_task(task.id) is task
        assert resolve_task(task.goal) is task
    with pytest.raises(ValueError, match="unknown sim task 'stack'.*pick_place"):
        resolve_task("stack")


@pytest.mark.parametrize("task", TASK_IDS)
def test_layouts_are_seeded_and_keep_objects_apart(task):
    a, b, c = sample_layout(task, 5), sample_layout(task, 5), sample_layout(task, 6)
    assert a == b and a != c
    for seed in range(50):
        layout = sample_layout(task, seed)
        cubes = [np.array(p[:2]) for p in layout.cubes.values()]
        for i in range(3):
            for j in range(i + 1, 3):
                assert np.linalg.norm(cubes[i] - cubes[j]) > 0.05
            assert np.linalg.norm(cubes[i] - np.array(layout.bowl)) > 0.07  # no cube starts in the bowl
