"""Where the objects are, from one front-camera frame: HSV colour masks back-projected onto the table.

Each colour is a hue range with a floor on saturation; the floor on brightness is relative to the
frame's own brightness (the table's), so that a scene lit 30% darker or brighter gives the same
masks. Black (a painted line) is "much darker than the table" instead, and only thin structures
count, so the dark servos of an arm are not taken for the line.

An object is the largest blob of its colour. Its pixels are back-projected through the camera
calibration onto the horizontal plane at half the object's height: for a cube seen from above
and in front that lands the visible faces close to its centre; what remains of the bias is a few
millimetres that the learned offsets absorb. A line is fitted to the back-projected pixels of the
longest thin black structure on the table plane.

OpenCV is imported when a frame is processed, not at import.
"""

from __future__ import annotations

import math

import attrs
import numpy as np

from vla.calibration.camera import CameraCalibration


class PerceptionError(ValueError):
    """What the task needs is not in the frame (e.g. no red pixels at all)."""


@attrs.frozen
class Hue:
    """A colour: hue ranges (OpenCV units, 0-179; red wraps, so two) and a saturation floor."""

    ranges: tuple[tuple[int, int], ...]
    min_s: int = 110
    min_v_share: float = 0.22  # of the frame's reference brightness


COLOURS: dict[str, Hue] = {
    "red": Hue(((0, 6), (172, 179))),
    "orange": Hue(((9, 18),)),
    "yellow": Hue(((21, 36),)),
    "green": Hue(((42, 88),)),
    "blue": Hue(((98, 132),)),
    "purple": Hue(((133, 150),)),
    "magenta": Hue(((151, 171),)),
}
BLACK_V_SHARE = 0.3  # black: darker than this share of the reference brightness
MIN_BLOB_PX = 12  # at 224x224; scaled with the frame's area


@attrs.frozen
class Found:
    """An object on the table: its centre (metres, base frame) and what the mask saw."""

    colour: str
    xyz: tuple[float, float, float]
    pixels: int
    centroid_px: tuple[float, float]
    yaw: float | None = None  # of a cube's faces about z, in (-pi/4, pi/4], when it could be judged


@attrs.frozen
class Line:
    """A line on the table: y = y0 + slope * x (metres, base frame), seen between x_min and x_max."""

    y0: float
    slope: float
    x_min: float
    x_max: float
    pixels: int

    def y_at(self, x: float) -> float:
        return float(self.y0 + self.slope * x)


def reference_brightness(hsv: np.ndarray) -> float:
    """The brightness a masked colour is judged against: the bright end of the frame (the table)."""
    return max(float(np.percentile(hsv[..., 2], 90)), 1.0)


def colour_mask(hsv: np.ndarray, colour: str, reference: float | None = None) -> np.ndarray:
    import cv2

    hue = COLOURS.get(colour)
    if hue is None:
        raise PerceptionError(f"no colour mask for {colour!r} (known: {', '.join(COLOURS)}, black)")
    ref = reference_brightness(hsv) if reference is None else reference
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    mask = np.zeros(h.shape, bool)
    for lo, hi in hue.ranges:
        mask |= (h >= lo) & (h <= hi)
    mask &= (s >= hue.min_s) & (v >= hue.min_v_share * ref)
    # remove speckle at blob edges; a symmetric kernel (an even one shifts the mask by a pixel)
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    return cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, cross) > 0


def _components(mask: np.ndarray):
    import cv2

    count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return count, labels, stats, centroids


