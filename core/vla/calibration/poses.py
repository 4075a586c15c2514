"""The poses `vla calibrate camera` moves the arm through, made from the robot's description.

Candidates are drawn inside the joint limits (with a margin), kept when the tool point is in
the region a front camera watches (in front of the base, above the table, inside the safety
file's workspace box) and when the pose meets every limit of the safety layer, then the most
spread-out ones are chosen (farthest-point order, so any prefix is also spread out) and put in
a short travel order. A leg between two poses whose straight joint-space path would leave the
region goes through the start pose instead; a pose that cannot be reached that way is dropped.
Nothing here knows a particular arm: limits, kinematics and the gripper come from the description.
"""

from __future__ import annotations

import math

import attrs
import numpy as np


@attrs.frozen
class PoseRegion:
    """Where the tool point goes, in metres in the base frame (table top at z = 0)."""

    min_height: float = 0.05  # above the table: the marker ball and the jaws stay clear of it
    max_height: float = 0.28
    min_reach: float = 0.12  # from the base's vertical axis: the arm does not fold onto itself
    max_reach: float = 0.36
    max_bearing_deg: float = 60.0  # from the base's +x: the side a front camera looks at
    joint_margin: float = 0.1  # share of each joint range kept clear at both ends


def _fk(description, q) -> np.ndarray:
    return np.asarray(description.kinematics.forward_kinematics(q), dtype=np.float64)


def in_region(p: np.ndarray, region: PoseRegion) -> bool:
    reach = math.hypot(p[0], p[1])
    bearing = math.degrees(math.atan2(p[1], p[0]))
    return bool(
        region.min_height <= p[2] <= region.max_height
        and region.min_reach <= reach <= region.max_reach
        and abs(bearing) <= region.max_bearing_deg
    )


def _gripper_value(description) -> float | None:
    if description.gripper is None:
        return None
    return float(description.gripper.open)  # open jaws keep the moving jaw away from the marker


def calibration_poses(description, safety, n: int = 30, region: PoseRegion = PoseRegion(), seed: int = 0,
                      candidates: int = 4000) -> list[np.ndarray]:
    """``n`` joint positions (radians, joint order) spread over ``region``, each passing the
    safety layer's limits (joint limits, gripper range, workspace box) unchanged."""
    if n < 1:
        raise ValueError("n must be at least 1")
    rng = np.random.default_rng(seed)
    lo, hi = description.lower.copy(), description.upper.copy()
    margin = region.joint_margin * (hi - lo)
    lo, hi = lo + margin, hi - margin
    grip = _gripper_value(description)
    gi = description.index(description.gripper.joint) if grip is not None else None
    kept_q, kept_p = [], []
    for _ in range(candidates):
        if len(kept_q) >= 8 * n:  # enough to choose a spread-out set from
            break
        q = rng.uniform(lo, hi)
        q[description.arm_joints:] = np.asarray(description.home)[description.arm_joints:]
        if gi is not None:
            q[gi] = grip
        p = _fk(description, q)
        if not in_region(p, region):
            continue
        clamped = safety.clamp_to_joint_limits(q)
        if not np.allclose(clamped, q) or safety.violations(q):
            continue
        kept_q.append(q)
        kept_p.append(p)
    if len(kept_q) < n:
        raise ValueError(
            f"only {len(kept_q)} of {candidates} random poses put the tool point in the calibration region "
            f"{attrs.asdict(region)} within the safety limits; {n} are needed (widen the region or the limits)"
        )
    points = np.array(kept_p)
    chosen = [int(np.argmin(np.linalg.norm(points - points.mean(axis=0), axis=1)))]
    dist = np.linalg.norm(points - points[chosen[0]], axis=1)
    while len(chosen) < n:
        i = int(np.argmax(dist))
        chosen.append(i)
        dist = np.minimum(dist, np.linalg.norm(points - points[i], axis=1))
    return [kept_q[i] for i in chosen]


def _leg_ok(description, a: np.ndarray, b: np.ndarray, region: PoseRegion, safety=None, samples: int = 24) -> bool:
    """Whether the straight joint-space move from ``a`` to ``b`` keeps the tool above the table
    (half the region's height floor), away from the base and inside the safety layer's box (a
    leg that left it would be held at its edge by the layer and never arrive)."""
    floor = attrs.evolve(region, min_height=region.min_height / 2, max_height=math.inf, max_reach=math.inf,
                         min_reach=region.min_reach / 2, max_bearing_deg=180.0)
    for s in np.linspace(0.0, 1.0, samples):
        q = a + s * (b - a)
        if not in_region(_fk(description, q), floor) or (safety is not None and s > 0 and not safety.inside_box(q)):
            return False
    return True


def travel_plan(description, start, poses, region: PoseRegion = PoseRegion(), safety=None) -> list[tuple[np.ndarray, bool]]:
    """The poses in a short travel order from ``start``: (joint positions, is_calibration_pose).

    Waypoints (``False``) are the start pose (the description's home pose, in practice), inserted
    where a direct leg would dip too low."""
    start = np.asarray(start, dtype=np.float64)
    left = [np.asarray(q, dtype=np.float64) for q in poses]
    plan: list[tuple[np.ndarray, bool]] = []
    here = start
    while left:
        order = sorted(range(len(left)), key=lambda i: float(np.abs(left[i] - here).max()))
        for i in order:
            if _leg_ok(description, here, left[i], region, safety):
                plan.append((left[i], True))
                here = left.pop(i)
                break
        else:
            # no direct leg: back to the start pose, then the nearest pose reachable from there
            reachable = [i for i in order if _leg_ok(description, start, left[i], region, safety)]
            if not reachable or not _leg_ok(description, here, start, region, safety):
                break  # the rest cannot be reached safely from here; they are dropped
            plan.append((start.copy(), False))
            plan.append((left[reachable[0]], True))
            here = left.pop(reachable[0])
    return plan
