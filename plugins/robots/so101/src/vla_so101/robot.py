"""The real SO-101 follower as a ``vla.robot.Robot``, through LeRobot's ``so101_follower``.

The driver (Feetech servos over USB serial, OpenCV cameras) is LeRobot's; this class adds
vla's units (radians, see ``units``), refuses to run uncalibrated instead of prompting, and
makes the arm hold its position when it connects. lerobot is imported in ``connect``.

``SOFollowerArm`` is written for any arm of LeRobot's SO-follower family (the same Feetech
bus and driver): a subclass names its description, LeRobot's driver class and robot type, as
``SO101Robot`` does here and ``vla_so100`` does for the SO-100.
"""

from __future__ import annotations

import contextlib
import logging
import types
from pathlib import Path
from typing import Any

import numpy as np

from vla.description import RobotDescription
from vla.robot import IMAGE_PREFIX, STATE_KEY
from vla_so101.config import SO101Config
from vla_so101.units import lerobot_to_radians, radians_to_lerobot
from vla_so101_description.description import SO101

log = logging.getLogger(__name__)

ROBOT_TYPE = "so101_follower"  # LeRobot's name, also written into recorded datasets


def calibration_folder(configured: str | None) -> Path:
    """The arm's calibration folder: the configured one, else LeRobot's default for the SO
    followers, as LeRobot 0.4 finds it: $HF_LEROBOT_CALIBRATION, else $HF_LEROBOT_HOME/calibration,
    else $HF_HOME/lerobot/calibration; then robots/so_follower."""
    import os

    if configured:
        return Path(configured).expanduser()
    root = os.environ.get("HF_LEROBOT_CALIBRATION")
    if root is None:
        home = os.environ.get("HF_LEROBOT_HOME") or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "lerobot"
        root = Path(home).expanduser() / "calibration"
    return Path(root).expanduser() / "robots" / "so_follower"


class CalibrationMissing(RuntimeError):
    """No calibration file for this arm id: run `vla robot calibrate`."""


def lerobot_config(config: SO101Config):
    """The ``SO101FollowerConfig`` LeRobot's driver takes, built from the arm's vla config
    (LeRobot 0.4.4 uses one config class for the SO-100 and the SO-101)."""
    from lerobot.cameras.opencv.configuration_opencv import OpenCVCameraConfig
    from lerobot.robots.so_follower import SO101FollowerConfig

    cameras = {}
    for name, cam in config.cameras.items():
        source = cam.index_or_path if isinstance(cam.index_or_path, int) else Path(cam.index_or_path)
        cameras[name] = OpenCVCameraConfig(
            index_or_path=source, fps=cam.fps, width=cam.width, height=cam.height,
            rotation=cam.rotation, fourcc=cam.fourcc,
        )
    return SO101FollowerConfig(
        port=config.port,
        id=config.id,
        calibration_dir=Path(config.calibration_dir).expanduser() if config.calibration_dir else None,
        cameras=cameras,
        use_degrees=True,  # degrees, zero mid-range: what units.py converts from
        max_relative_target=config.max_relative_target,
        disable_torque_on_disconnect=config.disable_torque_on_disconnect,
    )


def _packet_timeout(reply_timeout_ms: float):
    """A Feetech ``PortHandler.setPacketTimeout`` allowing ``reply_timeout_ms`` for the reply.

    The same formula as LeRobot's patch of the SDK (transfer time of the packet plus three
    bytes, plus a fixed allowance), with the allowance configurable instead of 50 ms.
    """

    def set_packet_timeout(self, packet_length):
        self.packet_start_time = self.getCurrentTime()
        self.packet_timeout = self.tx_time_per_byte * (packet_length + 3.0) + reply_timeout_ms

    return set_packet_timeout


def use_reply_timeout(bus, reply_timeout_ms: float) -> None:
    """Give the servos on ``bus`` (a FeetechMotorsBus) ``reply_timeout_ms`` to answer."""
    bus.port_handler.setPacketTimeout = types.MethodType(_packet_timeout(reply_timeout_ms), bus.port_handler)


@contextlib.contextmanager
def reply_timeout_for_new_buses(reply_timeout_ms: float):
    """While inside, FeetechMotorsBus objects that LeRobot's tools create use ``reply_timeout_ms``."""
    from lerobot.motors.feetech import feetech

    original = feetech.patch_setPacketTimeout
    feetech.patch_setPacketTimeout = _packet_timeout(reply_timeout_ms)
    try:
        yield
    finally:
        feetech.patch_setPacketTimeout = original


