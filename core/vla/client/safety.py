"""The safety layer between the action queue and the arm.

Every command passes, in this order:
1. joint limits (and the gripper range, for the gripper joint) — clamp into range;
2. the per-tick step limit — no joint moves more than its ``max_step`` from the last command;
3. the cartesian box — the tool point, through the robot's forward kinematics, stays inside.
   A target outside the box is pulled back along the straight joint-space segment from the
   last command (which is inside) to the farthest point that is still inside.

Because steps 2 and 3 only ever move the command towards the last one (which already met
every limit), the result meets all of them at once. Chunks are checked before they reach the
queue: a wrong shape, a non-numeric dtype or any non-finite value rejects the whole chunk.
Every clamp and rejection is counted by kind.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

import numpy as np

from vla.config import SafetyConfig

# Names of the counters (also the strings in the tick log's ``clamps`` list).
JOINT_LIMIT = "joint_limit"
GRIPPER = "gripper"
STEP_LIMIT = "step_limit"
WORKSPACE = "workspace"
REJECTED = "rejected_chunk"

_BISECTION_STEPS = 14  # 2**-14 of the segment: well under a millimetre on an SO-101


class SafetyConfigError(ValueError):
    """The safety limits do not fit the robot (missing joints, no forward kinematics, ...)."""


class ChunkRejected(ValueError):
    """A chunk that must not reach the queue. ``code`` is a short machine-readable reason."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(f"{code}: {message}")


