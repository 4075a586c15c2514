"""Driving the arm through the calibration poses and collecting marker sightings.

Every command goes through the session's ``SafetyLayer`` (the one `vla run` builds for the arm:
joint limits, gripper range, per-tick step limit, workspace box), after a slower speed limit of
the calibration's own: the arm moves in joint space at ``speed`` rad/s at most, waits
``settle_s`` at each pose, then one frame is taken and the marker looked for. The tool point is
computed from the joint positions the arm reports (not the commanded ones), through the robot
description's kinematics, plus the marker's offset in the tool frame when it is not on the
tool point itself.
"""

from __future__ import annotations

import inspect
from typing import Callable

import attrs
import numpy as np

from vla.calibration.marker import MAGENTA, Detection, MarkerColor, detect_marker
from vla.robot import IMAGE_PREFIX, STATE_KEY


class CalibrationRunError(RuntimeError):
    """The calibration cannot run on this arm as configured (no such camera, no kinematics...)."""


@attrs.frozen
class Sighting:
    index: int  # which calibration pose
    q: np.ndarray  # joint positions the arm reported at the frame (radians)
    tool: np.ndarray  # the marker's position through forward kinematics (metres, base frame)
    detection: Detection
    reached: bool  # whether the arm got within tolerance of the commanded pose


@attrs.frozen
class MoveSettings:
    speed: float = 0.6  # rad/s, per joint
    settle_s: float = 0.6  # wait at each pose before the frame
    reach_tolerance: float = 0.03  # rad: the reported pose must be this close to the commanded one
    timeout_s: float = 8.0  # per leg, after which the pose is skipped


def marker_position(description, q, offset=None) -> np.ndarray:
    """Where the marker is for joint positions ``q``: the tool point, or ``offset`` (metres, in the
    tool frame) from it."""
    kin = description.kinematics
    if offset is None or not np.any(offset):
        return np.asarray(kin.forward_kinematics(q), dtype=np.float64)
    pos, rot = kin.tool_pose(q)
    return np.asarray(pos, dtype=np.float64) + np.asarray(rot, dtype=np.float64) @ np.asarray(offset, dtype=np.float64)


class CalibrationDriver:
    """Moves ``robot`` through poses with ``safety``, on ``clock`` (real or simulated)."""

    def __init__(self, robot, safety, description, camera: str, clock, control_hz: float,
                 move: MoveSettings = MoveSettings(), color: MarkerColor = MAGENTA, marker_offset=None,
                 detect: Callable[[np.ndarray], Detection] | None = None):
        cameras = getattr(robot, "cameras", {}) or {}
        if camera not in cameras:
            raise CalibrationRunError(
                f"the arm has no camera {camera!r} (its cameras: {', '.join(cameras) or 'none'}); calibration needs "
                f"frames from the camera being calibrated: add it to the arm file's cameras, or pass --camera"
            )
        if description is None:
            raise CalibrationRunError("the robot has no description: calibration needs its kinematics and limits")
        self.robot, self.safety, self.description = robot, safety, description
        self.camera, self.clock, self.control_hz = camera, clock, float(control_hz)
        self.move_settings, self.color = move, color
        self.marker_offset = None if marker_offset is None else np.asarray(marker_offset, dtype=np.float64)
        self.detect = detect or (lambda image: detect_marker(image, color))
        try:
            self._skip_images = "images" in inspect.signature(robot.observe).parameters
        except (TypeError, ValueError):
            self._skip_images = False
        self.last: np.ndarray | None = None  # the last command sent (after the safety layer)
        self.last_image: np.ndarray | None = None
        self.commands = 0
        self._t = clock.now()

    # ------------------------------------------------------------------ moving

    def state(self) -> np.ndarray:
        obs = self.robot.observe(images=False) if self._skip_images else self.robot.observe()
        return np.asarray(obs[STATE_KEY], dtype=np.float64)

    def frame(self) -> tuple[np.ndarray, np.ndarray]:
        obs = self.robot.observe()
        key = IMAGE_PREFIX + self.camera
        if key not in obs:
            raise CalibrationRunError(f"the arm's observation has no {key!r} frame (it has: {', '.join(sorted(obs))})")
        return np.asarray(obs[STATE_KEY], dtype=np.float64), np.asarray(obs[key])

    def _tick(self, target: np.ndarray) -> None:
        if self.last is None:
            self.last = self.state()
        cmd, _clamps = self.safety.limit(target, self.last)
        self.robot.act(cmd)
        self.commands += 1
        self.last = cmd
        self._t += 1.0 / self.control_hz
        self.clock.sleep_until(self._t)

    def move_to(self, target, stop: Callable[[], bool] = lambda: False) -> bool:
        """Move to ``target`` (radians) at the calibration speed, then hold for the settle time.
        Whether the arm's reported position reached it."""
        target = np.asarray(target, dtype=np.float64)
        if self.last is None:
            self.last = self.state()
        # Along the straight joint-space line at the calibration speed, never faster per tick than
        # the safety layer's step limit: the layer would clip each joint on its own and bend the
        # path off the line the poses' planner checked against the workspace box.
        step = min(self.move_settings.speed / self.control_hz, float(np.min(self.safety.max_step)))
        limit = int(self.move_settings.timeout_s * self.control_hz)
        start = self.last.copy()
        span = float(np.abs(target - start).max())
        n = max(1, int(np.ceil(span / step)))
        ticks = 0
        while ticks < limit and not stop():
            ticks += 1
            before = self.last
            self._tick(start + min(1.0, ticks / n) * (target - start))
            if np.allclose(self.last, target, atol=1e-9):
                break
            if ticks >= n and np.array_equal(self.last, before):
                break  # held where it is by the safety layer: this pose is not reached
        for _ in range(max(1, int(round(self.move_settings.settle_s * self.control_hz)))):
            if stop():
                break
            self._tick(target)
        q = self.state()
        return bool(np.abs(q - target).max() <= self.move_settings.reach_tolerance)

    # ------------------------------------------------------------------ sighting

    def sight(self, index: int, reached: bool) -> Sighting:
        q, image = self.frame()
        self.last_image = image
        detection = self.detect(image)
        return Sighting(index, q, marker_position(self.description, q, self.marker_offset), detection, reached)
