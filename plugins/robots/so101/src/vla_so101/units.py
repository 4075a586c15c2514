"""Joint units: LeRobot's SO-101 driver on one side, vla's radians on the other.

LeRobot 0.4.4's ``so101_follower`` with ``use_degrees=True`` reports the five arm joints in
degrees, zero at the middle of the range recorded during calibration
(``(ticks - (range_min + range_max) / 2) * 360 / 4095``), and the gripper in percent of its
calibrated range, 0 at ``range_min`` (closed) to 100 at ``range_max`` (open).

vla uses radians everywhere, with the SO-101 URDF's zero (mid-range) and limits. The arm
joints convert by degrees -> radians. The gripper maps its percent range linearly onto the
URDF gripper range:

    0 %   -> -0.174533 rad  (-10 deg, closed)
    100 % ->  1.74533  rad  (100 deg, open)

    rad = -0.174533 + pct / 100 * 1.919863,   pct = (rad + 0.174533) / 1.919863 * 100

so both ends of the calibrated travel meet both ends of the URDF limit, and the safety
file's gripper range (in radians) bounds the percent that is sent.
"""

from __future__ import annotations

import math

import numpy as np

JOINT_NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
ARM_JOINTS = JOINT_NAMES[:-1]
GRIPPER = JOINT_NAMES[-1]
GRIPPER_CLOSED_RAD = -0.174533
GRIPPER_OPEN_RAD = 1.74533
_GRIPPER_SPAN = GRIPPER_OPEN_RAD - GRIPPER_CLOSED_RAD
_DEG = math.pi / 180.0


def gripper_percent_to_rad(pct: float) -> float:
    return GRIPPER_CLOSED_RAD + float(pct) / 100.0 * _GRIPPER_SPAN


def gripper_rad_to_percent(rad: float) -> float:
    return (float(rad) - GRIPPER_CLOSED_RAD) / _GRIPPER_SPAN * 100.0


def lerobot_to_radians(values: dict[str, float]) -> np.ndarray:
    """``{"shoulder_pan.pos": deg, ..., "gripper.pos": pct}`` -> float32 radians in JOINT_NAMES order."""
    missing = [f"{j}.pos" for j in JOINT_NAMES if f"{j}.pos" not in values]
    if missing:
        raise KeyError(f"the SO-101 reading lacks {missing}")
    q = [values[f"{j}.pos"] * _DEG for j in ARM_JOINTS]
    q.append(gripper_percent_to_rad(values[f"{GRIPPER}.pos"]))
    return np.asarray(q, dtype=np.float32)


def radians_to_lerobot(q) -> dict[str, float]:
    """Radians in JOINT_NAMES order -> the action dict LeRobot's ``send_action`` takes.

    The gripper percent is clipped to 0..100, the range LeRobot would clip it to anyway.
    """
    q = np.asarray(q, dtype=np.float64)
    if q.shape != (len(JOINT_NAMES),):
        raise ValueError(f"expected {len(JOINT_NAMES)} joint positions {JOINT_NAMES}, got shape {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ValueError(f"joint positions must be finite, got {q.tolist()}")
    action = {f"{j}.pos": float(q[i] / _DEG) for i, j in enumerate(ARM_JOINTS)}
    action[f"{GRIPPER}.pos"] = float(min(100.0, max(0.0, gripper_rad_to_percent(q[-1]))))
    return action
