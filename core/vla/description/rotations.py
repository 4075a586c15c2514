"""Rotations in pure numpy: quaternions, roll-pitch-yaw, rotation vectors, and the top-down tool frame."""

from __future__ import annotations

import math

import numpy as np


def quat_to_matrix(q) -> np.ndarray:
    """Rotation matrix of a quaternion (w, x, y, z); it need not be normalised."""
    w, x, y, z = np.asarray(q, dtype=float) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rpy_to_matrix(rpy) -> np.ndarray:
    """Rotation matrix of URDF roll-pitch-yaw angles (fixed axes x, then y, then z)."""
    r, p, y = (float(a) for a in rpy)
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def rotvec_to_matrix(v) -> np.ndarray:
    """Rotation matrix for a rotation vector (axis times angle, radians)."""
    v = np.asarray(v, dtype=float)
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.eye(3)
    k = v / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def rotation_error(r_target: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Rotation vector (base frame) that turns ``r`` into ``r_target``."""
    e = r_target @ r.T
    cos = np.clip((np.trace(e) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    v = np.array([e[2, 1] - e[1, 2], e[0, 2] - e[2, 0], e[1, 0] - e[0, 1]])
    if angle < 1e-9:
        return 0.5 * v
    s = np.sin(angle)
    if s < 1e-6:  # near pi: take the axis from the symmetric part
        axis = np.sqrt(np.clip((np.diag(e) + 1.0) / 2.0, 0.0, None))
        return angle * axis
    return angle / (2.0 * s) * v


def top_down(yaw: float) -> np.ndarray:
    """The tool rotation that points the jaws straight down, with the jaw axis at ``yaw``
    (radians about the base z axis). Columns: the tool frame's x (approach), y, z (jaw axis)
    in the base frame, the convention every ``RobotDescription`` follows."""
    x = np.array([0.0, 0.0, -1.0])
    z = np.array([math.cos(yaw), math.sin(yaw), 0.0])
    return np.column_stack([x, np.cross(z, x), z])
