"""Per-arm settings for the SO-101 follower (the ``config:`` section of an arm's YAML file).

Plain attrs, no lerobot import: `vla plugins list` and config checks stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import attrs

ROTATIONS = (0, 90, 180, -90)


def _positive(_inst, attribute, value):
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
        raise ValueError(f"{attribute.name}: expected a number > 0, got {value!r}")


def _rotation(_inst, attribute, value):
    if value not in ROTATIONS:
        raise ValueError(f"{attribute.name}: expected one of {ROTATIONS} (degrees clockwise), got {value!r}")


def _source(_inst, attribute, value):
    if isinstance(value, int) and value < 0:
        raise ValueError(f"{attribute.name}: expected an OpenCV camera index (0, 1, ...) or a device path, got {value!r}")


@attrs.define
class CameraConfig:
    """One OpenCV camera. ``width``/``height`` are the image the policy gets (after rotation).

    Prefer a stable path such as ``/dev/v4l/by-id/...-video-index0`` over an index: indices
    change order across reboots and a front/wrist swap silently ruins a policy.
    """

    # LeRobot's key: an OpenCV index (0, 1, ...) or a device/video path. ``source`` is accepted
    # as another name for it (vla's earlier arm files used it).
    index_or_path: int | str = attrs.field(default=0, validator=_source)
    width: int = attrs.field(default=640, validator=_positive)
    height: int = attrs.field(default=480, validator=_positive)
    fps: int = attrs.field(default=30, validator=_positive)
    rotation: int = attrs.field(default=0, validator=_rotation)
    fourcc: str | None = None  # e.g. "MJPG" to reach 30 fps at 640x480 on many USB cameras

    config_aliases: ClassVar[dict[str, str]] = {"source": "index_or_path"}


def _default_cameras() -> dict[str, CameraConfig]:
    return {"front": CameraConfig(index_or_path=0), "wrist": CameraConfig(index_or_path=1)}


@attrs.define
class SO101Config:
    """An SO-101 follower arm: its serial port, calibration id, cameras and control rate."""

    port: str = "/dev/ttyACM0"
    # the calibration file is <calibration_dir>/<id>.json, written by `vla robot calibrate`
    id: str = "so101"
    # None: LeRobot's default, ~/.cache/huggingface/lerobot/calibration/robots/so_follower
    calibration_dir: str | None = None
    cameras: dict[str, CameraConfig] = attrs.field(factory=_default_cameras)
    control_hz: float = attrs.field(default=30.0, validator=_positive)
    # LeRobot's own per-command clamp, in degrees of travel from the present position;
    # vla's safety layer is the main guard, this one also reads the motors each tick.
    max_relative_target: float | None = attrs.field(default=None, validator=_positive)
    # LeRobot's default: an arm whose program ends goes limp rather than holding torque
    disable_torque_on_disconnect: bool = True
    # How long a servo may take to answer, beyond the bytes' transfer time. LeRobot allows
    # 50 ms; a long USB chain or a heavily loaded host may need more.
    reply_timeout_ms: float = attrs.field(default=50.0, validator=_positive)

    def relative_to(self, base: Path) -> SO101Config:
        """Resolve a relative calibration folder against the arm file that named it."""
        if self.calibration_dir is None or Path(self.calibration_dir).is_absolute():
            return self
        return attrs.evolve(self, calibration_dir=str((base / self.calibration_dir).resolve()))

    def warnings(self) -> list[str]:
        """What `vla doctor` warns about before the arm is plugged in (not errors: the file is fine)."""
        found = []
        if not Path(self.port).exists():
            found.append(f"serial port {self.port} not found (is the arm plugged in? `vla robot find-port` tells which)")
        for name, cam in self.cameras.items():
            if isinstance(cam.index_or_path, str) and not Path(cam.index_or_path).exists():
                found.append(f"camera {name}: {cam.index_or_path} not found")
        return found


STARTER_CONFIG = """\
port: /dev/ttyACM0     # `vla robot find-port` tells which
id: {arm}              # calibration file name: <calibration_dir>/{arm}.json (`vla robot calibrate`)
control_hz: 30
cameras:               # names must match what the policy was trained on; LeRobot's keys
  front: {{index_or_path: 0, width: 640, height: 480, fps: 30}}
  wrist: {{index_or_path: 1, width: 640, height: 480, fps: 30}}
"""


def starter_arm_config(arm_id: str) -> str:
    """The ``config:`` of a new arm file (`vla init --robot so101`)."""
    return STARTER_CONFIG.format(arm=arm_id)
