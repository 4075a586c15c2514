"""What a recorded dataset holds, taken from the robot: LeRobot feature specs and checks.

Joint names become the ``names`` of ``observation.state`` and ``action`` so a dataset says
which column is which joint; each camera becomes a video feature of the robot's image size.
Pure numpy: nothing here imports lerobot.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from vla.robot import ENV_STATE_KEY, IMAGE_PREFIX, STATE_KEY

ACTION_KEY = "action"


def dataset_fps(fps: float | None, control_hz: float) -> int:
    """LeRobot stores a whole number of frames per second; refuse a rate that is not one."""
    value = control_hz if fps is None else fps
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"fps: expected a positive number of frames per second, got {value!r}")
    rounded = round(value)
    if abs(value - rounded) > 1e-6:
        raise ValueError(
            f"fps: LeRobot datasets need a whole number of frames per second, got {value!r}; "
            "pass fps= explicitly or run the robot at a whole-number control rate"
        )
    return int(rounded)


def robot_features(robot, first_observation: dict[str, Any] | None = None) -> dict[str, dict]:
    """LeRobot feature specs for what ``robot`` observes and is commanded.

    ``observation.environment_state`` (the simulator's privileged object poses) is included
    when the first observation carries it, with that observation's length.
    """
    names = [str(n) for n in robot.joint_names]
    if not names:
        raise ValueError("robot has no joint_names; cannot describe observation.state")
    n = len(names)
    features: dict[str, dict] = {
        STATE_KEY: {"dtype": "float32", "shape": (n,), "names": names},
        ACTION_KEY: {"dtype": "float32", "shape": (n,), "names": list(names)},
    }
    for camera, shape in dict(robot.cameras).items():
        h, w, c = (int(v) for v in shape)
        if c != 3:
            raise ValueError(f"camera {camera!r}: expected RGB images (h, w, 3), robot declares {tuple(shape)}")
        features[IMAGE_PREFIX + camera] = {
            "dtype": "video",
            "shape": (h, w, c),
            "names": ["height", "width", "channels"],
        }
    if first_observation is not None and first_observation.get(ENV_STATE_KEY) is not None:
        env = np.asarray(first_observation[ENV_STATE_KEY], dtype=np.float32).reshape(-1)
        env_names = getattr(robot, "environment_state_names", None)
        features[ENV_STATE_KEY] = {
            "dtype": "float32",
            "shape": (int(env.size),),
            "names": list(env_names) if env_names is not None and len(env_names) == env.size else None,
        }
    return features


def _vector(value: Any, key: str, size: int) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"{key}: expected {size} numbers, got {type(value).__name__}") from None
    if array.shape != (size,):
        raise ValueError(f"{key}: expected shape ({size},), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{key}: holds non-finite values {array.tolist()}")
    return array


def lerobot_frame(features: dict[str, dict], observation: dict[str, Any], action: Any, task: str) -> dict[str, Any]:
    """One LeRobot frame from an observation and the action sent with it, checked against ``features``.

    Errors name the key and what was expected, before lerobot sees the frame.
    """
    frame: dict[str, Any] = {}
    for key, spec in features.items():
        if key == ACTION_KEY:
            frame[key] = _vector(action, key, spec["shape"][0])
            continue
        if key not in observation:
            raise ValueError(f"observation is missing {key!r} (the dataset records {sorted(features)})")
        value = observation[key]
        if spec["dtype"] == "video":
            if isinstance(value, (bytes, bytearray)):
                raise ValueError(f"{key}: expected a decoded uint8 RGB array, got JPEG bytes")
            image = np.asarray(value)
            if image.dtype != np.uint8 or image.shape != tuple(spec["shape"]):
                raise ValueError(
                    f"{key}: expected a uint8 array of shape {tuple(spec['shape'])}, "
                    f"got {image.dtype} {image.shape}"
                )
            frame[key] = np.ascontiguousarray(image)
        else:
            frame[key] = _vector(value, key, spec["shape"][0])
    frame["task"] = task
    return frame
