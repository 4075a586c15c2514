"""Config classes of vla-sim's components. Light on purpose: the entry point imports this module."""

from __future__ import annotations

import attrs

CAMERA_NAMES = ("front", "wrist")
TASK_IDS = ("pick_place", "push_left", "lift")  # the tasks in tasks.py, named here for light imports


def _positive(_inst, attribute, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{attribute.name} must be a number > 0, got {value!r}")


@attrs.define
class SimConfig:
    """The simulated arm (the `sim` robot): control rate, physics substeps and cameras."""

    task: str = "pick_place"  # task id or goal text for connect(); reset() chooses per episode
    seed: int | None = None
    control_hz: float = attrs.field(default=30.0, validator=_positive)
    substeps: int = attrs.field(default=10, validator=_positive)  # physics steps per control tick
    image_height: int = attrs.field(default=224, validator=_positive)
    image_width: int = attrs.field(default=224, validator=_positive)
    cameras: list[str] = attrs.field(factory=lambda: list(CAMERA_NAMES))
    # Benchmark variations (off by default: the scene is then exactly the standard one).
    # distractor: an extra orange cube, a colour no goal names, placed per episode seed clear of
    # the task's objects. lighting: [low, high]: every light scaled by a factor drawn per episode
    # seed from that range (e.g. [0.7, 1.3] for +-30%).
    distractor: bool = False
    lighting: list[float] | None = attrs.field(default=None)
    # A magenta calibration marker on the tool point (visual only: no collisions, no mass).
    # `vla calibrate camera` turns it on; no task uses magenta.
    marker: bool = False
    # For recording corrective demonstrations (DART, Laskey et al. 2017): a slowly varying offset
    # (Ornstein-Uhlenbeck, standard deviation action_noise radians, correlation time
    # action_noise_s) added to the commanded arm joints before physics, the gripper left alone.
    # The arm drifts off the expert's path and the expert, planning from where the arm is, steers
    # it back; a recording keeps the command, so a policy learns the corrections. Drawn per
    # episode seed.
    action_noise: float = attrs.field(default=0.0, validator=attrs.validators.ge(0.0))
    action_noise_s: float = attrs.field(default=0.5, validator=_positive)

    @lighting.validator
    def _check_lighting(self, attribute, value):
        if value is None:
            return
        ok = (
            isinstance(value, (list, tuple))
            and len(value) == 2
            and all(not isinstance(v, bool) and isinstance(v, (int, float)) and v > 0 for v in value)
            and value[0] <= value[1]
        )
        if not ok:
            raise ValueError(f"lighting must be [low, high], two factors > 0 with low <= high (e.g. [0.7, 1.3]); got {value!r}")

    @cameras.validator
    def _check_cameras(self, attribute, value):
        if not value or any(c not in CAMERA_NAMES for c in value):
            raise ValueError(f"cameras must be a non-empty list of {', '.join(CAMERA_NAMES)}; got {value!r}")


@attrs.define
class ScriptedConfig:
    """The scripted expert (the `scripted` policy)."""

    horizon: int = attrs.field(default=40, validator=_positive)  # actions per chunk
    control_hz: float = attrs.field(default=30.0, validator=_positive)  # the rate its chunks are timed for
    speed: float = attrs.field(default=0.15, validator=_positive)  # m/s of the tool in free moves
    approach_speed: float = attrs.field(default=0.08, validator=_positive)  # m/s near objects
    push_speed: float = attrs.field(default=0.06, validator=_positive)  # m/s while pushing


STARTER_CONFIG = """\
task: pick_place       # the task connect() starts with: pick_place, push_left or lift (or goal text)
control_hz: 30
cameras: [front, wrist]
image_height: 224
image_width: 224
"""


def starter_arm_config(arm_id: str) -> str:
    """The ``config:`` of a new arm file (`vla init --robot sim`): a simulated arm."""
    return STARTER_CONFIG
