"""Episodes at the arm's control rate: reset (on an episodic robot), tick, merge replies, record,
stop cleanly. Shared by `vla run` and `vla eval`; the clock and the link to the policy are
passed in, so the same loop runs on real time over a socket or on simulated time in tests.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

import attrs

from vla.client.controller import Controller, RunError, TickResult
from vla.client.events import ConnectFailed
from vla.robot import STATE_KEY


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


def run_episodes(
    robot,
    controller: Controller,
    link,
    clock,
    *,
    task: str,
    episodes: int = 1,
    seed: int | None = None,
    episode_s: float | None = None,
    recorder=None,
    stop: StopFlag | None = None,
    on_tick: Callable[[TickResult], None] | None = None,
    observe_every: int | Callable[[int], int] = 0,
    on_episode_start: Callable[[int, int | None], None] | None = None,
    on_episode_end: Callable[[EpisodeResult], None] | None = None,
) -> list[EpisodeResult]:
    """Run ``episodes`` episodes of ``task``. On an episodic robot each starts with
    ``reset(task, seed + i)`` and ends on success or after ``episode_s`` (default: the robot's
    ``max_episode_s``); on a real arm each lasts ``episode_s`` (None: until stopped)."""
    stop = stop or StopFlag()
    episodic = callable(getattr(robot, "reset", None)) and callable(getattr(robot, "success", None))
    if episode_s is None:
        episode_s = getattr(robot, "max_episode_s", None)
    log = controller.log
    results: list[EpisodeResult] = []
    for i in range(episodes):
        # Ticks between full observations handed to on_tick (0: only when a request needs one);
        # a recording needs one every tick.
        stride = 1 if recorder is not None else int(observe_every(i) if callable(observe_every) else observe_every)
        if stop.is_set():
            break
        seed_i = None if seed is None else seed + i
        if episodic:
            robot.reset(task, seed_i)
        observation = controller.observe(images=stride > 0)
        for ev in link.poll():  # connection news that came while resetting
            controller.handle(ev)
        controller.start_episode(i, observation[STATE_KEY], task)
        t_start = controller.t0
        log.write("episode", phase="start", episode=i, task=task, seed=seed_i, t=log.rel(t_start))
        if on_episode_start is not None:
            on_episode_start(i, seed_i)
        if recorder is not None:
            goal = observation.get("task")  # the simulator states the goal text of a task id
            recorder.start_episode(goal if isinstance(goal, str) and goal else task)
        previous_obs = observation
        success: bool | None = None
        interrupted = False
        while True:
            clock.sleep_until(controller.next_tick_time())
            for ev in link.poll():
                controller.handle(ev)
            if controller.fatal is not None:
                controller.hold()
                raise controller.fatal
            if stop.is_set():
                interrupted = True
                break
            result = controller.tick(observe=stride > 0 and (controller.last_tick + 1) % stride == 0)
            if result.request is not None:
                link.submit(result.request)
            if recorder is not None:
                # A frame pairs what the robot saw with the command that followed it.
                recorder.add_frame(previous_obs, result.command.astype("float32"))
                previous_obs = result.observation
            if on_tick is not None:
                on_tick(result)
            if episodic and robot.success():
                success = True
                break
            if episode_s is not None and clock.now() - t_start >= episode_s:
                success = bool(robot.success()) if episodic else None
                break
        controller.stopping = interrupted
        controller.hold()
        duration = clock.now() - t_start
        recorded = None
        if recorder is not None:
            # Close the episode, interrupted or not; one without a single frame has nothing to keep.
            if recorder.frames_in_episode:
                recorded = recorder.end_episode()
            else:
                recorder.discard_episode()
        result_i = EpisodeResult(
            index=i,
            task=task,
            seed=seed_i,
            success=success if not interrupted else (bool(robot.success()) if episodic else None),
            duration_s=round(duration, 3),
            ticks=controller.counts["ticks"],
            interrupted=interrupted,
            counts=dict(controller.counts),
            recorded=recorded,
        )
        if interrupted:
            log.write("event", event="stop", reason=stop.reason, t=log.rel(clock.now()))
        log.write(
            "episode",
            phase="end",
            episode=i,
            task=task,
            seed=seed_i,
            success=result_i.success,
            interrupted=interrupted,
            duration_s=result_i.duration_s,
            counts=result_i.counts,
            t=log.rel(clock.now()),
        )
        results.append(result_i)
        if on_episode_end is not None:
            on_episode_end(result_i)
    return results

