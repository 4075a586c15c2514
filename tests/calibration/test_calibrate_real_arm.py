"""The real-arm path without an arm: the kinematic test arm and the emulated Feetech bus.

What can run here: the calibration moves through the same safety layer `vla run` uses (checked
command by command), the real-time clock, the CLI's errors. What cannot: a physical camera
seeing a physical marker. The kinematic arm's synthetic frames hold no magenta, so a run there
ends in the "marker not seen" error after all the moves; an arm file without the camera is
refused before anything moves; on the emulated bus the SO-101 driver is LeRobot's own.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("vla_so101_description")

from conftest import run_vla  # noqa: E402


def test_every_move_passes_the_safety_layer_and_no_marker_is_a_clear_error():
    from vla.calibration.calibrate import NotEnoughSightings, calibrate_camera
    from vla.calibration.procedure import MoveSettings
    from vla.client.clock import SimulatedClock
    from vla.client.safety import SafetyLayer
    from vla_so101_description.description import SO101
    from vla_so101_description.testing import kinematic_arm

    from vla.builtins import KinematicArmConfig

    start = np.asarray(SO101.home) + 0.3  # somewhere inside the box, not at home
    arm = kinematic_arm(KinematicArmConfig(initial_q=list(start)))
    cfg = SO101.default_safety()
    for limit in cfg.joints.values():
        limit.max_step = 0.01  # slower than the calibration's own 0.6 rad/s at 30 Hz

    class CountingLayer(SafetyLayer):
        calls = 0

        def limit(self, target, last):
            CountingLayer.calls += 1
            return super().limit(target, last)

    safety = CountingLayer(cfg, SO101.joint_names, SO101.kinematics.forward_kinematics)
    arm.connect()
    reported = np.asarray(arm.observe()["observation.state"], dtype=np.float64)  # where the driver starts from
    with pytest.raises(NotEnoughSightings, match="seen in 0 of 8 poses"):
        calibrate_camera(arm, safety, SO101, "front", clock=SimulatedClock(), n_poses=8, min_sightings=6,
                         move=MoveSettings(settle_s=0.0, timeout_s=60.0))
    commands = [q for _, q in arm.commands]
    assert len(commands) > 100
    last = reported
    for q in commands:
        assert safety.violations(q, last) == [], q
        last = q
    assert CountingLayer.calls == len(commands)  # every command the arm got came out of the layer
    # the moves kept to the tightened 0.01 rad/tick; a full calibration's travel takes that long
    assert max(np.abs(np.diff(np.array(commands), axis=0)).max(axis=1)) <= 0.01 + 1e-9
    np.testing.assert_allclose(commands[-1], SO101.home, atol=1e-9)  # it went home at the end


@pytest.fixture
def lab(tmp_path):
    (tmp_path / "vla.yaml").write_text("lab: t\narms:\n  bench: arms/bench.yaml\n  blind: arms/blind.yaml\n")
    (tmp_path / "arms").mkdir()
    (tmp_path / "arms" / "bench.yaml").write_text(
        "robot: kinematic\nconfig:\n  cameras: {front: [120, 160, 3]}\n")
    (tmp_path / "arms" / "blind.yaml").write_text("robot: kinematic\nconfig:\n  cameras: {}\n")
    return tmp_path


def test_the_cli_on_the_kinematic_arm_moves_then_exits_1_naming_the_missing_marker(lab):
    result = run_vla("calibrate", "camera", "--arm", "bench", "--poses", "8", "--min-sightings", "6",
                     "--clock", "simulated", "--settle", "0", "--yes", "--frames", str(lab / "frames"), cwd=lab)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the marker was seen in 0 of 8 poses; at least 6 are needed" in result.stderr
    assert not (lab / "arms" / "bench").exists()  # nothing saved
    assert len(list((lab / "frames").glob("pose*-rejected.png"))) == 8


def test_an_arm_without_the_camera_is_refused_before_it_moves(lab):
    result = run_vla("calibrate", "camera", "--arm", "blind", "--yes", cwd=lab)
    assert result.returncode == 2
    assert "arm blind has no camera 'front' (its cameras: none)" in result.stderr
    assert "add it to the arm file's cameras" in result.stderr


def test_an_unknown_arm_is_the_same_error_as_vla_runs(lab):
    result = run_vla("calibrate", "camera", "--arm", "arm09", cwd=lab)
    assert result.returncode == 2 and "--arm arm09" in result.stderr and "no such arm" in result.stderr


@pytest.mark.lerobot
def test_so101_on_the_emulated_feetech_bus_without_cameras_is_refused_before_connecting(tmp_path):
    pytest.importorskip("lerobot")
    from vla_so101.testing import FakeFeetechBus

    with FakeFeetechBus() as bus:
        (tmp_path / "vla.yaml").write_text("lab: t\narms:\n  arm01: arm01.yaml\n")
        (tmp_path / "arm01.yaml").write_text(
            f"robot: so101\nconfig:\n  port: {bus.port}\n  id: arm01\n  cameras: {{}}\n")
        result = run_vla("calibrate", "camera", "--arm", "arm01", "--yes", cwd=tmp_path)
        positions = [bus.servo(i).goal_position for i in range(1, 7)] if hasattr(bus.servo(1), "goal_position") else None
    assert result.returncode == 2, result.stdout + result.stderr
    assert "arm arm01 has no camera 'front' (its cameras: none)" in result.stderr
    del positions
