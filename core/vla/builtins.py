"""Components that ship with core: a test policy, and the config of the kinematic test arm.

`vla serve --policy timed` serves a stand-in for a GPU model with no policy plugin installed.
The kinematic test arm (``vla.testing.kinematic``) is built from a robot description, so a
robot's description package registers it (the SO-101's is `vla run --robot kinematic`). Config
classes live here because this module is imported on every `vla plugins list` and must not
import numpy; the implementations are in ``vla.testing``.
"""

from __future__ import annotations

import attrs

from vla import hookimpl
from vla.specs import PolicySpec

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
    """An arm without physics: commanded joints are reached at once (or at a speed limit)."""

    control_hz: float = 30.0
    cameras: dict[str, list[int]] = attrs.field(factory=_cameras)
    initial_q: list[float] | None = None  # radians, joint order; None: every joint at zero
    max_joint_speed: float | None = None  # rad/s; None: a command is reached within the tick
    # Fault injection for tests of what an arm that loses its camera does: after this many
    # seconds connected, every observation with images raises (as a camera that stops would).
    camera_fails_after_s: float | None = None


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
