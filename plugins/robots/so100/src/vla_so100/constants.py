"""The SO-100's numbers: joints, limits, kinematic chain, tool point, home pose, workspace box.

Source: TheRobotStudio's SO-ARM100 repository, ``Simulation/SO100/so100.urdf`` (commit
fda892c), joint ``origin xyz/rpy``, ``axis`` and ``limit`` of shoulder_pan .. gripper.

Three things are vla's, not the URDF's:
- zero. The URDF's zero is a folded pose and its ranges are one-sided (shoulder_lift 0..3.5,
  elbow_flex -3.14..0). LeRobot's ``so100_follower`` reads each joint in degrees from the
  middle of the travel recorded at calibration, so vla's zero is the middle of each URDF range
  (``ZERO_OFFSETS``: the URDF angle at vla's zero) and vla's limits are the URDF ranges shifted
  to it. That assumes the calibrated travel is the URDF's range; tighten the safety file to
  your arm. The gripper keeps the URDF's angles (closed at the lower end), as on the SO-101.
- the base frame. The URDF's arm faces -y; vla's base frames face +x (z up), so the model's
  base is turned by +90 degrees about z (``BASE_YAW``).
- the tool point. The URDF has no tool frame; it is the fixed jaw's tip on its inner face, read
  from the published ``Fixed_Jaw.stl`` in the gripper link's frame (the tip region spans
  y = -0.100 .. -0.106 m, the inner face is at x = 0.0079 m). The tool frame follows vla's
  convention: x out of the jaws (the gripper link's -y), z from the fixed jaw toward the
  moving jaw (the gripper link's -x).
"""

import math

JOINT_NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
ARM_JOINTS = 5

# (name, origin xyz (m), origin rpy (rad), axis, URDF (lower, upper) rad), parent -> child, from so100.urdf
URDF_JOINTS = (
    ("shoulder_pan", (0.0, -0.0452, 0.0165), (1.57079, 0.0, 0.0), (0.0, 1.0, 0.0), (-2.0, 2.0)),
    ("shoulder_lift", (0.0, 0.1025, 0.0306), (-1.8, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 3.5)),
    ("elbow_flex", (0.0, 0.11257, 0.028), (1.57079, 0.0, 0.0), (1.0, 0.0, 0.0), (-3.14158, 0.0)),
    ("wrist_flex", (0.0, 0.0052, 0.1349), (-1.0, 0.0, 0.0), (1.0, 0.0, 0.0), (-2.5, 1.2)),
    ("wrist_roll", (0.0, -0.0601, 0.0), (0.0, 1.57079, 0.0), (0.0, 1.0, 0.0), (-3.14158, 3.14158)),
)
URDF_GRIPPER_LIMITS = (-0.2, 2.0)

ZERO_OFFSETS = tuple((lo + hi) / 2 for *_, (lo, hi) in URDF_JOINTS)
JOINT_LIMITS = tuple(((lo - hi) / 2, (hi - lo) / 2) for *_, (lo, hi) in URDF_JOINTS) + (URDF_GRIPPER_LIMITS,)
GRIPPER_CLOSED, GRIPPER_OPEN = URDF_GRIPPER_LIMITS

BASE_YAW = math.pi / 2  # vla's base frame -> the URDF's base frame, about z
TOOL_XYZ = (0.0079, -0.104, 0.0)  # in the gripper link's frame
TOOL_AXES = ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0), (-1.0, 0.0, 0.0))  # the tool frame's x, y, z in the gripper link's frame

# Above the table with the jaws tilted down (the tool point at about (0.22, 0, 0.12) m).
HOME = (0.0, -0.33, 0.05, 1.7, 0.0, 0.0)

WORKSPACE_MIN = (-0.15, -0.45, 0.0)
WORKSPACE_MAX = (0.50, 0.45, 0.45)
MAX_STEP = 0.2

SOURCE = "TheRobotStudio SO-ARM100, Simulation/SO100/so100.urdf (zero moved to mid-range, see vla_so100.constants)"
