"""Policy backend `primitives`: one open-loop plan per episode, made from the first front frame.

When a request with ``reset`` (a new episode) comes for a session, the backend finds the objects
the goal names in the front camera frame, takes that session's parameters (from the parameter
source a learner plugs in, else the fixed ones), and plans the whole episode as joint targets.
Every later request of the session gets the rest of that plan from where the arm is: with RTC
the unexecuted rest of the previous chunk (``prev_chunk``) says exactly where; without it the
nearest planned pose to the observed joints does. The chunk is ``horizon`` long (20 s by
default), so a client that uses whole chunks asks two or three times per episode.

``observation.environment_state`` is never read: objects come from the camera only.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

import attrs
import numpy as np

from vla.calibration.camera import CameraCalibration
from vla.policy import CameraContract, PolicyInfo
from vla_primitives.config import PrimitivesConfig
from vla_primitives.motion import Trajectory
from vla_primitives.params import Goal, GoalError, ParamsError, parse_goal, resolve_params
from vla_primitives.perception import ObjectFinder, PerceptionError
from vla_primitives.skills import Scene, Skills

log = logging.getLogger(__name__)

MAX_SESSIONS = 256  # plans kept at once (one per arm in a learning run; oldest dropped first)
STATE_KEY = "observation.state"
IMAGE_PREFIX = "observation.images."


class ParameterSource(Protocol):
    def params_for(self, session: str) -> dict[str, float]: ...


@attrs.define
class _Episode:
    goal: Goal
    params: dict[str, float]
    plan: np.ndarray  # (P, n) joint targets from the tick after the first observation
    scene: Scene
    start: int = 0  # plan index where the last chunk sent started
    intervals: list[int] = attrs.field(factory=list)  # ticks between requests, where the pose told clearly


class PrimitivesBackend:
    def __init__(self, config: PrimitivesConfig | None = None, source: ParameterSource | None = None, description=None,
                 calibration: CameraCalibration | None = None):
        self.config = config or PrimitivesConfig()
        self.source = source
        if description is None:
            from vla.description import get_description

            description = get_description(self.config.robot)
        self.desc = description
        if self.desc.gripper is None:
            raise ValueError(f"the primitives grasp and push with a gripper; robot {self.desc.name!r} has none")
        self._default_cal = calibration or (CameraCalibration.load(self.config.calibration) if self.config.calibration else None)
        self._cals = {key: CameraCalibration.load(path) for key, path in self.config.calibrations.items()}
        if self._default_cal is None and not self._cals:
            raise ValueError(
                "the primitives need a camera calibration: set calibration=PATH "
                "(`vla calibrate camera --arm ARM` writes <lab>/arms/<arm>/camera-front.yaml)"
            )
        self._finders: dict[int, ObjectFinder] = {}
        self._fixed = _load_params_file(self.config.params) if self.config.params else {}
        self._episodes: OrderedDict[str, _Episode] = OrderedDict()
        self._lock = threading.Lock()
        cal = self._default_cal or next(iter(self._cals.values()))
        self._shape = (cal.height, cal.width, 3)

    # ------------------------------------------------------------------ backend API

    def info(self) -> PolicyInfo:
        n = len(self.desc.joint_names)
        return PolicyInfo(
            name="primitives",
            cameras=(CameraContract(self.config.camera, self._shape),),
            state_dim=n,
            action_dim=n,
            horizon=self.config.horizon,
            supports_rtc=True,
            max_batch=16,
            extra={"control_hz": self.config.control_hz, "plan": "open loop per episode, from the first front frame"},
            keeps_inputs=False,  # an episode keeps what it read from the frame, never the frame
        )

    def warmup(self) -> None:
        """Load OpenCV and run one IK move, so that the first episode's plan is not the slow one."""
        import cv2  # noqa: F401  (the import is the slow part)

        Trajectory(self.desc, self.desc.home, self.config.control_hz).move(
            self.desc.kinematics.forward_kinematics(self.desc.home) + [0, 0, -0.01]).plan()

    def reset(self) -> None:
        """Nothing global to forget: plans are per session and start again on each session's reset."""

    def infer(self, batch: list[dict[str, Any]]) -> list[np.ndarray]:
        return [self._chunk(obs) for obs in batch]

    # ------------------------------------------------------------------ sessions

    def calibration_for(self, session: str) -> CameraCalibration:
        if session in self._cals:
            return self._cals[session]
        parts = set(session.split("-"))
        for key, cal in self._cals.items():
            if key in parts:
                return cal
        if self._default_cal is None:
            raise ValueError(f"no camera calibration for session {session!r} (calibrations: {', '.join(self._cals)})")
        return self._default_cal

    def params_for(self, session: str, goal: Goal) -> dict[str, float]:
        if self.source is not None:
            given = self.source.params_for(session)
        else:
            given = self._fixed.get(goal.skill, {}).get(_norm(goal.text), {})
        try:
            return resolve_params(goal.text, given)
        except ParamsError as exc:
            raise ParamsError(f"session {session!r}: {exc}") from None

    def episode(self, session: str) -> _Episode | None:
        """The plan a session is following (for tests and audits)."""
        return self._episodes.get(session)

    def _chunk(self, obs: dict[str, Any]) -> np.ndarray:
        q = np.asarray(obs.get(STATE_KEY, ()), dtype=np.float64).reshape(-1)
        n = len(self.desc.joint_names)
        if q.shape != (n,) or not np.all(np.isfinite(q)):
            raise ValueError(f"{STATE_KEY}: expected {n} finite joint positions (radians), got shape {q.shape}")
        task = obs.get("task")
        if not isinstance(task, str) or not task:
            raise ValueError("the primitives need the goal text in 'task'")
        session = str(obs.get("session") or "")
        with self._lock:
            if obs.get("reset"):
                # a new episode: the last one's plan must not answer a retry if planning fails
                self._episodes.pop(session, None)
            ep = self._episodes.get(session)
        if ep is None or ep.goal.text != task:
            ep = self._new_episode(session, task, q, obs)
            j = 0
        else:
            j = self._locate(ep, q, obs.get("prev_chunk"))
        ep.start = j
        h = self.config.horizon
        chunk = ep.plan[j : j + h]
        if len(chunk) < h:
            chunk = np.vstack([chunk, np.repeat(ep.plan[-1:], h - len(chunk), axis=0)])
        return np.ascontiguousarray(chunk, dtype=np.float32)

    def _new_episode(self, session: str, task: str, q: np.ndarray, obs: dict[str, Any]) -> _Episode:
        goal = parse_goal(task)
        key = IMAGE_PREFIX + self.config.camera
        if key not in obs:
            raise ValueError(f"the primitives need the {self.config.camera} camera's frame ({key!r}) at the start of an episode")
        scene = self.perceive(goal, obs[key], session)
        params = self.params_for(session, goal)
        traj = Trajectory(self.desc, q, self.config.control_hz)
        Skills(traj, self.config).compose(goal, scene, params)
        ep = _Episode(goal=goal, params=params, plan=traj.plan(), scene=scene)
        with self._lock:
            self._episodes[session] = ep
            self._episodes.move_to_end(session)
            while len(self._episodes) > MAX_SESSIONS:
                self._episodes.popitem(last=False)
        return ep

    def perceive(self, goal: Goal, frame, session: str = "") -> Scene:
        cal = self.calibration_for(session)
        finder = self._finders.get(id(cal))
        if finder is None:
            finder = self._finders[id(cal)] = ObjectFinder(cal, self.config.object_size, self.config.container_height)
        frame = np.asarray(frame)
        hsv = finder.hsv(frame)
        target = finder.find(frame, goal.object_colour, hsv=hsv)
        container = line = None
        if goal.skill == "pick_place":
            container = finder.find(frame, goal.target_colour, height=self.config.container_height, hsv=hsv, cube=False)
        elif goal.skill == "push":
            line = finder.find_line(frame, hsv=hsv)
        # the camera's "left" on the table: minus its x axis (image right), flattened
        right = np.asarray(cal.R_array[0][:2])
        left = tuple(float(v) for v in -right / max(np.linalg.norm(right), 1e-9))
        return Scene(target=target, container=container, line=line, left=left)

    def _locate(self, ep: _Episode, q: np.ndarray, prev) -> int:
        """The plan index the next chunk starts at."""
        plan, s = ep.plan, ep.start
        h = self.config.horizon
        last = len(plan)
        if prev is not None:
            prev = np.asarray(prev, dtype=np.float32)
            if prev.ndim == 2 and len(prev) and prev.shape[1] == plan.shape[1]:
                ext = np.vstack([plan, np.repeat(plan[-1:], h, axis=0)])
                m = min(len(prev), 8)
                hi = min(s + h, last + 1)
                for j in range(s, hi + 1):
                    if j + m <= len(ext) and np.allclose(ext[j : j + m], prev[:m], atol=1e-5):
                        return min(j, last)
        # Nearest planned arm pose to the observed one. Where the arm stands still in the plan (the
        # jaws closing) many ticks tie: the client's requests come at a steady interval, so take
        # the interval measured where the match was clear; before one is known, the earliest tie
        # (a replayed wait, never a skipped one).
        arm = self.desc.arm_joints
        hi = min(s + h + 30, last)
        window = plan[s:hi, :arm].astype(np.float64)
        if not len(window):
            return last
        d = np.abs(window - q[:arm]).max(axis=1)
        ties = np.flatnonzero(d <= d.min() + 1e-3)
        if len(ties) <= 2:
            j = int(ties[0])
            if j > 0:
                ep.intervals.append(j)
        elif ep.intervals:
            j = int(np.clip(int(np.median(ep.intervals[-5:])), ties[0], ties[-1]))
        else:
            j = int(ties[0])
        return min(s + j + 1, last)