class SOFollowerArm:
    """An SO-follower arm: joints in radians (``units``), images RGB at the configured size."""

    description: RobotDescription = SO101
    robot_type = ROBOT_TYPE
    lerobot_class = "SO101Follower"  # in lerobot.robots.so_follower
    name = "SO-101"

    def __init__(self, config: SO101Config | None = None):
        self.joint_names = self.description.joint_names
        self.config = config or SO101Config()
        self.cameras = {name: (cam.height, cam.width, 3) for name, cam in self.config.cameras.items()}
        self.control_hz = float(self.config.control_hz)
        self._robot = None

    @property
    def connected(self) -> bool:
        return self._robot is not None

    @property
    def lerobot_robot(self):
        """LeRobot's ``SO101Follower`` while connected (for tools that need the driver itself)."""
        return self._robot

    def connect(self) -> None:
        if self._robot is not None:
            return
        from lerobot.robots import so_follower

        robot = getattr(so_follower, self.lerobot_class)(lerobot_config(self.config))
        use_reply_timeout(robot.bus, self.config.reply_timeout_ms)
        if not robot.calibration:
            raise CalibrationMissing(
                f"arm {self.config.id!r} has no calibration file {robot.calibration_fpath}; "
                f"run `vla robot calibrate --port {self.config.port} --id {self.config.id}` first"
            )
        # LeRobot's SOFollower.connect, step by step, with two changes: no interactive prompt
        # (a missing calibration is an error above), and Goal_Position := Present_Position
        # before torque is first enabled, so the arm does not jump to a stale goal.
        try:
            robot.bus.connect()  # opens the port, pings all six motors, checks their firmware
            if not robot.bus.is_calibrated:
                # the motors hold other offsets/limits than the file: write the file's, as
                # LeRobot does when you accept its "use the calibration file" prompt
                log.warning("motors of %s differ from %s; writing the file's calibration", self.config.id, robot.calibration_fpath)
                robot.bus.disable_torque()
                robot.bus.write_calibration(robot.calibration)
            present = robot.bus.sync_read("Present_Position", normalize=False)
            robot.bus.sync_write("Goal_Position", present, normalize=False)
            for cam in robot.cameras.values():
                cam.connect()
            robot.configure()  # LeRobot's motor settings; ends by enabling torque
        except BaseException:
            self._release(robot)
            raise
        self._robot = robot

    @staticmethod
    def _release(robot) -> None:
        """Undo a failed connect without hiding why it failed."""
        for cam in robot.cameras.values():
            if cam.is_connected:
                with contextlib.suppress(Exception):
                    cam.disconnect()
        if robot.bus.is_connected:
            try:
                robot.bus.disconnect(robot.config.disable_torque_on_disconnect)
            except Exception:  # e.g. the motor that made connect fail cannot be told to relax
                log.warning("could not disable torque while giving up on %s", robot.bus.port, exc_info=True)
                robot.bus.port_handler.closePort()

    def disconnect(self) -> None:
        robot, self._robot = self._robot, None
        if robot is not None:
            robot.disconnect()

    def _require(self):
        if self._robot is None:
            raise RuntimeError(f"the {self.name} is not connected; call connect() first")
        return self._robot

    def observe(self) -> dict[str, Any]:
        reading = self._require().get_observation()
        obs: dict[str, Any] = {STATE_KEY: lerobot_to_radians(reading, self.description)}
        for name in self.cameras:
            obs[IMAGE_PREFIX + name] = np.asarray(reading[name], dtype=np.uint8)
        return obs

    def act(self, q) -> None:
        self._require().send_action(radians_to_lerobot(q, self.description))

    def forward_kinematics(self, q):
        return self.description.kinematics.forward_kinematics(q)

    def calibration_file(self) -> Path:
        """Where LeRobot reads this arm's calibration: <calibration_dir>/<id>.json."""
        return calibration_folder(self.config.calibration_dir) / f"{self.config.id}.json"

    def calibration_status(self):
        """Whether the calibration file exists and holds a range for every joint (read without
        connecting, for `vla gates` G0). ``connect`` refuses to start without one."""
        import json

        from vla.robot import CalibrationStatus

        path = self.calibration_file()
        if not path.is_file():
            return CalibrationStatus(False, f"no calibration file {path} (run `vla robot calibrate --id {self.config.id}`)")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            return CalibrationStatus(False, f"calibration file {path} cannot be read: {exc}")
        if not isinstance(data, dict):
            return CalibrationStatus(False, f"calibration file {path} is not a JSON object")
        missing = [j for j in self.joint_names if not isinstance(data.get(j), dict)]
        if missing:
            return CalibrationStatus(False, f"calibration file {path} has no entry for {', '.join(missing)}")
        bad = [j for j in self.joint_names
               if not (isinstance(data[j].get("range_min"), (int, float)) and isinstance(data[j].get("range_max"), (int, float))
                       and data[j]["range_min"] < data[j]["range_max"])]
        if bad:
            return CalibrationStatus(False, f"calibration file {path}: no valid range_min < range_max for {', '.join(bad)}")
        return CalibrationStatus(True, f"{path}: ranges for all {len(self.joint_names)} joints")

    def __enter__(self) -> SOFollowerArm:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()


class SO101Robot(SOFollowerArm):
    """The SO-101 follower arm (robot ``so101``)."""
