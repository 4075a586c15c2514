"""The scripted expert solves every task (so the tasks are solvable and their checks are right)."""

from __future__ import annotations

import numpy as np
import pytest

from vla.policy import PolicyBackend
from vla_sim.tasks import TASK_IDS

from .conftest import run_expert_episode


@pytest.mark.parametrize("task", TASK_IDS)
def test_expert_succeeds_on_at_least_90_percent_of_20_seeded_episodes(sim_robot, expert, task):
    results = [run_expert_episode(sim_robot, expert, task, seed) for seed in range(20)]
    rate = sum(results) / len(results)
    failed = [s for s, ok in enumerate(results) if not ok]
    assert rate >= 0.9, f"{task}: success {rate:.0%}, failed seeds {failed}"


def test_expert_also_succeeds_when_whole_chunks_run_open_loop(sim_robot, expert):
    # A client that executes all 40 actions before asking again (no overlap) still gets there.
    assert all(run_expert_episode(sim_robot, expert, "pick_place", seed, execute=40) for seed in (100, 101))


def test_chunks_are_policy_shaped_and_respect_the_step_limit(sim_robot, expert):
    assert isinstance(expert, PolicyBackend)
    info = expert.info()
    assert (info.name, info.state_dim, info.action_dim, info.horizon) == ("scripted", 6, 6, 40)
    expert.warmup()
    lo, hi = np.array(sim_robot.model.actuator_ctrlrange).T
    for task in TASK_IDS:
        sim_robot.reset(task, 5)
        obs = sim_robot.observe(images=False)
        (chunk,) = expert.infer([obs])
        assert chunk.shape == (40, 6) and chunk.dtype == np.float32
        steps = np.abs(np.diff(np.vstack([obs["observation.state"], chunk]), axis=0))
        assert steps.max() <= 0.2 + 1e-6  # the default safety file's per-tick limit
        assert np.all(chunk >= lo - 1e-5) and np.all(chunk <= hi + 1e-5)


def test_batches_are_answered_in_order(sim_robot, expert):
    obs = []
    for task in ("lift", "push_left"):
        sim_robot.reset(task, 9)
        obs.append(sim_robot.observe(images=False))
    together = expert.infer(obs)
    alone = [expert.infer([o])[0] for o in obs]
    assert len(together) == 2
    for a, b in zip(together, alone):
        np.testing.assert_array_equal(a, b)


def test_missing_or_malformed_observations_get_clear_errors(sim_robot, expert):
    sim_robot.reset("lift", 0)
    obs = sim_robot.observe(images=False)
    with pytest.raises(ValueError, match="observation.environment_state"):
        expert.infer([{k: v for k, v in obs.items() if k != "observation.environment_state"}])
    with pytest.raises(ValueError, match="observation.state"):
        expert.infer([{**obs, "observation.state": np.zeros(3, np.float32)}])
    with pytest.raises(ValueError, match="unknown sim task"):
        expert.infer([{**obs, "task": "fold the laundry"}])


def test_expert_succeeds_behind_the_clients_chunk_merging_with_inference_delay(sim_robot, expert):
    """As `vla run` drives it: a new chunk is asked for when 60% of the queue is left, arrives
    5 ticks after its observation, and is merged into the plan by the client's own queue (RTC)."""
    from vla.client.queue import RTC, ActionQueue

    mode, delay = RTC, 5

    def episode(task, seed) -> bool:
        sim_robot.reset(task, seed)
        queue, last = ActionQueue(6), sim_robot.joint_positions().astype(float)
        pending, tick, chunk_id = None, 0, 0
        while not sim_robot.timed_out():
            if pending is None and queue.length_from(tick) < 0.6 * 40:
                obs = sim_robot.observe(images=False)
                obs["inference_delay"] = delay
                obs["prev_chunk"] = queue.rest(tick).astype(np.float32)
                pending = (tick, expert.infer([obs])[0])
            if pending is not None and tick >= pending[0] + delay:
                chunk_id += 1
                queue.merge(pending[1], pending[0], tick, mode, chunk_id, last, inference_delay=delay)
                pending = None
            action, _, _ = queue.pop(tick)
            last = last if action is None else last + np.clip(action - last, -0.2, 0.2)  # hold, or the step limit
            sim_robot.act(last)
            tick += 1
            if sim_robot.success():
                return True
        return False

    for task in TASK_IDS:
        results = [episode(task, seed) for seed in range(40, 45)]
        assert sum(results) >= 4, f"{task} with {mode}, delay {delay}: {results}"
