"""The SO-100 follower through LeRobot's ``so100_follower``: vla-so101's driver with this arm's description."""

from __future__ import annotations

from vla_so100.description import SO100
from vla_so101.robot import SOFollowerArm


class SO100Robot(SOFollowerArm):
    """The SO-100 follower arm (robot ``so100``)."""

    description = SO100
    robot_type = "so100_follower"  # LeRobot's name, also written into recorded datasets
    lerobot_class = "SO100Follower"
    name = "SO-100"
