"""The learner's side of its arm processes: start them, hand them jobs, hear what they report.

Each arm is a child process (``python -m vla.learning.arm``) with a pipe each way; its reports
arrive on one queue as ``(arm, message)``. A child that dies reports ``{"type": "exit"}`` with its
exit code, so a crashed arm is never a silent hang. On Linux a child is told to die with the
learner (PR_SET_PDEATHSIG), so a SIGKILLed `vla learn` leaves no arm running.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from vla.learning.arm import EPISODE_KEYS
from vla.learning.contract import LearningError


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class ArmProcess:
    def __init__(self, arm: str, spec: dict, events: queue.Queue, stderr_path: Path, env: dict | None = None):
        self.arm = arm
        self.extra_env = dict(env or {})  # secrets go here, never on the command line
        self.spec = spec
        self.events = events
        self.stderr_path = Path(stderr_path)
        self.proc: subprocess.Popen | None = None
        self.busy: dict | None = None  # the job it runs now

    def start(self) -> None:
        self.stderr_path.parent.mkdir(parents=True, exist_ok=True)
        self._stderr = self.stderr_path.open("ab")
        env = {**os.environ, **self.extra_env, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vla.learning.arm", json.dumps(self.spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1, env=env,
            preexec_fn=_die_with_parent,
        )
        threading.Thread(target=self._read, name=f"arm-{self.arm}", daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(message, dict):
                self.events.put((self.arm, message))
        self.events.put((self.arm, {"type": "exit", "code": self.proc.wait()}))

    def send(self, **message) -> None:
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # it has died; its exit message says so

    def tail(self, lines: int = 8) -> str:
        """The last lines the arm wrote to stderr, for error messages."""
        try:
            text = self.stderr_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def stop(self, timeout_s: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        self.send(type="stop")
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._stderr.close()
        return code


def check_episode_message(message: dict) -> dict:
    """An arm's episode report as the learner may take it: the rewarder's reply and the arm's own
    measurements, nothing else (no simulator success check can slip in)."""
    extra = set(message) - EPISODE_KEYS
    if extra:
        raise LearningError(f"arm {message.get('arm')!r} sent fields the learner does not take: {sorted(extra)}")
    reply = message.get("reply")
    if not isinstance(reply, dict) or not isinstance(reply.get("score"), (int, float)) \
            or not isinstance(reply.get("success"), bool):
        raise LearningError(f"arm {message.get('arm')!r} sent an episode without a rewarder reply: {reply!r}")
    return message
