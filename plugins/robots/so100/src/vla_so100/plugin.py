"""vla-so100's entry point: registers the robot `so100`. Imports only vla, attrs and the config."""

from vla import hookimpl
from vla.specs import RobotSpec
from vla_so100.config import SO100Config


@hookimpl
def register_robots(register):
    register(
        RobotSpec(
            name="so100",
            description="SO-100 (SO-ARM100) follower arm (Feetech STS3215) via LeRobot's so100_follower driver.",
            factory="vla_so100.robot:SO100Robot",
            config=SO100Config,
            robot_description="vla_so100.description:SO100",
            starter_config="vla_so100.config:starter_arm_config",
        )
    )
