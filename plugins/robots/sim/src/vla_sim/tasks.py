"""The three tabletop tasks: their goals, where objects go for a seed, and success from physics.

Frames: metres in the arm's base frame, x away from the arm, y to the arm's left, z up, the
table top at z = 0. "Left of the line" means the viewer's left in the ``front`` camera, which
faces the arm: the side of the line toward -y. The line runs along x.

``observation.environment_state`` (float32, 35 values) holds, for each of ``ENV_STATE_BODIES``
in order, position (x, y, z) and orientation quaternion (w, x, y, z): the three cubes (free
bodies), then the bowl and the line (placed at reset, fixed to the table).
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from vla_sim.config import TASK_IDS as CONFIG_TASK_IDS
from vla_sim.scene import (
    BOWL_HEIGHT,
    BOWL_INNER_R,
    BOWL_WALL,
    CUBE_HALF,
    FIXED_BODIES,
    FREE_BODIES,
    LINE_HALF_WIDTH,
)

ENV_STATE_BODIES = FREE_BODIES + FIXED_BODIES
ENV_STATE_DIM = 7 * len(ENV_STATE_BODIES)
PAN_AXIS_XY = (0.0388, 0.0)  # where the shoulder_pan axis meets the table

LIFT_HEIGHT = 0.05  # the yellow cube's bottom must be this far above the table


@attrs.frozen
class Task:
    id: str
    goal: str
    max_episode_s: float
    target: str  # the object the goal is about


TASKS: dict[str, Task] = {
    t.id: t
    for t in (
        Task("pick_place", "put the red cube in the blue bowl", 20.0, "red_cube"),
        Task("push_left", "push the green cube to the left of the line", 15.0, "green_cube"),
        Task("lift", "lift the yellow cube", 12.0, "yellow_cube"),
    )
}
TASK_IDS = tuple(TASKS)
assert TASK_IDS == CONFIG_TASK_IDS


def resolve_task(name: str) -> Task:
    """The task for an id (``pick_place``) or its exact goal text."""
    if isinstance(name, str):
        key = name.strip()
        if key in TASKS:
            return TASKS[key]
        for task in TASKS.values():
            if key.lower() == task.goal:
                return task
    choices = ", ".join(f"{t.id} ({t.goal!r})" for t in TASKS.values())
    raise ValueError(f"unknown sim task {name!r}; expected one of: {choices}")


# ------------------------------------------------------------------------------ layout


@attrs.frozen
class Layout:
    """Where everything starts: (x, y, yaw) per cube, (x, y) for the bowl and the line."""

    cubes: dict[str, tuple[float, float, float]]
    bowl: tuple[float, float]
    line: tuple[float, float]


def _polar(rng: np.random.Generator, r: tuple[float, float], angle: tuple[float, float]) -> np.ndarray:
    rr, aa = rng.uniform(*r), rng.uniform(*angle)
    return np.array([PAN_AXIS_XY[0] + rr * math.cos(aa), PAN_AXIS_XY[1] + rr * math.sin(aa)])


def _far(p, others, min_dist) -> bool:
    return all(np.linalg.norm(p - np.asarray(o)) >= d for o, d in zip(others, min_dist))


def _scatter(rng, n, keep_out, existing, min_dist=0.07):
    """``n`` decoy positions on the table, clear of ``keep_out`` (a predicate) and of ``existing``."""
    placed: list[np.ndarray] = []
    for _ in range(5000):
        if len(placed) == n:
            return placed
        p = np.array([rng.uniform(0.08, 0.36), rng.uniform(-0.26, 0.26)])
        if np.linalg.norm(p) < 0.12 or keep_out(p):
            continue
        if _far(p, list(existing) + placed, [min_dist] * (len(existing) + len(placed))):
            placed.append(p)
    raise RuntimeError("could not place the decoy objects")


def sample_layout(task_id: str, seed: int | None) -> Layout:
    """Object placement for ``task_id``, the same for the same seed."""
    task = resolve_task(task_id)
    rng = np.random.default_rng(seed)
    yaw = {name: float(rng.uniform(-math.pi / 4, math.pi / 4)) for name in FREE_BODIES}
    work_r, work_a = (0.14, 0.23), (-0.7, 0.7)
    bowl_clear = BOWL_INNER_R + BOWL_WALL + 0.03  # decoys stay this far from the bowl's centre
    if task.id == "pick_place":
        cube = _polar(rng, work_r, work_a)
        while True:
            bowl = _polar(rng, (0.15, 0.23), work_a)
            if np.linalg.norm(bowl - cube) >= 0.14:  # room for the open jaws beside the wall
                break
        decoys = _scatter(
            rng, 2, lambda p: np.linalg.norm(p - cube) < 0.09 or np.linalg.norm(p - bowl) < bowl_clear, [cube, bowl]
        )
        cubes = {"red_cube": cube, "green_cube": decoys[0], "yellow_cube": decoys[1]}
        line = np.array([0.22, -0.30])  # off to the side, out of the way
    elif task.id == "push_left":
        line_y = rng.uniform(-0.04, 0.04)
        cube = np.array([rng.uniform(0.18, 0.26), line_y + rng.uniform(0.05, 0.09)])
        x0, x1, y0, y1 = cube[0] - 0.08, cube[0] + 0.08, line_y - 0.12, cube[1] + 0.10

        def corridor(p, margin=0.0):
            return x0 - margin <= p[0] <= x1 + margin and y0 - margin <= p[1] <= y1 + margin

        bowl = _scatter(rng, 1, lambda p: corridor(p, bowl_clear), [cube], min_dist=0.15)[0]
        decoys = _scatter(
            rng, 2, lambda p: corridor(p, 0.02) or np.linalg.norm(p - bowl) < bowl_clear, [cube, bowl]
        )
        cubes = {"red_cube": decoys[0], "green_cube": cube, "yellow_cube": decoys[1]}
        line = np.array([0.22, line_y])
    else:  # lift
        cube = _polar(rng, work_r, work_a)
        bowl = _scatter(rng, 1, lambda p: np.linalg.norm(p - cube) < 0.15, [cube], min_dist=0.15)[0]
        decoys = _scatter(
            rng, 2, lambda p: np.linalg.norm(p - cube) < 0.09 or np.linalg.norm(p - bowl) < bowl_clear, [cube, bowl]
        )
        cubes = {"red_cube": decoys[0], "green_cube": decoys[1], "yellow_cube": cube}
        line = np.array([0.22, -0.30])
    return Layout(
        cubes={n: (float(p[0]), float(p[1]), yaw[n]) for n, p in cubes.items()},
        bowl=(float(bowl[0]), float(bowl[1])),
        line=(float(line[0]), float(line[1])),
    )


# ----------------------------------------------------------------------------- success


@attrs.frozen
class WorldState:
    """What the success checks read from the physics."""

    poses: dict[str, np.ndarray]  # body -> (7,) position and quaternion (w, x, y, z)
    speeds: dict[str, float]  # free body -> linear speed, m/s
    touching: frozenset[tuple[str, str]]  # (cube, pad) pairs in contact


def quat_yaw(quat) -> float:
    w, x, y, z = quat
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def cube_corners_xy(pose) -> np.ndarray:
    """The (4, 2) corners of a cube's footprint (assumes it rests on a face)."""
    yaw = quat_yaw(pose[3:7])
    c, s = math.cos(yaw), math.sin(yaw)
    offsets = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]]) * CUBE_HALF
    rot = np.array([[c, -s], [s, c]])
    return pose[:2] + offsets @ rot.T


