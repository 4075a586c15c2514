"""Camera calibration: the camera model every vision-based policy reads, and `vla calibrate`.

Importing this package loads numpy only; the solver (cv2) and the CLI load their heavy parts
when they are used.
"""

from vla.calibration.camera import (
    CalibrationFileError,
    CameraCalibration,
    calibration_path,
    intrinsics_from_fovy,
)

__all__ = ["CalibrationFileError", "CameraCalibration", "calibration_path", "intrinsics_from_fovy"]
