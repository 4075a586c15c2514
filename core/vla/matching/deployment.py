"""The deployment side of the comparison: what the arm will send the policy, and how it will run it.

A ``Deployment`` holds the task text the policy will receive, the arm's cameras, the client's
chunk settings and control rate, the robot's facts (from its description), a live observation
(joints and one frame per camera, read from the arm before anything moves) and/or an eval
recording (a LeRobot dataset of deployed episodes).
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

from vla.matching.dataset import LeRobotDatasetReader
from vla.matching.robot_facts import RobotFacts
from vla.robot import IMAGE_PREFIX, STATE_KEY, TASK_KEY


@attrs.define
class LiveObservation:
    state: np.ndarray  # radians, the robot's joint order
    images: dict[str, np.ndarray]  # camera -> HxWx3 uint8


@attrs.define
class Deployment:
    task: str | None = None  # the text the policy will receive
    task_source: str = ""  # where that text came from ("--task", "the robot's goal text for 'lift'")
    robot: str | None = None
    facts: RobotFacts | None = None
    joint_names: tuple[str, ...] | None = None
    cameras: dict[str, tuple[int, int, int]] | None = None  # the arm's camera name -> (h, w, 3)
    control_hz: float | None = None
    actions_per_chunk: int | None = None
    threshold: float | None = None
    merge: str | None = None
    live: LiveObservation | None = None
    recording: LeRobotDatasetReader | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "task_source": self.task_source,
            "robot": self.robot,
            "joint_names": list(self.joint_names) if self.joint_names else None,
            "cameras": {k: list(v) for k, v in (self.cameras or {}).items()} or None,
            "control_hz": self.control_hz,
            "actions_per_chunk": self.actions_per_chunk,
            "threshold": self.threshold,
            "merge": self.merge,
            "live": self.live is not None,
            "recording": str(self.recording.root) if self.recording is not None else None,
        }


def task_text(observation: dict[str, Any] | None, given: str | None) -> tuple[str | None, str]:
    """The text the policy will receive: an episodic robot states its goal text itself (as `vla run` sends it)."""
    goal = (observation or {}).get(TASK_KEY)
    if isinstance(goal, str) and goal:
        if given and given != goal:
            return goal, f"the robot's goal text for --task {given!r}"
        return goal, "the robot's goal text"
    return given, "--task" if given else ""


def read_live(robot, task: str | None = None) -> tuple[LiveObservation, dict[str, Any]]:
    """Connect, read the joints and one frame per camera, disconnect. Nothing is commanded.

    An episodic robot (the simulator) is reset into ``task`` first, so its scene is the one an
    episode of that task starts from.
    """
    robot.connect()
    try:
        known = True
        if task and callable(getattr(robot, "reset", None)) and callable(getattr(robot, "success", None)):
            try:
                robot.reset(task)
            except (KeyError, ValueError):
                known = False  # a task the simulator does not know: its scene stays as connect() left it
        observation = robot.observe()
    finally:
        robot.disconnect()
    if not known:
        observation.pop(TASK_KEY, None)  # that goal text belongs to another task; --task is what counts
    images = {k[len(IMAGE_PREFIX):]: np.asarray(v) for k, v in observation.items()
              if k.startswith(IMAGE_PREFIX) and not isinstance(v, (bytes, bytearray))}
    return LiveObservation(np.asarray(observation[STATE_KEY], dtype=np.float64), images), observation


def from_observation(observation: dict[str, Any]) -> LiveObservation:
    """A live observation from a robot observation dict (the session runner's first one)."""
    images = {k[len(IMAGE_PREFIX):]: np.asarray(v) for k, v in observation.items()
              if k.startswith(IMAGE_PREFIX) and not isinstance(v, (bytes, bytearray))}
    return LiveObservation(np.asarray(observation[STATE_KEY], dtype=np.float64), images)