class SafetyLayer:
    def __init__(
        self,
        config: SafetyConfig,
        joint_names: tuple[str, ...] | list[str],
        forward_kinematics: Callable[[np.ndarray], np.ndarray] | None = None,
    ):
        self.joint_names = tuple(joint_names)
        names = self.joint_names
        missing = [n for n in names if n not in config.joints]
        if missing:
            raise SafetyConfigError(f"the safety limits name no limits for joint(s) {', '.join(missing)}")
        unknown = [n for n in config.joints if n not in names]
        if unknown:
            raise SafetyConfigError(
                f"the safety limits name joint(s) {', '.join(unknown)} that the robot does not have "
                f"(robot joints: {', '.join(names)})"
            )
        self.lower = np.array([config.joints[n].min for n in names], dtype=np.float64)
        self.upper = np.array([config.joints[n].max for n in names], dtype=np.float64)
        self.max_step = np.array([config.joints[n].max_step for n in names], dtype=np.float64)
        if np.any(self.lower > self.upper):
            bad = [n for n, lo, hi in zip(names, self.lower, self.upper) if lo > hi]
            raise SafetyConfigError(f"joint limit min is above max for {', '.join(bad)}")
        if np.any(self.max_step <= 0):
            raise SafetyConfigError("every joint's max_step must be > 0")

        self.gripper_index: int | None = None
        if config.gripper is not None:
            if config.gripper.joint not in names:
                raise SafetyConfigError(f"the gripper joint {config.gripper.joint!r} is not one of the robot's joints")
            i = names.index(config.gripper.joint)
            lo, hi = max(self.lower[i], config.gripper.min), min(self.upper[i], config.gripper.max)
            if lo > hi:
                raise SafetyConfigError("the gripper range does not overlap the gripper joint's limits")
            self.gripper_index, self.gripper_lower, self.gripper_upper = i, lo, hi

        self.box_lower = self.box_upper = None
        if config.workspace is not None:
            if forward_kinematics is None:
                raise SafetyConfigError(
                    "the safety limits have a workspace box but the robot offers no forward kinematics"
                )
            self.box_lower = np.asarray(config.workspace.min, dtype=np.float64)
            self.box_upper = np.asarray(config.workspace.max, dtype=np.float64)
            if self.box_lower.shape != (3,) or self.box_upper.shape != (3,) or np.any(self.box_lower > self.box_upper):
                raise SafetyConfigError("workspace min and max must be three numbers each, min <= max")
        self._fk = forward_kinematics
        self.counts: Counter[str] = Counter()

    @property
    def action_dim(self) -> int:
        return len(self.joint_names)

    # ------------------------------------------------------------------ chunks

    def check_chunk(self, actions) -> np.ndarray:
        """The chunk as a float64 (H, A) array, or ``ChunkRejected`` (counted) naming the problem."""
        try:
            arr = self._as_chunk(actions)
        except ChunkRejected:
            self.counts[REJECTED] += 1
            raise
        return arr

    def _as_chunk(self, actions) -> np.ndarray:
        if not isinstance(actions, np.ndarray):
            if isinstance(actions, (list, tuple)):
                try:
                    actions = np.asarray(actions, dtype=np.float64)
                except (TypeError, ValueError) as exc:
                    raise ChunkRejected("bad_dtype", f"actions are not numbers: {exc}") from None
            else:
                raise ChunkRejected("bad_type", f"actions must be an array, got {type(actions).__name__}")
        if actions.dtype.kind not in "fiu":
            raise ChunkRejected("bad_dtype", f"actions must be numeric, got dtype {actions.dtype}")
        if actions.ndim != 2 or actions.shape[0] < 1 or actions.shape[1] != self.action_dim:
            raise ChunkRejected(
                "wrong_shape", f"expected (horizon, {self.action_dim}) actions, got shape {tuple(actions.shape)}"
            )
        arr = actions.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            bad = int(np.sum(~np.isfinite(arr)))
            raise ChunkRejected("non_finite", f"{bad} action value(s) are NaN or infinite")
        return arr

    # ---------------------------------------------------------------- commands

    def clamp_to_joint_limits(self, q) -> np.ndarray:
        q = np.clip(np.asarray(q, dtype=np.float64), self.lower, self.upper)
        if self.gripper_index is not None:
            i = self.gripper_index
            q[i] = min(max(q[i], self.gripper_lower), self.gripper_upper)
        return q

    def inside_box(self, q) -> bool:
        if self.box_lower is None:
            return True
        p = np.asarray(self._fk(q), dtype=np.float64)
        return bool(np.all(p >= self.box_lower) and np.all(p <= self.box_upper))

    def _box_excess(self, q) -> float:
        p = np.asarray(self._fk(q), dtype=np.float64)
        return float(np.sum(np.maximum(self.box_lower - p, 0) + np.maximum(p - self.box_upper, 0)))

    def limit(self, target, last) -> tuple[np.ndarray, tuple[str, ...]]:
        """The command to send for ``target`` given the last command sent, and the clamps applied."""
        target = np.asarray(target, dtype=np.float64)
        last = np.asarray(last, dtype=np.float64)
        clamps: list[str] = []

        cmd = np.clip(target, self.lower, self.upper)
        if self.gripper_index is not None:
            i = self.gripper_index
            g = min(max(cmd[i], self.gripper_lower), self.gripper_upper)
            if g != target[i]:
                clamps.append(GRIPPER)
            cmd[i] = g
            others = np.ones(len(cmd), dtype=bool)
            others[i] = False
            if np.any(cmd[others] != target[others]):
                clamps.append(JOINT_LIMIT)
        elif np.any(cmd != target):
            clamps.append(JOINT_LIMIT)

        step = cmd - last
        limited = np.clip(step, -self.max_step, self.max_step)
        if np.any(limited != step):
            clamps.append(STEP_LIMIT)
            cmd = last + limited

        if self.box_lower is not None and not self.inside_box(cmd):
            clamps.append(WORKSPACE)
            cmd = self._pull_into_box(cmd, last)

        for name in clamps:
            self.counts[name] += 1
        return cmd, tuple(clamps)

    def _pull_into_box(self, cmd: np.ndarray, last: np.ndarray) -> np.ndarray:
        if not self.inside_box(last):
            # Only when the arm started outside the box: allow moves that bring it closer, else hold.
            return cmd if self._box_excess(cmd) < self._box_excess(last) else last.copy()
        inside, outside = 0.0, 1.0
        for _ in range(_BISECTION_STEPS):
            mid = 0.5 * (inside + outside)
            if self.inside_box(last + mid * (cmd - last)):
                inside = mid
            else:
                outside = mid
        return last + inside * (cmd - last)

    def violations(self, q, last=None, tol: float = 1e-9) -> list[str]:
        """Which limits ``q`` breaks (for tests and audits): empty when it meets them all."""
        q = np.asarray(q, dtype=np.float64)
        found = []
        if q.shape != (self.action_dim,) or not np.all(np.isfinite(q)):
            return ["malformed"]
        if np.any(q < self.lower - tol) or np.any(q > self.upper + tol):
            found.append(JOINT_LIMIT)
        if self.gripper_index is not None:
            g = q[self.gripper_index]
            if g < self.gripper_lower - tol or g > self.gripper_upper + tol:
                found.append(GRIPPER)
        if last is not None and np.any(np.abs(q - np.asarray(last)) > self.max_step + tol):
            found.append(STEP_LIMIT)
        if self.box_lower is not None:
            p = np.asarray(self._fk(q), dtype=np.float64)
            if np.any(p < self.box_lower - tol) or np.any(p > self.box_upper + tol):
                found.append(WORKSPACE)
        return found
