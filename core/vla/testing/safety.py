"""The safety property, for any robot description: no command that reaches the arm leaves its limits.

A robot plugin's own tests call it with its description::

    from vla.testing.safety import check_safety_property

    def test_safety_property():
        check_safety_property(MY_ARM)

Two properties, each over generated inputs (hypothesis, a test dependency, imported here only):
1. ``SafetyLayer.limit`` maps any target, from near the limits to wild, to a command that meets
   the joint limits, the gripper range, the per-tick step and the workspace box of the
   description's default safety file;
2. through the whole client (a policy on simulated time, merge, queue, safety, watchdog) to
   the ``act`` of a kinematic arm built from the description, whatever chunks the policy
   answers (wrong shapes, NaN, huge values), every command meets every limit, and the arm
   itself never has to clamp.
"""

from __future__ import annotations

import warnings

import numpy as np

from vla.description import RobotDescription


def joint_positions(description: RobotDescription):
    """Joint positions inside the description's limits."""
    from hypothesis import strategies as st

    return st.tuples(*[st.floats(lo, hi) for lo, hi in description.limits]).map(np.array)


def hostile_chunks(n_joints: int):
    """Whatever a policy might send back: good chunks, wild values, wrong shapes and types."""
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    near_range = st.floats(-4.0, 4.0)
    any_float = st.floats(allow_nan=True, allow_infinity=True)
    rows = st.integers(1, 12)
    wild = rows.flatmap(
        lambda n: hnp.arrays(np.float64, (n, n_joints), elements=st.one_of(near_range, any_float, st.floats(-1e9, 1e9)))
    )
    smooth_but_far = st.tuples(rows, st.floats(-3, 3), st.floats(-0.5, 0.5)).map(
        lambda a: a[1] + a[2] * np.arange(a[0])[:, None] * np.ones((1, n_joints))
    )
    wrong_shape = hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, max_side=7), elements=near_range)
    ints = rows.flatmap(lambda n: hnp.arrays(np.int64, (n, n_joints), elements=st.integers(-10, 10)))
    as_float32 = wild.map(_to_float32)
    junk = st.one_of(st.none(), st.text(max_size=5), st.lists(st.floats(), max_size=n_joints),
                     st.just(np.array([["x"] * n_joints])), st.just(np.zeros((2, n_joints), dtype=complex)))
    return st.one_of(wild, smooth_but_far, wrong_shape, ints, as_float32, junk)


def _to_float32(a):
    with np.errstate(over="ignore"):
        return a.astype(np.float32)


def safety_layer(description: RobotDescription):
    from vla.client.safety import SafetyLayer

    return SafetyLayer(description.default_safety(), description.joint_names, description.kinematics.forward_kinematics)


def run_hostile_policy(description: RobotDescription, q0, chunks, merge: str, seconds: float = 1.5):
    """Drive a kinematic arm of ``description`` with a policy that answers ``chunks``; returns
    (the arm, the safety layer, q0) after ``seconds`` of simulated control."""
    from vla.builtins import KinematicArmConfig
    from vla.client.clock import SimulatedClock
    from vla.client.controller import Controller, ControlSettings
    from vla.client.session import run_episodes, wait_connected
    from vla.client.simlink import SimulatedLink
    from vla.testing.kinematic import KinematicArm
    from vla.testing.policies import ChunkList

    n = len(description.joint_names)
    layer = safety_layer(description)
    arm = KinematicArm(KinematicArmConfig(control_hz=30.0, cameras={}, initial_q=list(q0)), description)
    arm.connect()
    clock = SimulatedClock(100.0)
    settings = ControlSettings(30.0, actions_per_chunk=12, chunk_size_threshold=0.6, merge=merge)
    controller = Controller(arm, layer, settings, clock, task="hostile")
    link = SimulatedLink(ChunkList(chunks, horizon=12, n_joints=n), clock, lambda: 0.05)
    wait_connected(controller, link, clock, 5.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # float32 overflow in the generated chunks
        run_episodes(arm, controller, link, clock, task="hostile", episodes=1, episode_s=seconds)
    return arm, layer


def check_safety_property(description: RobotDescription, examples: int = 300, client_examples: int = 40) -> None:
    """Assert both properties (see the module docstring) for ``description``; raises AssertionError."""
    from hypothesis import HealthCheck, assume, given, settings
    from hypothesis import strategies as st

    n = len(description.joint_names)
    layer = safety_layer(description)
    targets = st.lists(st.one_of(st.floats(-4.0, 4.0), st.floats(-1e6, 1e6)), min_size=n, max_size=n)

    @settings(max_examples=examples, deadline=None, database=None)
    @given(last=joint_positions(description), target=targets)
    def every_command_meets_every_limit(last, target):
        assume(layer.inside_box(last))
        cmd, _ = layer.limit(np.array(target), last)
        assert layer.violations(cmd, last) == [], (description.name, target, last, cmd)

    @settings(max_examples=client_examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(q0=joint_positions(description), chunks=st.lists(hostile_chunks(n), min_size=1, max_size=6),
           merge=st.sampled_from(["latest", "weighted_average", "rtc"]))
    def nothing_reaching_the_arm_leaves_the_limits(q0, chunks, merge):
        assume(layer.inside_box(q0))
        arm, checked = run_hostile_policy(description, q0, chunks, merge)
        commands = [q for _, q in arm.commands]
        assert len(commands) >= 45
        previous = q0
        for q in commands:
            assert checked.violations(q, previous) == [], (description.name, q, previous)
            previous = q
        assert arm.limit_hits == 0, f"{description.name}: the arm itself had to clamp a command"

    every_command_meets_every_limit()
    nothing_reaching_the_arm_leaves_the_limits()