def in_bowl(cube_pose, bowl_pose) -> bool:
    d = np.linalg.norm(cube_pose[:2] - bowl_pose[:2])
    return bool(d < BOWL_INNER_R - 0.005 and cube_pose[2] < BOWL_HEIGHT)


def left_of_line(cube_pose, line_pose) -> bool:
    on_table = cube_pose[2] < CUBE_HALF + 0.01
    return bool(on_table and cube_corners_xy(cube_pose)[:, 1].max() < line_pose[1] - LINE_HALF_WIDTH)


def lifted(cube_pose) -> bool:
    return bool(cube_pose[2] - CUBE_HALF >= LIFT_HEIGHT)


def check_success(task_id: str, world: WorldState) -> bool:
    task = resolve_task(task_id)
    cube = world.poses[task.target]
    held = any(c == task.target for c, _ in world.touching)
    if task.id == "pick_place":
        return in_bowl(cube, world.poses["blue_bowl"]) and not held
    if task.id == "push_left":
        return left_of_line(cube, world.poses["line"])
    return lifted(cube) and held


# ------------------------------------------------------------------- benchmark variations
# Drawn from their own random streams, so that turning a variation on leaves the task's
# layout for a seed exactly as it is without it.

_DISTRACTOR_STREAM = 0xD15
_LIGHTING_STREAM = 0x11647


def _variation_rng(seed: int | None, stream: int) -> np.random.Generator:
    return np.random.default_rng(None if seed is None else (stream, int(seed) & 0xFFFFFFFF))


def sample_distractor(task_id: str, seed: int | None, layout: Layout) -> tuple[float, float, float]:
    """(x, y, yaw) of the extra distractor cube: on the table, clear of every object of ``layout``
    and, for the push, of the corridor the green cube is pushed through."""
    task = resolve_task(task_id)
    rng = _variation_rng(seed, _DISTRACTOR_STREAM)
    bowl = np.asarray(layout.bowl)
    cubes = [np.asarray(v[:2]) for v in layout.cubes.values()]
    target = np.asarray(layout.cubes[task.target][:2])
    bowl_clear = BOWL_INNER_R + BOWL_WALL + 0.03
    if task.id == "push_left":
        line_y = layout.line[1]
        x0, x1, y0, y1 = target[0] - 0.10, target[0] + 0.10, line_y - 0.14, target[1] + 0.12

        def keep_out(p):
            return (x0 <= p[0] <= x1 and y0 <= p[1] <= y1) or np.linalg.norm(p - bowl) < bowl_clear
    else:

        def keep_out(p):
            return np.linalg.norm(p - target) < 0.09 or np.linalg.norm(p - bowl) < bowl_clear

    p = _scatter(rng, 1, keep_out, cubes + [bowl])[0]
    return float(p[0]), float(p[1]), float(rng.uniform(-math.pi / 4, math.pi / 4))


def sample_lighting(seed: int | None, low: float, high: float) -> float:
    """The factor every light of the scene is scaled by for this episode."""
    return float(_variation_rng(seed, _LIGHTING_STREAM).uniform(low, high))
