"""Episodes at the arm's control rate: reset (on an episodic robot), tick, merge replies, record,
stop cleanly. Shared by `vla run` and `vla eval`; the clock and the link to the policy are
passed in, so the same loop runs on real time over a socket or on simulated time in tests.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

import attrs

from vla.client.controller import Controller, RunError, TickResult
from vla.client.events import ConnectFailed
from vla.robot import IMAGE_PREFIX, STATE_KEY


@attrs.define
class EpisodeSpec:
    """One episode to run: the task (id or goal text), the reset seed and an optional length."""

    task: str
    seed: int | None = None
    episode_s: float | None = None


@attrs.define
class CapturedFrame:
    """Camera images (HxWx3 uint8 by camera name) and the joint state at one tick of an episode."""

    tick: int  # -1: the observation the episode started from
    t: float  # control time since the episode started, seconds
    images: dict[str, Any]
    state: Any


@attrs.frozen
class FrameCapture:
    """Which frames an episode keeps for whoever judges it (a rewarder): the first observation,
    the one after the last tick, and one every ``every_s`` seconds in between (None: none)."""

    cameras: tuple[str, ...] = ("front",)
    first: bool = True
    last: bool = True
    every_s: float | None = None


@attrs.define
class EpisodeResult:
    index: int
    task: str
    seed: int | None
    success: bool | None  # None when the robot cannot judge (a real arm)
    duration_s: float
    ticks: int
    interrupted: bool
    counts: dict[str, int]
    recorded: int | None = None  # index of the episode in the recording, if recorded
    errors_by_code: dict[str, int] = attrs.field(factory=dict)
    frames: list[CapturedFrame] = attrs.field(factory=list, repr=False)
    keep: bool = True  # an on_episode_end hook may set False: a recording then discards the episode
    info: dict[str, Any] = attrs.field(factory=dict)  # what hooks add (a rewarder's score, ...)


class StopFlag:
    """Set by Ctrl-C / SIGTERM (or a test); the loop holds the arm and closes the episode."""

    def __init__(self):
        self._event = threading.Event()
        self.reason: str | None = None

    def set(self, reason: str = "stop") -> None:
        self.reason = self.reason or reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


@contextmanager
def stop_on_signals(stop: StopFlag) -> Iterator[StopFlag]:
    """SIGINT and SIGTERM ask the loop to stop; a second Ctrl-C interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {}

    def handler(signum, _frame):
        name = signal.Signals(signum).name
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set(name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def wait_connected(controller: Controller, link, clock, timeout_s: float, stop: StopFlag | None = None) -> None:
    """Hand events to the controller until the link is connected; RunError after ``timeout_s``."""
    t_end = clock.now() + timeout_s
    last_reason = "no answer"
    while not controller.connected:
        event = link.wait_event(0.05) if hasattr(link, "wait_event") else None
        events = ([event] if event is not None else []) + link.poll()
        for ev in events:
            controller.handle(ev)
            if isinstance(ev, ConnectFailed):
                last_reason = ev.reason
        if controller.fatal is not None:
            raise controller.fatal
        if controller.connected:
            break
        if stop is not None and stop.is_set():
            raise RunError("stopped before the policy server answered")
        if clock.now() >= t_end:
            raise RunError(f"cannot reach the policy server at {getattr(link, 'url', '?')}: {last_reason}")
        if getattr(clock, "simulated", False):
            clock.advance(0.05)


def episode_plan(tasks, episodes: int | None, seed: int | None, episode_s: float | None = None) -> Iterator[EpisodeSpec]:
    """``episodes`` episodes of each task in turn, episode i of a task seeded ``seed + i``;
    ``episodes=None`` cycles through the tasks until the caller stops."""
    tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    if episodes is not None:
        for task in tasks:
            for i in range(episodes):
                yield EpisodeSpec(task, None if seed is None else seed + i, episode_s)
        return
    i = 0
    while True:
        for task in tasks:
            yield EpisodeSpec(task, None if seed is None else seed + i, episode_s)
        i += 1


def run_episodes(
    robot,
    controller: Controller,
    link,
    clock,
    *,
    task: str | None = None,
    episodes: int | None = 1,
    seed: int | None = None,
    episode_s: float | None = None,
    plan: Iterable[EpisodeSpec] | None = None,
    recorder=None,
    stop: StopFlag | None = None,
    on_tick: Callable[[TickResult], None] | None = None,
    observe_every: int | Callable[[int], int] = 0,
    on_episode_start: Callable[[int, int | None], None] | None = None,
    on_episode_end: Callable[[EpisodeResult], None] | None = None,
    capture: FrameCapture | None = None,
) -> list[EpisodeResult]:
    """Run the episodes of ``plan`` (or ``episodes`` of ``task``). On an episodic robot each starts
    with ``reset(task, seed)`` and ends on success or after its length (default: the robot's own
    ``timed_out()``, else its ``max_episode_s``); on a real arm each lasts its length (None:
    until stopped).

    ``on_episode_end`` sees the result before a recorded episode is saved: setting
    ``result.keep = False`` discards it from the recording."""
    stop = stop or StopFlag()
    episodic = callable(getattr(robot, "reset", None)) and callable(getattr(robot, "success", None))
    if plan is None:
        if task is None:
            raise ValueError("run_episodes needs a task or a plan")
        plan = episode_plan(task, episodes, seed, episode_s)
    log = controller.log
    results: list[EpisodeResult] = []
    for i, spec in enumerate(plan):
        if stop.is_set():
            break
        task_i, seed_i = spec.task, spec.seed
        length = spec.episode_s if spec.episode_s is not None else getattr(robot, "max_episode_s", None)
        # A simulator's own time limit is in its own time: on a loaded machine it simulates less
        # than a wall-clock second per second, and a wall-clock limit would cut its task short.
        own_limit = episodic and spec.episode_s is None and callable(getattr(robot, "timed_out", None))
        # Ticks between full observations handed to on_tick (0: only when a request needs one);
        # a recording needs one every tick.
        stride = 1 if recorder is not None else int(observe_every(i) if callable(observe_every) else observe_every)
        capture_every = None
        if capture is not None and capture.every_s:
            capture_every = max(1, int(round(capture.every_s * controller.settings.control_hz)))
        if episodic:
            robot.reset(task_i, seed_i)
        observation = controller.observe(images=stride > 0 or (capture is not None and capture.first))
        for ev in link.poll():  # connection news that came while resetting
            controller.handle(ev)
        controller.start_episode(i, observation[STATE_KEY], task_i)
        t_start = controller.t0
        frames: list[CapturedFrame] = []
        if capture is not None and capture.first:
            frames.append(_captured(observation, capture, -1, 0.0))
        log.write("episode", phase="start", episode=i, task=task_i, seed=seed_i, t=log.rel(t_start))
        if on_episode_start is not None:
            on_episode_start(i, seed_i)
        if recorder is not None:
            goal = observation.get("task")  # the simulator states the goal text of a task id
            recorder.start_episode(goal if isinstance(goal, str) and goal else task_i)
        previous_obs = observation
        success: bool | None = None
        interrupted = False
        fatal: RunError | None = None
        while True:
            clock.sleep_until(controller.next_tick_time())
            for ev in link.poll():
                controller.handle(ev)
            if controller.fatal is not None:
                # close the episode like a stopped one (it shows in the summary and keeps its
                # frames in a recording), then end the session with the reason
                fatal, interrupted = controller.fatal, True
                break
            if stop.is_set():
                interrupted = True
                break
            k = controller.last_tick + 1
            grab = capture_every is not None and k > 0 and k % capture_every == 0
            result = controller.tick(observe=(stride > 0 and k % stride == 0) or grab)
            if result.request is not None:
                link.submit(result.request)
            if recorder is not None:
                # A frame pairs what the robot saw with the command that followed it.
                recorder.add_frame(previous_obs, result.command.astype("float32"))
                previous_obs = result.observation
            if grab and result.observation is not None:
                frames.append(_captured(result.observation, capture, result.tick, clock.now() - t_start))
            if on_tick is not None:
                on_tick(result)
            if episodic and robot.success():
                success = True
                break
            if robot.timed_out() if own_limit else (length is not None and clock.now() - t_start >= length):
                success = bool(robot.success()) if episodic else None
                break
        controller.stopping = interrupted
        controller.hold()
        duration = clock.now() - t_start
        if capture is not None and capture.last:
            frames.append(_captured(controller.observe(images=True), capture, controller.last_tick, duration))
        result_i = EpisodeResult(
            index=i,
            task=task_i,
            seed=seed_i,
            success=success if not interrupted else (bool(robot.success()) if episodic else None),
            duration_s=round(duration, 3),
            ticks=controller.counts["ticks"],
            interrupted=interrupted,
            counts=dict(controller.counts),
            errors_by_code=dict(controller.error_codes),
            frames=frames,
        )
        if interrupted:
            reason = f"{type(fatal).__name__}: {fatal}" if fatal is not None else stop.reason
            log.write("event", event="stop", reason=reason, t=log.rel(clock.now()))
        if on_episode_end is not None:
            on_episode_end(result_i)
        if recorder is not None:
            # Close the episode, interrupted or not; one without a single frame has nothing to keep.
            if recorder.frames_in_episode and result_i.keep:
                result_i.recorded = recorder.end_episode()
            else:
                recorder.discard_episode()
        log.write(
            "episode",
            phase="end",
            episode=i,
            task=task_i,
            seed=seed_i,
            success=result_i.success,
            interrupted=interrupted,
            duration_s=result_i.duration_s,
            counts=result_i.counts,
            errors_by_code=result_i.errors_by_code,
            recorded=result_i.recorded,
            info=result_i.info or None,
            t=log.rel(clock.now()),
        )
        results.append(result_i)
        if fatal is not None:
            raise fatal
    return results


def _captured(observation: dict[str, Any], capture: FrameCapture, tick: int, t: float) -> CapturedFrame:
    images = {c: observation[IMAGE_PREFIX + c] for c in capture.cameras if IMAGE_PREFIX + c in observation}
    return CapturedFrame(tick=tick, t=round(float(t), 4), images=images, state=observation.get(STATE_KEY))
