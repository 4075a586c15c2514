"""The real SO-101 follower as a ``vla.robot.Robot``, through LeRobot's ``so101_follower``.

The driver (Feetech servos over USB serial, OpenCV cameras) is LeRobot's; this class adds
vla's units (radians, see ``units``), refuses to run uncalibrated instead of prompting, and
makes the arm hold its position when it connects. lerobot is imported in ``connect``.
"""

from __future__ import annotations

import contextlib
import logging
import types
from pathlib import Path
from typing import Any

import numpy as np

from vla.robot import IMAGE_PREFIX, STATE_KEY
from vla_so101.config import SO101Config
from vla_so101.units import JOINT_NAMES, lerobot_to_radians, radians_to_lerobot

log = logging.getLogger(__name__)

ROBOT_TYPE = "so101_follower"  # LeRobot's name, also written into recorded datasets


class CalibrationMissing(RuntimeError):
    """No calibration file for this arm id: run `vla robot calibrate`."""


def lerobot_config(config: SO101Config):
    """The ``SO101FollowerConfig`` LeRobot's driver takes, built from the arm's vla config."""
    from lerobot.cameras.opencv.configuration_opencv import OpenCVCameraConfig
    from lerobot.robots.so_follower import SO101FollowerConfig

    cameras = {}
    for name, cam in config.cameras.items():
        source = cam.source if isinstance(cam.source, int) else Path(cam.source)
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


class SO101Robot:
    """SO-101 follower arm: joints in radians (``units``), images RGB at the configured size."""

    robot_type = ROBOT_TYPE
    joint_names = JOINT_NAMES

    def __init__(self, config: SO101Config | None = None):
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
        from lerobot.robots.so_follower import SO101Follower

        robot = SO101Follower(lerobot_config(self.config))
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
            raise RuntimeError("the SO-101 is not connected; call connect() first")
        return self._robot

    def observe(self) -> dict[str, Any]:
        reading = self._require().get_observation()
        obs: dict[str, Any] = {STATE_KEY: lerobot_to_radians(reading)}
        for name in self.cameras:
            obs[IMAGE_PREFIX + name] = np.asarray(reading[name], dtype=np.uint8)
        return obs

    def act(self, q) -> None:
        self._require().send_action(radians_to_lerobot(q))

    def forward_kinematics(self, q):
        from vla.kinematics.so101 import forward_kinematics  # pure numpy, owned by the sim plugin's author

        return forward_kinematics(q)

    def __enter__(self) -> SO101Robot:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()
