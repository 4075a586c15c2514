"""One control tick at a time: pop the target for this tick, check it, send it, decide when to
ask for the next chunk. Nothing here waits on the network: replies and connection changes
arrive as events (``handle``) between ticks, and requests leave as return values of ``tick``.

The watchdog lives here too. A tick with no target for it — the queue ran dry, the server
is gone, the target's deadline passed — commands the last safe command again (the arm holds).
A target is executed only before its deadline, the end of its tick's slot.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from typing import Any, Callable

import attrs
import numpy as np

from vla.client.events import ConnectFailed, Connected, Disconnected, Failed, InferenceRequest, Reply, WorkerFailed
from vla.client.queue import MERGE_MODES, RTC, ActionQueue
from vla.client.safety import ChunkRejected, SafetyLayer
from vla.client.ticklog import TickLog
from vla.robot import ENV_STATE_KEY, IMAGE_PREFIX, STATE_KEY, TASK_KEY


# Error frames in a row, with no chunk ever answered, after which the run fails with the
# server's message (about 2.5 s at the retry pause below).
FAILURES_BEFORE_GIVING_UP = 10


class RunError(RuntimeError):
    """The run cannot go on (the policy and the robot do not fit); the message says why."""


@attrs.define
class ControlSettings:
    control_hz: float
    actions_per_chunk: int = 40
    chunk_size_threshold: float = 0.6
    merge: str = RTC
    jpeg_quality: int | None = None
    rtt_window: int = 20  # round trips remembered for the RTC delay estimate
    # The frozen prefix covers this percentile of recent delays. The maximum (100) freezes for
    # the slowest reply in the window, so every other chunk starts acting later than it could:
    # with 100-200 ms replies at 30 Hz that was two ticks more observe-to-action than `latest`.
    rtc_delay_percentile: float = 90.0
    retry_after_error_s: float = 0.25  # pause before asking again after an error frame or rejected chunk

    def __attrs_post_init__(self):
        if self.merge not in MERGE_MODES:
            raise ValueError(f"unknown merge mode {self.merge!r} (expected one of {', '.join(MERGE_MODES)})")
        if not self.control_hz > 0:
            raise ValueError(f"control rate must be > 0 Hz, got {self.control_hz}")
        if self.actions_per_chunk < 1:
            raise ValueError("actions_per_chunk must be >= 1")
        if not 0.0 < self.chunk_size_threshold <= 1.0:
            raise ValueError(f"chunk_size_threshold must be in (0, 1], got {self.chunk_size_threshold}")
        if not 50.0 <= self.rtc_delay_percentile <= 100.0:
            raise ValueError(f"rtc_delay_percentile must be within 50..100, got {self.rtc_delay_percentile}")


@attrs.define
class TickResult:
    tick: int
    command: np.ndarray
    hold: bool
    observation: dict[str, Any] | None
    request: InferenceRequest | None


class Controller:
    def __init__(
        self,
        robot,
        safety: SafetyLayer,
        settings: ControlSettings,
        clock,
        log: TickLog | None = None,
        task: str = "",
        session: str = "",
    ):
        self.robot = robot
        self.safety = safety
        self.settings = settings
        self.clock = clock
        self.log = log or TickLog(None)
        self.task = task
        self.session = session
        self.dt = 1.0 / settings.control_hz
        self.queue = ActionQueue(safety.action_dim)
        self.connected = False
        self.metadata: dict[str, Any] | None = None
        self.horizon: int | None = None
        self.in_flight: InferenceRequest | None = None
        self.delays: deque[float] = deque(maxlen=settings.rtt_window)
        self.last_rtt_ms: float | None = None
        self.stopping = False
        self.fatal: RunError | None = None
        self.totals: Counter[str] = Counter()
        # error frames by code, for the session (per episode in ``error_codes``), and the last
        # message each code came with: what the summary shows when requests fail
        self.total_error_codes: Counter[str] = Counter()
        self.error_messages: dict[str, str] = {}
        self.episode = -1
        self._request_id = 0
        self._chunk_id = 0
        self._send_rtc = settings.merge == RTC
        self._prepare_images: Callable[[dict[str, Any]], dict[str, Any]] = _all_images
        self._retry_after = -math.inf
        self._needs_images = True
        self._observe_can_skip_images = _has_keyword(robot.observe, "images")
        self.last_command: np.ndarray | None = None
        self.start_episode(-1, None)  # the session starts the real episodes

    # ---------------------------------------------------------------- episodes

    def start_episode(self, index: int, q0, task: str | None = None) -> None:
        self.episode = index
        self.stopping = False
        if task is not None:
            self.task = task
        self.t0 = self.clock.now()
        self.last_tick = -1
        self.queue.clear(0)
        self.in_flight = None  # a reply for the previous episode is ignored when it comes
        self.chunks = 0
        self.counts: Counter[str] = Counter()
        self.error_codes: Counter[str] = Counter()
        self._reset_sent = False
        if q0 is not None:
            q0 = np.asarray(q0, dtype=np.float64)
            self.last_command = self.safety.clamp_to_joint_limits(q0)
            if not np.allclose(self.last_command, q0):
                self.log.write("event", event="start_outside_limits", state=q0, t=self.log.rel(self.t0))
            elif not self.safety.inside_box(self.last_command):
                # The arm may only move back toward the box from here (see SafetyLayer).
                self.log.write("event", event="start_outside_workspace", state=q0, t=self.log.rel(self.t0))

    @property
    def chunk_len(self) -> int:
        apc = self.settings.actions_per_chunk
        return min(apc, self.horizon) if self.horizon else apc

    def next_tick_time(self) -> float:
        return self.t0 + (self.last_tick + 1) * self.dt

    def estimate_delay(self) -> int:
        """RTC inference delay d: how many ticks run between a request and its reply, judged by a
        high percentile of recent replies (a reply after ``x`` tick periods misses ticks 1..ceil(x)-1).

        A reply slower than the estimate is still safe: the actions for ticks that have passed
        are dropped as stale, and the frozen prefix was simply one action short."""
        if not self.delays:
            return 0
        delay = float(np.percentile(np.fromiter(self.delays, float), self.settings.rtc_delay_percentile))
        ticks = int(math.ceil(delay / self.dt - 1e-6)) - 1
        return min(max(0, ticks), max(0, self.chunk_len - 1))

    # ------------------------------------------------------------------ events

    def handle(self, event) -> None:
        now = self.clock.now()
        if isinstance(event, Reply):
            self._on_reply(event, now)
        elif isinstance(event, Connected):
            self._on_connected(event.metadata, now)
        elif isinstance(event, Disconnected):
            self._on_disconnected(event.reason, now)
        elif isinstance(event, ConnectFailed):
            self.log.write("event", event="connect_failed", reason=event.reason, t=self.log.rel(now))
        elif isinstance(event, Failed):
            if self.in_flight is event.request:
                self.in_flight = None
            self.counts["errors"] += 1
            self.totals["errors"] += 1
            self.error_codes[event.code] += 1
            self.total_error_codes[event.code] += 1
            self.error_messages[event.code] = event.message
            self._retry_after = now + self.settings.retry_after_error_s
            self.log.write("event", event="error", code=event.code, message=event.message, t=self.log.rel(now))
            if not self.totals["replies"] and self.totals["errors"] >= FAILURES_BEFORE_GIVING_UP:
                # A server that has refused everything so far will not start answering: a run
                # that goes on would only hold the arm (and record it holding) for nothing.
                self.fatal = RunError(
                    f"the policy server refused all {self.totals['errors']} requests so far: "
                    f"{event.code}: {event.message}"
                )
        elif isinstance(event, WorkerFailed):
            self.log.write("event", event="worker_failed", reason=event.reason, t=self.log.rel(now))
            self.fatal = RunError(f"the connection to the policy server broke down: {event.reason}")
        else:
            raise TypeError(f"unknown event {event!r}")

    def _on_connected(self, metadata: dict[str, Any], now: float) -> None:
        self.connected = True
        self.metadata = metadata if isinstance(metadata, dict) else {}
        self.log.write("event", event="connected", metadata=_describe(self.metadata), t=self.log.rel(now))
        try:
            self._apply_metadata(self.metadata)
        except RunError as exc:
            self.fatal = exc

    def _apply_metadata(self, md: dict[str, Any]) -> None:
        action_dim = md.get("action_dim")
        if isinstance(action_dim, int) and action_dim != self.safety.action_dim:
            raise RunError(
                f"policy {md.get('policy', '?')!r} answers {action_dim} joint targets per action, "
                f"but the robot has {self.safety.action_dim} joints ({', '.join(self.safety.joint_names)})"
            )
        horizon = md.get("horizon")
        if isinstance(horizon, int) and horizon > 0:
            self.horizon = horizon
        caps = md.get("capabilities")
        caps = caps if isinstance(caps, dict) else {}
        # A vla server says whether its policy uses RTC inputs; a server that does not say
        # (openpi's) gets them anyway, as extra keys it may ignore.
        self._send_rtc = self.settings.merge == RTC and caps.get("rtc", True) is not False
        cameras = md.get("cameras")
        # A vla server lists the cameras its policy takes, maybe none, and refuses any other
        # image key: send exactly those, even when the observation holds more (a recording
        # renders every camera). An openpi server does not say, so it gets every camera.
        if isinstance(cameras, dict):
            have = dict(getattr(self.robot, "cameras", {}) or {})
            missing = [c for c in cameras if c not in have]
            if missing:
                raise RunError(
                    f"policy {md.get('policy', '?')!r} needs camera(s) {', '.join(missing)}, "
                    f"but the robot has {', '.join(have) or 'none'}"
                )
            wanted = {c: tuple(int(x) for x in shape) for c, shape in cameras.items()}
            self._needs_images = bool(wanted)
            self._prepare_images = _image_preparer(wanted)
        else:
            self._needs_images = True
            self._prepare_images = _all_images

    def _on_disconnected(self, reason: str, now: float) -> None:
        dropped = self.queue.length_from(self.last_tick + 1)
        self.connected = False
        self.in_flight = None
        # The server is gone: hold from the next tick on rather than play out an unsupervised plan.
        self.queue.clear(self.last_tick + 1)
        self.counts["disconnects"] += 1
        self.totals["disconnects"] += 1
        self.log.write("event", event="disconnected", reason=reason, dropped=dropped, t=self.log.rel(now))

    def _on_reply(self, event: Reply, now: float) -> None:
        request = event.request
        if self.in_flight is request:
            self.in_flight = None
        if request.episode != self.episode:
            return
        reply = event.reply if isinstance(event.reply, dict) else {}
        self.counts["replies"] += 1
        self.totals["replies"] += 1
        self.last_rtt_ms = event.rtt * 1000.0
        # The delay counts from the tick the request followed: ticks that ran before the reply
        # came are the ones RTC must keep from the old plan.
        self.delays.append(event.t_received - (self.t0 + request.tick * self.dt))
        try:
            chunk = self.safety.check_chunk(reply.get("actions"))
        except ChunkRejected as exc:
            self.counts["rejected"] += 1
            self.totals["rejected"] += 1
            self._retry_after = now + self.settings.retry_after_error_s
            self.log.write("event", event="rejected", code=exc.code, message=str(exc), t=self.log.rel(now))
            return
        if self.horizon is None:
            self.horizon = len(chunk)  # a server that does not announce its horizon (openpi's)
        chunk = chunk[: self.settings.actions_per_chunk]
        self._chunk_id += 1
        info = self.queue.merge(
            chunk,
            chunk_start=request.tick + 1,
            next_tick=self.last_tick + 1,
            mode=self.settings.merge,
            chunk_id=self._chunk_id,
            last_command=self.last_command,
            inference_delay=request.inference_delay,
        )
        self.chunks += 1
        self.totals["chunks"] += 1
        timing = reply.get("server_timing")
        self.log.write(
            "chunk",
            t=self.log.rel(now),
            episode=self.episode,
            chunk=self._chunk_id,
            request_id=request.request_id,
            obs_tick=request.tick,
            rtt_ms=round(self.last_rtt_ms, 3),
            delay=request.inference_delay,
            first_tick=info.first_tick,
            stale=info.stale,
            overlap=info.overlap,
            discontinuity=round(info.discontinuity, 6),
            plan_change=round(info.plan_change, 6),
            queue=self.queue.length_from(self.last_tick + 1),
            server_timing=timing if isinstance(timing, dict) else None,
        )

    # -------------------------------------------------------------------- tick

    def tick(self, observe: bool = False) -> TickResult:
        """Run the tick that is due now. ``observe``: take an observation even if no request is due."""
        if self.last_command is None:
            raise RuntimeError("start_episode(index, q0) must come before the first tick")
        now = self.clock.now()
        k = max(self.last_tick + 1, int(math.floor((now - self.t0) / self.dt + 1e-9)))
        missed = k - self.last_tick - 1
        deadline = self.t0 + (k + 1) * self.dt
        action, chunk_id, expired = self.queue.pop(k)
        reason = None
        clamps: tuple[str, ...] = ()
        if action is not None and not self.stopping:
            command, clamps = self.safety.limit(action, self.last_command)
        t_exec = self.clock.now()
        if action is not None and t_exec > deadline:
            # never execute a target whose time has passed
            reason, action, chunk_id, clamps = "late", None, None, ()
        if action is not None and not self.stopping:
            hold = False
        else:
            command = self.last_command
            hold = True
            reason = reason or self._hold_reason()
        self.robot.act(command.copy())
        self.last_command = command
        self.last_tick = k
        underflow = reason == "underflow"
        for name, n in (("ticks", 1), ("holds", int(hold)), ("underflows", int(underflow)),
                        ("late", int(reason == "late")), ("expired", expired), ("missed", missed),
                        ("clamps", len(clamps))):
            self.counts[name] += n
            self.totals[name] += n
        self.log.write(
            "tick",
            t=self.log.rel(now),
            t_exec=self.log.rel(t_exec),
            episode=self.episode,
            tick=k,
            queue=self.queue.length_from(k + 1),
            hold=hold,
            reason=reason,
            underflow=underflow,
            action=None if hold else action,
            deadline=None if hold else self.log.rel(deadline),
            command=command,
            clamps=list(clamps),
            chunk=None if hold else chunk_id,
            expired=expired,
            missed=missed,
            rtt_ms=None if self.last_rtt_ms is None else round(self.last_rtt_ms, 3),
            in_flight=self.in_flight is not None,
        )

        request = None
        observation = None
        wants = self._wants_request(k)
        if wants or observe:
            observation = self.observe(images=observe or self._needs_images)
        if wants:
            request = self._make_request(k, observation)
        return TickResult(k, command, hold, observation, request)

    def observe(self, images: bool = True) -> dict[str, Any]:
        """The robot's observation; without rendering cameras when nobody needs them and the
        robot can skip them (the simulator's ``observe(images=False)``: rendering is its
        slowest step, and it happens on the control thread)."""
        if not images and self._observe_can_skip_images:
            return self.robot.observe(images=False)
        return self.robot.observe()

    def hold(self) -> None:
        """Command the last safe position once more (used when stopping)."""
        self.robot.act(self.last_command.copy())

    def _hold_reason(self) -> str:
        if self.stopping:
            return "stopping"
        if not self.connected:
            return "disconnected"
        if self.chunks == 0:
            return "startup"
        return "underflow"

    def _wants_request(self, k: int) -> bool:
        if self.stopping or not self.connected or self.in_flight is not None or self.fatal is not None:
            return False
        if self.clock.now() < self._retry_after:
            return False
        left = self.queue.length_from(k + 1)
        return left <= self.settings.chunk_size_threshold * self.chunk_len

    def _make_request(self, k: int, observation: dict[str, Any]) -> InferenceRequest:
        t_obs = self.clock.now()
        # Only the protocol's observation keys: a vla server refuses keys it does not know.
        payload: dict[str, Any] = {k: observation[k] for k in (STATE_KEY, ENV_STATE_KEY) if k in observation}
        payload.update(self._prepare_images(observation))
        if STATE_KEY in payload:
            payload[STATE_KEY] = np.asarray(payload[STATE_KEY], dtype=np.float32)
        # An episodic robot (the simulator) states its goal text itself; a real arm takes --task.
        goal = observation.get(TASK_KEY)
        payload[TASK_KEY] = goal if isinstance(goal, str) and goal else self.task
        self._request_id += 1
        payload["timestamp"] = float(t_obs)
        payload["request_id"] = self._request_id
        if self.session:
            payload["session"] = self.session
        if not self._reset_sent:
            payload["reset"] = True
            self._reset_sent = True
        delay = 0
        if self.settings.merge == RTC:
            delay = self.estimate_delay()
            if self._send_rtc:
                payload["inference_delay"] = int(delay)
                payload["prev_chunk"] = self.queue.rest(k + 1).astype(np.float32)
        request = InferenceRequest(self._request_id, self.episode, k, payload, t_obs, delay)
        self.in_flight = request
        self.counts["requests"] += 1
        self.totals["requests"] += 1
        return request


def _has_keyword(fn, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _all_images(observation: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in observation.items() if k.startswith(IMAGE_PREFIX)}


def _image_preparer(wanted: dict[str, tuple[int, ...]]):
    """Send only the cameras the policy asked for, at its size (the protocol client does JPEG)."""

    def prepare(observation: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name, shape in wanted.items():
            key = IMAGE_PREFIX + name
            if key not in observation:
                raise RunError(f"the robot's observation has no {key!r}")
            image = np.asarray(observation[key])
            if len(shape) == 3 and image.shape != shape:
                import cv2  # only when the robot's frames differ from what the policy takes

                image = cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
            out[key] = np.ascontiguousarray(image, dtype=np.uint8)
        return out

    return prepare


def _describe(md: dict[str, Any]) -> dict[str, Any]:
    """Metadata for the log, without anything bulky."""
    return {k: v for k, v in md.items() if isinstance(v, (str, int, float, bool, dict, list, type(None)))}
