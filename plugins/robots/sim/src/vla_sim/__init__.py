"""vla-sim: a simulated SO-101 tabletop (MuJoCo) with three tasks, and a scripted expert policy.

Importing this package is light; MuJoCo is imported only when a simulator is built.
"""

import os
import sys

# MuJoCo picks its OpenGL backend when it is first imported. On Linux the simulator renders
# headless through EGL; choosing it here, before anything imports mujoco, is what makes that
# work (an explicit MUJOCO_GL from the user still wins). macOS has no EGL and needs no setting.
if sys.platform.startswith("linux"):
    os.environ.setdefault("MUJOCO_GL", "egl")


def camera_truth(camera: str = "front", width: int = 224, height: int = 224):
    """The sim camera's true ``vla.calibration.CameraCalibration`` (source "sim-truth"), from the
    MJCF camera; for tests and audits. Imported here lazily to keep this package light."""
    from vla_sim.truth import camera_truth as truth

    return truth(camera, width, height)
