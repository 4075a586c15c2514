"""HSV colour masks and the blobs in them.

Colours are lists of HSV ranges in OpenCV's units (H 0-179, S 0-255, V 0-255); red needs
two ranges because its hue wraps around 0. A blob is the largest connected component of a
mask after a small opening that removes speckle.
"""

from __future__ import annotations

import attrs
import numpy as np


def _span(top: int):
    def check(_inst, attribute, value):
        low, high = value
        if not 0 <= low <= high <= top:
            raise ValueError(f"expected [low, high] with 0 <= low <= high <= {top}, got {list(value)}")

    return check


@attrs.frozen
class HSVRange:
    """One range of hue, saturation and value in OpenCV's units (a rules file's colour entry)."""

    h: tuple[int, int] = attrs.field(validator=_span(179))
    s: tuple[int, int] = attrs.field(default=(0, 255), validator=_span(255))
    v: tuple[int, int] = attrs.field(default=(0, 255), validator=_span(255))


@attrs.frozen
class Blob:
    area: int  # pixels
    cx: float  # centroid, pixels
    cy: float
    x0: int  # bounding box, pixels, inclusive-exclusive
    y0: int
    x1: int
    y1: int
    mask: np.ndarray = attrs.field(eq=False, repr=False)  # bool, full image size

    def as_details(self, width: int, height: int) -> dict:
        """Position in fractions of the image, so details read the same at any resolution."""
        return {
            "area_px": self.area,
            "centroid": [round(self.cx / width, 4), round(self.cy / height, 4)],
            "bbox": [round(self.x0 / width, 4), round(self.y0 / height, 4),
                     round(self.x1 / width, 4), round(self.y1 / height, 4)],
        }


def to_hsv(frame_rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(frame_rgb), cv2.COLOR_RGB2HSV)


def colour_mask(hsv: np.ndarray, ranges: tuple[HSVRange, ...], roi: tuple[float, float, float, float] | None = None,
                open_px: int = 1) -> np.ndarray:
    """Boolean mask of pixels in any of ``ranges``, inside the region of interest (fractions)."""
    import cv2

    mask = np.zeros(hsv.shape[:2], np.uint8)
    for r in ranges:
        lo = np.array([r.h[0], r.s[0], r.v[0]], np.uint8)
        hi = np.array([r.h[1], r.s[1], r.v[1]], np.uint8)
        mask |= cv2.inRange(hsv, lo, hi)
    if roi is not None:
        h, w = mask.shape
        x0, y0, x1, y1 = roi
        keep = np.zeros_like(mask)
        keep[int(y0 * h):int(np.ceil(y1 * h)), int(x0 * w):int(np.ceil(x1 * w))] = 255
        mask &= keep
    if open_px > 0:
        kernel = np.ones((2 * open_px + 1, 2 * open_px + 1), np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    return mask > 0


def largest_blob(mask: np.ndarray, min_area: int) -> Blob | None:
    """The largest connected component with at least ``min_area`` pixels, or None."""
    import cv2

    count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    best = int(np.argmax(areas)) + 1
    area = int(stats[best, cv2.CC_STAT_AREA])
    if area < min_area:
        return None
    x, y, w, h = (int(stats[best, k]) for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
    cx, cy = centroids[best]
    return Blob(area=area, cx=float(cx), cy=float(cy), x0=x, y0=y, x1=x + w, y1=y + h, mask=labels == best)


def filled_region(mask: np.ndarray, min_area: int, grow_px: int = 0) -> np.ndarray | None:
    """The convex hull of all of a container's blobs, filled and grown by ``grow_px``.

    A bowl seen from the front shows its rim and inner wall as separate pieces, and the
    object inside hides part of it; the hull of the pieces is the region "in the bowl".
    """
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= max(min_area // 4, 1)]
    if not keep or sum(int(stats[i, cv2.CC_STAT_AREA]) for i in keep) < min_area:
        return None
    points = np.column_stack(np.nonzero(np.isin(labels, keep)))[:, ::-1].astype(np.int32)  # (x, y)
    hull = cv2.convexHull(points)
    region = np.zeros(mask.shape, np.uint8)
    cv2.fillConvexPoly(region, hull, 1)
    if grow_px > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow_px + 1, 2 * grow_px + 1))
        region = cv2.dilate(region, kernel)
    return region > 0


def thin_structures(mask: np.ndarray, max_width_px: int) -> np.ndarray:
    """The parts of ``mask`` no wider than about ``max_width_px``: a painted line survives, the
    blocky dark parts of an arm (servos) do not."""
    import cv2

    k = 2 * max(1, max_width_px) + 1
    m = mask.astype(np.uint8)
    blocky = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((k, k), np.uint8))
    blocky = cv2.dilate(blocky, np.ones((5, 5), np.uint8))
    return (m > 0) & (blocky == 0)


def longest_component(mask: np.ndarray, min_length_px: int) -> np.ndarray | None:
    """The connected component with the longest bounding-box side, if at least ``min_length_px``."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return None
    lengths = np.maximum(stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT])
    best = int(np.argmax(lengths)) + 1
    if lengths[best - 1] < min_length_px:
        return None
    return labels == best


def compact_blobs(mask: np.ndarray, min_area: int, max_area: int) -> list[Blob]:
    """Connected components with an area in [min_area, max_area] (an object, not an arm)."""
    import cv2

    count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    out = []
    for i in range(1, count):
        area = int(stats[i, cv2.CC_STAT_AREA])
        if min_area <= area <= max_area:
            x, y, w, h = (int(stats[i, k]) for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
            out.append(Blob(area=area, cx=float(centroids[i][0]), cy=float(centroids[i][1]), x0=x, y0=y,
                            x1=x + w, y1=y + h, mask=labels == i))
    return out
