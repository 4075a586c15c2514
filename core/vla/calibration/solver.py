"""Solving for the camera from marker pixels and the tool points forward kinematics gives.

Each calibration pose gives one correspondence: the marker's pixel in the frame and the tool
point (metres, the robot's base frame) through the robot description's kinematics. The camera
pose is ``cv2.solvePnPRansac`` (so a frame where the centroid was off, e.g. a ball partly hidden
by a jaw that the blob test let through, does not pull the fit) followed by a Levenberg-Marquardt
refinement on the inliers.

Intrinsics come, in order of preference, from the user (a datasheet or an earlier checkerboard
calibration), from the robot (the simulator knows its cameras' field of view), or are estimated
from the same correspondences with ``cv2.calibrateCamera``: one non-planar "view" of 12 or more
points fixes the focal length and principal point (square pixels, no lens distortion modelled)
starting from a guess of a 60 degree horizontal field of view, a typical webcam's.
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from vla.calibration.camera import CameraCalibration

MIN_POINTS = 6  # solvePnP's own minimum with RANSAC; the CLI asks for more by default
GUESS_HFOV_DEG = 60.0


class CalibrationError(RuntimeError):
    """The camera cannot be solved from what was seen; the message says why and what to do."""


@attrs.frozen
class Solution:
    calibration: CameraCalibration
    inliers: np.ndarray  # bool, one per correspondence
    residuals_px: np.ndarray  # reprojection error of every correspondence under the solution
    intrinsics: str  # "given" or "estimated"


def guess_intrinsics(width: int, height: int, hfov_deg: float = GUESS_HFOV_DEG) -> np.ndarray:
    f = 0.5 * width / math.tan(math.radians(hfov_deg) / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def _as_arrays(points_world, pixels) -> tuple[np.ndarray, np.ndarray]:
    obj = np.ascontiguousarray(np.asarray(points_world, dtype=np.float64).reshape(-1, 3))
    img = np.ascontiguousarray(np.asarray(pixels, dtype=np.float64).reshape(-1, 2))
    if len(obj) != len(img):
        raise ValueError(f"{len(obj)} tool points but {len(img)} marker pixels")
    if not (np.all(np.isfinite(obj)) and np.all(np.isfinite(img))):
        raise ValueError("tool points and marker pixels must be finite")
    return obj, img


def _check_spread(obj: np.ndarray) -> None:
    """PnP is ill-posed for points on (or near) a line; say so instead of returning nonsense."""
    centred = obj - obj.mean(axis=0)
    s = np.linalg.svd(centred, compute_uv=False)
    if len(obj) < 3 or s[1] < 0.02 * math.sqrt(len(obj)):
        raise CalibrationError(
            "the tool points where the marker was seen lie nearly on a line: the camera pose is not determined "
            "(spread the poses wider)"
        )


def _pnp(obj, img, K, ransac_px: float):
    import cv2

    ok, rvec, tvec, idx = cv2.solvePnPRansac(
        obj, img, K, None, reprojectionError=float(ransac_px), iterationsCount=500, confidence=0.999,
        flags=cv2.SOLVEPNP_EPNP,
    )
    if not ok or idx is None or len(idx) < MIN_POINTS:
        return None
    inliers = np.zeros(len(obj), dtype=bool)
    inliers[idx.reshape(-1)] = True
    rvec, tvec = cv2.solvePnPRefineLM(obj[inliers], img[inliers], K, None, rvec, tvec)
    # with the refined pose, take back every point that fits it (RANSAC's sample may have missed some)
    res = _residuals(obj, img, K, rvec, tvec)
    inliers = res <= ransac_px
    if inliers.sum() < MIN_POINTS:
        return None
    rvec, tvec = cv2.solvePnPRefineLM(obj[inliers], img[inliers], K, None, rvec, tvec)
    return rvec, tvec, inliers


def _residuals(obj, img, K, rvec, tvec) -> np.ndarray:
    import cv2

    proj, _ = cv2.projectPoints(obj, rvec, tvec, K, None)
    return np.linalg.norm(proj.reshape(-1, 2) - img, axis=1)


def _calibrate_intrinsics(obj, img, K, width, height):
    import cv2

    flags = (
        cv2.CALIB_USE_INTRINSIC_GUESS | cv2.CALIB_FIX_ASPECT_RATIO | cv2.CALIB_ZERO_TANGENT_DIST
        | cv2.CALIB_FIX_K1 | cv2.CALIB_FIX_K2 | cv2.CALIB_FIX_K3
    )
    _rms, K, _dist, _rvecs, _tvecs = cv2.calibrateCamera(
        [obj.astype(np.float32)], [img.astype(np.float32)], (int(width), int(height)), K.copy(), np.zeros(5), flags=flags,
    )
    return K


def solve_camera(
    points_world,
    pixels,
    width: int,
    height: int,
    camera: str = "front",
    K=None,
    ransac_px: float | None = None,
) -> Solution:
    """The camera that sees each ``points_world[i]`` (metres) at ``pixels[i]``.

    ``K`` (3x3) when the intrinsics are known, else they are estimated (see the module docstring).
    ``ransac_px``: the largest reprojection error of a correspondence that counts as an inlier
    (default: 0.5% of the image diagonal, about 2 px at 640x480)."""
    obj, img = _as_arrays(points_world, pixels)
    need = MIN_POINTS if K is not None else 2 * MIN_POINTS
    if len(obj) < need:
        raise CalibrationError(
            f"the marker was seen in {len(obj)} poses; solving the camera {'pose' if K is not None else 'pose and intrinsics'} "
            f"needs at least {need}"
        )
    _check_spread(obj)
    tight = float(ransac_px) if ransac_px is not None else 0.005 * math.hypot(width, height)
    if K is not None:
        K = np.asarray(K, dtype=np.float64).reshape(3, 3)
        fit = _pnp(obj, img, K, tight)
        source = "given"
    else:
        # A rough pose from the guess (generous threshold), then intrinsics from its inliers, then
        # again with the estimate and the tight threshold.
        K = guess_intrinsics(width, height)
        fit = _pnp(obj, img, K, 0.05 * math.hypot(width, height))
        for threshold in (0.02 * math.hypot(width, height), tight, tight):
            if fit is None:
                break
            K = _calibrate_intrinsics(obj[fit[2]], img[fit[2]], K, width, height)
            fit = _pnp(obj, img, K, threshold)
        source = "estimated"
    if fit is None:
        raise CalibrationError(
            f"no camera pose explains {MIN_POINTS} or more of the {len(obj)} marker sightings within {tight:.1f} px "
            "(is the marker really on the tool point? is it the only thing of its colour in view?)"
        )
    import cv2

    rvec, tvec, inliers = fit
    res = _residuals(obj, img, K, rvec, tvec)
    rms = float(np.sqrt(np.mean(res[inliers] ** 2)))
    R, _ = cv2.Rodrigues(rvec)
    calibration = CameraCalibration(
        camera=camera, width=width, height=height, K=K, R=R, t=tvec.reshape(3), rms_px=rms, source="solvePnP"
    )
    return Solution(calibration, inliers, res, source)
