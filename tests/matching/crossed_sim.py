"""The simulated arm with its camera cables crossed: the camera called "front" shows the wrist view
and "wrist" the front view, as when two USB cameras enumerate in the other order after a reboot.

Everything else is the real `vla-sim` robot. Registered for a test as the robot plugin
``sim-crossed`` (``PLUGIN``), so `vla doctor --robot` and `vla run --robot` build it through the
plugin registry like any robot. Loaded by path (pytest runs with --import-mode=importlib).
"""

from __future__ import annotations

import types

from vla import hookimpl
from vla.specs import RobotSpec
from vla_sim.config import SimConfig
from vla_sim.robot import SimRobot

MODULE = "vla_test_crossed_sim"
CROSSED = {"front": "wrist", "wrist": "front"}


class CrossedSimRobot(SimRobot):
    def render(self, camera: str):
        return super().render(CROSSED.get(camera, camera))


@hookimpl
def register_robots(register):
    register(RobotSpec(name="sim-crossed", description="The sim with front and wrist cameras crossed (a test rig).",
                       factory=f"{MODULE}:CrossedSimRobot", config=SimConfig))


PLUGIN = types.SimpleNamespace(register_robots=register_robots)
