"""Kinematics of a serial arm in pure numpy: the tool point, its frame, and damped least-squares IK.

A chain is what a URDF says about an arm's moving joints: each joint is a fixed transform
from its parent (the URDF joint's origin) followed by a rotation about the joint's axis, and
the tool point is a fixed transform from the last link. A description package fills in the
numbers; nothing here knows any particular arm. Where vla's zero (LeRobot's calibrated
mid-range) differs from the URDF's, ``zero_offset`` is the URDF angle at vla's zero.

The inverse kinematics is damped least squares on the position of the tool point, with the
tool frame's rotation as a secondary task in the null space of the position task: arms with
five joints (SO-100, SO-101, Koch) meet the position first and the rotation as nearly as the
remaining freedom allows. Joints are clamped to their limits at every iteration, and a joint
pressed against its limit is taken out of the solve so that the others make up for it.
"""

from __future__ import annotations

import math
from typing import Sequence

import attrs
import numpy as np

from vla.description.rotations import quat_to_matrix, rotation_error, rpy_to_matrix

_EYE3 = np.eye(3)


def _homogeneous(pos, rot: np.ndarray) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3] = rot
    t[:3, 3] = pos
    return t


@attrs.frozen
class ChainJoint:
    """One revolute joint: parent -> joint frame (translation, rotation), then a turn about ``axis``."""

    name: str
    origin: np.ndarray = attrs.field(eq=False)  # (4, 4) parent -> joint frame at angle 0
    axis: tuple[float, float, float] = (0.0, 0.0, 1.0)  # in the joint frame, unit length
    zero_offset: float = 0.0  # URDF angle at vla's zero (radians)

    @classmethod
    def from_quat(cls, name: str, xyz, wxyz, axis=(0.0, 0.0, 1.0), zero_offset: float = 0.0) -> ChainJoint:
        """From an MJCF body (``pos``, ``quat`` as w x y z)."""
        return cls(name, _homogeneous(xyz, quat_to_matrix(wxyz)), _unit(axis), zero_offset)

    @classmethod
    def from_rpy(cls, name: str, xyz, rpy, axis=(0.0, 0.0, 1.0), zero_offset: float = 0.0) -> ChainJoint:
        """From a URDF joint (``origin xyz rpy``, ``axis xyz``)."""
        return cls(name, _homogeneous(xyz, rpy_to_matrix(rpy)), _unit(axis), zero_offset)


def _unit(axis) -> tuple[float, float, float]:
    a = np.asarray(axis, dtype=float)
    n = float(np.linalg.norm(a))
    if n == 0:
        raise ValueError("a joint axis must not be zero")
    return tuple(float(x) for x in a / n)


def tool_transform(xyz, wxyz=None, rpy=None, matrix=None) -> np.ndarray:
    """A fixed transform (last link -> tool frame, or vla's base -> the model's base), with the
    rotation given as a quaternion (w x y z), URDF roll-pitch-yaw, or a 3x3 matrix."""
    given = [r for r in (wxyz, rpy, matrix) if r is not None]
    if len(given) != 1:
        raise ValueError("give the rotation as exactly one of wxyz, rpy or matrix")
    if wxyz is not None:
        rot = quat_to_matrix(wxyz)
    elif rpy is not None:
        rot = rpy_to_matrix(rpy)
    else:
        rot = np.asarray(matrix, dtype=float).reshape(3, 3)
        if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-6) or np.linalg.det(rot) < 0:
            raise ValueError("the tool rotation must be a proper rotation matrix")
    return _homogeneous(xyz, rot)


