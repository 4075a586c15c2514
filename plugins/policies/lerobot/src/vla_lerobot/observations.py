"""Checking vla observations against a policy's contract and stacking them into one batch.

Pure numpy (OpenCV only when a frame must be decoded or resized), so the checks are cheap
and testable without torch. Every error names the key and what was expected.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np

STATE_KEY = "observation.state"
ENV_STATE_KEY = "observation.environment_state"
IMAGE_PREFIX = "observation.images."


class ObservationError(ValueError):
    """An observation that does not fit the policy's contract."""


@attrs.frozen
class Contract:
    """What a policy reads, in the lab's names (after the camera rename map is undone)."""

    cameras: dict[str, tuple[int, int, int]]  # lab camera name -> (h, w, 3)
    state_dim: int | None  # None: the policy reads no state
    env_state_dim: int | None = None  # None: the policy reads no environment state
    action_dim: int = 0


@attrs.frozen
class StackedBatch:
    """B observations as arrays with a leading batch axis, keyed by the lab's names."""

    state: np.ndarray | None  # (B, S) float32
    env_state: np.ndarray | None  # (B, E) float32
    images: dict[str, np.ndarray]  # lab camera -> (B, H, W, 3) uint8
    tasks: list[str]


def _vector(value: Any, key: str, size: int, index: int) -> np.ndarray:
    if value is None:
        raise ObservationError(f"observation {index}: missing {key!r} ({size} float32 values)")
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise ObservationError(f"observation {index}: {key}: expected {size} numbers, got {type(value).__name__}") from None
    if array.shape != (size,):
        raise ObservationError(f"observation {index}: {key}: expected shape ({size},), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ObservationError(f"observation {index}: {key}: holds non-finite values")
    return array


def _image(value: Any, key: str, shape: tuple[int, int, int], index: int, resize: bool) -> np.ndarray:
    if value is None:
        raise ObservationError(f"observation {index}: missing {key!r} (uint8 RGB image of shape {shape})")
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = _decode_jpeg(bytes(value), key, index)
    image = np.asarray(value)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ObservationError(
            f"observation {index}: {key}: expected a uint8 RGB array of shape {shape}, got {image.dtype} {image.shape}"
        )
    if image.shape != shape:
        if not resize:
            raise ObservationError(
                f"observation {index}: {key}: the policy was trained on {shape} frames, got {image.shape} "
                "(set resize_images: true in the lerobot plugin config to resize)"
            )
        import cv2

        image = cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return image


def _decode_jpeg(data: bytes, key: str, index: int) -> np.ndarray:
    import cv2

    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if decoded is None:
        raise ObservationError(f"observation {index}: {key}: bytes that are not a JPEG image")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def stack_observations(observations: list[dict[str, Any]], contract: Contract, resize: bool = False) -> StackedBatch:
    """Check every observation against ``contract`` and stack them along a new batch axis."""
    if not observations:
        raise ObservationError("empty batch")
    states, envs, tasks = [], [], []
    images: dict[str, list[np.ndarray]] = {name: [] for name in contract.cameras}
    for i, obs in enumerate(observations):
        if not isinstance(obs, dict):
            raise ObservationError(f"observation {i}: expected a mapping, got {type(obs).__name__}")
        if contract.state_dim is not None:
            states.append(_vector(obs.get(STATE_KEY), STATE_KEY, contract.state_dim, i))
        if contract.env_state_dim is not None:
            envs.append(_vector(obs.get(ENV_STATE_KEY), ENV_STATE_KEY, contract.env_state_dim, i))
        for name, shape in contract.cameras.items():
            key = IMAGE_PREFIX + name
            images[name].append(_image(obs.get(key), key, tuple(shape), i, resize))
        task = obs.get("task", "")
        if task is None:
            task = ""
        if not isinstance(task, str):
            raise ObservationError(f"observation {i}: task: expected a string, got {type(task).__name__}")
        tasks.append(task)
    return StackedBatch(
        state=np.stack(states) if states else None,
        env_state=np.stack(envs) if envs else None,
        images={name: np.stack(frames) for name, frames in images.items()},
        tasks=tasks,
    )


def rtc_inputs(obs: dict[str, Any], action_dim: int, index: int) -> tuple[int, np.ndarray] | None:
    """The (inference_delay, prev_chunk) pair an observation carries for real-time chunking, or None."""
    prev = obs.get("prev_chunk")
    if prev is None:
        return None
    chunk = np.asarray(prev, dtype=np.float32)
    if chunk.ndim != 2 or chunk.shape[1] != action_dim or chunk.shape[0] == 0:
        raise ObservationError(
            f"observation {index}: prev_chunk: expected shape (n, {action_dim}) with n >= 1, got {chunk.shape}"
        )
    if not np.all(np.isfinite(chunk)):
        raise ObservationError(f"observation {index}: prev_chunk: holds non-finite values")
    delay = obs.get("inference_delay", 0)
    if isinstance(delay, bool) or not isinstance(delay, (int, np.integer)) or delay < 0:
        raise ObservationError(f"observation {index}: inference_delay: expected a whole number >= 0, got {delay!r}")
    return int(delay), chunk
