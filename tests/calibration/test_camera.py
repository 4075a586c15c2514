"""The camera model: projection and back-projection agree, resolution changes, files round-trip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vla.calibration import CalibrationFileError, CameraCalibration, calibration_path, intrinsics_from_fovy


def look_at(pos, target, width=640, height=480, fovy=50.0) -> CameraCalibration:
    pos, target = np.asarray(pos, float), np.asarray(target, float)
    z = target - pos
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])  # image x: right, with world z up in the image
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return CameraCalibration("front", width, height, intrinsics_from_fovy(fovy, width, height), R, -R @ pos)


CAMERAS = [
    look_at((0.58, 0.0, 0.38), (0.18, 0.0, 0.04)),
    look_at((0.1, -0.6, 0.5), (0.25, 0.05, 0.0), 320, 240, 70.0),
    look_at((0.4, 0.4, 0.9), (0.2, 0.0, 0.0), 224, 224, 58.0),
]


@pytest.mark.parametrize("cam", CAMERAS)
@pytest.mark.parametrize("z", [0.0, 0.015, 0.1])
def test_back_project_inverts_project_on_the_plane(cam, z):
    rng = np.random.default_rng(3)
    pts = np.column_stack([rng.uniform(0.05, 0.4, 200), rng.uniform(-0.25, 0.25, 200), np.full(200, z)])
    uv = cam.project(pts)
    assert np.all(np.isfinite(uv))
    np.testing.assert_allclose(cam.back_project(uv, z), pts, atol=1e-9)
    # and the other way: pixels -> table -> the same pixels
    pix = np.column_stack([rng.uniform(0, cam.width - 1, 100), rng.uniform(cam.height * 0.4, cam.height - 1, 100)])
    np.testing.assert_allclose(cam.project(cam.back_project(pix, z)), pix, atol=1e-7)


def test_the_principal_point_is_the_image_centre_and_the_optical_axis_projects_there():
    cam = CAMERAS[0]
    axis_point = cam.position + 0.5 * cam.R_array[2]  # half a metre along the optical axis
    np.testing.assert_allclose(cam.project(axis_point[None])[0], [(640 - 1) / 2, (480 - 1) / 2], atol=1e-9)
    # fovy: the top and bottom image edges are fovy/2 above and below the axis
    f = cam.K_array[1, 1]
    assert 2 * math.degrees(math.atan(240 / f)) == pytest.approx(50.0)


def test_points_behind_the_camera_and_rays_above_the_horizon_give_nan():
    cam = CAMERAS[0]
    behind = cam.position - 0.3 * cam.R_array[2]
    assert np.all(np.isnan(cam.project(behind[None])))
    # a pixel at the top of a camera looking nearly level meets the table behind the camera: NaN
    level = look_at((0.5, 0.0, 0.1), (0.0, 0.0, 0.09))
    assert np.all(np.isnan(level.back_project([[320.0, 0.0]], 0.0)))


def test_scaled_is_the_same_camera_at_another_resolution():
    cam = CAMERAS[0]
    small = cam.scaled(224, 168)
    pts = np.array([[0.2, 0.1, 0.0], [0.3, -0.1, 0.05], [0.15, 0.0, 0.2]])
    uv = cam.project(pts)
    expected = (uv + 0.5) * [224 / 640, 168 / 480] - 0.5  # pixel centres at integers
    np.testing.assert_allclose(small.project(pts), expected, atol=1e-9)
    assert (small.width, small.height, small.R, small.t) == (224, 168, cam.R, cam.t)
    np.testing.assert_allclose(small.scaled(640, 480).K_array, cam.K_array, atol=1e-9)


def test_save_and_load_round_trip_atomically(tmp_path):
    cam = CameraCalibration("front", 640, 480, CAMERAS[0].K, CAMERAS[0].R, CAMERAS[0].t, rms_px=0.42, source="solvePnP")
    path = cam.save(tmp_path / "arms" / "arm01" / "camera-front.yaml")
    assert path.is_file() and sorted(p.name for p in path.parent.iterdir()) == ["camera-front.yaml"]  # no temp file left
    again = CameraCalibration.load(path)
    assert again == cam
    np.testing.assert_allclose(again.position, cam.position)
    # overwriting keeps a complete file at every moment: the new one replaces the old in one rename
    cam2 = CameraCalibration("front", 320, 240, cam.scaled(320, 240).K, cam.R, cam.t)
    cam2.save(path)
    assert CameraCalibration.load(path) == cam2


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (lambda d: d.pop("K"), "K", "missing"),
        (lambda d: d.update(K=[[1, 0], [0, 1]]), "K", "3x3"),
        (lambda d: d.update(R=[[1, 0, 0], [0, 1, 0], [0, 0, 2]]), "R", "rotation"),
        (lambda d: d.update(width=0), "width", "positive integer"),
        (lambda d: d.update(t=[0, 0, "x"]), "t", "3 finite numbers"),
        (lambda d: d.update(source="guess"), "source", "expected one of"),
        (lambda d: d.update(rms_px=-1), "rms_px", ">= 0"),
    ],
)
def test_a_bad_file_names_the_file_and_the_field(tmp_path, edit, field, words):
    import yaml

    data = CAMERAS[0].to_dict()
    edit(data)
    path = tmp_path / "camera-front.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CalibrationFileError) as info:
        CameraCalibration.load(path)
    assert info.value.field == field and str(path) in str(info.value) and words in str(info.value)


def test_a_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(CalibrationFileError, match="vla calibrate camera"):
        CameraCalibration.load(tmp_path / "nope.yaml")


def test_calibration_path_is_in_the_arms_folder(tmp_path):
    from vla.config import load_config

    (tmp_path / "vla.yaml").write_text("lab: test\n")
    loaded = load_config(tmp_path / "vla.yaml")
    assert calibration_path(loaded, "arm02") == tmp_path / "arms" / "arm02" / "camera-front.yaml"
    assert calibration_path(loaded, "arm02", "top") == tmp_path / "arms" / "arm02" / "camera-top.yaml"
    with pytest.raises(ValueError, match="bad arm name"):
        calibration_path(loaded, "../etc")
