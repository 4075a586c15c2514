"""The safety layer: clamps, rejections, and the property that no command leaves the limits."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from vla.client.safety import GRIPPER, JOINT_LIMIT, STEP_LIMIT, WORKSPACE, ChunkRejected, SafetyConfigError, SafetyLayer
from vla.config import SO101_JOINT_LIMITS, JointLimit, SafetyConfig, WorkspaceBox, so101_safety
from vla.kinematics.so101 import JOINT_NAMES, forward_kinematics

LOWER = np.array([lo for lo, _ in SO101_JOINT_LIMITS.values()])
UPPER = np.array([hi for _, hi in SO101_JOINT_LIMITS.values()])


@pytest.fixture
def layer():
    return SafetyLayer(so101_safety(), JOINT_NAMES, forward_kinematics)


def test_joint_limits_and_gripper_range_are_clamped_and_counted(layer):
    last = np.zeros(6)
    cmd, clamps = layer.limit([0.0, 0.0, 0.0, 0.0, 0.1, 5.0], last)
    assert clamps == (GRIPPER, STEP_LIMIT)  # the gripper is clamped to 1.745, then the step to 0.2
    assert cmd[5] == pytest.approx(0.2)
    config = so101_safety()
    config.joints["wrist_roll"] = JointLimit(-0.5, 0.5, max_step=10.0)
    roll = SafetyLayer(config, JOINT_NAMES, forward_kinematics)
    cmd, clamps = roll.limit([0, 0, 0, 0, 2.0, 0], last)
    assert clamps == (JOINT_LIMIT,) and cmd[4] == pytest.approx(0.5)
    assert roll.counts[JOINT_LIMIT] == 1


def test_step_limit_bounds_every_joint_per_tick(layer):
    last = np.zeros(6)
    cmd, clamps = layer.limit([0.5, -0.5, 0.05, 0, 0, 0], last)
    assert STEP_LIMIT in clamps
    assert cmd[:3] == pytest.approx([0.2, -0.2, 0.05])


def test_workspace_box_pulls_the_tool_back_along_the_segment():
    config = so101_safety()
    for limit in config.joints.values():
        limit.max_step = 10.0
    config.workspace = WorkspaceBox(min=[-0.15, -0.45, 0.15], max=[0.5, 0.45, 0.45])
    layer = SafetyLayer(config, JOINT_NAMES, forward_kinematics)
    last = np.zeros(6)  # tool at z = 0.227
    target = np.array([0.0, 1.2, 0.0, 0.0, 0.0, 0.0])  # shoulder forward: the tool dives toward the table
    assert forward_kinematics(target)[2] < 0.15
    cmd, clamps = layer.limit(target, last)
    assert clamps == (WORKSPACE,)
    z = forward_kinematics(cmd)[2]
    assert 0.15 <= z < 0.152  # as far as the box allows, not just held
    assert 0 < cmd[1] < 1.2


def test_bad_chunks_are_rejected_whole_with_a_reason(layer):
    good = np.zeros((4, 6), np.float32)
    assert layer.check_chunk(good).shape == (4, 6)
    cases = {
        "non_finite": np.array([[0, 0, 0, 0, 0, np.nan]] * 3),
        "wrong_shape": np.zeros((4, 5)),
        "bad_dtype": np.array([["a"] * 6]),
        "bad_type": None,
    }
    for code, chunk in cases.items():
        with pytest.raises(ChunkRejected) as info:
            layer.check_chunk(chunk)
        assert info.value.code == code
    assert layer.counts["rejected_chunk"] == len(cases)
    with pytest.raises(ChunkRejected, match="wrong_shape"):
        layer.check_chunk(np.zeros((0, 6)))
    with pytest.raises(ChunkRejected, match="non_finite"):
        layer.check_chunk(np.full((2, 6), np.inf))


def test_limits_that_do_not_fit_the_robot_are_refused():
    with pytest.raises(SafetyConfigError, match="elbow_flex"):
        SafetyLayer(SafetyConfig(joints={n: JointLimit(-1, 1) for n in JOINT_NAMES if n != "elbow_flex"}),
                    JOINT_NAMES, forward_kinematics)
    with pytest.raises(SafetyConfigError, match="forward kinematics"):
        SafetyLayer(so101_safety(), JOINT_NAMES, None)


# ------------------------------------------------------------------ properties

joint_q = st.tuples(*[st.floats(float(lo), float(hi)) for lo, hi in zip(LOWER, UPPER)]).map(np.array)
any_float = st.floats(allow_nan=True, allow_infinity=True)
near_range = st.floats(-4.0, 4.0)


@settings(max_examples=300, deadline=None)
@given(last=joint_q, target=st.lists(st.one_of(near_range, st.floats(-1e6, 1e6)), min_size=6, max_size=6))
def test_limit_output_meets_every_limit(last, target):
    layer = SafetyLayer(so101_safety(), JOINT_NAMES, forward_kinematics)
    assume(layer.inside_box(last))
    cmd, _ = layer.limit(np.array(target), last)
    assert layer.violations(cmd, last) == []


def _to_float32(a):
    with np.errstate(over="ignore"):
        return a.astype(np.float32)


def chunk_strategy():
    """Whatever a policy might send back: good chunks, wild values, wrong shapes and types."""
    rows = st.integers(1, 12)
    wild_chunk = rows.flatmap(
        lambda n: hnp.arrays(np.float64, (n, 6), elements=st.one_of(near_range, any_float, st.floats(-1e9, 1e9)))
    )
    smooth_but_far = st.tuples(rows, st.floats(-3, 3), st.floats(-0.5, 0.5)).map(
        lambda a: a[1] + a[2] * np.arange(a[0])[:, None] * np.ones((1, 6))
    )
    wrong_shape = hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, max_side=7), elements=near_range)
    ints = rows.flatmap(lambda n: hnp.arrays(np.int64, (n, 6), elements=st.integers(-10, 10)))
    as_float32 = wild_chunk.map(_to_float32)
    junk = st.one_of(st.none(), st.text(max_size=5), st.lists(st.floats(), max_size=6),
                     st.just(np.array([["x"] * 6])), st.just(np.zeros((2, 6), dtype=complex)))
    return st.one_of(wild_chunk, smooth_but_far, wrong_shape, ints, as_float32, junk)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(q0=joint_q, chunks=st.lists(chunk_strategy(), min_size=1, max_size=6),
       merge=st.sampled_from(["latest", "weighted_average", "rtc"]))
def test_no_command_reaching_the_robot_leaves_the_limits(sim_rig, chunk_list, arm_factory, q0, chunks, merge):
    """Through the whole client (link, merge, queue, safety, watchdog) to the arm's act()."""
    layer = SafetyLayer(so101_safety(), JOINT_NAMES, forward_kinematics)
    assume(layer.inside_box(q0))
    arm = arm_factory(initial_q=q0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # float32 overflow in the generated chunks
        rig = sim_rig(chunk_list(chunks, horizon=12), merge=merge, latency_s=0.05, arm=arm, safety=layer,
                      actions_per_chunk=12)
        rig.run(1.5)
    commands = [q for _, q in arm.commands]
    assert len(commands) >= 45
    previous = q0
    for q in commands:
        assert layer.violations(q, previous) == [], (q, previous)
        previous = q
    assert arm.limit_hits == 0  # the arm itself never had to clamp anything
