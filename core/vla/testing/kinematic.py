"""A kinematic test arm built from any robot description: the real ``Robot`` interface, no
hardware and no physics.

What it stands in for (a physical arm) cannot run here. A command moves the joints at once
(or at ``max_joint_speed``), clamped to the description's joint ranges as the servos would be.
Each camera shows a fixed background and a square whose position follows the tool point
(from the description's forward kinematics), so images change when the arm moves.
Every raw command is kept in ``commands`` (monotonic time, q) for tests to inspect.
"""

from __future__ import annotations

import collections
import time

import numpy as np

from vla.builtins import KinematicArmConfig
from vla.description import RobotDescription
from vla.robot import IMAGE_PREFIX, STATE_KEY


class KinematicArm:
    def __init__(self, config: KinematicArmConfig | None, description: RobotDescription):
        self.config = config or KinematicArmConfig()
        self.description = description
        self.joint_names = description.joint_names
        self._lower, self._upper = description.lower, description.upper
        self.control_hz = float(self.config.control_hz)
        self.cameras = {name: tuple(int(x) for x in shape) for name, shape in self.config.cameras.items()}
        for name, shape in self.cameras.items():
            if len(shape) != 3 or shape[2] != 3 or shape[0] < 8 or shape[1] < 8:
                raise ValueError(f"camera {name!r}: expected (height, width, 3) of at least 8x8, got {shape}")
        initial = np.zeros(len(self.joint_names)) if self.config.initial_q is None else np.asarray(self.config.initial_q, np.float64)
        if initial.shape != (len(self.joint_names),):
            raise ValueError(f"initial_q must hold {len(self.joint_names)} joint positions, got {initial.shape}")
        self._initial = self._clamp(initial)
        self.q = self._initial.copy()
        self._target = self.q.copy()
        self._last_update = time.monotonic()
        self.connected = False
        self.commands: collections.deque[tuple[float, np.ndarray]] = collections.deque(maxlen=100_000)
        self.limit_hits = 0  # commands outside the joint ranges (clamped, as servos would)
        self._backgrounds = {name: self._background(shape, i) for i, (name, shape) in enumerate(self.cameras.items())}

    # -------------------------------------------------------------- Robot protocol

    def connect(self) -> None:
        self.connected = True
        self._last_update = self._connected_at = time.monotonic()

    def disconnect(self) -> None:
        self.connected = False

    def observe(self) -> dict:
        self._require_connected()
        self._advance()
        fails_after = self.config.camera_fails_after_s
        if self.cameras and fails_after is not None and time.monotonic() - self._connected_at >= fails_after:
            raise RuntimeError(f"camera {next(iter(self.cameras))!r} delivers no frames "
                               f"(camera_fails_after_s={fails_after:g})")
        obs = {STATE_KEY: self.q.astype(np.float32)}
        tool = self.forward_kinematics(self.q)
        for name, shape in self.cameras.items():
            obs[IMAGE_PREFIX + name] = self._render(name, shape, tool)
        return obs

    def act(self, q) -> None:
        self._require_connected()
        q = np.asarray(q, np.float64).reshape(-1)
        if q.shape != (len(self.joint_names),) or not np.all(np.isfinite(q)):
            raise ValueError(f"act expects {len(self.joint_names)} finite joint positions (radians), got {q}")
        self.commands.append((time.monotonic(), q.copy()))
        self._advance()
        clamped = self._clamp(q)
        if not np.array_equal(clamped, q):
            self.limit_hits += 1
        self._target = clamped
        if self.config.max_joint_speed is None:
            self.q = clamped.copy()

    def calibration_status(self):
        from vla.robot import CalibrationStatus

        return CalibrationStatus(True, "kinematic test arm: no motors, nothing to calibrate")

    def forward_kinematics(self, q) -> np.ndarray:
        return self.description.kinematics.forward_kinematics(q)

    def reset(self, task: str | None = None, seed: int | None = None) -> None:
        """Back to the initial pose (the arm has no task of its own)."""
        self.q = self._initial.copy()
        self._target = self.q.copy()

    # -------------------------------------------------------------- internals

    def _require_connected(self) -> None:
        if not self.connected:
            raise RuntimeError("the kinematic arm is not connected; call connect() first")

    def _clamp(self, q: np.ndarray) -> np.ndarray:
        return np.clip(q, self._lower, self._upper)

    def _advance(self) -> None:
        now = time.monotonic()
        dt, self._last_update = now - self._last_update, now
        speed = self.config.max_joint_speed
        if speed is not None:
            step = np.clip(self._target - self.q, -speed * dt, speed * dt)
            self.q = self.q + step

    @staticmethod
    def _background(shape, index: int) -> np.ndarray:
        h, w, _ = shape
        y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
        x = np.linspace(0, 255, w, dtype=np.float32)[None, :]
        image = np.empty((h, w, 3), np.uint8)
        image[..., 0] = (0.5 * y + 0.2 * x).astype(np.uint8)
        image[..., 1] = ((0.3 * x + 40 * index) % 256).astype(np.uint8)
        image[..., 2] = 128
        return image

    def _render(self, name: str, shape, tool: np.ndarray) -> np.ndarray:
        h, w, _ = shape
        image = self._backgrounds[name].copy()
        # Map the reachable workspace (about +-0.45 m) onto the image: x forward -> rows, y -> columns.
        row = int(np.clip((0.5 - tool[0] / 0.9) * h, 0, h - 1))
        col = int(np.clip((0.5 - tool[1] / 0.9) * w, 0, w - 1))
        half = max(2, min(h, w) // 16)
        brightness = int(np.clip(80 + tool[2] * 400, 0, 255))
        image[max(0, row - half) : row + half, max(0, col - half) : col + half] = (brightness, 30, 30)
        return image
