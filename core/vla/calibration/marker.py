"""Finding the calibration marker (a coloured ball on the tool point) in a camera frame.

An HSV mask for the marker's colour, then its connected blobs. A frame is used only when it
shows exactly one blob of a plausible size that looks like a whole ball: a ball the arm itself
half hides is a crescent whose centroid is off the tool point, and a second blob means
something else in the scene has the marker's colour; both are rejected with the reason.
"""

from __future__ import annotations

import math

import attrs
import numpy as np


@attrs.frozen
class MarkerColor:
    """An HSV range in OpenCV's units: hue 0-179 (wrapping), saturation and value 0-255."""

    hue: int = 150  # magenta
    hue_tolerance: int = 14
    min_saturation: int = 120
    min_value: int = 70

    def __attrs_post_init__(self):
        if not 0 <= self.hue < 180 or not 0 < self.hue_tolerance < 90:
            raise ValueError(f"marker hue must be 0..179 and its tolerance 1..89 (OpenCV units), got {self.hue}±{self.hue_tolerance}")


MAGENTA = MarkerColor()


@attrs.frozen
class Detection:
    """The marker's centroid in pixels (x right, y down, pixel centres at integers) or why not."""

    uv: tuple[float, float] | None
    area_px: int = 0
    roundness: float = 0.0  # blob area / area of its enclosing circle: 1 for a disc
    reason: str = ""  # why the frame was rejected ("" when found)

    @property
    def found(self) -> bool:
        return self.uv is not None


def color_mask(image_rgb: np.ndarray, color: MarkerColor = MAGENTA) -> np.ndarray:
    """A uint8 mask (255 where the pixel has the marker's colour) of an HxWx3 RGB frame."""
    import cv2

    image = np.asarray(image_rgb)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} of shape {image.shape}")
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    lo_h, hi_h = color.hue - color.hue_tolerance, color.hue + color.hue_tolerance
    s, v = color.min_saturation, color.min_value
    mask = cv2.inRange(hsv, (max(lo_h, 0), s, v), (min(hi_h, 179), 255, 255))
    if lo_h < 0:
        mask |= cv2.inRange(hsv, (180 + lo_h, s, v), (179, 255, 255))
    if hi_h > 179:
        mask |= cv2.inRange(hsv, (0, s, v), (hi_h - 180, 255, 255))
    return mask


def detect_marker(
    image_rgb: np.ndarray,
    color: MarkerColor = MAGENTA,
    min_area_px: int = 12,
    min_roundness: float = 0.6,
    max_area_share: float = 0.05,
) -> Detection:
    """The marker in one frame, or a Detection with ``uv=None`` and the reason it was rejected."""
    import cv2

    mask = color_mask(image_rgb, color)
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    blobs = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_area_px]
    if not blobs:
        largest = int(stats[1:, cv2.CC_STAT_AREA].max()) if n > 1 else 0
        return Detection(None, largest, reason=f"no marker-coloured blob of {min_area_px} px or more (largest {largest} px)")
    if len(blobs) > 1:
        areas = sorted((int(stats[i, cv2.CC_STAT_AREA]) for i in blobs), reverse=True)
        return Detection(None, areas[0], reason=f"ambiguous: {len(blobs)} marker-coloured blobs ({', '.join(map(str, areas))} px)")
    i = blobs[0]
    area = int(stats[i, cv2.CC_STAT_AREA])
    if area > max_area_share * mask.size:
        return Detection(None, area, reason=f"a marker-coloured blob of {area} px is too large to be the marker")
    points = cv2.findNonZero((labels == i).astype(np.uint8))
    _centre, radius = cv2.minEnclosingCircle(points)
    roundness = area / max(math.pi * (radius + 0.5) ** 2, 1.0)
    if roundness < min_roundness:
        return Detection(None, area, roundness, reason=f"partly hidden: the blob is not round ({roundness:.2f} < {min_roundness})")
    u, v = centroids[i]
    return Detection((float(u), float(v)), area, float(roundness))
