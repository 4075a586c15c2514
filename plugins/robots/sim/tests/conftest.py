"""Fixtures for the simulator tests: one MuJoCo tabletop per module (building it takes a second)."""

from __future__ import annotations

import os
import sys

import pytest

if sys.platform.startswith("linux"):
    os.environ.setdefault("MUJOCO_GL", "egl")  # before the first import of mujoco
pytest.importorskip("mujoco")


@pytest.fixture(scope="module")
def sim_robot():
    from vla_sim.config import SimConfig
    from vla_sim.robot import SimRobot

    robot = SimRobot(SimConfig())
    yield robot
    robot.close()


@pytest.fixture(scope="module")
def expert():
    from vla_sim.expert import ScriptedPolicy

    return ScriptedPolicy()


def run_expert_episode(robot, policy, task: str, seed: int, execute: int = 20) -> bool:
    """Drive ``robot`` with ``policy``'s chunks (``execute`` actions of each) until success or the time limit."""
    robot.reset(task, seed)
    while not robot.timed_out():
        chunk = policy.infer([robot.observe(images=False)])[0]
        for action in chunk[:execute]:
            robot.act(action)
            if robot.success():
                return True
    return False
