"""Labelled clips from the simulator, for calibrating rewarders (`vla sim clips`).

Each clip is a few frames of the front camera, oldest first, ending on the episode's last
frame, and its label is the task's success check on the physics state at that last frame.
Successes come from the scripted expert; failures from four kinds of episode chosen in turn:
the arm held still, a random wanderer, the expert stopped part-way (hard negatives: a cube
lifted but not yet over the bowl, a cube pushed onto the line) and the expert with noisy
actions. Whatever an episode's source, its label is what the physics says; labels are kept
balanced by dropping episodes whose label is already full.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import attrs
import numpy as np

from vla_so101_description.description import SO101
from vla_sim.tasks import resolve_task

FAILURE_SOURCES = ("still", "random", "early_stop", "perturbed")
CAPTURE_HZ = 5.0  # how often a front frame is kept while an episode runs
TYPICAL_S = {"pick_place": 4.5, "push_left": 3.8, "lift": 2.7}  # the expert's usual time to success


@attrs.frozen
class Episode:
    frames: list  # front-camera frames captured during the episode, the last one at its end
    success: bool
    source: str
    seed: int
    duration_s: float


class _Runner:
    """Runs one episode on ``robot`` driven by a per-tick action function, capturing front frames."""

    def __init__(self, robot, expert):
        self.robot = robot
        self.expert = expert

    def run(self, task_id: str, seed: int, source: str, rng: np.random.Generator) -> Episode:
        robot = self.robot
        robot.reset(task_id, seed)
        every = max(1, int(round(robot.control_hz / CAPTURE_HZ)))
        frames = [robot.render("front")]
        limit = robot.max_episode_s
        if source == "still":
            limit = rng.uniform(1.5, 3.0)
        elif source == "random":
            limit = rng.uniform(2.5, 4.5)
        elif source == "early_stop":
            limit = rng.uniform(0.2, 0.7) * TYPICAL_S[task_id]
        elif source == "perturbed":
            limit = min(limit, 8.0)
        policy = self._policy(source, rng)
        ticks = 0
        settle = None  # ticks left to run after success, so the last frame shows a settled scene
        while robot.elapsed_s < limit - 1e-9:
            robot.act(policy())
            ticks += 1
            if ticks % every == 0:
                frames.append(robot.render("front"))
            if settle is None and source in ("expert", "perturbed") and robot.success():
                settle = int(0.4 * robot.control_hz)
            if settle is not None:
                settle -= 1
                if settle <= 0:
                    break
        if ticks % every != 0:
            frames.append(robot.render("front"))
        return Episode(frames, robot.success(), source, seed, robot.elapsed_s)

    def _policy(self, source: str, rng: np.random.Generator) -> Callable[[], np.ndarray]:
        robot = self.robot
        if source == "still":
            hold = robot.joint_positions().astype(float)
            return lambda: hold
        if source == "random":
            return _RandomWander(robot, rng)
        return _ChunkFollower(robot, self.expert, noise=0.08 if source == "perturbed" else 0.0, rng=rng)


class _ChunkFollower:
    """Executes the expert's chunks, replanning every ``replan`` ticks; optional action noise."""

    def __init__(self, robot, expert, noise: float, rng: np.random.Generator, replan: int = 20):
        self.robot, self.expert, self.noise, self.rng, self.replan = robot, expert, noise, rng, replan
        self.queue: list[np.ndarray] = []
        self.offset = np.zeros(6)

    def __call__(self) -> np.ndarray:
        if not self.queue:
            chunk = self.expert.infer([self.robot.observe(images=False)])[0]
            self.queue = list(chunk[: self.replan])
            if self.noise:
                # a slowly drifting offset: misses grasps and placements the way a poor policy does
                self.offset = 0.7 * self.offset + self.rng.normal(0.0, self.noise, 6)
        return self.queue.pop(0).astype(float) + self.offset


