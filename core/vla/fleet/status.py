"""One arm's live state, written by its own process and read by the supervisor and the dashboard.

Invariant: ``status.json`` and ``frame.jpg`` are only ever replaced whole (written beside and
renamed over, which POSIX makes atomic), so a reader sees the previous state or the next one,
never half a file, and needs no lock with the writer.

What the figures mean:

- ``control_hz``: ticks the loop ran per wall-clock second over the last ``RATE_WINDOW_S``;
- ``underflows_per_min``: queue underflows (the queue ran dry while the server was connected
  and had answered at least once in the episode) per minute since the first chunk arrived;
  holds before an episode's first chunk are start-up, not underflows;
- ``underflows_last_min``: underflows in the last 60 s, what the G1 alarm watches.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections import deque
from pathlib import Path
from typing import Any

from vla.atomicfile import write_atomic
from vla.client.runner import SessionHooks

STATUS_FILE = "status.json"
FRAME_FILE = "frame.jpg"
LOG_FILE = "arm.log"
RATE_WINDOW_S = 5.0
WRITE_EVERY_S = 0.5
HISTORY_S = 120.0  # queue length kept for the dashboard's plot
HISTORY_HZ = 5.0
ALARM_UNDERFLOWS_PER_MIN = 1  # gate G1: an arm that underflows more than once a minute
STALE_AFTER_S = 5.0  # a running arm whose file is older than this is reported stale


def read_status(folder: Path) -> dict[str, Any] | None:
    """The arm's last status, or None if it has written none yet (or it cannot be read)."""
    try:
        return json.loads((folder / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None


def encode_frame(rgb, quality: int = 80) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


class StatusHooks(SessionHooks):
    """Publishes a session's state into ``folder`` for the supervisor and the dashboard.

    Runs on the control thread, between ticks, so it keeps its per-tick work to a few counter
    reads; the file is written at most every ``WRITE_EVERY_S`` and the camera is rendered at
    ``camera_hz`` (0: never). The camera frame is the one the policy's observation already
    carried when there is one, else one render of ``camera``.

    It also watches its parent: when the supervisor is gone (killed without passing on the
    stop), the arm stops itself, holding, instead of running unsupervised.
    """

    def __init__(self, folder: str | os.PathLike, camera_hz: float = 2.0, camera: str | None = None,
                 parent_pid: int | None = None, restarts: int = 0):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.camera_hz = float(camera_hz)
        self.camera = camera
        self.parent_pid = parent_pid
        self.restarts = restarts
        self.started = time.time()
        self.state = "starting"
        self.error: str | None = None
        self.task: str | None = None
        self.episode: int | None = None
        self.episodes_done = 0
        self.successes = 0
        self.first_chunk_at: float | None = None
        self._rate = deque()  # (wall time, ticks so far)
        self._underflow_times: deque[float] = deque()
        self._underflows_seen = 0
        self._queue = deque(maxlen=int(HISTORY_S * HISTORY_HZ))
        self._last_queue_sample = 0.0
        self._last_write = 0.0
        self._last_frame = 0.0
        self._last_parent_check = 0.0
        self.frame_error: str | None = None
        self.frames = 0
        self._session = None
        self.write()

    # ------------------------------------------------------------------ hooks

    def on_prepared(self, session):
        self._session = session
        self.write()

    def on_ready(self, session):
        # The first render builds the renderer (the simulator's EGL context: seconds on a busy
        # CPU); done here, before anything moves, it cannot stall the control loop.
        if self.camera_hz > 0:
            self._grab_frame(session, None)
            self._last_frame = time.time()
        self.state = "running"
        self.write(force=True)

    def on_episode_start(self, session, episode):
        self.task, self.episode = episode.task, episode.index

    def on_tick(self, session, tick):
        now = time.time()
        c = session.controller
        totals = c.totals
        if self.first_chunk_at is None and totals.get("chunks", 0):
            self.first_chunk_at = now
        underflows = totals.get("underflows", 0)
        if underflows > self._underflows_seen:
            self._underflow_times.extend([now] * (underflows - self._underflows_seen))
            self._underflows_seen = underflows
        if now - self._last_queue_sample >= 1.0 / HISTORY_HZ:
            self._last_queue_sample = now
            self._queue.append((round(now, 3), c.queue.length_from(tick.tick + 1)))
            self._rate.append((now, totals.get("ticks", 0)))
            while self._rate and now - self._rate[0][0] > RATE_WINDOW_S:
                self._rate.popleft()
        if self.camera_hz > 0 and now - self._last_frame >= 1.0 / self.camera_hz:
            self._last_frame = now
            self._grab_frame(session, tick)
        if self.parent_pid is not None and now - self._last_parent_check >= 1.0:
            self._last_parent_check = now
            if os.getppid() != self.parent_pid:
                session.stop("supervisor gone")
        self.write(now=now)

    def on_episode_end(self, session, result):
        self.episodes_done += 1
        self.successes += int(bool(result.success))
        self.write(force=True)

    def on_end(self, session, summary):
        if summary.error:
            self.state, self.error = "failed", summary.error
        elif summary.stopped_by:
            self.state = "stopped"
        else:
            self.state = "done"
        self.exit_code = summary.exit_code
        self.write(force=True)

    # -------------------------------------------------------------- internals

    def _grab_frame(self, session, tick) -> None:
        robot = session.robot
        cams = list(getattr(robot, "cameras", {}) or {})
        if not cams:
            return
        cam = self.camera if self.camera in cams else cams[0]
        try:
            obs = (tick.observation if tick is not None else None) or {}
            image = obs.get("observation.images." + cam)
            if image is None:
                render = getattr(robot, "render", None)  # one camera only, where the robot can
                image = render(cam) if callable(render) else robot.observe()["observation.images." + cam]
            write_atomic(self.folder / FRAME_FILE, encode_frame(image), durable=False)
            self.frames += 1
            self.frame_error = None
        except Exception as exc:  # a lost camera shows on the dashboard; the policy's own use of it decides the run
            self.frame_error = f"{type(exc).__name__}: {exc}"

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        s = self._session
        c = s.controller if s is not None else None
        totals = dict(c.totals) if c is not None else {}
        while self._underflow_times and now - self._underflow_times[0] > 60.0:
            self._underflow_times.popleft()
        hz = None
        if len(self._rate) >= 2 and self._rate[-1][0] > self._rate[0][0]:
            (t0, n0), (t1, n1) = self._rate[0], self._rate[-1]
            hz = round((n1 - n0) / (t1 - t0), 2)
        minutes = (now - self.first_chunk_at) / 60.0 if self.first_chunk_at else 0.0
        underflows = int(totals.get("underflows", 0))
        return {
            "label": s.label if s is not None else self.folder.name,
            "pid": os.getpid(),
            "robot": s.setup.robot_name if s is not None and s.setup is not None else None,
            "arm": s.arm_id if s is not None else None,
            "state": self.state,
            "error": self.error,
            "task": self.task,
            "episode": self.episode,
            "episodes_done": self.episodes_done,
            "successes": self.successes,
            "control_hz": hz,
            "target_hz": s.settings.control_hz if s is not None and s.settings is not None else None,
            "camera_hz": self.camera_hz,
            "queue": c.queue.length_from(c.last_tick + 1) if c is not None else 0,
            "queue_history": [list(p) for p in self._queue],
            "rtt_ms": None if c is None or c.last_rtt_ms is None else round(c.last_rtt_ms, 2),
            "connected": bool(c is not None and c.connected),
            "ticks": int(totals.get("ticks", 0)),
            "underflows": underflows,
            "underflows_per_min": round(underflows / minutes, 3) if minutes > 0 else None,
            "underflows_last_min": len(self._underflow_times),
            "alarm": len(self._underflow_times) > ALARM_UNDERFLOWS_PER_MIN,
            "minutes_since_first_chunk": round(minutes, 4),
            "holds": int(totals.get("holds", 0)),
            "clamps": int(totals.get("clamps", 0)),
            "rejected": int(totals.get("rejected", 0)),
            "errors": int(totals.get("errors", 0)),
            "disconnects": int(totals.get("disconnects", 0)),
            "requests": int(totals.get("requests", 0)),
            "frames": self.frames,
            "frame_error": self.frame_error,
            "restarts": self.restarts,
            "log": str(s.log_path) if s is not None and s.log_path is not None else None,
            "safety": s.setup.safety_source if s is not None and s.setup is not None else None,
            "started_at": self.started,
            "updated_at": round(now, 3),
            "exit_code": getattr(self, "exit_code", None),
        }

    def write(self, force: bool = False, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if not force and now - self._last_write < WRITE_EVERY_S:
            return
        self._last_write = now
        write_atomic(self.folder / STATUS_FILE, json.dumps(self.snapshot(now)).encode(), durable=False)
