"""Components that ship with core: a kinematic test arm and test policies.

They let `vla run` and `vla serve` be tried, and tested, with no robot plugin installed:
`vla serve --policy timed` and `vla run --robot kinematic`. Their config classes live here,
beside the registrations, because this module is imported on every `vla plugins list` and
must not import numpy; the implementations are in ``vla.testing``.
"""

from __future__ import annotations

import attrs

from vla import hookimpl
from vla.specs import PolicySpec, RobotSpec

# Camera contract shared by the test arm and the test policy, so that they fit together.
TEST_CAMERAS = {"front": [240, 320, 3], "wrist": [240, 320, 3]}


def _cameras():
    return {name: list(shape) for name, shape in TEST_CAMERAS.items()}


@attrs.define
class TimedPolicyConfig:
    """A stand-in for a GPU model: each batch call costs a set time, whatever the batch size.

    Its chunks are a deterministic function of each observation's state (see
    ``vla.testing.policies.expected_chunk``), so tests can check every client got its own answer.
    """

    batch_cost_ms: float = 0.0  # time one call to infer takes (the model's fixed cost)
    item_cost_ms: float = 0.0  # extra time per observation in the batch
    jitter_ms: float = 0.0  # uniform +- jitter on each call's time
    seed: int = 0
    horizon: int = 50
    action_dim: int = 6
    state_dim: int = 6
    cameras: dict[str, list[int]] = attrs.field(factory=_cameras)
    step: float = 0.01  # radians added per action step (alternating sign per joint)
    max_batch: int = 8
    supports_rtc: bool = True
    warmup_s: float = 0.0  # how long warm-up takes
    fail_warmup: bool = False  # warm-up raises (to see the server report `failed`)
    fail_task: str | None = None  # infer raises for a batch holding an observation with this task


@attrs.define
class KinematicArmConfig:
    """An SO-101 without physics: commanded joints are reached at once (or at a speed limit)."""

    control_hz: float = 30.0
    cameras: dict[str, list[int]] = attrs.field(factory=_cameras)
    initial_q: list[float] = attrs.field(factory=lambda: [0.0] * 6)
    max_joint_speed: float | None = None  # rad/s; None: a command is reached within the tick


@hookimpl
def register_robots(register):
    register(
        RobotSpec(
            name="kinematic",
            description="Test SO-101 arm: kinematics only, synthetic camera images, no hardware.",
            factory="vla.testing.kinematic:KinematicArm",
            config=KinematicArmConfig,
        )
    )


@hookimpl
def register_policies(register):
    register(
        PolicySpec(
            name="timed",
            description="Test policy: deterministic chunks from the state; each batch call costs a set time.",
            factory="vla.testing.policies:TimedPolicy",
            config=TimedPolicyConfig,
        )
    )
