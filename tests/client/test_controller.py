"""The control loop on simulated time: RTC inputs, underflow, deadlines, outages, bad replies.

These run the real controller, queue, safety layer and session loop; only the clock and the
socket are simulated (``SimulatedClock`` and ``SimulatedLink``, which answers with a real
PolicyBackend after a set latency), so tick timing is exact and the tests are fast. The same
behaviours over real sockets are in test_e2e.py.
"""

import numpy as np
import pytest

from vla.client.controller import RunError
from vla.client.simlink import metadata_from_info


def tagged_chunks(n_chunks, horizon=10):
    """Chunk c holds targets 0.01 * (c * 100 + i) on every joint, so a value names its chunk and row."""
    return [np.full((horizon, 6), 0.0) + 0.0001 * (c * 100 + np.arange(horizon))[:, None] for c in range(n_chunks)]


def executed(rig):
    return [r for r in rig.records("tick") if not r["hold"]]


@pytest.mark.parametrize("latency_s, d", [(0.1, 2), (0.125, 3)])
def test_rtc_sends_the_delay_and_the_unexecuted_rest_and_drops_the_frozen_prefix(sim_rig, chunk_list, latency_s, d):
    backend = chunk_list(tagged_chunks(50), horizon=10)
    rig = sim_rig(backend, merge="rtc", latency_s=latency_s, actions_per_chunk=10, threshold=0.6)
    rig.run(2.0)
    ticks = {r["tick"]: r for r in rig.records("tick")}
    chunks = rig.records("chunk")
    assert len(chunks) > 5
    # e.g. a reply 100 ms (3 ticks at 30 Hz) after tick n is merged before tick n+3 runs: ticks
    # n+1 and n+2 ran during inference, so every request after the first carries d = 2
    assert backend.seen[0].get("inference_delay") == 0
    assert all(obs["inference_delay"] == d for obs in backend.seen[1:])
    for obs, chunk in zip(backend.seen[1:], chunks[1:]):
        n = chunk["obs_tick"]
        prev = obs["prev_chunk"]
        # prev_chunk is exactly what was queued for ticks n+1 ... at the time of the request
        assert len(prev) == ticks[n]["queue"]
        for i in range(d):
            assert ticks[n + 1 + i]["action"] == pytest.approx(prev[i].tolist(), abs=1e-6)
        # and the new chunk takes over at tick n + 1 + d with its row d (its first d rows are dropped)
        assert chunk["first_tick"] == n + 1 + d and chunk["stale"] == d
        row = ticks[n + 1 + d]["action"][0] / 0.0001 % 100
        assert row == pytest.approx(d)
    assert rig.controller.counts["underflows"] == 0


@pytest.mark.parametrize("merge", ["latest", "weighted_average"])
def test_other_modes_send_no_rtc_fields_and_use_the_reply_from_the_next_tick(sim_rig, chunk_list, merge):
    backend = chunk_list(tagged_chunks(50), horizon=10)
    rig = sim_rig(backend, merge=merge, latency_s=0.1, actions_per_chunk=10)
    rig.run(1.0)
    assert all("prev_chunk" not in obs and "inference_delay" not in obs for obs in backend.seen)
    for chunk in rig.records("chunk")[1:]:
        assert chunk["first_tick"] == chunk["obs_tick"] + 3 and chunk["stale"] == 2


def test_a_dry_queue_holds_the_last_command_and_counts_underflows(sim_rig, chunk_list):
    start = np.zeros((10, 6)) + 0.01 * np.arange(1, 11)[:, None]
    # threshold 0.01 of 10: ask only when the queue is empty, with 300 ms latency: ~9 ticks dry per chunk
    rig = sim_rig(chunk_list([start]), merge="latest", latency_s=0.3, actions_per_chunk=10, threshold=0.01)
    rig.run(2.0)
    ticks = rig.records("tick")
    under = [r for r in ticks if r["underflow"]]
    assert len(under) >= 20
    by_tick = {r["tick"]: r for r in ticks}
    for r in under:
        assert r["hold"] and r["action"] is None and r["reason"] == "underflow"
        assert r["command"] == pytest.approx(by_tick[r["tick"] - 1]["command"])
    assert rig.controller.counts["underflows"] == len(under)


def test_no_target_runs_after_its_deadline_even_when_the_loop_overruns(sim_rig, chunk_list, arm_factory):
    arm = arm_factory()
    slow = {"rig": None}
    observe = arm.observe

    def slow_observe():
        slow["rig"].clock.advance(0.1)  # a camera that takes 3 ticks to read
        return observe()

    arm.observe = slow_observe
    chunks = [0.001 * np.arange(1, 41)[:, None] * np.ones((40, 6)) + 0.1 * c for c in range(20)]
    rig = sim_rig(chunk_list(chunks, horizon=40), merge="latest", latency_s=0.05, arm=arm)
    slow["rig"] = rig
    rig.run(3.0)
    ticks = rig.records("tick")
    assert sum(r["missed"] for r in ticks) > 0 and sum(r["expired"] for r in ticks) > 0
    run = executed(rig)
    assert len(run) > 30
    for r in run:
        assert r["t_exec"] <= r["deadline"]