class _RandomWander:
    """Moves the tool between random points over the table, opening and closing the gripper at random."""

    def __init__(self, robot, rng: np.random.Generator, ticks_per_move: int = 20):
        self.rng, self.n = rng, ticks_per_move
        self.q = robot.joint_positions().astype(float)
        self.path: list[np.ndarray] = []

    def __call__(self) -> np.ndarray:
        if not self.path:
            target = self.rng.uniform([0.12, -0.2, 0.02], [0.3, 0.2, 0.15])
            goal = SO101.kinematics.inverse_kinematics(target, self.q, max_iter=40)
            goal[5] = self.rng.uniform(-0.17, 1.2)
            self.path = [self.q + (goal - self.q) * (i + 1) / self.n for i in range(self.n)]
        self.q = self.path.pop(0)
        return self.q


def pick_frames(frames: list, k: int) -> list:
    """``k`` frames spread over the episode, the last one included."""
    if len(frames) <= k:
        return list(frames)
    idx = np.linspace(0, len(frames) - 1, k).round().astype(int)
    return [frames[i] for i in idx]


def generate_clips(
    out: str | Path,
    task: str,
    n: int,
    *,
    frames_per_clip: int = 4,
    seed: int = 0,
    size: int = 224,
    append: bool = False,
    on_clip: Callable[[Episode, bool], None] | None = None,
) -> dict:
    """Write ``n`` labelled clips of ``task`` into ``out`` (half successes); returns a summary."""
    from vla.rewarding.labels import ClipWriter
    from vla_sim.config import ScriptedConfig, SimConfig
    from vla_sim.expert import ScriptedPolicy
    from vla_sim.robot import SimRobot

    t = resolve_task(task)
    if n < 2:
        raise ValueError(f"clips: -n must be at least 2 (one success and one failure), got {n}")
    if frames_per_clip < 1:
        raise ValueError(f"clips: frames per clip must be at least 1, got {frames_per_clip}")
    robot = SimRobot(SimConfig(task=t.id, cameras=["front"], image_height=size, image_width=size))
    expert = ScriptedPolicy(ScriptedConfig())
    runner = _Runner(robot, expert)
    rng = np.random.default_rng(seed)
    want = {True: (n + 1) // 2, False: n // 2}
    have = {True: 0, False: 0}
    info: dict[str, dict] = {}
    attempt = 0
    out = Path(out)
    try:
        with ClipWriter(out, append=append) as writer:
            while have[True] < want[True] or have[False] < want[False]:
                if attempt >= 6 * n:
                    raise RuntimeError(
                        f"clips: gave up after {attempt} episodes with {have[True]} successes and {have[False]} failures"
                    )
                need_success = have[True] < want[True] and (have[False] >= want[False] or attempt % 2 == 0)
                source = "expert" if need_success else FAILURE_SOURCES[(attempt // 2) % len(FAILURE_SOURCES)]
                episode = runner.run(t.id, seed * 100_003 + attempt, source, rng)
                attempt += 1
                keep = have[episode.success] < want[episode.success]
                if keep:
                    clip_id = f"{t.id}_{seed}_{attempt - 1:04d}"
                    writer.add(clip_id, t.id, t.goal, episode.success, pick_frames(episode.frames, frames_per_clip))
                    have[episode.success] += 1
                    info[clip_id] = {"source": episode.source, "seed": episode.seed, "duration_s": round(episode.duration_s, 2)}
                if on_clip is not None:
                    on_clip(episode, keep)
    finally:
        robot.close()
    # provenance beside the pinned labels file: which episode kind and seed made each clip
    info_path = out / "clips_info.json"
    previous = json.loads(info_path.read_text()) if append and info_path.is_file() else {}
    previous.update(info)
    info_path.write_text(json.dumps(previous, indent=1, sort_keys=True))
    return {"task": t.id, "clips": have[True] + have[False], "successes": have[True], "failures": have[False], "episodes": attempt}
