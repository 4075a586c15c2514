"""What `vla run` needs from a robot driver. Robot plugins' factories return one of these.

Units are the same on every robot so that one policy and one safety file work on all:
joint positions in radians in the order of ``joint_names``, the gripper included as the
last joint (its range is in radians too), images as HxWx3 uint8 RGB.
Observation keys follow LeRobot's names: ``observation.state``,
``observation.images.<camera>``, ``observation.environment_state`` (privileged, sim only).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import attrs

STATE_KEY = "observation.state"
IMAGE_PREFIX = "observation.images."
ENV_STATE_KEY = "observation.environment_state"
TASK_KEY = "task"


@runtime_checkable
class Robot(Protocol):
    joint_names: tuple[str, ...]
    cameras: dict[str, tuple[int, int, int]]  # camera name -> (height, width, 3)
    control_hz: float

    def connect(self) -> None: ...

    def disconnect(self) -> None: ...

    def observe(self, images: bool = True) -> dict[str, Any]:
        """The current observation: state (radians, float32) and, unless ``images`` is False,
        one image per camera. A policy without cameras should not pay for rendering them."""

    def act(self, q) -> None:
        """Command absolute joint positions (radians). Called once per control tick."""

    def forward_kinematics(self, q):
        """Tool point (x, y, z) in metres in the base frame for joint positions ``q``."""

    # Optional: ``calibration_status() -> CalibrationStatus``, answered without connecting
    # (from the calibration file), which `vla gates` needs for G0.


@attrs.frozen
class CalibrationStatus:
    """What a robot's optional ``calibration_status()`` returns (`vla gates` G0 reads it):
    whether the arm is calibrated, and the evidence (the file it read, or why none is needed)."""

    calibrated: bool
    detail: str


@runtime_checkable
class EpisodicRobot(Robot, Protocol):
    """A robot that can reset a task and judge it itself (the simulator)."""

    def reset(self, task: str, seed: int | None = None) -> None: ...

    def success(self) -> bool: ...

    # Optional: ``max_episode_s`` (the task's time limit) and ``timed_out()`` (whether it has
    # passed in the robot's own time), which ends an episode when no length is given.
