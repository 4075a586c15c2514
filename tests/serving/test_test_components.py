"""The test components: the built-in `timed` policy, and the `kinematic` arm (vla.testing.kinematic
built from the SO-101 description, registered by vla-so101-description), as the registry builds them."""

from __future__ import annotations

import time

import numpy as np
import pytest

from vla.plugins import load_registry
from vla.policy import PolicyBackend
from vla.robot import Robot
from vla.testing import check_plugin
from vla.testing.policies import expected_chunk
from vla_so101_description.description import SO101


def test_core_registers_and_conforms():
    assert "timed" in check_plugin("vla")["policies"]
    assert check_plugin("vla-so101-description") == {"robots": ["kinematic"]}


def test_timed_policy_from_the_registry():
    registry = load_registry()
    spec = registry.spec("policies", "timed")
    policy = spec.build(spec.config(batch_cost_ms=60, horizon=8, step=0.05))
    assert isinstance(policy, PolicyBackend)
    info = policy.info()
    assert (info.horizon, info.action_dim, info.state_dim) == (8, 6, 6)
    policy.warmup()
    states = [np.full(6, 0.1, np.float32), np.linspace(-1, 1, 6).astype(np.float32)]
    t0 = time.perf_counter()
    chunks = policy.infer([{"observation.state": s} for s in states])
    elapsed = time.perf_counter() - t0
    assert elapsed >= 0.055, "one batch call costs the set time"
    for s, chunk in zip(states, chunks):
        assert chunk.shape == (8, 6) and chunk.dtype == np.float32
        np.testing.assert_allclose(chunk, expected_chunk(s, 8, 6, 0.05))
    # chunk t = state + t * step * (+1, -1, ...)
    np.testing.assert_allclose(chunks[0][0], 0.1 + 0.05 * np.array([1, -1, 1, -1, 1, -1]), atol=1e-6)
    assert policy.batch_sizes == [2]


def test_timed_policy_keeps_the_rtc_prefix_and_fails_on_request():
    registry = load_registry()
    spec = registry.spec("policies", "timed")
    policy = spec.build(spec.config(horizon=6, fail_task="boom"))
    prev = np.full((4, 6), 0.7, np.float32)
    (chunk,) = policy.infer([{"observation.state": np.zeros(6, np.float32), "inference_delay": 2, "prev_chunk": prev}])
    np.testing.assert_allclose(chunk[:2], prev[:2])
    np.testing.assert_allclose(chunk[2:], expected_chunk(np.zeros(6), 6)[2:])
    with pytest.raises(RuntimeError, match="on purpose"):
        policy.infer([{"observation.state": np.zeros(6, np.float32), "task": "boom"}])


def test_kinematic_arm():
    registry = load_registry()
    spec = registry.spec("robots", "kinematic")
    arm = spec.build(spec.config(cameras={"front": [60, 80, 3]}))
    assert isinstance(arm, Robot)
    assert arm.joint_names == SO101.joint_names and arm.description is SO101 and arm.cameras == {"front": (60, 80, 3)}
    with pytest.raises(RuntimeError, match="not connected"):
        arm.observe()
    arm.connect()
    first = arm.observe()
    assert first["observation.state"].dtype == np.float32 and first["observation.state"].shape == (6,)
    assert first["observation.images.front"].shape == (60, 80, 3) and first["observation.images.front"].dtype == np.uint8
    np.testing.assert_allclose(arm.forward_kinematics(np.zeros(6)), [0.391, 0.0, 0.227], atol=0.005)

    target = np.array([0.8, -0.5, 0.6, 0.2, 1.0, 0.9])
    arm.act(target)
    moved = arm.observe()
    np.testing.assert_allclose(moved["observation.state"], target, atol=1e-6)
    assert not np.array_equal(moved["observation.images.front"], first["observation.images.front"]), "the image follows the arm"

    arm.act(np.array([5.0, 0, 0, 0, 0, 0]))  # beyond the pan range: the servo stops at its limit
    assert arm.observe()["observation.state"][0] == pytest.approx(SO101.upper[0], abs=1e-6)
    assert arm.limit_hits == 1 and len(arm.commands) == 2
    assert arm.commands[-1][1][0] == 5.0, "raw commands are kept for tests to inspect"
    with pytest.raises(ValueError):
        arm.act(np.array([np.nan] * 6))
    arm.reset("lift")
    np.testing.assert_allclose(arm.observe()["observation.state"], 0.0)


def test_kinematic_arm_speed_limit():
    registry = load_registry()
    spec = registry.spec("robots", "kinematic")
    arm = spec.build(spec.config(max_joint_speed=1.0, cameras={"front": [16, 16, 3]}))
    arm.connect()
    t0 = time.monotonic()
    arm.act(np.array([1.0, 0, 0, 0, 0, 0]))
    time.sleep(0.1)
    q = float(arm.observe()["observation.state"][0])
    elapsed = time.monotonic() - t0
    # at 1 rad/s: at least the 0.1 s slept, at most the time that really passed (busy machines)
    assert 0.1 - 1e-3 <= q <= min(1.0, elapsed) + 1e-3, f"moved {q} rad in {elapsed:.3f} s at 1 rad/s"
