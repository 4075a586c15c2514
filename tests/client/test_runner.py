"""The session runner that `vla run`, `vla eval`, `vla learn` and `vla fleet run` share: hooks, frames,
plans, exit codes, failed requests, the simulated clock, and which observation keys reach the server."""

from __future__ import annotations

import time

import numpy as np
import pytest

from vla.builtins import TimedPolicyConfig
from vla.client.clock import SimulatedClock
from vla.client.events import Failed
from vla.client.runner import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, EXIT_PREFLIGHT, PreflightFailed, SessionHooks, SessionOptions, SessionRunner
from vla.client.session import EpisodeSpec, FrameCapture
from vla.client.simlink import SimulatedLink
from vla.config import load_config
from vla.testing.policies import ChunkList, TimedPolicy


@pytest.fixture
def lab(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ARM_ID", raising=False)
    (tmp_path / "vla.yaml").write_text(
        "log_dir: logs\nplugins:\n  kinematic:\n    cameras: {front: [24, 32, 3], wrist: [24, 32, 3]}\n"
    )
    return load_config(tmp_path / "vla.yaml", environ={})


def simulated(backend, latency_s=0.05):
    clock = SimulatedClock(10.0)
    return SimulatedLink(backend, clock, lambda: latency_s), clock


class Recorder(SessionHooks):
    """Writes down every hook call."""

    def __init__(self):
        self.calls = []
        self.ticks = 0

    def on_prepared(self, session):
        self.calls.append(("prepared", session.robot.connected))

    def on_ready(self, session):
        self.calls.append(("ready", session.metadata["policy"]))

    def on_episode_start(self, session, episode):
        self.calls.append(("start", episode.index, episode.task, episode.seed))

    def on_tick(self, session, tick):
        self.ticks += 1

    def on_episode_end(self, session, result):
        self.calls.append(("end", result.index, len(result.frames)))

    def on_end(self, session, summary):
        self.calls.append(("summary", summary.exit_code))


def test_hooks_see_the_session_in_order_and_episodes_follow_the_plan(lab):
    link, clock = simulated(TimedPolicy(TimedPolicyConfig(horizon=20, cameras={})))
    hooks = Recorder()
    runner = SessionRunner(lab, SessionOptions(tasks="wave", robot="kinematic", handle_signals=False),
                           hooks=[hooks], link=link, clock=clock)
    summary = runner.run(plan=[EpisodeSpec("wave", 7, 0.5), EpisodeSpec("bow", 8, 0.3)])
    assert summary.exit_code == EXIT_OK and summary.error is None
    assert hooks.calls == [("prepared", False), ("ready", "timed"), ("start", 0, "wave", 7), ("end", 0, 0),
                           ("start", 1, "bow", 8), ("end", 1, 0), ("summary", 0)]
    assert [r.task for r in summary.episodes] == ["wave", "bow"]
    assert hooks.ticks == sum(r.ticks for r in summary.episodes) == 16 + 10  # ticks 0..15 in 0.5 s at 30 Hz
    # a reply still on its way when an episode ends is not counted as that episode's
    assert summary.totals["requests"] >= 2 and summary.totals["requests"] - 2 <= summary.totals["replies"]
    assert summary.log_path.is_file() and summary.log_path.name.startswith("run_")


def test_frames_are_captured_first_last_and_every_so_often(lab):
    link, clock = simulated(TimedPolicy(TimedPolicyConfig(horizon=20, cameras={})))
    frames = []

    class Keep(SessionHooks):
        def on_episode_end(self, session, result):
            frames.extend(result.frames)
            result.info["seen"] = len(result.frames)

    options = SessionOptions(tasks="wave", robot="kinematic", episode_s=1.0, handle_signals=False,
                             capture=FrameCapture(cameras=("front",), every_s=0.2))
    summary = SessionRunner(lab, options, hooks=[Keep()], link=link, clock=clock).run()
    assert summary.exit_code == EXIT_OK
    ticks = [f.tick for f in frames]
    assert ticks == [-1, 6, 12, 18, 24, 30, 30]  # the start, every 6 ticks, and after the last (tick 30)
    assert all(f.images["front"].shape == (24, 32, 3) and set(f.images) == {"front"} for f in frames)
    assert not np.array_equal(frames[0].images["front"], frames[-1].images["front"]), "the arm moved"
    assert summary.episodes[0].info == {"seen": 7}


def test_a_policy_without_cameras_gets_no_images_even_when_every_tick_is_observed(lab):
    """The bug a new user hit: recording observes every tick, and the client used to send every
    camera to a policy that declares none, which a vla server refuses (unknown_key)."""
    backend = ChunkList([np.zeros((10, 6))], horizon=10)  # declares no cameras
    link, clock = simulated(backend)
    every_tick = FrameCapture(cameras=("front", "wrist"), every_s=1 / 30)  # observes with images each tick
    options = SessionOptions(tasks="wave", robot="kinematic", episode_s=1.0, capture=every_tick, handle_signals=False)
    summary = SessionRunner(lab, options, link=link, clock=clock).run()
    assert summary.exit_code == EXIT_OK and len(summary.episodes[0].frames) > 25
    assert backend.seen and all(not any(k.startswith("observation.images.") for k in obs) for obs in backend.seen)
    # and one that asks for one camera gets exactly that one, at its size
    wants_front = TimedPolicy(TimedPolicyConfig(horizon=10, cameras={"front": [12, 16, 3]}))
    seen = []
    original = wants_front.infer
    wants_front.infer = lambda batch: (seen.extend(batch), original(batch))[1]
    link, clock = simulated(wants_front)
    options = SessionOptions(tasks="wave", robot="kinematic", episode_s=0.5, capture=every_tick, handle_signals=False)
    summary = SessionRunner(lab, options, link=link, clock=clock).run()
    assert summary.exit_code == EXIT_OK and seen
    assert all(sorted(k for k in obs if k.startswith("observation.images.")) == ["observation.images.front"]
               and obs["observation.images.front"].shape == (12, 16, 3) for obs in seen)


class FailingLink(SimulatedLink):
    """The simulated server answers the first ``failures`` requests with an error frame."""

    def __init__(self, *args, failures: int, code="unknown_key", message="unknown key(s) 'observation.images.front'", **kwargs):
        super().__init__(*args, **kwargs)
        self.failures, self.code, self.message = failures, code, message
        self._failed: list = []

    def submit(self, request):
        if self.failures > 0:
            self.failures -= 1
            self._failed.append(Failed(request, self.code, self.message))
            return
        super().submit(request)

    def poll(self):
        events, self._failed = super().poll() + self._failed, []
        return events


def test_failed_requests_are_counted_by_code_and_a_run_that_goes_on_exits_0(lab):
    clock = SimulatedClock(10.0)
    link = FailingLink(TimedPolicy(TimedPolicyConfig(horizon=20, cameras={})), clock, lambda: 0.05, failures=3)
    summary = SessionRunner(lab, SessionOptions(tasks="wave", robot="kinematic", episode_s=2.0, handle_signals=False),
                            link=link, clock=clock).run()
    assert summary.exit_code == EXIT_OK
    assert summary.errors_by_code == {"unknown_key": 3} and summary.episodes[0].errors_by_code == {"unknown_key": 3}
    assert summary.last_error == ("unknown_key", "unknown key(s) 'observation.images.front'")
    assert summary.episodes[0].counts["errors"] == 3 and summary.totals["replies"] > 0


def test_a_server_that_refuses_every_request_fails_the_run_with_its_message(lab):
    clock = SimulatedClock(10.0)
    link = FailingLink(TimedPolicy(TimedPolicyConfig(horizon=20, cameras={})), clock, lambda: 0.05, failures=10**6)
    started = clock.now()
    summary = SessionRunner(lab, SessionOptions(tasks="wave", robot="kinematic", episodes=3, episode_s=30.0,
                                                handle_signals=False), link=link, clock=clock).run()
    assert summary.exit_code == EXIT_FAILED
    assert "refused all 10 requests so far: unknown_key: unknown key(s) 'observation.images.front'" in summary.error
    assert clock.now() - started < 5.0, "it gives up within seconds, not after three 30 s episodes"


def test_setup_and_preflight_refusals_have_their_exit_codes_and_nothing_moves(lab):
    link, clock = simulated(TimedPolicy(TimedPolicyConfig(horizon=20, cameras={})))
    bad = SessionRunner(lab, SessionOptions(tasks="wave", robot="kinematic", arm="arm99", handle_signals=False),
                        link=link, clock=clock).run()
    assert bad.exit_code == EXIT_CONFIG and "arms.arm99: no such arm" in bad.error

    class Refuse(SessionHooks):
        def on_ready(self, session):
            self.robot = session.robot
            raise PreflightFailed("cameras swapped: front looks like the dataset's wrist")

    refuse = Refuse()
    summary = SessionRunner(lab, SessionOptions(tasks="wave", robot="kinematic", handle_signals=False),
                            hooks=[refuse], link=link, clock=clock).run()
    assert summary.exit_code == EXIT_PREFLIGHT and "cameras swapped" in summary.error
    assert len(refuse.robot.commands) == 0 and summary.episodes == []


def test_stop_from_another_thread_holds_and_status_reports_the_session(lab):
    link, clock = simulated(TimedPolicy(TimedPolicyConfig(horizon=20, cameras={})))
    snapshots = []

    class StopAfter(SessionHooks):
        def on_tick(self, session, tick):
            if tick.tick == 20:
                snapshots.append(session.status())
                session.stop("dashboard")

    runner = SessionRunner(lab, SessionOptions(tasks="wave", robot="kinematic", episodes=None, episode_s=5.0,
                                               handle_signals=False), hooks=[StopAfter()], link=link, clock=clock)
    summary = runner.run()
    assert summary.exit_code == EXIT_OK and summary.stopped_by == "dashboard"
    assert [r.interrupted for r in summary.episodes] == [True]
    status = snapshots[0]
    assert status["label"] == "kinematic" and status["task"] == "wave" and status["tick"] == 20
    assert status["connected"] and status["counts"]["ticks"] == 21 and not status["stopping"]
    assert runner.status()["stopping"] and runner.status()["episodes_done"] == 1


def test_a_simulated_clock_runs_a_real_server_as_fast_as_it_answers(lab, policy_server):
    """Lockstep: control time does not wait for the wall clock, and every reply counts as
    arriving sim_latency_s after its request, so nothing underflows however slow the server."""
    server = policy_server(TimedPolicy(TimedPolicyConfig(batch_cost_ms=30.0, horizon=20, cameras={})))
    options = SessionOptions(tasks="wave", robot="kinematic", episodes=2, episode_s=10.0, clock="simulated",
                             policy_url=server.url, handle_signals=False)
    t0 = time.monotonic()
    summary = SessionRunner(lab, options).run()
    wall = time.monotonic() - t0
    assert summary.exit_code == EXIT_OK, summary.error
    assert [r.ticks for r in summary.episodes] == [301, 301]  # 2 x 10 s of 30 Hz control (ticks 0..300)
    assert wall < 10.0, f"20 s of control took {wall:.1f} s of wall time"
    assert sum(r.counts.get("underflows", 0) for r in summary.episodes) == 0
    assert summary.totals["replies"] == summary.totals["requests"] > 10
