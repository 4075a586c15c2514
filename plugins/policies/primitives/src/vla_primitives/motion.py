"""Joint-space trajectories built from tool-space moves, through a robot description's kinematics.

A ``Trajectory`` starts at the arm's observed joints and grows one control tick at a time: a move
is a straight line of the tool point (and a turn of the tool frame) solved by inverse kinematics
at waypoints a centimetre or two apart and interpolated in joint space between them, which
costs a few IK solves per move instead of one per tick. Every tick's change stays below a share
of the robot's per-tick step limit (the safety layer's ``max_step``) by stretching a move over
more ticks, and tool targets stay inside the description's workspace box, so the safety layer
has nothing to clamp.
"""

from __future__ import annotations

import math

import numpy as np

from vla.description import RobotDescription
from vla.description.rotations import rotation_error, rotvec_to_matrix


class Trajectory:
    def __init__(self, description: RobotDescription, q0, control_hz: float, step_share: float = 0.6,
                 waypoint_m: float = 0.03, turn_speed: float = 1.5):
        self.desc = description
        self.kin = description.kinematics
        self.hz = float(control_hz)
        self.arm = description.arm_joints
        self.grip_i = description.index(description.gripper.joint) if description.gripper else None
        self.max_step = step_share * float(description.max_step)
        self.waypoint_m = waypoint_m
        self.turn_speed = turn_speed  # rad/s of the tool frame
        q = description.clamp(np.asarray(q0, dtype=np.float64).reshape(-1))
        self.q = q
        self.p, self.r = self.kin.tool_pose(q)
        self.actions: list[np.ndarray] = []
        lo, hi = description.workspace.min, description.workspace.max
        margin = 0.003
        self._box = (np.asarray(lo) + margin, np.asarray(hi) - margin)

    # ------------------------------------------------------------------ moves

    def _emit(self, qs: np.ndarray) -> None:
        """Append joint targets, stretched so that no joint moves more than max_step per tick."""
        prev = self.q
        for q in qs:
            step = np.abs(q - prev).max()
            n = max(1, math.ceil(step / self.max_step - 1e-9))
            for i in range(1, n + 1):
                self.actions.append(prev + (q - prev) * (i / n))
            prev = q
        self.q = prev.copy()

    def move(self, target, rot=None, speed: float = 0.1, grip: float | None = None, min_ticks: int = 1) -> "Trajectory":
        """Straight tool move to ``target`` (metres, base frame), turning to ``rot``, at ``speed`` m/s."""
        target = np.clip(np.asarray(target, dtype=np.float64), *self._box)
        rot = self.r if rot is None else np.asarray(rot, dtype=np.float64)
        rv = rotation_error(rot, self.r)
        dist = float(np.linalg.norm(target - self.p))
        angle = float(np.linalg.norm(rv))
        ticks = max(min_ticks, math.ceil(dist * self.hz / speed), math.ceil(angle * self.hz / self.turn_speed), 1)
        waypoints = max(1, math.ceil(dist / self.waypoint_m), math.ceil(angle / 0.4))
        p0, r0, q = self.p.copy(), self.r.copy(), self.q.copy()
        g0 = q[self.grip_i] if self.grip_i is not None else 0.0
        g1 = g0 if grip is None or self.grip_i is None else float(grip)
        knots = [q.copy()]
        for w in range(1, waypoints + 1):
            s = w / waypoints
            q = self.kin.inverse_kinematics(p0 + s * (target - p0), q, rotvec_to_matrix(s * rv) @ r0,
                                            max_iter=30, tol=2e-4, rot_tol=5e-3)
            q = np.asarray(q, dtype=np.float64)
            knots.append(q.copy())
        knots = np.asarray(knots)
        # joint targets per tick: piecewise linear through the knots, the gripper ramped alone
        s = np.arange(1, ticks + 1) / ticks
        pos = s * waypoints
        i = np.minimum(pos.astype(int), waypoints - 1)
        frac = (pos - i)[:, None]
        qs = knots[i] + (knots[i + 1] - knots[i]) * frac
        if self.grip_i is not None:
            qs[:, self.grip_i] = g0 + s * (g1 - g0)
        self._emit(self.desc.clamp(qs))
        self.p, self.r = self.kin.tool_pose(self.q)
        return self

    def grip(self, value: float, ticks: int) -> "Trajectory":
        """Ramp the gripper to ``value`` (radians) over ``ticks``, the arm still."""
        if self.grip_i is None:
            return self.hold(ticks)
        q = self.q.copy()
        g0 = q[self.grip_i]
        qs = np.repeat(q[None], max(1, ticks), axis=0)
        qs[:, self.grip_i] = g0 + (float(value) - g0) * np.arange(1, len(qs) + 1) / len(qs)
        self._emit(qs)
        return self

    def hold(self, ticks: int) -> "Trajectory":
        if ticks > 0:
            self.actions.extend([self.q.copy() for _ in range(ticks)])
        return self

    def plan(self) -> np.ndarray:
        if not self.actions:
            self.hold(1)
        return np.asarray(self.actions, dtype=np.float32)
