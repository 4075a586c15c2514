"""``SO100``: the SO-100's ``RobotDescription`` (named by ``RobotSpec.robot_description``)."""

from __future__ import annotations

import numpy as np

from vla.description import Gripper, RobotDescription, Workspace
from vla.description.chain import ChainJoint, SerialChain, tool_transform
from vla_so100 import constants as c

KINEMATICS = SerialChain(
    [ChainJoint.from_rpy(name, xyz, rpy, axis, zero_offset=offset)
     for (name, xyz, rpy, axis, _), offset in zip(c.URDF_JOINTS, c.ZERO_OFFSETS)],
    tool_transform(c.TOOL_XYZ, matrix=np.column_stack(c.TOOL_AXES)),
    c.JOINT_LIMITS[: c.ARM_JOINTS],
    n_joints=len(c.JOINT_NAMES),
    base=tool_transform((0.0, 0.0, 0.0), rpy=(0.0, 0.0, c.BASE_YAW)),
)

SO100 = RobotDescription(
    name="so100",
    joint_names=c.JOINT_NAMES,
    limits=c.JOINT_LIMITS,
    arm_joints=c.ARM_JOINTS,
    kinematics=KINEMATICS,
    gripper=Gripper("gripper", closed=c.GRIPPER_CLOSED, open=c.GRIPPER_OPEN),
    home=c.HOME,
    workspace=Workspace(c.WORKSPACE_MIN, c.WORKSPACE_MAX),
    max_step=c.MAX_STEP,
    source=c.SOURCE,
)
