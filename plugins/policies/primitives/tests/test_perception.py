"""The colour-mask object finder against the simulator's ground truth (used here only)."""

from __future__ import annotations

import numpy as np
import pytest

from vla_primitives.perception import ObjectFinder, PerceptionError

CUBE_TOL = 0.003  # m: a tenth of a cube's edge
BOWL_TOL = 0.004


def _errors(robot, finder, seeds):
    errs = {"cube": [], "bowl": [], "line": []}
    for task, cube in (("lift", "yellow_cube"), ("pick_place", "red_cube"), ("push_left", "green_cube")):
        for seed in seeds:
            robot.reset(task, seed)
            frame = robot.render("front")
            truth = robot.world_state().poses
            found = finder.find(frame, cube.split("_")[0])
            errs["cube"].append(np.linalg.norm(np.array(found.xyz[:2]) - truth[cube][:2]))
            if task == "pick_place":
                bowl = finder.find(frame, "blue", height=0.035, cube=False)
                errs["bowl"].append(np.linalg.norm(np.array(bowl.xyz[:2]) - truth["blue_bowl"][:2]))
            if task == "push_left":
                line = finder.find_line(frame)
                errs["line"].append(abs(line.y_at(truth[cube][0]) - truth["line"][1]))
    return {k: max(v) for k, v in errs.items()}


@pytest.fixture(scope="module")
def finder():
    from vla_sim import camera_truth

    return ObjectFinder(camera_truth("front", 224, 224))


def test_objects_are_found_within_millimetres_of_the_truth(sim, finder):
    worst = _errors(sim, finder, range(300, 310))
    assert worst["cube"] < CUBE_TOL and worst["bowl"] < BOWL_TOL and worst["line"] < 0.002, worst


def test_a_distractor_cube_and_30_percent_lighting_change_nothing():
    from vla_sim import camera_truth
    from vla_sim.config import SimConfig
    from vla_sim.robot import SimRobot

    finder = ObjectFinder(camera_truth("front", 224, 224))
    for lighting in ([0.7, 0.7], [1.3, 1.3]):
        robot = SimRobot(SimConfig(cameras=["front"], distractor=True, lighting=lighting))
        try:
            worst = _errors(robot, finder, range(400, 406))
        finally:
            robot.close()
        assert worst["cube"] < CUBE_TOL and worst["bowl"] < BOWL_TOL and worst["line"] < 0.002, (lighting, worst)


def test_a_frame_at_another_resolution_uses_the_scaled_calibration(finder):
    from vla_sim.config import SimConfig
    from vla_sim.robot import SimRobot

    robot = SimRobot(SimConfig(cameras=["front"], image_width=160, image_height=160))
    try:
        robot.reset("lift", 12)
        found = finder.find(robot.render("front"), "yellow")
        truth = robot.world_state().poses["yellow_cube"]
    finally:
        robot.close()
    assert np.linalg.norm(np.array(found.xyz[:2]) - truth[:2]) < CUBE_TOL


def test_a_colour_not_in_the_frame_is_a_clear_error(sim, finder):
    sim.reset("lift", 1)
    frame = sim.render("front")
    with pytest.raises(PerceptionError, match="no purple object in the front camera's frame"):
        finder.find(frame, "purple")
    with pytest.raises(PerceptionError, match="HxWx3 uint8"):
        finder.find(frame.astype(np.float32), "red")
