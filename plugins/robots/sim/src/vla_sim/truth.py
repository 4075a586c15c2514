"""The simulator's true camera model, for tests and audits (never for a policy's own use).

Computed from the MJCF camera as the scene writes it (``pos``, ``xyaxes``, ``fovy``), converted
to OpenCV's convention: MuJoCo's camera looks along its -z with y up, OpenCV's along +z with y
down, so the OpenCV axes are MuJoCo's x, -y and -z. MuJoCo renders a symmetric frustum with
square pixels whose vertical opening is ``fovy``.
"""

from __future__ import annotations

import numpy as np

from vla.calibration.camera import CameraCalibration, intrinsics_from_fovy
from vla_sim.scene import FRONT_CAMERA, _look_at

# The fixed cameras of the scene (the wrist camera rides on the gripper: it has no fixed pose).
FIXED_CAMERAS = {"front": FRONT_CAMERA}


def mjcf_camera(camera: str = "front") -> tuple[np.ndarray, np.ndarray, float]:
    """(pos, xyaxes as a 2x3 array, fovy in degrees) of a fixed camera, as in the MJCF."""
    if camera not in FIXED_CAMERAS:
        raise ValueError(
            f"the sim has no fixed camera {camera!r} (fixed: {', '.join(FIXED_CAMERAS)}; the wrist camera moves with the arm)"
        )
    spec = FIXED_CAMERAS[camera]
    xyaxes = np.array([float(v) for v in _look_at(spec["pos"], spec["target"]).split()]).reshape(2, 3)
    return np.array(spec["pos"], dtype=np.float64), xyaxes, float(spec["fovy"])


def calibration_from_mjcf(camera: str, pos, xyaxes, fovy: float, width: int, height: int) -> CameraCalibration:
    """A CameraCalibration (source "sim-truth") from a MuJoCo camera's pos, xyaxes and fovy."""
    xyaxes = np.asarray(xyaxes, dtype=np.float64).reshape(2, 3)
    x = xyaxes[0] / np.linalg.norm(xyaxes[0])
    y = xyaxes[1] - (xyaxes[1] @ x) * x  # MuJoCo orthogonalises y against x the same way
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    R = np.stack([x, -y, -z])  # rows: OpenCV camera axes in world coordinates
    t = -R @ np.asarray(pos, dtype=np.float64)
    K = intrinsics_from_fovy(fovy, width, height)
    return CameraCalibration(camera=camera, width=width, height=height, K=K, R=R, t=t, rms_px=0.0, source="sim-truth")


def camera_truth(camera: str = "front", width: int = 224, height: int = 224) -> CameraCalibration:
    """The true calibration of a fixed sim camera rendered at ``width`` x ``height``."""
    pos, xyaxes, fovy = mjcf_camera(camera)
    return calibration_from_mjcf(camera, pos, xyaxes, fovy, width, height)