def _norm(text: str) -> str:
    return " ".join(str(text).strip().lower().rstrip(".!").split())


def _load_params_file(path: str) -> dict[str, dict[str, dict[str, float]]]:
    """{skill: {goal text: params}} from a JSON file of one {"task", "params"} object or a list."""
    file = Path(path)
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such parameters file") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ParamsError(f"{path}: not a JSON parameters file: {exc}") from None
    entries = data if isinstance(data, list) else [data]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for i, entry in enumerate(entries):
        where = f"{path}" + (f" entry {i}" if isinstance(data, list) else "")
        if not isinstance(entry, dict) or not isinstance(entry.get("task"), str) or not isinstance(entry.get("params"), dict):
            raise ParamsError(f"{where}: expected {{\"task\": goal text, \"params\": {{name: value}}}}")
        try:
            goal = parse_goal(entry["task"])
            params = resolve_params(entry["task"], entry["params"])
        except (GoalError, ParamsError) as exc:
            raise ParamsError(f"{where}: {exc}") from None
        out.setdefault(goal.skill, {})[_norm(entry["task"])] = params
    return out


def set_parameter_source(backend: PrimitivesBackend, source: ParameterSource | None) -> None:
    """Plug a learner in: from the next episode of each session on, its params come from ``source``."""
    if source is not None and not callable(getattr(source, "params_for", None)):
        raise TypeError("a parameter source needs a params_for(session) -> dict method")
    backend.source = source


__all__ = ["ParameterSource", "PerceptionError", "PrimitivesBackend", "set_parameter_source"]
