"""The SO-101 plugin, tested without an arm at the Feetech serial-protocol level.

Approach: ``vla_so101.testing.FakeFeetechBus`` emulates six STS3215 servos behind a
pseudo-terminal. LeRobot's real ``SO101Follower`` / ``FeetechMotorsBus`` and the Feetech SDK
(``scservo_sdk``) open its /dev/pts path as a serial port and speak the real protocol to it
(ping, read, write, sync read, sync write, broadcast ping, baud-rate changes), so LeRobot's
calibration arithmetic, sign-magnitude encodings and degree/percent normalisation all run,
and so do vla's conversions to radians on top of them. ``vla robot calibrate`` and
``vla robot setup-motors`` run as real subprocesses against the same fake bus, answering
LeRobot's prompts on stdin the way a person would.

Left untested here: real servo dynamics (speed, load, compliance, overload errors), USB
timing, the cameras (OpenCV needs a device; only the config translation is checked), a
human moving a real arm during calibration, whether the URDF's joint directions match the
real arm's. `vla robot find-port` is run against a /dev/tty* link to the fake bus that the
test removes when LeRobot asks for the cable to be unplugged (root only: it writes to /dev).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from vla_so101.config import CameraConfig, SO101Config
from vla_so101.testing import FakeFeetechBus
from vla_so101.units import (
    GRIPPER_CLOSED_RAD,
    GRIPPER_OPEN_RAD,
    JOINT_NAMES,
    gripper_percent_to_rad,
    gripper_rad_to_percent,
    lerobot_to_radians,
    radians_to_lerobot,
)

VLA = str(Path(sys.executable).parent / "vla")
# A real servo answers in microseconds and LeRobot waits 50 ms. Behind a pty the kernel moves
# the bytes in a worker thread, which on a loaded 2-core CI machine was seen to take 195 ms;
# the tests allow a second (the arm file setting `reply_timeout_ms`) so they test behaviour,
# not the machine's load.
PATIENT_MS = 1000.0
RES = 4095  # LeRobot's max_res for a 4096-tick encoder

# A calibration as `lerobot-calibrate` writes it: offsets make the mid pose read 2047.
CALIBRATION = {
    "shoulder_pan": {"id": 1, "drive_mode": 0, "homing_offset": 120, "range_min": 800, "range_max": 3300},
    "shoulder_lift": {"id": 2, "drive_mode": 0, "homing_offset": -300, "range_min": 900, "range_max": 3200},
    "elbow_flex": {"id": 3, "drive_mode": 0, "homing_offset": 45, "range_min": 1000, "range_max": 3100},
    "wrist_flex": {"id": 4, "drive_mode": 0, "homing_offset": -12, "range_min": 950, "range_max": 3150},
    "wrist_roll": {"id": 5, "drive_mode": 0, "homing_offset": 600, "range_min": 0, "range_max": 4095},
    "gripper": {"id": 6, "drive_mode": 0, "homing_offset": -200, "range_min": 2000, "range_max": 3400},
}


def mid(motor):
    c = CALIBRATION[motor]
    return (c["range_min"] + c["range_max"]) / 2


def expected_radians(present: dict[str, int]) -> np.ndarray:
    """What the arm's Present_Position ticks mean in radians, computed from the calibration alone."""
    q = [(present[m] - mid(m)) * 360 / RES * math.pi / 180 for m in JOINT_NAMES[:-1]]
    g = CALIBRATION["gripper"]
    pct = (present["gripper"] - g["range_min"]) / (g["range_max"] - g["range_min"]) * 100
    q.append(GRIPPER_CLOSED_RAD + pct / 100 * (GRIPPER_OPEN_RAD - GRIPPER_CLOSED_RAD))
    return np.array(q)


# ----------------------------------------------------------------- units and plugin (no hardware, no lerobot)


def test_gripper_percent_maps_onto_the_urdf_range():
    assert gripper_percent_to_rad(0) == pytest.approx(-0.174533)
    assert gripper_percent_to_rad(100) == pytest.approx(1.74533)
    assert gripper_rad_to_percent(gripper_percent_to_rad(37.5)) == pytest.approx(37.5)
    reading = {f"{j}.pos": v for j, v in zip(JOINT_NAMES, (90.0, -45.0, 0.0, 30.0, -180.0, 50.0))}
    q = lerobot_to_radians(reading)
    assert q.dtype == np.float32
    np.testing.assert_allclose(q[:5], np.radians([90, -45, 0, 30, -180]), atol=1e-6)
    assert q[5] == pytest.approx((-0.174533 + 1.74533) / 2, abs=1e-6)
    back = radians_to_lerobot(q)
    assert back == pytest.approx(reading, abs=1e-4)
    assert radians_to_lerobot([0, 0, 0, 0, 0, 5.0])["gripper.pos"] == 100.0  # clipped like LeRobot would
    with pytest.raises(ValueError, match="expected 6 joint positions"):
        radians_to_lerobot([0.0] * 5)
    with pytest.raises(ValueError, match="finite"):
        radians_to_lerobot([0, 0, float("nan"), 0, 0, 0])


