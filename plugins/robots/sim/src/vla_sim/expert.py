"""The scripted expert: solves the sim tasks from object poses with inverse kinematics.

It is a policy backend like any other (`vla serve --policy scripted`): it reads only the
observation (``observation.state``, ``observation.environment_state`` and ``task``) and answers an
action chunk of absolute joint targets. It keeps no memory between calls: each call works out
where the task stands from the observation (is the cube between the jaws? is the pusher behind
the cube?) and plans from the arm's current pose, so it recovers by itself from a missed grasp or
a dropped cube and works with any chunk merging on the client side.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from vla.description.rotations import rotation_error, rotvec_to_matrix, top_down
from vla.policy import PolicyInfo
from vla_so101_description.description import SO101
from vla_sim.config import ScriptedConfig
from vla_sim.scene import BOWL_HEIGHT, CUBE_HALF
from vla_sim.tasks import ENV_STATE_BODIES, ENV_STATE_DIM, LIFT_HEIGHT, left_of_line, quat_yaw, resolve_task

GRIP_OPEN = 1.0  # radians: about 75 mm between the pads
GRIP_CLOSED = -0.17  # commanded when closing; the force limit makes the squeeze
APPROACH_OFFSET = 0.044  # cube centre from the tool point along the jaw axis while the jaws are open
HELD_OFFSET = 0.0215  # ... and once the moving jaw has pressed it against the fixed jaw
GRASP_Z = CUBE_HALF  # tool point height for a grasp: the pads at the cube's middle
PUSH_Z = 0.012
PAD_HALF_DEPTH = 0.008  # the pads' half size across the jaw axis
SAFE_Z = 0.07  # travel height of the tool point with nothing in the hand
MAX_JOINT_STEP = 0.15  # radians per tick, below the safety layer's default step limit
_KIN = SO101.kinematics


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


class _Path:
    """Builds a chunk tick by tick: straight tool moves solved by IK, gripper ramps, holds."""

    def __init__(self, q, horizon: int, hz: float):
        self.q = np.asarray(q, dtype=float).copy()
        self.p, self.r = _KIN.tool_pose(self.q)
        self.horizon, self.hz = horizon, hz
        self.actions: list[np.ndarray] = []

    @property
    def full(self) -> bool:
        return len(self.actions) >= self.horizon

    def _emit(self, q):
        step = np.clip(q - self.q, -MAX_JOINT_STEP, MAX_JOINT_STEP)
        self.q = self.q + step
        self.actions.append(self.q.copy())

    def move(self, target, rot=None, speed=0.1, grip=None, min_ticks=1):
        if self.full:
            return self
        target = np.asarray(target, dtype=float)
        rot = self.r if rot is None else rot
        rv = rotation_error(rot, self.r)
        dist = float(np.linalg.norm(target - self.p))
        n = max(min_ticks, math.ceil(dist * self.hz / speed), math.ceil(np.linalg.norm(rv) * self.hz / 2.0))
        p0, r0, g0 = self.p.copy(), self.r.copy(), self.q[5]
        g1 = g0 if grip is None else grip
        for i in range(1, n + 1):
            if self.full:
                break
            s = i / n
            p = p0 + s * (target - p0)
            r = rotvec_to_matrix(s * rv) @ r0
            q = _KIN.inverse_kinematics(p, self.q, r, max_iter=20, tol=2e-4, rot_tol=5e-3)
            q[5] = g0 + s * (g1 - g0)
            self._emit(q)
        self.p, self.r = target, rot
        return self

    def grip(self, value: float, ticks: int):
        return self.move(self.p, self.r, grip=value, min_ticks=ticks)

    def hold(self, ticks: int):
        return self.move(self.p, self.r, min_ticks=ticks)

    def chunk(self) -> np.ndarray:
        while not self.full:
            self.actions.append(self.q.copy())
        return np.asarray(self.actions[: self.horizon], dtype=np.float32)


class ScriptedPolicy:
    """Policy backend `scripted`: an IK expert for the sim tasks that reads privileged object poses."""

    def __init__(self, config: ScriptedConfig | None = None):
        self.config = config or ScriptedConfig()

    def info(self) -> PolicyInfo:
        return PolicyInfo(
            name="scripted",
            cameras=(),
            state_dim=6,
            action_dim=6,
            horizon=self.config.horizon,
            extra={"needs": ["observation.environment_state"], "control_hz": self.config.control_hz},
        )

    def warmup(self) -> None:
        from vla_sim.tasks import sample_layout

        layout = sample_layout("lift", 0)
        env = np.zeros(ENV_STATE_DIM, dtype=np.float32)
        x, y, _ = layout.cubes["yellow_cube"]
        i = ENV_STATE_BODIES.index("yellow_cube") * 7
        env[i : i + 4] = (x, y, CUBE_HALF, 1.0)
        self.infer([{"observation.state": np.asarray(SO101.home, np.float32), "observation.environment_state": env, "task": "lift"}])

    def reset(self) -> None:
        """Nothing to forget: every chunk is planned from the observation alone."""

    def infer(self, batch: list[dict[str, Any]]) -> list[np.ndarray]:
        return [self._plan(obs) for obs in batch]

    # ------------------------------------------------------------------ planning

    def _plan(self, obs: dict[str, Any]) -> np.ndarray:
        for key in ("observation.state", "observation.environment_state", "task"):
            if key not in obs:
                raise ValueError(f"the scripted expert needs {key!r} in the observation (the sim robot provides it)")
        q = np.asarray(obs["observation.state"], dtype=float).reshape(-1)
        env = np.asarray(obs["observation.environment_state"], dtype=float).reshape(-1)
        if q.shape != (6,) or not np.all(np.isfinite(q)):
            raise ValueError(f"observation.state: expected 6 finite joint positions (radians), got shape {q.shape}")
        if env.shape != (ENV_STATE_DIM,) or not np.all(np.isfinite(env)):
            raise ValueError(f"observation.environment_state: expected {ENV_STATE_DIM} finite values, got shape {env.shape}")
        task = resolve_task(str(obs["task"]))
        poses = dict(zip(ENV_STATE_BODIES, env.reshape(-1, 7)))
        path = _Path(q, self.config.horizon, self.config.control_hz)
        if task.id == "push_left":
            self._push(path, poses["green_cube"], poses["line"])
        else:
            self._pick(path, task.id, poses[task.target], poses["blue_bowl"])
        return path.chunk()

    def _between_jaws(self, path: _Path, cube) -> np.ndarray | None:
        """The cube's centre in the tool frame when it sits between the (open or closing) jaws."""
        v = path.r.T @ (cube[:3] - path.p)
        if abs(v[0]) < 0.02 and abs(v[1]) < 0.02 and 0.008 < v[2] < APPROACH_OFFSET + 0.015:
            return v
        return None

    def _in_hand(self, path: _Path, cube) -> np.ndarray | None:
        """The cube's centre in the tool frame when the jaws hold it, else None."""
        v = self._between_jaws(path, cube)
        if v is not None and v[2] < HELD_OFFSET + 0.01 and 0.1 < path.q[5] < 0.65:
            return v
        return None

    def _grasp_yaw(self, path: _Path, cube) -> float:
        """Jaw yaw across two faces of the cube, nearest the current jaw yaw when the hand is close."""
        current = math.atan2(path.r[1, 2], path.r[0, 2])
        if np.linalg.norm(path.p[:2] - cube[:2]) > 0.06:
            current = math.atan2(cube[1], cube[0] - 0.0388)  # radial: wrist roll near zero
        face = quat_yaw(cube[3:7])
        candidates = [face + k * math.pi / 2 for k in range(-4, 5)]
        return min(candidates, key=lambda a: abs(_wrap(a - current)))

    def _pick(self, path: _Path, task_id: str, cube, bowl) -> None:
        cfg = self.config
        held = self._in_hand(path, cube)
        if held is None:
            if task_id == "pick_place" and np.linalg.norm(cube[:2] - bowl[:2]) < 0.04 and cube[2] < BOWL_HEIGHT:
                # released in the bowl: back off upward and wait
                path.grip(GRIP_OPEN, 4).move(path.p + [0, 0, 0.06], speed=cfg.approach_speed).hold(cfg.horizon)
                return
            self._grasp(path, cube)
            return
        # Holding: command the gripper fully closed again (the measured angle is where the cube
        # stopped the jaws; commanding that would release the squeeze).
        if task_id == "lift":
            cube_goal_z = CUBE_HALF + LIFT_HEIGHT + 0.06  # well clear of the threshold, plain to see
            if cube[2] >= cube_goal_z - 0.01:
                path.grip(GRIP_CLOSED, cfg.horizon)
            else:
                path.move(path.p + [0, 0, cube_goal_z - cube[2]], speed=cfg.approach_speed, grip=GRIP_CLOSED)
            return
        # pick_place, cube in hand: carry above the bowl, lower, open
        release_z = BOWL_HEIGHT + CUBE_HALF + 0.015
        carry_z = release_z + 0.03
        over = np.linalg.norm(cube[:2] - bowl[:2])
        if over < 0.012 and cube[2] < release_z + 0.012:
            path.grip(GRIP_OPEN, 6).move(path.p + [0, 0, 0.06], speed=cfg.approach_speed)
            return
        rot = path.r
        offset = rot @ held  # cube centre relative to the tool point, world frame

        def tool_for(cube_xyz):
            return np.asarray(cube_xyz) - offset

        path.grip(GRIP_CLOSED, 1)
        if over > 0.012:
            if cube[2] < carry_z - 0.01:
                path.move(tool_for([cube[0], cube[1], carry_z]), speed=cfg.approach_speed)
            path.move(tool_for([bowl[0], bowl[1], carry_z]), speed=cfg.speed)
        path.move(tool_for([bowl[0], bowl[1], release_z]), speed=cfg.approach_speed)
        path.grip(GRIP_OPEN, 6).move(path.p + [0, 0, 0.06], speed=cfg.approach_speed)

    def _grasp(self, path: _Path, cube) -> None:
        cfg = self.config
        yaw = self._grasp_yaw(path, cube)
        rot = top_down(yaw)
        jaw = rot[:, 2]
        grasp = np.array([cube[0], cube[1], GRASP_Z]) - APPROACH_OFFSET * jaw
        pre = grasp + [0, 0, SAFE_Z - GRASP_Z]
        p = path.p
        lift_to = np.array([p[0], p[1], GRASP_Z + 0.06])
        if p[2] < GRASP_Z + 0.012 and self._between_jaws(path, cube) is not None:
            pass  # down beside the cube with the cube between the jaws (maybe closing already): close
        elif np.linalg.norm(p[:2] - grasp[:2]) < 0.008 and p[2] < pre[2] + 0.02:
            path.move(grasp, rot, speed=cfg.approach_speed, grip=GRIP_OPEN)
            lift_to = grasp + [0, 0, 0.06]
        else:
            if p[2] < SAFE_Z - 0.02:
                path.move([p[0], p[1], SAFE_Z], speed=cfg.approach_speed, grip=GRIP_OPEN)
            path.move(pre, rot, speed=cfg.speed, grip=GRIP_OPEN, min_ticks=6)
            path.move(grasp, rot, speed=cfg.approach_speed)
            lift_to = grasp + [0, 0, 0.06]
        path.grip(GRIP_CLOSED, 8).hold(8)
        path.move(lift_to, speed=cfg.approach_speed)

    def _push(self, path: _Path, cube, line) -> None:
        cfg = self.config
        p = path.p
        line_y = float(line[1])
        if left_of_line(cube, line) and cube[1] < line_y - 0.03:
            if p[2] < SAFE_Z - 0.01:
                path.move([p[0], p[1], SAFE_Z], speed=cfg.approach_speed)
            path.hold(cfg.horizon)
            return
        rot = top_down(0.0)  # jaws along x: the closed pads' flat side pushes toward -y
        contact_y = cube[1] + CUBE_HALF * math.sqrt(2) + PAD_HALF_DEPTH  # clears a cube at any yaw
        x = cube[0] - 0.002
        behind = np.array([x, contact_y + 0.008, PUSH_Z])
        end = np.array([x, line_y - 0.045 + CUBE_HALF + PAD_HALF_DEPTH, PUSH_Z])
        in_place = abs(p[0] - x) < 0.012 and cube[1] + 0.012 < p[1] < contact_y + 0.03 and p[2] < PUSH_Z + 0.012
        above = np.linalg.norm(p[:2] - behind[:2]) < 0.01 and p[2] < SAFE_Z + 0.02
        if above and not in_place:
            path.move(behind, rot, speed=cfg.approach_speed)
        elif not in_place:
            if p[2] < SAFE_Z - 0.02:
                path.move([p[0], p[1], SAFE_Z], speed=cfg.approach_speed, grip=GRIP_CLOSED)
            path.move(behind + [0, 0, SAFE_Z - PUSH_Z], rot, speed=cfg.speed, grip=GRIP_CLOSED, min_ticks=6)
            path.move(behind, rot, speed=cfg.approach_speed)
        path.move(end, rot, speed=cfg.push_speed)
        path.move(end + [0, 0.01, SAFE_Z - PUSH_Z], rot, speed=cfg.approach_speed)
