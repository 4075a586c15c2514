"""Settings of the `primitives` policy (``plugins.primitives`` in vla.yaml, or `vla serve --set`).

Light on purpose: the plugin's entry point imports this module.
"""

from __future__ import annotations

import attrs


def _positive(_inst, attribute, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{attribute.name} must be a number > 0, got {value!r}")


@attrs.define
class PrimitivesConfig:
    # The camera calibration every session uses (`vla calibrate camera --arm ARM` writes one to
    # <lab>/arms/<arm>/camera-front.yaml), and per-arm ones: {session or arm id: path}. A key
    # matches a session equal to it or holding it as a '-'-separated part ("learn-arm02-...").
    calibration: str | None = None
    calibrations: dict[str, str] = attrs.field(factory=dict)
    # Fixed parameters: a JSON file {"task": goal text, "params": {name: value}} (or a list of
    # those, one per task). Tasks it does not name start from each parameter's initial value.
    params: str | None = None
    robot: str = "so101"  # the robot plugin whose description gives the kinematics and limits
    camera: str = "front"
    horizon: int = attrs.field(default=600, validator=_positive)  # actions per chunk: 20 s at 30 Hz, a whole episode
    control_hz: float = attrs.field(default=30.0, validator=_positive)  # the rate chunks are timed for
    speed: float = attrs.field(default=0.15, validator=_positive)  # m/s of the tool in free moves
    approach_speed: float = attrs.field(default=0.07, validator=_positive)  # m/s near objects
    push_speed: float = attrs.field(default=0.06, validator=_positive)  # m/s while pushing
    travel_z: float = 0.08  # tool height for moves with nothing in the hand (m above the table)
    open_fraction: float = 0.6  # how far the jaws open to grasp (0 closed .. 1 fully open)
    close_s: float = attrs.field(default=0.6, validator=_positive)  # time the jaws get to close on an object
    object_size: float = 0.03  # edge of the cubes the goals name (m)
    container_height: float = 0.035  # height of the bowls (m)
    held_offset: float = 0.022  # object centre from the tool point along the jaw axis once squeezed
    pusher_half: float = 0.008  # half the closed jaws' depth across the jaw axis (m)
    start_hold_s: float = 0.5  # the plan starts still for this long: a late first reply skips only stillness