def test_plugin_conforms_and_its_entry_module_stays_light():
    from vla.testing import check_plugin

    check_plugin("vla-so101")
    code = "import sys, vla_so101.plugin, vla_so101.cli, vla_so101.config; print(sorted(m for m in ('lerobot','torch','cv2') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_vla_robot_help_lists_the_bring_up_commands():
    result = subprocess.run([VLA, "robot", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for command in ("find-port", "setup-motors", "calibrate"):
        assert command in result.stdout


def test_arm_yaml_example_is_a_valid_so101_arm_file():
    from vla.config import ArmConfig, read_yaml, structure

    path = Path(__file__).resolve().parents[1] / "examples/arm01.yaml"
    arm = structure(ArmConfig, read_yaml(path), str(path))
    config = structure(SO101Config, arm.config, str(path), "config")
    assert arm.robot == "so101" and config.id == "arm01"
    assert set(config.cameras) == {"front", "wrist"}
    assert isinstance(config.cameras["front"].index_or_path, str) and config.cameras["wrist"].index_or_path == 2
    with pytest.raises(ValueError, match="rotation"):
        CameraConfig(rotation=45)


def test_the_arm_files_vla_init_writes_are_accepted_by_the_driver_config(tmp_path, vla_cli):
    """`vla init` asks this plugin for the arm file (LeRobot's index_or_path); its loader, vla doctor
    and the older ``source`` spelling all agree."""
    from vla.config import ArmConfig, ConfigError, read_yaml, structure

    vla_cli("init", str(tmp_path / "lab"), "--arms", "2", check=True)
    path = tmp_path / "lab" / "arms" / "arm01.yaml"
    arm = structure(ArmConfig, read_yaml(path), str(path))
    config = structure(SO101Config, arm.config, str(path), "config")
    assert arm.robot == "so101" and config.id == "arm01" and config.cameras["front"].index_or_path == 0
    doctor = vla_cli("--config", str(tmp_path / "lab" / "vla.yaml"), "doctor", "--no-network")
    arm_lines = [line for line in doctor.stdout.splitlines() if " arm arm0" in line]
    assert len(arm_lines) >= 2 and not any("FAIL" in line for line in arm_lines), doctor.stdout
    assert "serial port /dev/ttyACM0 not found" in doctor.stdout  # a warning, not a failure

    old = structure(SO101Config, {"cameras": {"front": {"source": "/dev/video2"}}}, "arm.yaml", "config")
    assert old.cameras["front"].index_or_path == "/dev/video2"
    with pytest.raises(ConfigError, match="config.cameras.front.source: give index_or_path or source"):
        structure(SO101Config, {"cameras": {"front": {"source": 1, "index_or_path": 2}}}, "arm.yaml", "config")
    with pytest.raises(ConfigError, match="config.cameras.front.index_or_path: expected an integer or a string"):
        structure(SO101Config, {"cameras": {"front": {"index_or_path": [1]}}}, "arm.yaml", "config")


@pytest.mark.lerobot
def test_camera_config_becomes_lerobot_opencv_config():
    from vla_so101.robot import SO101Robot, lerobot_config

    config = SO101Config(
        port="/dev/ttyACM3", id="arm02", calibration_dir="/tmp/cal",
        cameras={"front": CameraConfig(index_or_path="/dev/video4", width=320, height=240, fps=15, rotation=90), "wrist": CameraConfig(index_or_path=1)},
    )
    from lerobot.robots.so_follower import SO101FollowerConfig

    lr = lerobot_config(config)
    # (LeRobot registers one config class as both so100_follower and so101_follower)
    assert isinstance(lr, SO101FollowerConfig) and lr.use_degrees is True
    assert lr.port == "/dev/ttyACM3" and lr.id == "arm02" and str(lr.calibration_dir) == "/tmp/cal"
    front = lr.cameras["front"]
    assert str(front.index_or_path) == "/dev/video4" and (front.width, front.height, front.fps) == (320, 240, 15)
    assert int(front.rotation) == 90 and lr.cameras["wrist"].index_or_path == 1
    robot = SO101Robot(config)
    assert robot.cameras == {"front": (240, 320, 3), "wrist": (480, 640, 3)}


# ----------------------------------------------------------------- the driver over the Feetech protocol


@pytest.fixture
def calibration_dir(tmp_path):
    folder = tmp_path / "calibration"
    folder.mkdir()
    (folder / "arm01.json").write_text(json.dumps(CALIBRATION))
    return folder


def physical_positions():
    """Shaft positions (before homing offsets) somewhere inside each calibrated range."""
    present = {"shoulder_pan": 2047, "shoulder_lift": 1500, "elbow_flex": 2900, "wrist_flex": 2047, "wrist_roll": 3000, "gripper": 2350}
    return {CALIBRATION[m]["id"]: present[m] + CALIBRATION[m]["homing_offset"] for m in JOINT_NAMES}, present


@pytest.mark.lerobot
def test_connect_observe_act_through_lerobot_over_the_feetech_protocol(calibration_dir):
    from vla_so101.robot import SO101Robot

    actual, present = physical_positions()
    with FakeFeetechBus(positions=actual) as bus:
        # stale goals left in the servos' RAM: connecting must not drive the arm to them
        for servo in bus.servos:
            servo.poke(42, (100).to_bytes(2, "little"))
        robot = SO101Robot(SO101Config(port=bus.port, id="arm01", calibration_dir=str(calibration_dir), cameras={}, reply_timeout_ms=PATIENT_MS))
        robot.connect()
        try:
            # the motors were uncalibrated (offset 0, limits 0..4095): connect wrote the file's values
            for motor, cal in CALIBRATION.items():
                servo = bus.servo(cal["id"])
                assert servo.homing_offset == cal["homing_offset"]
                assert servo.word(9) == cal["range_min"] and servo.word(11) == cal["range_max"]
                assert servo.torque
                assert servo.actual == actual[cal["id"]], f"{motor} moved while connecting"

            obs = robot.observe()
            q = obs["observation.state"]
            assert q.dtype == np.float32 and q.shape == (6,)
            np.testing.assert_allclose(q, expected_radians(present), atol=1e-5)

            target = np.array([0.5, -0.8, 1.2, -0.3, 2.0, 1.0])
            robot.act(target)
            # sync write gets no reply; the next read is answered only after it was handled
            after = robot.observe()["observation.state"]
            for i, motor in enumerate(JOINT_NAMES):
                cal = CALIBRATION[motor]
                if motor == "gripper":
                    pct = (target[i] - GRIPPER_CLOSED_RAD) / (GRIPPER_OPEN_RAD - GRIPPER_CLOSED_RAD) * 100
                    goal = int(pct / 100 * (cal["range_max"] - cal["range_min"]) + cal["range_min"])
                else:
                    goal = int(math.degrees(target[i]) * RES / 360 + mid(motor))
                servo = bus.servo(cal["id"])
                assert servo.actual == (goal + cal["homing_offset"]) % 4096, motor
            # and reading back gives the commanded radians, to within one encoder tick
            np.testing.assert_allclose(after, target, atol=2 * math.pi / 4096)
            assert bus.instructions.get(0x82, 0) >= 2 and bus.instructions.get(0x83, 0) >= 1  # sync read/write
        finally:
            robot.disconnect()
        assert not any(servo.torque for servo in bus.servos)  # LeRobot's default: limp on disconnect


@pytest.mark.lerobot
def test_goal_beyond_the_calibrated_range_is_held_at_the_limit(calibration_dir):
    from vla_so101.robot import SO101Robot

    actual, _ = physical_positions()
    with FakeFeetechBus(positions=actual) as bus:
        with SO101Robot(SO101Config(port=bus.port, id="arm01", calibration_dir=str(calibration_dir), cameras={}, reply_timeout_ms=PATIENT_MS)) as robot:
            robot.act(np.array([3.0, 0, 0, 0, 0, 0.5]))  # pan 172 deg: past range_max 3300
            robot.observe()  # answered after the goal was handled
            pan = bus.servo(1)
            assert pan.actual == CALIBRATION["shoulder_pan"]["range_max"] + CALIBRATION["shoulder_pan"]["homing_offset"]


@pytest.mark.lerobot
def test_uncalibrated_arm_is_refused_with_the_command_to_run(tmp_path):
    from vla_so101.robot import CalibrationMissing, SO101Robot

    with FakeFeetechBus() as bus:
        robot = SO101Robot(SO101Config(port=bus.port, id="arm09", calibration_dir=str(tmp_path), cameras={}, reply_timeout_ms=PATIENT_MS))
        with pytest.raises(CalibrationMissing, match="vla robot calibrate"):
            robot.connect()
        assert not any(servo.torque for servo in bus.servos)


@pytest.mark.lerobot
def test_missing_motor_is_a_clear_connection_error(calibration_dir):
    from vla_so101.robot import SO101Robot

    with FakeFeetechBus(ids=(1, 2, 3, 4, 6)) as bus:  # wrist_roll unplugged
        robot = SO101Robot(SO101Config(port=bus.port, id="arm01", calibration_dir=str(calibration_dir), cameras={}, reply_timeout_ms=PATIENT_MS))
        with pytest.raises(RuntimeError, match=r"Missing motor IDs:\s+- 5"):
            robot.connect()


# ----------------------------------------------------------------- the bring-up commands, as subprocesses


class Interactive:
    """A `vla` subprocess whose prompts the test answers, reading its output as it comes.

    LeRobot's range recording prints a table many times a second; output is kept in a
    bytearray and searched incrementally so this process does not hog the GIL that the
    fake bus's thread needs to answer within the SDK's ~50 ms timeout.
    """

    def __init__(self, *args):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "VLA_LOAD_PLUGINS": "vla-so101"}
        self.proc = subprocess.Popen([VLA, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        self.output = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._counts: dict[bytes, tuple[int, int]] = {}  # needle -> (bytes searched, occurrences)

    def _read(self):
        while True:
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                return
            with self._lock:
                self.output += chunk

    def text(self) -> str:
        with self._lock:
            return bytes(self.output).decode(errors="replace")

    def count(self, needle: str) -> int:
        key = needle.encode()
        searched, found = self._counts.get(key, (0, 0))
        with self._lock:
            size = len(self.output)
            window = bytes(self.output[max(0, searched - len(key) + 1) : size])
        found += window.count(key)
        self._counts[key] = (size, found)
        return found

    def wait_for(self, needle: str, count: int = 1, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(needle) >= count:
                return
            if self.proc.poll() is not None:
                time.sleep(0.2)
                if self.count(needle) >= count:
                    return
                break
            time.sleep(0.05)
        raise AssertionError(f"never saw {needle!r} (x{count}); output:\n{self.text()[-3000:]}")

    def enter(self) -> None:
        self.proc.stdin.write(b"\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._reader.join(timeout=5)


@pytest.mark.lerobot
def test_vla_robot_calibrate_runs_lerobots_calibration_and_writes_the_file(tmp_path):
    mid_pose = {1: 2100, 2: 1800, 3: 2600, 4: 1990, 5: 700, 6: 2300}  # shaft ticks, offsets 0
    sweep = {1: (1000, 3300), 2: (900, 3000), 3: (1500, 3500), 4: (1000, 3000), 6: (2000, 3500)}
    with FakeFeetechBus(positions=mid_pose) as bus:
        arm_file = tmp_path / "arm05.yaml"
        arm_file.write_text(f"robot: so101\nconfig:\n  port: {bus.port}\n  id: arm05\n  reply_timeout_ms: {PATIENT_MS}\n")
        run = Interactive("robot", "calibrate", "--arm", str(arm_file), "--calibration-dir", str(tmp_path))
        try:
            run.wait_for("press ENTER")  # "Move ... to the middle of its range of motion"
            run.enter()
            run.wait_for("Recording positions")
            for servo_id, (low, high) in sweep.items():  # a person moves each joint end to end
                servo = bus.servo(servo_id)
                for ticks in (low, high, mid_pose[servo_id]):
                    servo.move_by_hand(ticks)
                    time.sleep(0.15)
            run.enter()
            assert run.finish() == 0, run.text()[-3000:]
        finally:
            if run.proc.poll() is None:
                run.proc.kill()
    written = json.loads((tmp_path / "arm05.json").read_text())
    names = dict(zip(range(1, 7), JOINT_NAMES))
    for servo_id, name in names.items():
        cal = written[name]
        offset = mid_pose[servo_id] - 2047  # the mid pose reads one half turn
        assert cal["id"] == servo_id and cal["homing_offset"] == offset, name
        if servo_id == 5:
            assert (cal["range_min"], cal["range_max"]) == (0, 4095)  # wrist_roll turns fully
        else:
            low, high = sweep[servo_id]
            assert (cal["range_min"], cal["range_max"]) == (low - offset, high - offset), name


@pytest.mark.lerobot
def test_vla_robot_setup_motors_gives_each_motor_its_id(tmp_path):
    """Factory-fresh servos (id 1), connected one at a time as LeRobot asks; one sits at 500 kbaud."""
    arm_file = tmp_path / "arm.yaml"
    with FakeFeetechBus(ids=()) as bus:
        arm_file.write_text(f"robot: so101\nconfig:\n  port: {bus.port}\n  id: arm07\n  calibration_dir: {tmp_path}\n  reply_timeout_ms: {PATIENT_MS}\n")
        run = Interactive("robot", "setup-motors", "--arm", str(arm_file))
        plugged = []  # (motor, final state of the servo that was plugged in for it)
        try:
            for n, motor in enumerate(reversed(JOINT_NAMES), start=1):
                run.wait_for("press enter", count=n)
                # only this motor is on the bus now, factory-fresh; elbow_flex sits at 500 kbaud
                removed = bus.replace_servos([{"servo_id": 1, "baud_index": 1 if motor == "elbow_flex" else 0}])
                if plugged:
                    plugged[-1] = (plugged[-1][0], removed[0])
                plugged.append((motor, None))
                run.enter()
            assert run.finish(timeout=120) == 0, run.text()[-3000:]
            plugged[-1] = (plugged[-1][0], bus.replace_servos([])[0])
        finally:
            if run.proc.poll() is None:
                run.proc.kill()
    for motor, state in plugged:
        memory = bytes.fromhex(state["memory"])
        assert state["servo_id"] == JOINT_NAMES.index(motor) + 1, motor
        assert memory[5] == state["servo_id"] and memory[6] == 0, motor  # id and 1 Mbaud stored

def test_vla_robot_find_port_names_the_port_that_went_away():
    link = Path(f"/dev/ttyVLAtest{os.getpid()}")
    if not os.access("/dev", os.W_OK):
        pytest.skip("needs write access to /dev to plug in a fake serial adapter")
    with FakeFeetechBus() as bus:
        link.symlink_to(bus.port)  # the "USB adapter" appears
        try:
            run = Interactive("robot", "find-port")
            run.wait_for("press Enter")
            link.unlink()  # the person unplugs it
            run.enter()
            assert run.finish() == 0, run.text()
        finally:
            if link.is_symlink():
                link.unlink()
    assert f"The port of this MotorsBus is '{link}'" in run.text()


@pytest.mark.lerobot
def test_reply_timeout_replaces_lerobots_50_ms_allowance():
    from lerobot.motors import Motor, MotorNormMode
    from lerobot.motors.feetech import FeetechMotorsBus

    from vla_so101.robot import reply_timeout_for_new_buses, use_reply_timeout

    def allowance(bus):
        handler = bus.port_handler
        handler.tx_time_per_byte = 0.01  # 1 Mbaud
        handler.setPacketTimeout(10)
        return handler.packet_timeout - 0.01 * 13

    def new_bus():
        return FeetechMotorsBus("/dev/null", {"gripper": Motor(6, "sts3215", MotorNormMode.RANGE_0_100)})

    assert allowance(new_bus()) == pytest.approx(50.0)  # LeRobot's own
    bus = new_bus()
    use_reply_timeout(bus, 400.0)
    assert allowance(bus) == pytest.approx(400.0)
    with reply_timeout_for_new_buses(250.0):
        assert allowance(new_bus()) == pytest.approx(250.0)
    assert allowance(new_bus()) == pytest.approx(50.0)  # restored


def test_calibration_status_finds_lerobots_default_folder(tmp_path, monkeypatch):
    from vla_so101.config import SO101Config as Config
    from vla_so101.robot import SO101Robot

    monkeypatch.delenv("HF_LEROBOT_CALIBRATION", raising=False)
    monkeypatch.setenv("HF_LEROBOT_HOME", str(tmp_path / "lr"))
    robot = SO101Robot(Config(id="arm01"))
    path = tmp_path / "lr" / "calibration" / "robots" / "so_follower" / "arm01.json"
    assert robot.calibration_file() == path and not robot.calibration_status().calibrated
    path.parent.mkdir(parents=True)
    entry = {"id": 1, "drive_mode": 0, "homing_offset": 0, "range_min": 0, "range_max": 4095}
    import json as _json

    path.write_text(_json.dumps({j: entry for j in robot.joint_names}))
    assert robot.calibration_status().calibrated
    monkeypatch.setenv("HF_LEROBOT_CALIBRATION", str(tmp_path / "elsewhere"))
    assert robot.calibration_file() == tmp_path / "elsewhere" / "robots" / "so_follower" / "arm01.json"
