"""`vla calibrate camera` on the MuJoCo sim recovers the true front-camera pose (5 mm, 1 degree).

Real parts: the MuJoCo tabletop renders the magenta marker on the tool point, the arm moves by
its physics through the safety layer `vla run` builds, the CLI runs as a subprocess in a lab
made by `vla init`. The truth is ``vla_sim.camera_truth`` (from the MJCF camera), which the
solver never sees.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

if sys.platform.startswith("linux"):
    os.environ.setdefault("MUJOCO_GL", "egl")
pytest.importorskip("mujoco")
pytest.importorskip("cv2")
vla_sim = pytest.importorskip("vla_sim")

from vla.calibration import CameraCalibration  # noqa: E402

from conftest import run_vla  # noqa: E402

MAX_POSITION_M = 0.005
MAX_ANGLE_DEG = 1.0


@pytest.fixture(scope="module")
def sim_lab(tmp_path_factory):
    lab = tmp_path_factory.mktemp("lab")
    run_vla("init", str(lab), "--robot", "sim", "--arms", "2", check=True)
    return lab


def test_the_cli_recovers_the_true_camera_pose_and_saves_it_in_the_arms_folder(sim_lab):
    result = run_vla("calibrate", "camera", "--arm", "arm01", cwd=sim_lab, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    path = sim_lab / "arms" / "arm01" / "camera-front.yaml"
    assert f"saved {path}" in result.stdout
    solved = CameraCalibration.load(path)
    truth = vla_sim.camera_truth("front", solved.width, solved.height)
    error_mm = 1000 * np.linalg.norm(solved.position - truth.position)
    angle = solved.angle_to(truth)
    print(f"front camera: {error_mm:.2f} mm, {angle:.3f} deg, {solved.rms_px:.2f} px rms")
    assert error_mm < 1000 * MAX_POSITION_M and angle < MAX_ANGLE_DEG
    assert solved.source == "solvePnP" and 0 < solved.rms_px < 1.0
    assert "reprojection error" in result.stdout and "camera position" in result.stdout
    # the sim's 224x224 frames, as the arm file says; the pose line prints the solved centre
    assert (solved.width, solved.height) == (224, 224)
    assert f"{solved.position[0]:+.4f}" in result.stdout


def test_estimated_intrinsics_also_land_within_the_bounds():
    """The real-arm default when nobody gives K: estimated from the same sightings."""
    from vla.calibration.calibrate import calibrate_camera
    from vla.client.clock import SimulatedClock
    from vla.client.safety import SafetyLayer
    from vla_sim.config import SimConfig
    from vla_sim.robot import SimRobot

    robot = SimRobot(SimConfig(cameras=["front"], image_width=320, image_height=240, marker=True))
    d = robot.description
    safety = SafetyLayer(d.default_safety(), d.joint_names, d.kinematics.forward_kinematics)
    robot.connect()
    try:
        result = calibrate_camera(robot, safety, d, "front", clock=SimulatedClock(), estimate_intrinsics=True, seed=1)
    finally:
        robot.close()
    truth = vla_sim.camera_truth("front", 320, 240)
    c = result.calibration
    assert result.intrinsics == "estimated"
    assert c.K_array[0, 0] == pytest.approx(truth.K_array[0, 0], rel=0.02)
    error_mm = 1000 * np.linalg.norm(c.position - truth.position)
    print(f"estimated K: {error_mm:.2f} mm, {c.angle_to(truth):.3f} deg, fx {c.K_array[0, 0]:.1f} vs {truth.K_array[0, 0]:.1f}")
    assert error_mm < 1000 * MAX_POSITION_M and c.angle_to(truth) < MAX_ANGLE_DEG
    assert result.safety_counts.get("workspace", 0) == 0  # the poses were inside the box to begin with


def test_without_the_marker_the_error_says_what_was_seen_and_what_to_check():
    from vla.calibration.calibrate import NotEnoughSightings, calibrate_camera
    from vla.calibration.procedure import MoveSettings
    from vla.client.clock import SimulatedClock
    from vla.client.safety import SafetyLayer
    from vla_sim.config import SimConfig
    from vla_sim.robot import SimRobot

    robot = SimRobot(SimConfig(cameras=["front"]))  # marker off: nothing magenta in the scene
    d = robot.description
    safety = SafetyLayer(d.default_safety(), d.joint_names, d.kinematics.forward_kinematics)
    robot.connect()
    try:
        with pytest.raises(NotEnoughSightings) as info:
            calibrate_camera(robot, safety, d, "front", clock=SimulatedClock(), n_poses=8, min_sightings=6,
                             move=MoveSettings(settle_s=0.2))
    finally:
        robot.close()
    message = str(info.value)
    assert "seen in 0 of 8 poses; at least 6 are needed" in message
    assert "8 x no marker-coloured blob of 12 px or more" in message
    assert "magenta marker sits on the tool point" in message and "--frames DIR" in message


def test_a_camera_the_arm_does_not_have_is_refused_before_anything_moves(sim_lab):
    result = run_vla("calibrate", "camera", "--arm", "arm02", "--camera", "top", cwd=sim_lab)
    assert result.returncode == 2
    assert "has no camera 'top' (its cameras: front, wrist)" in result.stderr
    assert not (sim_lab / "arms" / "arm02").exists()


def test_ctrl_c_stops_at_once_holds_the_arm_and_saves_nothing(sim_lab):
    import signal
    import subprocess

    from conftest import VLA

    proc = subprocess.Popen([VLA, "calibrate", "camera", "--arm", "arm02"], cwd=sim_lab, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for line in proc.stderr:
            if line.startswith("pose  2:"):
                proc.send_signal(signal.SIGINT)
                break
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "stopped after" in err and "the arm holds its last safe position" in err
    assert "pose  4:" not in err  # it stops within the leg it is on
    assert not (sim_lab / "arms" / "arm02" / "camera-front.yaml").exists()
