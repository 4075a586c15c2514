"""Finding the marker: a whole ball is found at its centre; nothing, two, or half a ball is not."""

from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from vla.calibration.marker import MarkerColor, detect_marker  # noqa: E402

MAGENTA_RGB = (230, 20, 225)


def scene(h=240, w=320):
    """A table-coloured frame with a red, a blue and a white blob (colours the tasks use)."""
    img = np.full((h, w, 3), (200, 190, 175), np.uint8)
    cv2.circle(img, (40, 40), 10, (220, 20, 20), -1)
    cv2.circle(img, (280, 200), 14, (30, 60, 220), -1)
    cv2.rectangle(img, (100, 150), (140, 190), (240, 240, 240), -1)
    return img


def disc(img, centre, radius, color=MAGENTA_RGB):
    # drawn at 16x sub-pixel precision so that the true centre is known to a hundredth of a pixel
    cv2.circle(img, (int(round(centre[0] * 16)), int(round(centre[1] * 16))), int(radius * 16), color, -1, cv2.LINE_AA, 4)
    return img


@pytest.mark.parametrize("centre", [(160.3, 100.7), (21.5, 200.25), (300.0, 15.0)])
def test_a_whole_ball_is_found_at_its_centre(centre):
    d = detect_marker(disc(scene(), centre, 7))
    assert d.found and d.reason == ""
    assert np.hypot(d.uv[0] - centre[0], d.uv[1] - centre[1]) < 0.15
    assert d.roundness > 0.8


def test_no_marker_says_so():
    d = detect_marker(scene())
    assert not d.found and "no marker-coloured blob" in d.reason


def test_two_marker_coloured_things_are_ambiguous():
    img = disc(disc(scene(), (100, 100), 6), (220, 60), 6)
    d = detect_marker(img)
    assert not d.found and d.reason.startswith("ambiguous: 2 marker-coloured blobs")


def test_a_ball_half_hidden_by_the_jaw_is_rejected():
    img = disc(scene(), (160, 100), 9)
    img[88:113, 160:172] = (240, 240, 240)  # a white jaw covers the right-hand part
    d = detect_marker(img)
    assert not d.found and d.reason.startswith("partly hidden")


def test_dim_light_still_finds_it_and_other_hues_can_be_asked_for():
    dim = (disc(scene(), (150, 120), 8).astype(np.float32) * 0.6).astype(np.uint8)
    assert detect_marker(dim).found
    cyan = disc(scene(), (150, 120), 8, color=(20, 220, 230))
    assert not detect_marker(cyan).found
    assert detect_marker(cyan, MarkerColor(hue=90)).found
    with pytest.raises(ValueError):
        MarkerColor(hue=200)