class ObjectFinder:
    """Finds coloured objects and lines in frames of one calibrated camera."""

    def __init__(self, calibration: CameraCalibration, object_height: float = 0.03, container_height: float = 0.035):
        self.calibration = calibration
        self.object_height = float(object_height)
        self.container_height = float(container_height)
        self._scaled: dict[tuple[int, int], CameraCalibration] = {}

    def _camera(self, frame: np.ndarray) -> CameraCalibration:
        h, w = frame.shape[:2]
        cal = self.calibration
        if (cal.width, cal.height) == (w, h):
            return cal
        if (w, h) not in self._scaled:
            self._scaled[(w, h)] = cal.scaled(w, h)
        return self._scaled[(w, h)]

    @staticmethod
    def hsv(frame: np.ndarray) -> np.ndarray:
        import cv2

        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise PerceptionError(f"expected an HxWx3 uint8 RGB frame, got {frame.dtype} {frame.shape}")
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2HSV)

    def find(self, frame: np.ndarray, colour: str, height: float | None = None, hsv: np.ndarray | None = None,
             cube: bool = True) -> Found:
        """The largest blob of ``colour``, back-projected onto the plane at half ``height``."""
        hsv = self.hsv(frame) if hsv is None else hsv
        mask = colour_mask(hsv, colour)
        count, labels, stats, centroids = _components(mask)
        min_px = max(4, int(MIN_BLOB_PX * mask.size / (224 * 224)))
        if count <= 1 or stats[1:, 4].max() < min_px:
            raise PerceptionError(f"no {colour} object in the front camera's frame (fewer than {min_px} {colour} pixels together)")
        best = 1 + int(np.argmax(stats[1:, 4]))
        vs, us = np.nonzero(labels == best)
        height = self.object_height if height is None else float(height)
        pts = self._camera(frame).back_project(np.column_stack([us, vs]).astype(np.float64), z=height / 2.0)
        pts = pts[np.all(np.isfinite(pts), axis=1)]
        if len(pts) < min_px:
            raise PerceptionError(f"the {colour} object is not on the table plane the calibration sees")
        centre = pts.mean(axis=0)
        yaw = _square_yaw(self._camera(frame).back_project(np.column_stack([us, vs]).astype(np.float64), z=height)) if cube else None
        return Found(colour, (float(centre[0]), float(centre[1]), height / 2.0), int(len(vs)),
                     (float(centroids[best][0]), float(centroids[best][1])), yaw)

    def find_line(self, frame: np.ndarray, hsv: np.ndarray | None = None) -> Line:
        """The longest thin dark structure on the table, as a line in the base frame."""
        import cv2

        hsv = self.hsv(frame) if hsv is None else hsv
        ref = reference_brightness(hsv)
        dark = (hsv[..., 2] <= BLACK_V_SHARE * ref).astype(np.uint8)
        # thin structures only: what survives an opening wider than a painted line is blocky
        width_px = max(2, int(round(hsv.shape[1] * 0.012)))
        k = 2 * width_px + 1
        blocky = cv2.dilate(cv2.morphologyEx(dark, cv2.MORPH_OPEN, np.ones((k, k), np.uint8)), np.ones((5, 5), np.uint8))
        thin = (dark > 0) & (blocky == 0)
        count, labels, stats, _ = _components(thin)
        if count <= 1:
            raise PerceptionError("no line in the front camera's frame (no thin dark structure)")
        lengths = np.maximum(stats[1:, 2], stats[1:, 3])
        best = 1 + int(np.argmax(lengths))
        min_len = hsv.shape[0] * 0.15
        if lengths[best - 1] < min_len:
            raise PerceptionError(f"no line in the front camera's frame (the longest thin dark structure is {lengths[best - 1]} px)")
        vs, us = np.nonzero(labels == best)
        pts = self._camera(frame).back_project(np.column_stack([us, vs]).astype(np.float64), z=0.0)
        pts = pts[np.all(np.isfinite(pts), axis=1)]
        x, y = pts[:, 0], pts[:, 1]
        slope, y0 = np.polyfit(x, y, 1)
        # once more without the points farthest from the first fit (a stray dark pixel, a shadow)
        resid = np.abs(y - (y0 + slope * x))
        keep = resid <= max(np.percentile(resid, 90), 1e-4)
        slope, y0 = np.polyfit(x[keep], y[keep], 1)
        return Line(float(y0), float(slope), float(x.min()), float(x.max()), int(len(vs)))


def _square_yaw(points: np.ndarray) -> float | None:
    """Yaw of a square's sides from its pixels back-projected onto its top face's plane: the
    far (camera-side hidden) edges of that footprint are the top face's own, so the rotated
    rectangle of least area around the points turns with the cube. None when too few points."""
    import cv2

    pts = points[np.all(np.isfinite(points), axis=1)][:, :2]
    if len(pts) < 8:
        return None
    (_, _), (_, _), angle = cv2.minAreaRect((pts * 1000.0).astype(np.float32))
    yaw = math.radians(angle)
    return float((yaw + math.pi / 4) % (math.pi / 2) - math.pi / 4)
