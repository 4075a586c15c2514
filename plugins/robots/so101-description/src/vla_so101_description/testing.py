"""The SO-101 kinematic test arm (robot `kinematic`): ``vla.testing.kinematic.KinematicArm`` with this description."""

from __future__ import annotations

from vla.builtins import KinematicArmConfig
from vla.testing.kinematic import KinematicArm
from vla_so101_description.description import SO101


def kinematic_arm(config: KinematicArmConfig | None = None) -> KinematicArm:
    return KinematicArm(config, SO101)
