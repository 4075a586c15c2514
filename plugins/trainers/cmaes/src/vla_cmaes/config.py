"""Settings of the CMA-ES trainer (the `plugins.cmaes` section of vla.yaml). Light: the entry point imports it."""

from __future__ import annotations

import attrs


def _optional_popsize(_inst, attribute, value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 2):
        raise ValueError(f"{attribute.name} must be a whole number >= 2 or null, got {value!r}")


def _positive(_inst, attribute, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{attribute.name} must be a number > 0, got {value!r}")


def _non_negative(_inst, attribute, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{attribute.name} must be a number >= 0, got {value!r}")


def _at_least_one(_inst, attribute, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be a whole number >= 1, got {value!r}")


@attrs.define
class CMAESConfig:
    popsize: int | None = attrs.field(default=None, validator=_optional_popsize)  # None: 4 + 3 ln n
    sigma0: float = attrs.field(default=0.25, validator=_positive)  # share of each parameter's range
    layouts_per_generation: int = attrs.field(default=2, validator=_at_least_one)
    # fitness lost per metre of tool path: without it a push shoves the cube far past the line;
    # l-prims measured 0.01 per second of plan and 0.5 per metre as too weak, 1.0 per metre as enough
    effort_per_m: float = attrs.field(default=1.0, validator=_non_negative)
