"""One arm of a `vla learn` run, as its own process: ``python -m vla.learning.arm SPEC_JSON``.

The arm runs the same session as `vla run` (``SessionRunner``: robot plugin, controller, safety
layer, watchdog, recorder) against the learner's policy server over the WebSocket protocol.
It runs the episodes the learner sends it, one at a time, and at each episode's end it

1. sends the episode's frames (first and last front-camera frame) to the rewarder service's
   ``/score`` over HTTP,
2. writes an audit line (the simulator's own success check beside the rewarder's verdict) to
   the run's ``audit.jsonl``, which only evaluation and plots read,
3. tells the learner the rewarder's reply and what the arm measured of its own motion (control
   time, tool path length, safety events) - never the simulator's check.

Protocol, JSON lines. Learner -> arm on stdin: ``{"type": "job", "job": ID, "seed": S}``,
``{"type": "abort", "job": ID}`` (end that episode now, holding the arm: an operator's pause),
``{"type": "stop"}``. Arm -> learner on the original stdout: ``ready``, ``episode`` (per job),
``aborted``, ``error`` and ``end`` messages. Everything else the process prints goes to stderr.

The simulator ends an episode on its own success check in `vla run`; here that would tell the
learner (through the episode's length and last frame) what only the audit may know, so the
robot is wrapped (``LearningRobot``) to run every episode to its time limit.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from vla.client.runner import SessionHooks
from vla.client.session import EpisodeSpec
from vla.robot import ENV_STATE_KEY

# What an ``episode`` message may carry to the learner; the learner refuses anything else.
EPISODE_KEYS = frozenset({"type", "arm", "job", "reply", "length_s", "path_m", "safety_events", "recorded"})


class LearningRobot:
    """Wraps the session's robot so an episode ends only on its time limit or an abort, and so
    that the simulator's privileged object poses (``observation.environment_state``) never leave it.

    ``success()`` answers False to the control loop; the real check (``audit_success``) is read
    once, after the episode, for the audit log. A robot that cannot judge or reset itself (a
    real arm) gets a reset that does nothing (the operator resets the scene) and a time limit of
    ``episode_s``."""

    def __init__(self, robot, episode_s: float | None):
        self._robot = robot
        self._episodic = callable(getattr(robot, "reset", None)) and callable(getattr(robot, "success", None))
        self._episode_s = episode_s
        self._t0 = time.monotonic()
        self.aborted = threading.Event()

    def __getattr__(self, name):
        return getattr(self._robot, name)

    def observe(self, images: bool = True):
        """The robot's observation without the simulator's object poses: they never leave the arm
        (the policy server sits in the learner's process)."""
        import inspect

        try:
            takes_images = "images" in inspect.signature(self._robot.observe).parameters
        except (TypeError, ValueError):
            takes_images = False
        observation = self._robot.observe(images=images) if takes_images else self._robot.observe()
        observation.pop(ENV_STATE_KEY, None)
        return observation

    @property
    def max_episode_s(self) -> float | None:
        if self._episode_s is not None:
            return self._episode_s
        return getattr(self._robot, "max_episode_s", None)

    def reset(self, task: str, seed: int | None = None) -> None:
        self._t0 = time.monotonic()
        if self._episodic:
            self._robot.reset(task, seed)

    def success(self) -> bool:
        return False

    def timed_out(self) -> bool:
        if self.aborted.is_set():
            return True
        if self._episodic and self._episode_s is None and callable(getattr(self._robot, "timed_out", None)):
            return bool(self._robot.timed_out())
        elapsed = getattr(self._robot, "elapsed_s", None) if self._episodic else None
        elapsed = time.monotonic() - self._t0 if elapsed is None else float(elapsed)
        limit = self.max_episode_s
        return limit is not None and elapsed >= limit

    def audit_success(self) -> bool | None:
        return bool(self._robot.success()) if self._episodic else None


def _stated_goal(robot) -> str | None:
    """The goal text an episodic robot states for its task (the simulator's ``task`` key)."""
    if not robot._episodic:
        return None
    goal = robot.observe(images=False).get("task")
    return goal if isinstance(goal, str) and goal else None


class _Channel:
    """The learner's end of the pipe: JSON lines out on the process's original stdout."""

    def __init__(self):
        self._out = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)  # prints from anything else go to stderr, never into the protocol
        sys.stdout = sys.stderr
        self._lock = threading.Lock()

    def send(self, **message: Any) -> None:
        with self._lock:
            self._out.write(json.dumps(message, separators=(",", ":")) + "\n")
            self._out.flush()


