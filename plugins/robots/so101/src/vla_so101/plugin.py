"""vla-so101's entry point: registers the robot and the `vla robot` commands.

Imports only vla, attrs and click: listing plugins must not import lerobot or torch.
"""

from vla import hookimpl
from vla.specs import RobotSpec
from vla_so101.config import SO101Config


@hookimpl
def register_robots(register):
    register(
        RobotSpec(
            name="so101",
            description="Hugging Face SO-101 follower arm (Feetech STS3215) via LeRobot's so101_follower driver.",
            factory="vla_so101.robot:SO101Robot",
            config=SO101Config,
            robot_description="vla_so101_description.description:SO101",
            starter_config="vla_so101.config:starter_arm_config",
        )
    )


@hookimpl
def register_commands(cli):
    from vla_so101.cli import robot

    cli.add_command(robot)