class SerialChain:
    """Forward kinematics, Jacobian and inverse kinematics of the joints that move the tool point.

    ``limits`` are (min, max) radians of those joints in vla's frame. Joint positions may be
    given for the arm joints only or for every joint of the robot (``n_joints``, the gripper
    included); extra joints do not move the tool point and come back from IK unchanged.
    ``base`` (4x4) places the model's base frame in vla's (x forward, z up), for a model whose
    own frame faces another way.
    """

    def __init__(self, joints: Sequence[ChainJoint], tool: np.ndarray, limits, n_joints: int | None = None,
                 base: np.ndarray | None = None):
        self.joints = tuple(joints)
        self.arm_joints = len(self.joints)
        self.n_joints = n_joints or self.arm_joints
        limits = np.asarray(limits, dtype=float)
        if limits.shape != (self.arm_joints, 2):
            raise ValueError(f"limits: expected ({self.arm_joints}, 2) for the arm joints, got {limits.shape}")
        self.lower, self.upper = limits[:, 0].copy(), limits[:, 1].copy()
        self._links = tuple(j.origin for j in self.joints)
        self._axes = np.array([j.axis for j in self.joints])
        self._offsets = np.array([j.zero_offset for j in self.joints])
        self._z_only = bool(np.allclose(self._axes, [0.0, 0.0, 1.0]))
        self._tool = np.asarray(tool, dtype=float)
        self._base = np.eye(4) if base is None else np.asarray(base, dtype=float)
        self._eye = np.eye(self.arm_joints)

    # ------------------------------------------------------------- forward

    def _check_q(self, q) -> np.ndarray:
        q = np.asarray(q, dtype=float).reshape(-1)
        if q.shape[0] not in (self.arm_joints, self.n_joints):
            raise ValueError(
                f"joint positions: expected {self.arm_joints} or {self.n_joints} values (radians), got shape {np.shape(q)}"
            )
        if not np.all(np.isfinite(q)):
            raise ValueError(f"joint positions must be finite, got {q}")
        return q

    def _turn(self, i: int, angle: float) -> np.ndarray:
        c, s = math.cos(angle), math.sin(angle)
        t = np.eye(4)
        if self._z_only:
            t[0, 0], t[0, 1], t[1, 0], t[1, 1] = c, -s, s, c
            return t
        x, y, z = self._axes[i]
        C = 1.0 - c
        t[:3, :3] = (
            (c + x * x * C, x * y * C - z * s, x * z * C + y * s),
            (y * x * C + z * s, c + y * y * C, y * z * C - x * s),
            (z * x * C - y * s, z * y * C + x * s, c + z * z * C),
        )
        return t

    def joint_frames(self, q) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Joint origins (n, 3), joint axes (n, 3) and the tool transform (4, 4), all in the base frame."""
        q = self._check_q(q)
        t = self._base.copy()
        n = self.arm_joints
        origins = np.empty((n, 3))
        axes = np.empty((n, 3))
        for i in range(n):
            t = t @ self._links[i]
            origins[i] = t[:3, 3]
            axes[i] = t[:3, :3] @ self._axes[i]
            t = t @ self._turn(i, q[i] + self._offsets[i])
        return origins, axes, t @ self._tool

    def tool_pose(self, q) -> tuple[np.ndarray, np.ndarray]:
        """Tool point (3,) and tool frame rotation (3, 3) in the base frame."""
        _, _, t = self.joint_frames(q)
        return t[:3, 3].copy(), t[:3, :3].copy()

    def forward_kinematics(self, q) -> np.ndarray:
        """Tool point (x, y, z) in metres in the base frame for joint positions ``q`` (radians)."""
        return self.tool_pose(q)[0]

    def jacobian(self, q) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Geometric Jacobian (6, n) of the tool point (rows: linear, angular), plus the tool pose."""
        origins, axes, t = self.joint_frames(q)
        p = t[:3, 3]
        jac = np.empty((6, self.arm_joints))
        d = p - origins
        jac[0] = axes[:, 1] * d[:, 2] - axes[:, 2] * d[:, 1]
        jac[1] = axes[:, 2] * d[:, 0] - axes[:, 0] * d[:, 2]
        jac[2] = axes[:, 0] * d[:, 1] - axes[:, 1] * d[:, 0]
        jac[3:] = axes.T
        return jac, p, t[:3, :3]

    # ------------------------------------------------------------- inverse

    def inverse_kinematics(
        self,
        target_xyz,
        q0,
        target_rot=None,
        *,
        damping: float = 1e-3,
        max_iter: int = 60,
        tol: float = 1e-4,
        rot_tol: float = 1e-3,
        max_step: float = 0.25,
        full_output: bool = False,
    ):
        """Joint positions that put the tool point at ``target_xyz`` (metres, base frame).

        Damped least squares from ``q0``, clamped to the joint limits at every iteration. With
        ``target_rot`` (3x3, columns = the tool frame's axes in the base frame) the tool frame is
        turned toward that rotation in the null space of the position task. Returns the joint
        positions, or with ``full_output`` also the remaining position error (m) and rotation
        error (rad).
        """
        n = self.arm_joints
        q = self._check_q(q0).copy()
        target = np.asarray(target_xyz, dtype=float).reshape(3)
        if not np.all(np.isfinite(target)):
            raise ValueError(f"target must be a finite (x, y, z) in metres, got {target_xyz}")
        lo, hi = self.lower, self.upper
        r_target = None if target_rot is None else np.asarray(target_rot, dtype=float).reshape(3, 3)
        pos_err = rot_err = 0.0
        for it in range(max_iter + 1):
            jac, p, r = self.jacobian(q)
            e_pos = target - p
            pos_err = float(np.linalg.norm(e_pos))
            e_rot = rotation_error(r_target, r) if r_target is not None else np.zeros(3)
            rot_err = float(np.linalg.norm(e_rot))
            if (pos_err < tol and rot_err < rot_tol) or it == max_iter:
                break
            free = np.ones(n)
            for _pass in range(n):
                jf = jac * free
                jp_pinv = _damped_pinv(jf[:3], damping)
                dq = jp_pinv @ e_pos
                if r_target is not None:
                    null = self._eye - jp_pinv @ jf[:3]
                    jr = jf[3:] @ null
                    dq = dq + null @ (_damped_pinv(jr, 10 * damping) @ (e_rot - jf[3:] @ dq))
                dq *= free
                blocked = ((q[:n] <= lo + 1e-9) & (dq < 0)) | ((q[:n] >= hi - 1e-9) & (dq > 0))
                blocked &= free.astype(bool)
                if not blocked.any():
                    break
                free[blocked] = 0.0
            norm = np.linalg.norm(dq)
            if norm < 1e-6:  # the best compromise this pose allows
                break
            if norm > max_step:
                dq *= max_step / norm
            q[:n] = np.clip(q[:n] + dq, lo, hi)
        if full_output:
            return q, pos_err, rot_err
        return q


def _damped_pinv(j: np.ndarray, damping: float) -> np.ndarray:
    return j.T @ np.linalg.inv(j @ j.T + damping**2 * _EYE3)
