"""Joint units: LeRobot's SO-follower driver on one side, vla's radians on the other.

LeRobot 0.4.4's ``so_follower`` (the SO-100 and SO-101 alike) with ``use_degrees=True`` reports
the five arm joints in degrees, zero at the middle of the range recorded during calibration
(``(ticks - (range_min + range_max) / 2) * 360 / 4095``), and the gripper in percent of its
calibrated range, 0 at ``range_min`` (closed) to 100 at ``range_max`` (open).

vla uses radians everywhere, with the arm's description giving zero (mid-range) and limits. The
arm joints convert by degrees -> radians. The gripper maps its percent range linearly onto the
description's gripper range, for the SO-101:

    0 %   -> -0.174533 rad  (-10 deg, closed)
    100 % ->  1.74533  rad  (100 deg, open)

    rad = closed + pct / 100 * (open - closed),   pct = (rad - closed) / (open - closed) * 100

so both ends of the calibrated travel meet both ends of the description's gripper range, and
the safety file's gripper range (in radians) bounds the percent that is sent.
"""

from __future__ import annotations

import math

import numpy as np

from vla.description import RobotDescription
from vla_so101_description.description import SO101

JOINT_NAMES = SO101.joint_names
ARM_JOINTS = JOINT_NAMES[:-1]
GRIPPER = SO101.gripper.joint
GRIPPER_CLOSED_RAD = SO101.gripper.closed
GRIPPER_OPEN_RAD = SO101.gripper.open
_DEG = math.pi / 180.0


def gripper_percent_to_rad(pct: float, description: RobotDescription = SO101) -> float:
    g = description.gripper
    return g.closed + float(pct) / 100.0 * (g.open - g.closed)


def gripper_rad_to_percent(rad: float, description: RobotDescription = SO101) -> float:
    return description.gripper.fraction_open(rad) * 100.0


def lerobot_to_radians(values: dict[str, float], description: RobotDescription = SO101) -> np.ndarray:
    """``{"shoulder_pan.pos": deg, ..., "gripper.pos": pct}`` -> float32 radians in joint order."""
    names = description.joint_names
    missing = [f"{j}.pos" for j in names if f"{j}.pos" not in values]
    if missing:
        raise KeyError(f"the {description.name} reading lacks {missing}")
    gripper = description.gripper.joint
    q = [gripper_percent_to_rad(values[f"{j}.pos"], description) if j == gripper else values[f"{j}.pos"] * _DEG
         for j in names]
    return np.asarray(q, dtype=np.float32)


def radians_to_lerobot(q, description: RobotDescription = SO101) -> dict[str, float]:
    """Radians in joint order -> the action dict LeRobot's ``send_action`` takes.

    The gripper percent is clipped to 0..100, the range LeRobot would clip it to anyway.
    """
    names = description.joint_names
    q = np.asarray(q, dtype=np.float64)
    if q.shape != (len(names),):
        raise ValueError(f"expected {len(names)} joint positions {names}, got shape {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ValueError(f"joint positions must be finite, got {q.tolist()}")
    gripper = description.gripper.joint
    action = {}
    for j, value in zip(names, q):
        if j == gripper:
            action[f"{j}.pos"] = float(min(100.0, max(0.0, gripper_rad_to_percent(value, description))))
        else:
            action[f"{j}.pos"] = float(value / _DEG)
    return action
