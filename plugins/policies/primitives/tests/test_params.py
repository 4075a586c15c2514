"""Goals, parameter spaces and parameter checks (no simulator needed)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from vla_primitives import GoalError, Param, ParamsError, parameter_space, parse_goal, resolve_params

from .conftest import GOALS


@pytest.mark.parametrize("task", list(GOALS))
def test_each_goal_has_5_to_9_params_with_init_inside(task):
    space = parameter_space(GOALS[task])
    assert 5 <= len(space) <= 9
    assert all(isinstance(p, Param) and p.low < p.high and p.low <= p.init <= p.high for p in space)
    assert len({p.name for p in space}) == len(space)


def test_goals_parse_to_skills_and_colours():
    assert parse_goal("lift the yellow cube").skill == "lift"
    g = parse_goal("Put the red cube in the blue bowl.")
    assert (g.skill, g.object_colour, g.target_colour) == ("pick_place", "red", "blue")
    g = parse_goal("push the green cube to the left of the line")
    assert (g.skill, g.object_colour, g.side) == ("push", "green", "left")
    # the same skills with other colours: nothing is tied to the sim's three goals
    assert parse_goal("put the yellow block into the red bowl").object_colour == "yellow"


def test_unknown_colour_and_unknown_task_are_clear_errors():
    with pytest.raises(GoalError, match=r"colour 'pink'.*known: red"):
        parameter_space("lift the pink cube")
    with pytest.raises(GoalError, match="do not know the goal 'fold the towel'.*lift the <colour> cube"):
        parameter_space("fold the towel")
    with pytest.raises(GoalError, match="empty"):
        parse_goal("  ")


def test_params_are_completed_clipped_and_checked():
    space = {p.name: p for p in parameter_space(GOALS["lift"])}
    got = resolve_params(GOALS["lift"], {"grasp_z": 5.0})
    assert got["grasp_z"] == space["grasp_z"].high  # clipped into the range
    assert got["lift_z"] == space["lift_z"].init  # not given: the initial value
    with pytest.raises(ParamsError, match="push_z are not in the space of 'lift the yellow cube'"):
        resolve_params(GOALS["lift"], {"push_z": 0.01})
    with pytest.raises(ParamsError, match="grasp_z: expected a finite number"):
        resolve_params(GOALS["lift"], {"grasp_z": math.nan})
    with pytest.raises(ParamsError, match="expected a finite number"):
        resolve_params(GOALS["lift"], {"grasp_z": "low"})


def test_parameter_space_is_cheap_to_import():
    # the learner imports it at start-up: no numpy, OpenCV or MuJoCo behind it
    code = ("import sys, vla_primitives; vla_primitives.parameter_space('lift the yellow cube'); "
            "print(sorted(m for m in ('numpy', 'cv2', 'mujoco') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_conformance():
    from vla.testing import check_plugin

    check_plugin("vla-primitives")
