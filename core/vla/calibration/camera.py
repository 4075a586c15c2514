"""A calibrated camera: pinhole intrinsics and the pose of the camera in the robot's base frame.

Conventions (OpenCV): camera axes x right, y down, z forward; a world point ``X`` (metres, in the
frame of the robot description's kinematics, table top at z = 0 on the sim) lands at
``K @ (R @ X + t)`` before the division by depth. No lens distortion is modelled: the sim has
none and the colour-mask primitives need pixel-level, not sub-pixel, accuracy.

This module imports numpy only, so the policy server and the CLI can load it cheaply.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from vla.atomicfile import write_atomic

SOURCES = ("solvePnP", "sim-truth", "user")


class CalibrationFileError(ValueError):
    """A calibration file that cannot be read; the message names the file and the field."""

    def __init__(self, path: str, field: str, problem: str):
        self.path, self.field, self.problem = path, field, problem
        super().__init__(f"{path}: {field}: {problem}")


def _matrix(shape: tuple[int, ...]):
    def convert(value) -> tuple:
        arr = np.asarray(value, dtype=np.float64).reshape(shape)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"expected finite numbers, got {value!r}")
        return tuple(tuple(float(x) for x in row) for row in arr) if len(shape) == 2 else tuple(float(x) for x in arr)

    return convert


def _positive_int(_inst, attribute, value):
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


@attrs.frozen
class CameraCalibration:
    camera: str  # "front"
    width: int = attrs.field(converter=int, validator=_positive_int)
    height: int = attrs.field(converter=int, validator=_positive_int)
    K: tuple = attrs.field(converter=_matrix((3, 3)))  # 3x3 intrinsics, pixels
    R: tuple = attrs.field(converter=_matrix((3, 3)))  # world (arm base) -> camera, OpenCV axes
    t: tuple = attrs.field(converter=_matrix((3,)))  # world -> camera, metres
    rms_px: float | None = None  # reprojection error of the fit
    source: str = "solvePnP"  # or "sim-truth" (tests/audits only), "user"

    def __attrs_post_init__(self):
        R = self.R_array
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
            raise ValueError("R must be a proper rotation matrix (orthonormal, det +1)")
        K = self.K_array
        if K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], (0.0, 0.0, 1.0)):
            raise ValueError("K must be (fx, s, cx; 0, fy, cy; 0, 0, 1) with fx, fy > 0")

    # ------------------------------------------------------------------ arrays

    @property
    def K_array(self) -> np.ndarray:
        return np.array(self.K, dtype=np.float64)

    @property
    def R_array(self) -> np.ndarray:
        return np.array(self.R, dtype=np.float64)

    @property
    def t_array(self) -> np.ndarray:
        return np.array(self.t, dtype=np.float64)

    @property
    def position(self) -> np.ndarray:
        """The camera centre in world coordinates (metres)."""
        return -self.R_array.T @ self.t_array

    # ------------------------------------------------------------------ geometry

    def to_camera(self, points_world) -> np.ndarray:
        """(N, 3) world points -> (N, 3) points in camera coordinates."""
        pts = np.asarray(points_world, dtype=np.float64).reshape(-1, 3)
        return pts @ self.R_array.T + self.t_array

    def project(self, points_world) -> np.ndarray:
        """(N, 3) world points -> (N, 2) pixel coordinates. Points behind the camera give NaN."""
        cam = self.to_camera(points_world)
        with np.errstate(divide="ignore", invalid="ignore"):
            uvw = cam @ self.K_array.T
            uv = uvw[:, :2] / uvw[:, 2:3]
        uv[cam[:, 2] <= 0] = np.nan
        return uv

    def back_project(self, uv, z: float = 0.0) -> np.ndarray:
        """(N, 2) pixels -> (N, 3) world points where each pixel's ray meets the plane ``z``.

        A ray parallel to the plane, or one that meets it behind the camera, gives NaN."""
        uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        rays_cam = np.linalg.solve(self.K_array, np.column_stack([uv, np.ones(len(uv))]).T).T
        rays = rays_cam @ self.R_array  # R^T applied to each row: directions in world
        centre = self.position
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (z - centre[2]) / rays[:, 2]
        s[~np.isfinite(s) | (s <= 0)] = np.nan
        return centre + s[:, None] * rays

    def scaled(self, width: int, height: int) -> "CameraCalibration":
        """The same camera seen at another resolution (pixel-centre convention kept)."""
        sx, sy = width / self.width, height / self.height
        K = self.K_array.copy()
        K[0, 0] *= sx
        K[0, 1] *= sx
        K[1, 1] *= sy
        K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
        K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
        rms = None if self.rms_px is None else self.rms_px * math.sqrt(sx * sy)
        return attrs.evolve(self, width=width, height=height, K=K, rms_px=rms)

    def angle_to(self, other: "CameraCalibration") -> float:
        """The rotation between this camera's and ``other``'s orientation, in degrees."""
        # from the chord (||R1 - R2|| = 2 sqrt(2) sin(angle / 2)): exact near zero, unlike acos of the trace
        chord = float(np.linalg.norm(self.R_array - other.R_array)) / (2.0 * math.sqrt(2.0))
        return math.degrees(2.0 * math.asin(min(1.0, chord)))

    # ------------------------------------------------------------------ files

    def to_dict(self) -> dict[str, Any]:
        return {
            "camera": self.camera,
            "width": self.width,
            "height": self.height,
            "K": [list(r) for r in self.K],
            "R": [list(r) for r in self.R],
            "t": list(self.t),
            "rms_px": None if self.rms_px is None else float(self.rms_px),
            "source": self.source,
            # for the reader's convenience only; load() recomputes it from R and t
            "position_m": [round(float(x), 6) for x in self.position],
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the calibration as YAML, atomically (a temporary file renamed into place)."""
        import yaml

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "# vla camera calibration (OpenCV convention: world = robot base frame, metres)\n"
        text += yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        return write_atomic(path, text)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CameraCalibration":
        """Read a file written by ``save``; a clear error names the file and the bad field."""
        import yaml

        path = Path(path)
        name = str(path)
        if not path.is_file():
            raise CalibrationFileError(name, "(file)", "no such calibration file (run `vla calibrate camera`)")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise CalibrationFileError(name, "(file)", f"not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise CalibrationFileError(name, "(file)", "expected a mapping of calibration fields")
        fields = {"camera": str, "width": int, "height": int, "K": (3, 3), "R": (3, 3), "t": (3,)}
        values: dict[str, Any] = {}
        for key, kind in fields.items():
            if key not in data:
                raise CalibrationFileError(name, key, "missing")
            value = data[key]
            if isinstance(kind, tuple):
                try:
                    values[key] = _matrix(kind)(value)
                except (TypeError, ValueError):
                    shape = "x".join(map(str, kind))
                    raise CalibrationFileError(name, key, f"expected {shape} finite numbers, got {value!r}") from None
            elif kind is int:
                if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                    raise CalibrationFileError(name, key, f"expected a positive integer, got {value!r}")
                values[key] = value
            else:
                if not isinstance(value, str) or not value:
                    raise CalibrationFileError(name, key, f"expected a name, got {value!r}")
                values[key] = value
        rms = data.get("rms_px")
        if rms is not None and (isinstance(rms, bool) or not isinstance(rms, (int, float)) or not rms >= 0):
            raise CalibrationFileError(name, "rms_px", f"expected a number >= 0 or null, got {rms!r}")
        source = data.get("source", "solvePnP")
        if source not in SOURCES:
            raise CalibrationFileError(name, "source", f"expected one of {', '.join(SOURCES)}, got {source!r}")
        try:
            return cls(**values, rms_px=None if rms is None else float(rms), source=source)
        except ValueError as exc:
            field = "R" if "R must" in str(exc) else "K" if "K must" in str(exc) else "(file)"
            raise CalibrationFileError(name, field, str(exc)) from None


def intrinsics_from_fovy(fovy_deg: float, width: int, height: int) -> np.ndarray:
    """K of a pinhole camera with square pixels and vertical field of view ``fovy_deg`` (MuJoCo's)."""
    f = 0.5 * height / math.tan(math.radians(fovy_deg) / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def calibration_path(loaded, arm: str, camera: str = "front") -> Path:
    """Where a lab keeps an arm's camera calibration: ``<lab root>/arms/<arm>/camera-<camera>.yaml``.

    ``loaded`` is a ``vla.config.LoadedConfig``; the lab root is vla.yaml's folder."""
    for part, what in ((arm, "arm"), (camera, "camera")):
        if not part or "/" in part or "\\" in part or part in (".", ".."):
            raise ValueError(f"bad {what} name {part!r} for a calibration file")
    return Path(loaded.base_dir) / "arms" / arm / f"camera-{camera}.yaml"