class _Commands:
    """Reads the learner's commands from stdin in a thread; EOF means the learner is gone: stop."""

    def __init__(self, robot_ref: list):
        self.jobs: queue.Queue = queue.Queue()
        self._robot_ref = robot_ref
        self.stopping = threading.Event()
        self.aborted_jobs: set = set()
        self.current = None  # the job id of the episode running now
        threading.Thread(target=self._read, name="learner-commands", daemon=True).start()

    def _read(self) -> None:
        for line in sys.stdin:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            kind = message.get("type")
            if kind == "job":
                self.jobs.put(message)
            elif kind == "abort":
                # the job may not have started yet: remember it, so that it ends at once when it does
                self.aborted_jobs.add(message.get("job"))
                if self._robot_ref and self.current == message.get("job"):
                    self._robot_ref[0].aborted.set()
            elif kind == "stop":
                break
        self.stopping.set()
        if self._robot_ref:
            self._robot_ref[0].aborted.set()
        self.jobs.put(None)


class ArmHooks(SessionHooks):
    def __init__(self, spec: dict, channel: _Channel, commands: _Commands, robot_ref: list):
        self.spec = spec
        self.channel = channel
        self.commands = commands
        self.robot_ref = robot_ref
        self.job: dict | None = None
        self._fk = None
        self._last_tool = None
        self._path_m = 0.0
        self._rewarder = None
        self._audit = Path(spec["audit_path"])

    # -------------------------------------------------------------- the plan

    def plan(self, task: str) -> Iterator[EpisodeSpec]:
        while True:
            job = self.commands.jobs.get()
            if job is None:
                return
            self.job = job
            robot = self.robot_ref[0]
            robot.aborted.clear()
            self.commands.current = job.get("job")
            if job.get("job") in self.commands.aborted_jobs:
                self.commands.aborted_jobs.discard(job.get("job"))
                robot.aborted.set()  # cut before it began: it ends at its first tick
            yield EpisodeSpec(task, job.get("seed"))
            self.commands.current = None

    # -------------------------------------------------------------- hooks

    def on_prepared(self, session):
        robot = LearningRobot(session.robot, self.spec.get("episode_s"))
        session.robot = robot
        self.robot_ref.append(robot)
        description = session.description
        fk = description.kinematics.forward_kinematics if description is not None else None
        self._fk = fk or getattr(robot, "forward_kinematics", None)

    def on_ready(self, session):
        from vla.rewarding.client import RewarderClient

        self._rewarder = RewarderClient(self.spec["rewarder_url"], api_key=os.environ.get("VLA_REWARDER_API_KEY"),
                                        arm=session.label, timeout=30.0, retries=2)
        robot = session.robot
        goal = self.spec["task"]
        if robot._episodic:  # the simulator states a task id's goal text
            robot.reset(self.spec["task"], None)
            goal = _stated_goal(robot) or goal
        self.channel.send(type="ready", arm=self.spec["arm"], control_hz=session.settings.control_hz,
                          policy=(session.metadata or {}).get("policy"), goal=goal)

    def on_episode_start(self, session, episode):
        self._last_tool = None
        self._path_m = 0.0

    def on_tick(self, session, tick):
        if self._fk is None:
            return
        p = np.asarray(self._fk(tick.command), dtype=float)[:3]
        if self._last_tool is not None:
            self._path_m += float(np.linalg.norm(p - self._last_tool))
        self._last_tool = p

    def on_episode_end(self, session, result):
        job = self.job or {}
        robot = session.robot
        if robot.aborted.is_set():
            self.commands.aborted_jobs.discard(job.get("job"))  # when it comes again, it runs
            result.keep = False
            self.channel.send(type="aborted", arm=self.spec["arm"], job=job.get("job"))
            return
        frames = [f.images["front"] for f in result.frames if "front" in f.images]
        if len(frames) < 2:
            raise RuntimeError(f"the episode kept {len(frames)} front-camera frames; the rewarder needs the first and last")
        goal = _stated_goal(robot) or result.task
        reply = self._score(frames, goal, job.get("job"))
        audit_success = robot.audit_success()
        result.keep = bool(reply.get("success"))  # a recording keeps rewarder-approved episodes only
        result.info["rewarder_score"] = reply.get("score")
        self._write_audit(job, result, reply, audit_success)
        safety = int(result.counts.get("clamps", 0)) + int(result.counts.get("rejected", 0))
        self.channel.send(type="episode", arm=self.spec["arm"], job=job.get("job"),
                          reply={k: reply.get(k) for k in ("score", "raw_score", "success", "threshold", "rewarder")},
                          length_s=float(result.duration_s), path_m=round(self._path_m, 5), safety_events=safety,
                          recorded=bool(session.recorder is not None and result.keep))

    def _score(self, frames, goal: str, job_id) -> dict:
        from vla.rewarding.errors import RewarderError

        try:
            return self._rewarder.score_reply(frames, goal, episode_id=str(job_id) if job_id is not None else None)
        except ConnectionError as exc:
            raise RuntimeError(f"the rewarder is down: {exc}") from None
        except RewarderError as exc:
            raise RuntimeError(f"the rewarder refused the episode: {exc}") from None

    def _write_audit(self, job: dict, result, reply: dict, audit_success) -> None:
        line = json.dumps({
            "arm": self.spec["arm"], "job": job.get("job"), "phase": job.get("phase"), "seed": result.seed,
            "task": result.task, "sim_success": audit_success, "rewarder_score": reply.get("score"),
            "rewarder_success": reply.get("success"), "length_s": result.duration_s, "t": round(time.time(), 3),
        }, separators=(",", ":")) + "\n"
        # one write on an O_APPEND file: lines from several arms never interleave
        fd = os.open(self._audit, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    channel = _Channel()
    robot_ref: list = []
    commands = _Commands(robot_ref)
    try:
        from vla.client.runner import SessionOptions, SessionRunner
        from vla.client.session import FrameCapture
        from vla.config import load_config

        loaded = load_config(spec.get("config_path"))
        for arm_id, path in (spec.get("arm_files") or {}).items():
            loaded.config.arms[arm_id] = path
        options = SessionOptions(
            tasks=(spec["task"],), episodes=None, robot=spec.get("robot"), arm=spec["arm"],
            policy_url=spec["policy_url"], api_key=spec.get("policy_api_key"),
            log_path=spec.get("log_path") or os.devnull, record_dir=spec.get("record_dir"), kind="learn",
            run_id=spec["run_id"], label=spec["arm"], clock=spec.get("clock", "simulated"),
            capture=FrameCapture(cameras=("front",)), episode_s=None, handle_signals=False,
            # the whole chunk by default: an open-loop primitive plan needs no fresh frame every
            # second, and each request costs a render and a round trip
            actions_per_chunk=spec.get("actions_per_chunk") or 100_000, threshold=spec.get("threshold"),
        )
        hooks = ArmHooks(spec, channel, commands, robot_ref)
        runner = SessionRunner(loaded, options, hooks=[hooks])
        summary = runner.run(plan=hooks.plan(spec["task"]))
    except Exception as exc:  # the arm could not even start: say why
        channel.send(type="error", arm=spec.get("arm"), message=f"{type(exc).__name__}: {exc}")
        return 1
    if summary.error:
        channel.send(type="error", arm=spec["arm"], message=summary.error)
    channel.send(type="end", arm=spec["arm"], exit_code=summary.exit_code,
                 datasets=[str(p) for p in summary.dataset])
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
