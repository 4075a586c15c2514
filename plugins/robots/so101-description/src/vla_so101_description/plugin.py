"""vla-so101-description's entry point: the robot `kinematic`, an SO-101 without hardware or physics.

Imports only vla and attrs: listing plugins must not import numpy's users.
"""

from vla import hookimpl
from vla.builtins import KinematicArmConfig
from vla.specs import RobotSpec

DESCRIPTION = "vla_so101_description.description:SO101"


@hookimpl
def register_robots(register):
    register(
        RobotSpec(
            name="kinematic",
            description="Test SO-101 arm: kinematics only, synthetic camera images, no hardware.",
            factory="vla_so101_description.testing:kinematic_arm",
            config=KinematicArmConfig,
            robot_description=DESCRIPTION,
        )
    )