def test_an_outage_holds_at_once_then_resumes(sim_rig, chunk_list):
    smooth = [0.002 * np.arange(1, 41)[:, None] * np.ones((40, 6))]
    # link time runs on the rig's clock, which starts at 100 s
    rig = sim_rig(chunk_list(smooth, horizon=40), merge="rtc", latency_s=0.12, down=((101.0, 102.0),))
    rig.run(3.0)
    ticks = rig.records("tick")
    t_down = 101.0 - 100.0
    lost = [e for e in rig.records("event") if e["event"] == "disconnected"]
    back = [e for e in rig.records("event") if e["event"] == "connected"]
    assert len(lost) == 1 and len(back) == 2
    after = [r for r in ticks if r["t"] >= t_down]
    first_hold = next(r for r in after if r["hold"])
    assert first_hold["t"] - t_down <= 1 / 30 + 1e-9  # held within one control period
    assert all(r["hold"] and r["reason"] == "disconnected" for r in ticks if t_down <= r["t"] < 2.0)
    assert any(not r["hold"] for r in ticks if r["t"] > 2.2)  # resumed after the server came back


def test_rejected_chunks_are_logged_and_never_move_the_arm(sim_rig, chunk_list):
    bad = np.zeros((10, 6))
    bad[4, 2] = np.nan
    rig = sim_rig(chunk_list([bad, np.zeros((10, 5))]), merge="latest", latency_s=0.05, actions_per_chunk=10)
    rig.run(1.0)
    rejected = [e for e in rig.records("event") if e["event"] == "rejected"]
    assert {e["code"] for e in rejected} == {"non_finite", "wrong_shape"}
    assert rig.controller.counts["rejected"] == len(rejected) >= 2
    assert all(r["hold"] for r in rig.records("tick"))
    assert not rig.records("chunk")


def test_a_policy_that_does_not_fit_the_robot_stops_the_run(sim_rig, chunk_list):
    backend = chunk_list([np.zeros((10, 6))])
    metadata = metadata_from_info(backend.info())
    metadata["action_dim"] = 7
    with pytest.raises(RunError, match="7 joint targets"):
        sim_rig(backend, metadata=metadata)
    metadata = metadata_from_info(backend.info())
    metadata["cameras"] = {"overhead": [240, 320, 3]}
    with pytest.raises(RunError, match="needs camera.*overhead"):
        sim_rig(backend, metadata=metadata)


def test_each_episode_starts_with_a_reset_request(sim_rig, chunk_list):
    backend = chunk_list(tagged_chunks(10), horizon=10)
    rig = sim_rig(backend, merge="latest", latency_s=0.05, actions_per_chunk=10)
    results = rig.run(0.5, episodes=2)
    assert [r.index for r in results] == [0, 1]
    resets = [obs.get("reset", False) for obs in backend.seen]
    assert resets.count(True) == 2 and resets[0] is True


def test_frames_are_sent_at_the_size_the_policy_takes(sim_rig, chunk_list, arm_factory):
    backend = chunk_list(tagged_chunks(10), horizon=10)
    metadata = metadata_from_info(backend.info())
    metadata["cameras"] = {"front": [120, 160, 3]}  # the arm films 240x320 with two cameras
    arm = arm_factory(cameras={"front": [240, 320, 3], "wrist": [240, 320, 3]})
    rig = sim_rig(backend, merge="latest", latency_s=0.05, arm=arm, metadata=metadata, actions_per_chunk=10)
    rig.run(0.5)
    obs = backend.seen[0]
    assert obs["observation.images.front"].shape == (120, 160, 3)
    assert obs["observation.images.front"].dtype == np.uint8
    assert "observation.images.wrist" not in obs  # the policy did not ask for it
    assert set(obs) <= {"observation.state", "observation.images.front", "task", "timestamp", "request_id",
                        "session", "reset"}


def test_a_target_whose_deadline_passes_while_it_is_checked_is_not_sent(sim_rig, chunk_list, arm_factory):
    """Safety checks that overrun the tick (here a forward kinematics that takes 40 ms at 30 Hz)
    turn the tick into a hold instead of a late command."""
    from vla.client.safety import SafetyLayer
    from vla_so101_description.description import SO101

    arm = arm_factory()
    box = {}

    def slow_fk(q):
        box["rig"].clock.advance(0.040)
        return arm.forward_kinematics(q)

    safety = SafetyLayer(SO101.default_safety(), arm.joint_names, slow_fk)
    chunks = [0.001 * np.arange(1, 41)[:, None] * np.ones((40, 6))]
    box["rig"] = rig = sim_rig(chunk_list(chunks, horizon=40), merge="latest", latency_s=0.05, arm=arm, safety=safety)
    rig.run(1.0)
    ticks = rig.records("tick")
    late = [r for r in ticks if r["reason"] == "late"]
    assert len(late) >= 5
    assert all(r["hold"] and r["action"] is None for r in late)
    assert not [r for r in ticks if not r["hold"]]  # every target came too late: none was sent
    commands = {tuple(q) for _, q in arm.commands}
    assert commands == {(0.0,) * 6}


def test_the_rtc_delay_estimate_takes_a_high_percentile_not_the_slowest_reply(sim_rig, chunk_list):
    rig = sim_rig(chunk_list([np.zeros((40, 6), np.float32)], horizon=40), merge="rtc")
    controller = rig.controller
    dt = controller.dt
    # nineteen replies after 4 tick periods and one after 12: the slow one must not size every prefix
    controller.delays.clear()
    controller.delays.extend([4 * dt] * 19 + [12 * dt])
    assert controller.estimate_delay() == 3  # ceil(4) - 1, where the maximum would say 11
    controller.delays.extend([12 * dt] * 4)  # slow replies become common: the estimate follows them
    assert controller.estimate_delay() == 11
