"""One arm's session from start to end, shared by `vla run`, `vla eval`, `vla learn` and `vla fleet run`.

``SessionRunner`` builds the robot from its plugin and arm file, connects to the policy server
(or a link it is given), runs episodes through the controller, records them if asked, writes
the tick log, holds the arm on Ctrl-C or SIGTERM, and returns a ``SessionSummary`` whose
``exit_code`` says how it went. It does not print: the commands show progress and the summary
through hooks (``SessionHooks``) and ``vla.client.summary``. The interface is published in
/work/coord/api/session-runner.md.

A failure is never silent: a server that refuses every request fails the run with the
server's own message, and requests that failed within a run that went on are counted by
error code in the summary and the tick log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import attrs

from vla.client.controller import Controller, RunError, TickResult
from vla.client.session import (
    EpisodeResult,
    EpisodeSpec,
    FrameCapture,
    StopFlag,
    episode_plan,
    run_episodes,
    stop_on_signals,
    wait_connected,
)
from vla.client.setup import SetupError, build_adapter, build_robot, control_settings
from vla.config import ARM_ENV, LoadedConfig

EXIT_OK = 0
EXIT_FAILED = 1  # the run went wrong: no server, connection broke down, every request failed, a crash
EXIT_CONFIG = 2  # bad configuration or arguments
EXIT_PREFLIGHT = 3  # a pre-flight check refused to start


class PreflightFailed(RuntimeError):
    """Raised by an ``on_ready`` hook: the session must not start; nothing has moved."""


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]


@attrs.define
class SessionOptions:
    tasks: tuple[str, ...] = attrs.field(converter=lambda v: (v,) if isinstance(v, str) else tuple(v))
    episodes: int | None = 1  # per task; None: until stop()
    seed: int | None = None
    episode_s: float | None = None
    robot: str | None = None
    arm: str | None = None  # None: $ARM_ID when set
    safety: str | None = None
    policy_url: str | None = None
    api_key: str | None = None
    adapter: str | None = None
    merge: str | None = None
    actions_per_chunk: int | None = None
    threshold: float | None = None
    control_hz: float | None = None
    jpeg_quality: int | None = None
    record_dir: str | None = None
    log_dir: str | None = None
    log_path: str | None = None
    kind: str = "run"
    run_id: str | None = None
    label: str | None = None
    clock: str = attrs.field(default="real", validator=attrs.validators.in_(("real", "simulated")))
    sim_latency_s: float = 0.0
    capture: FrameCapture | None = None
    handle_signals: bool = True


@attrs.define
class EpisodeInfo:
    index: int
    task: str
    seed: int | None


@attrs.define
class SessionSummary:
    episodes: list[EpisodeResult]
    totals: dict[str, int]
    errors_by_code: dict[str, int]
    last_error: tuple[str, str] | None  # (code, message) of the most common error code
    error: str | None
    stopped_by: str | None
    exit_code: int
    log_path: Path | None
    dataset: list[Path] = attrs.field(factory=list)
    encoder_log: Path | None = None  # what the video encoder printed while recording
    metadata: dict | None = None
    robot: str | None = None
    label: str | None = None
    url: str | None = None

    @property
    def successes(self) -> int:
        return sum(1 for r in self.episodes if r.success)


class SessionHooks:
    """Override what you need; every hook runs on the control thread, between ticks."""

    def on_prepared(self, session: SessionRunner) -> None:
        """Robot built (``session.robot``, ``session.settings``), nothing connected yet. Raise
        SetupError (exit 2) or PreflightFailed (exit 3) to refuse."""

    def on_ready(self, session: SessionRunner) -> None:
        """Robot connected, policy metadata known, nothing moved yet. Raise PreflightFailed to refuse."""

    def on_episode_start(self, session: SessionRunner, episode: EpisodeInfo) -> None:
        pass

    def on_tick(self, session: SessionRunner, tick: TickResult) -> None:
        pass

    def on_episode_end(self, session: SessionRunner, result: EpisodeResult) -> None:
        """``result.frames`` holds what ``SessionOptions.capture`` asked for; set ``result.keep =
        False`` to drop a recorded episode, put your own figures in ``result.info``."""

    def on_end(self, session: SessionRunner, summary: SessionSummary) -> None:
        pass


class _TaskRecorders:
    """One dataset per task (datasets are named by task), opened when the task first records."""

    def __init__(self, factory):
        self._factory = factory
        self._by_task: dict[str, Any] = {}
        self._current = None

    def select(self, task: str) -> None:
        if task not in self._by_task:
            self._by_task[task] = self._factory(task)
        self._current = self._by_task[task]

    @property
    def paths(self) -> list[Path]:
        return [r.path for r in self._by_task.values()]

    def __getattr__(self, name):  # start_episode, add_frame, end_episode, discard_episode, frames_in_episode
        return getattr(self._current, name)

    def close(self) -> None:
        for recorder in self._by_task.values():
            recorder.close()


class SessionRunner:
    def __init__(self, loaded: LoadedConfig, options: SessionOptions, hooks: Sequence[SessionHooks] = (), link=None,
                 clock=None):
        self.loaded = loaded
        self.options = options
        self.hooks = list(hooks)
        self._link = link
        self._clock = clock
        self.stop_flag = StopFlag()
        self.results: list[EpisodeResult] = []
        self.robot = None
        self.setup = None
        self.settings = None
        self.controller: Controller | None = None
        self.metadata: dict | None = None
        self.recorder: _TaskRecorders | None = None
        self.log_path: Path | None = None
        self.chatter_log: Path | None = None  # the video encoder's and dataset writer's own output
        self.run_id = options.run_id or new_run_id()
        self.arm_id = options.arm or os.environ.get(ARM_ENV) or None
        self.label = options.label
        self.url = options.policy_url or loaded.config.policy_server.resolved_url()
        self._episode: EpisodeInfo | None = None
        self._last_tick = -1
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- setup

    @property
    def description(self):
        return self.setup.description if self.setup is not None else None

    def prepare(self) -> None:
        """Build the robot, its safety layer and the settings; ``SetupError`` (exit 2) names what is wrong."""
        if self.setup is not None:
            return
        o, cfg = self.options, self.loaded.config
        self.setup = build_robot(self.loaded, o.robot, self.arm_id, o.safety)
        self.robot = self.setup.robot
        self.settings = control_settings(self.loaded, self.robot, o.merge, o.control_hz, o.actions_per_chunk,
                                         o.threshold, o.jpeg_quality)
        self.adapter = build_adapter(self.loaded, o.adapter)
        self.label = self.label or self.arm_id or self.setup.robot_name
        if o.log_path:
            self.log_path = Path(o.log_path)
        else:
            root = Path(o.log_dir) if o.log_dir else self.loaded.base_dir / cfg.log_dir
            self.log_path = root / f"{o.kind}_{self.run_id}.jsonl"
        self.chatter_log = self.log_path.with_suffix(".encoder.log")

    def _make_link(self, clock):
        if self._link is not None:
            return self._link
        from vla.client.worker import InferenceWorker, policy_ca_file

        client = self.loaded.config.client
        api_key = self.options.api_key or self.loaded.config.policy_server.api_key
        # The arm names itself to the server (per-arm metrics); wss:// trusts the lab's CA file if set.
        worker = InferenceWorker(self.url, api_key=api_key, connect_timeout_s=client.connect_timeout_s,
                                 max_backoff_s=client.reconnect_max_backoff_s,
                                 jpeg_quality=self.settings.jpeg_quality, adapter=self.adapter,
                                 ca_file=policy_ca_file(self.loaded), arm=self.label)
        if getattr(clock, "simulated", False):
            from vla.client.lockstep import LockstepLink

            return LockstepLink(worker, clock, self.options.sim_latency_s)
        return worker

    def _make_recorders(self) -> _TaskRecorders:
        from vla.client.recording import BackgroundRecorder
        from vla.recording import EpisodeRecorder

        # lerobot (and torch) load when the first frame is written: load them now, before the
        # control loop starts, so that its first tick does not stall for seconds.
        import lerobot.datasets.lerobot_dataset  # noqa: F401

        def make(task: str):
            return BackgroundRecorder(EpisodeRecorder(self.options.record_dir, self.robot, task, self.label,
                                                      fps=self.settings.control_hz), chatter_log=self.chatter_log)

        return _TaskRecorders(make)

    # ------------------------------------------------------------------- run

    def stop(self, reason: str = "stop") -> None:
        """Hold the arm and end the session after the current tick (thread-safe)."""
        self.stop_flag.set(reason)

    def run(self, plan: Iterable[EpisodeSpec] | None = None) -> SessionSummary:
        try:
            self.prepare()
            for hook in self.hooks:
                hook.on_prepared(self)
        except SetupError as exc:
            return self._finish(error=str(exc), exit_code=EXIT_CONFIG)
        except PreflightFailed as exc:
            return self._finish(error=f"pre-flight check failed: {exc}", exit_code=EXIT_PREFLIGHT)
        from vla.client.clock import RealClock, SimulatedClock
        from vla.client.ticklog import TickLog

        o = self.options
        clock = self._clock or (SimulatedClock() if o.clock == "simulated" else RealClock())
        log = TickLog(self.log_path, t0=clock.now())
        log.write("run", run_id=self.run_id, kind=o.kind, robot=self.setup.robot_name, arm=self.arm_id,
                  label=self.label, task=o.tasks[0] if len(o.tasks) == 1 else None, tasks=list(o.tasks),
                  policy_url=self.url, joint_names=list(self.robot.joint_names), merge=self.settings.merge,
                  control_hz=self.settings.control_hz, actions_per_chunk=self.settings.actions_per_chunk,
                  threshold=self.settings.chunk_size_threshold, safety=self.setup.safety_source,
                  episodes=o.episodes, seed=o.seed, clock=o.clock)
        self.controller = Controller(self.robot, self.setup.safety, self.settings, clock, log, task=o.tasks[0],
                                     session=f"{o.kind}-{self.run_id}")
        link = self._make_link(clock)
        error, exit_code = None, EXIT_OK
        signals = stop_on_signals(self.stop_flag) if o.handle_signals else contextlib.nullcontext()
        with signals:
            try:
                self.robot.connect()
                try:
                    if hasattr(link, "start"):
                        link.start()
                    timeout = self.loaded.config.client.connect_timeout_s + 2.0
                    wait_connected(self.controller, link, clock, timeout, self.stop_flag)
                    self.metadata = self.controller.metadata
                    for hook in self.hooks:
                        hook.on_ready(self)
                    if o.record_dir:
                        self.recorder = self._make_recorders()
                        log.write("event", event="recording", dataset=str(o.record_dir), t=log.rel(clock.now()))
                    run_episodes(
                        self.robot, self.controller, link, clock,
                        plan=plan if plan is not None else episode_plan(o.tasks, o.episodes, o.seed, o.episode_s),
                        recorder=self.recorder, stop=self.stop_flag, capture=o.capture,
                        on_tick=self._on_tick, on_episode_start=self._episode_starter(),
                        on_episode_end=self._on_episode_end,
                    )
                except PreflightFailed as exc:
                    error, exit_code = f"pre-flight check failed: {exc}", EXIT_PREFLIGHT
                    log.write("event", event="preflight_failed", reason=str(exc), t=log.rel(clock.now()))
                except RunError as exc:
                    error, exit_code = str(exc), EXIT_FAILED
                except Exception as exc:  # the robot, the recorder or a hook failed: hold, close, say what
                    error, exit_code = f"{type(exc).__name__}: {exc}", EXIT_FAILED
                    log.write("event", event="crash", reason=error, t=log.rel(clock.now()))
                finally:
                    with contextlib.suppress(Exception):
                        self.controller.hold()
                    if hasattr(link, "stop"):
                        link.stop()
                    if self.recorder is not None:
                        self.recorder.close()
                    self.robot.disconnect()
            except Exception as exc:  # connect or disconnect of the robot itself
                if error is None:
                    error, exit_code = f"the robot failed: {type(exc).__name__}: {exc}", EXIT_FAILED
            finally:
                log.close()
        return self._finish(error=error, exit_code=exit_code)

    def _finish(self, error: str | None, exit_code: int) -> SessionSummary:
        c = self.controller
        totals = dict(c.totals) if c is not None else {}
        codes = dict(c.total_error_codes) if c is not None else {}
        last_error = None
        if codes:
            code = Counter(codes).most_common(1)[0][0]
            last_error = (code, c.error_messages.get(code, ""))
        if error is None and totals.get("requests", 0) and not totals.get("replies") and last_error:
            error = f"every request to the policy server failed ({totals['requests']}): {last_error[0]}: {last_error[1]}"
            exit_code = EXIT_FAILED
        stopped_by = self.stop_flag.reason if self.stop_flag.is_set() else None
        if error is None and stopped_by in ("SIGINT", "SIGTERM"):
            exit_code = 128 + int(getattr(signal, stopped_by))
        summary = SessionSummary(
            episodes=list(self.results), totals=totals, errors_by_code=codes, last_error=last_error,
            error=error, stopped_by=stopped_by, exit_code=exit_code, log_path=self.log_path,
            dataset=self.recorder.paths if self.recorder is not None else [], metadata=self.metadata,
            encoder_log=self.chatter_log if self.chatter_log is not None and self.chatter_log.exists() else None,
            robot=self.setup.robot_name if self.setup is not None else self.options.robot, label=self.label,
            url=self.url,
        )
        for hook in self.hooks:
            hook.on_end(self, summary)
        return summary

    # ------------------------------------------------------------- callbacks

    def _episode_starter(self):
        def start(i: int, seed):
            task = self.controller.task
            self._episode = EpisodeInfo(i, task, seed)
            if self.recorder is not None:
                self.recorder.select(task)
            for hook in self.hooks:
                hook.on_episode_start(self, self._episode)

        return start

    def _on_tick(self, tick: TickResult) -> None:
        self._last_tick = tick.tick
        for hook in self.hooks:
            hook.on_tick(self, tick)

    def _on_episode_end(self, result: EpisodeResult) -> None:
        for hook in self.hooks:
            hook.on_episode_end(self, result)
        with self._lock:
            self.results.append(result)

    # ---------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        """A JSON-ready snapshot for a live view (a dashboard polls it from another thread)."""
        c = self.controller
        counts = dict(c.counts) if c is not None else {}
        with self._lock:
            done = list(self.results)
        return {
            "label": self.label,
            "robot": self.setup.robot_name if self.setup is not None else self.options.robot,
            "task": self._episode.task if self._episode else None,
            "episode": self._episode.index if self._episode else None,
            "tick": self._last_tick,
            "queue": c.queue.length_from(c.last_tick + 1) if c is not None else 0,
            "rtt_ms": None if c is None or c.last_rtt_ms is None else round(c.last_rtt_ms, 3),
            "connected": bool(c is not None and c.connected),
            "counts": {k: int(counts.get(k, 0)) for k in
                       ("ticks", "holds", "underflows", "clamps", "rejected", "errors", "disconnects")},
            "successes": sum(1 for r in done if r.success),
            "episodes_done": len(done),
            "stopping": self.stop_flag.is_set(),
        }
