"""A small arm for recording tests: six joints, two cameras whose pixels encode the tick.

Each camera image is a flat grey level (23 levels apart from one tick to the next) plus a
fixed gradient, so after a lossy video round trip a decoded frame still tells which tick it
came from (``frame_error``). Loaded by path
(pytest runs with --import-mode=importlib) from the tests and the kill-test subprocess.
"""

from __future__ import annotations

import numpy as np

JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")


def level(tick: int) -> int:
    return 16 + (tick * 23) % 200


def as_hwc_uint8(image) -> np.ndarray:
    """A decoded frame (LeRobot gives float 3xHxW in 0..1) as HxWx3 values 0..255."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3 and img.shape[0] == 3:
        img = np.moveaxis(img, 0, -1) * 255.0
    return img


def frame_error(decoded, expected) -> float:
    """Mean absolute difference in grey levels; neighbouring ticks differ by 23."""
    return float(np.abs(as_hwc_uint8(decoded) - np.asarray(expected, dtype=np.float32)).mean())


class PatternArm:
    robot_type = "pattern_arm"
    joint_names = JOINTS
    cameras = {"front": (48, 64, 3), "wrist": (32, 32, 3)}
    control_hz = 10.0

    def __init__(self):
        self.tick = 0
        self.q = np.zeros(6, dtype=np.float32)

    def connect(self):
        pass

    def disconnect(self):
        pass

    def image(self, camera: str, tick: int) -> np.ndarray:
        h, w, _ = self.cameras[camera]
        img = np.full((h, w, 3), level(tick), dtype=np.uint8)
        gradient = np.linspace(0, 16, w, dtype=np.float32).astype(np.uint8)
        img[:, :, 1] = np.clip(img[:, :, 1].astype(int) + gradient[None, :], 0, 255)
        return img

    def state(self, tick: int) -> np.ndarray:
        return (np.arange(6, dtype=np.float32) * 0.1 + tick * 0.01).astype(np.float32)

    def action(self, tick: int) -> np.ndarray:
        return (self.state(tick) + 0.005).astype(np.float32)

    def observe(self):
        obs = {"observation.state": self.state(self.tick)}
        for cam in self.cameras:
            obs[f"observation.images.{cam}"] = self.image(cam, self.tick)
        return obs

    def act(self, q):
        self.q = np.asarray(q, dtype=np.float32)
        self.tick += 1

    def forward_kinematics(self, q):
        return np.zeros(3)
