"""The solver on correspondences with a known answer: pixel noise, outliers, unknown intrinsics."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")

from vla.calibration.solver import CalibrationError, solve_camera  # noqa: E402

from .test_camera import CAMERAS  # noqa: E402


def correspondences(cam, n=30, noise_px=0.0, seed=0):
    rng = np.random.default_rng(seed)
    pts = np.column_stack([rng.uniform(0.1, 0.35, n), rng.uniform(-0.2, 0.2, n), rng.uniform(0.05, 0.28, n)])
    uv = cam.project(pts) + rng.normal(0.0, noise_px, (n, 2))
    return pts, uv


@pytest.mark.parametrize("cam", CAMERAS)
def test_exact_correspondences_give_the_camera_back(cam):
    pts, uv = correspondences(cam)
    sol = solve_camera(pts, uv, cam.width, cam.height, K=cam.K)
    c = sol.calibration
    assert np.linalg.norm(c.position - cam.position) < 1e-6 and c.angle_to(cam) < 1e-5
    assert c.rms_px < 1e-4 and sol.inliers.all() and c.source == "solvePnP" and sol.intrinsics == "given"


def test_half_pixel_noise_and_a_few_gross_outliers_still_give_millimetres():
    cam = CAMERAS[0]
    pts, uv = correspondences(cam, n=30, noise_px=0.5, seed=1)
    uv[[3, 11, 20]] += [[25.0, -10.0], [-40.0, 5.0], [12.0, 30.0]]  # a half-hidden ball's centroid, say
    sol = solve_camera(pts, uv, cam.width, cam.height, K=cam.K)
    assert not sol.inliers[[3, 11, 20]].any() and sol.inliers.sum() >= 25
    assert np.linalg.norm(sol.calibration.position - cam.position) < 0.005
    assert sol.calibration.angle_to(cam) < 1.0
    assert 0.2 < sol.calibration.rms_px < 1.0


def test_unknown_intrinsics_are_estimated_from_the_same_points():
    cam = CAMERAS[1]  # 70 degrees: not the solver's 60-degree starting guess
    pts, uv = correspondences(cam, n=40, noise_px=0.3, seed=2)
    sol = solve_camera(pts, uv, cam.width, cam.height)
    assert sol.intrinsics == "estimated"
    assert sol.calibration.K_array[0, 0] == pytest.approx(cam.K_array[0, 0], rel=0.02)
    assert np.linalg.norm(sol.calibration.position - cam.position) < 0.01


def test_too_few_points_say_how_many_are_needed():
    cam = CAMERAS[0]
    pts, uv = correspondences(cam, n=5)
    with pytest.raises(CalibrationError, match="seen in 5 poses.*at least 6"):
        solve_camera(pts, uv, cam.width, cam.height, K=cam.K)
    with pytest.raises(CalibrationError, match="at least 12"):
        solve_camera(*correspondences(cam, n=10), cam.width, cam.height)


def test_points_on_a_line_are_refused():
    cam = CAMERAS[0]
    s = np.linspace(0, 1, 20)[:, None]
    pts = np.array([0.1, -0.1, 0.1]) + s * np.array([0.2, 0.2, 0.1])
    with pytest.raises(CalibrationError, match="nearly on a line"):
        solve_camera(pts, cam.project(pts), cam.width, cam.height, K=cam.K)


def test_sightings_no_camera_explains_are_an_error_not_a_pose():
    cam = CAMERAS[0]
    pts, _ = correspondences(cam, n=20)
    uv = np.random.default_rng(5).uniform(0, 480, (20, 2))  # pixels unrelated to the points
    with pytest.raises(CalibrationError, match="no camera pose explains"):
        solve_camera(pts, uv, cam.width, cam.height, K=cam.K)
