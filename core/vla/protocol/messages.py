"""The messages of protocol ``vla/1``: metadata, request, reply and error, and their checks.

Every message is a msgpack map (see ``vla.protocol.codec``).

- metadata (server -> client, first frame): ``protocol``, ``policy``, ``cameras``
  ({name: [h, w, 3]}), ``state_dim``, ``action_dim``, ``horizon``, ``capabilities``
  ({batching, rtc, jpeg}: bools), ``max_message_bytes``, ``max_batch``.
- request (client -> server): the observation (``observation.state``,
  ``observation.images.<camera>`` as a uint8 array or JPEG bytes, optional
  ``observation.environment_state``, ``task``) plus optional ``timestamp``,
  ``inference_delay``, ``prev_chunk``, ``session``, ``reset``, ``request_id``.
- reply: ``actions`` ((H, A) float32), ``server_timing`` (``infer_ms``, ``queue_ms``,
  ``total_ms``, ``batch_size``), and ``request_id`` / ``timestamp`` echoed when given.
- error: ``{"error": {"code": str, "message": str}}`` (plus ``request_id`` when known).
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np

from vla.protocol import PROTOCOL_VERSION  # defined in the package module, which stays light
from vla.protocol.errors import (
    BAD_DTYPE,
    BAD_POLICY_OUTPUT,
    BAD_SHAPE,
    BAD_TYPE,
    BAD_VALUE,
    JPEG_UNSUPPORTED,
    MISSING_KEY,
    TOO_LARGE,
    UNKNOWN_KEY,
    ProtocolError,
)

STATE_KEY = "observation.state"
IMAGE_PREFIX = "observation.images."
ENV_STATE_KEY = "observation.environment_state"
TASK_KEY = "task"
OPTIONAL_KEYS = ("timestamp", "inference_delay", "prev_chunk", "session", "reset", "request_id")

MAX_TASK_CHARS = 4096
MAX_SESSION_CHARS = 256
MAX_ENV_STATE = 4096
_INT64 = 2**63


# ------------------------------------------------------------------------------ metadata


def make_metadata(
    info,
    *,
    max_batch: int,
    max_message_bytes: int,
    jpeg: bool,
) -> dict[str, Any]:
    """The metadata frame for a backend's ``PolicyInfo``."""
    metadata = {
        "protocol": PROTOCOL_VERSION,
        "policy": info.name,
        "cameras": {c.name: [int(x) for x in c.shape] for c in info.cameras},
        "state_dim": int(info.state_dim),
        "action_dim": int(info.action_dim),
        "horizon": int(info.horizon),
        "capabilities": {"batching": max_batch > 1, "rtc": bool(info.supports_rtc), "jpeg": bool(jpeg)},
        "max_message_bytes": int(max_message_bytes),
        "max_batch": int(max_batch),
    }
    if info.extra:
        metadata["extra"] = dict(info.extra)
    return metadata


# ------------------------------------------------------------------------------ request


@attrs.define
class Request:
    """A checked request. ``observation`` is what the backend sees; JPEG frames still to decode
    are in ``jpeg`` (camera key -> bytes) and get decoded off the event loop."""

    observation: dict[str, Any]
    jpeg: dict[str, bytes]
    request_id: int | None = None
    timestamp: float | None = None
    reset: bool = False


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _float_array(value: Any, key: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise ProtocolError(BAD_TYPE, f"{key} must be an ndarray, got {type(value).__name__}")
    if value.dtype.kind not in "fiu":
        raise ProtocolError(BAD_DTYPE, f"{key} must hold numbers, got dtype {value.dtype.name}")
    array = value.astype(np.float32, copy=False)
    if not np.all(np.isfinite(array)):
        raise ProtocolError(BAD_VALUE, f"{key} holds NaN or infinite values")
    return array


def check_request(message: dict[str, Any], metadata: dict[str, Any]) -> Request:
    """Check a decoded request against the server's metadata; ProtocolError names the problem."""
    cameras: dict[str, list[int]] = metadata["cameras"]
    image_keys = {IMAGE_PREFIX + name: tuple(shape) for name, shape in cameras.items()}
    allowed = {STATE_KEY, ENV_STATE_KEY, TASK_KEY, *image_keys, *OPTIONAL_KEYS}

    unknown = [k for k in message if k not in allowed]
    if unknown:
        shown = ", ".join(repr(k[:60]) for k in unknown[:3])
        raise ProtocolError(UNKNOWN_KEY, f"unknown key(s) {shown}; expected: {', '.join(sorted(allowed))}")
    missing = [k for k in (STATE_KEY, *image_keys) if k not in message]
    if missing:
        raise ProtocolError(MISSING_KEY, f"missing key(s): {', '.join(missing)}")

    observation: dict[str, Any] = {}
    jpeg: dict[str, bytes] = {}

    state = _float_array(message[STATE_KEY], STATE_KEY)
    if state.shape != (metadata["state_dim"],):
        raise ProtocolError(BAD_SHAPE, f"{STATE_KEY} must have shape ({metadata['state_dim']},), got {state.shape}")
    observation[STATE_KEY] = state

    for key, shape in image_keys.items():
        value = message[key]
        if isinstance(value, bytes):
            if not metadata["capabilities"].get("jpeg"):
                raise ProtocolError(JPEG_UNSUPPORTED, f"{key}: this server cannot decode JPEG frames; send a uint8 array")
            if len(value) > shape[0] * shape[1] * shape[2] + 65536:
                raise ProtocolError(TOO_LARGE, f"{key}: JPEG of {len(value)} bytes is larger than the raw frame")
            jpeg[key] = value
        elif isinstance(value, np.ndarray):
            if value.dtype != np.uint8:
                raise ProtocolError(BAD_DTYPE, f"{key} must be uint8 RGB, got dtype {value.dtype.name}")
            if value.shape != shape:
                raise ProtocolError(BAD_SHAPE, f"{key} must have shape {shape}, got {value.shape}")
            observation[key] = value
        else:
            raise ProtocolError(BAD_TYPE, f"{key} must be a uint8 ndarray or JPEG bytes, got {type(value).__name__}")

    if ENV_STATE_KEY in message:
        env = _float_array(message[ENV_STATE_KEY], ENV_STATE_KEY)
        if env.ndim != 1 or env.shape[0] > MAX_ENV_STATE:
            raise ProtocolError(BAD_SHAPE, f"{ENV_STATE_KEY} must be 1-D with at most {MAX_ENV_STATE} values, got {env.shape}")
        observation[ENV_STATE_KEY] = env

    task = message.get(TASK_KEY, "")
    if not isinstance(task, str):
        raise ProtocolError(BAD_TYPE, f"{TASK_KEY} must be a string, got {type(task).__name__}")
    if len(task) > MAX_TASK_CHARS:
        raise ProtocolError(TOO_LARGE, f"{TASK_KEY} is longer than {MAX_TASK_CHARS} characters")
    observation[TASK_KEY] = task

    timestamp = message.get("timestamp")
    if "timestamp" in message:
        if not isinstance(timestamp, (int, float)) or isinstance(timestamp, bool) or not math.isfinite(timestamp):
            raise ProtocolError(BAD_TYPE, f"timestamp must be a finite number of seconds, got {timestamp!r:.60}")
    request_id = message.get("request_id")
    if "request_id" in message and (not _is_int(request_id) or not -_INT64 <= request_id < _INT64):
        raise ProtocolError(BAD_TYPE, f"request_id must be a 64-bit integer, got {request_id!r:.60}")

    if "inference_delay" in message:
        delay = message["inference_delay"]
        if not _is_int(delay):
            raise ProtocolError(BAD_TYPE, f"inference_delay must be an integer (control ticks), got {delay!r:.60}")
        if not 0 <= delay <= max(metadata["horizon"], 1):
            raise ProtocolError(BAD_VALUE, f"inference_delay must be 0..{metadata['horizon']} ticks, got {delay}")
        observation["inference_delay"] = int(delay)
    if "prev_chunk" in message:
        prev = _float_array(message["prev_chunk"], "prev_chunk")
        if prev.ndim != 2 or prev.shape[1] != metadata["action_dim"] or prev.shape[0] > max(4 * metadata["horizon"], 1):
            raise ProtocolError(
                BAD_SHAPE,
                f"prev_chunk must have shape (n <= {4 * metadata['horizon']}, {metadata['action_dim']}), got {prev.shape}",
            )
        observation["prev_chunk"] = prev

    if "session" in message:
        session = message["session"]
        if not isinstance(session, str) or len(session) > MAX_SESSION_CHARS:
            raise ProtocolError(BAD_TYPE, f"session must be a string of at most {MAX_SESSION_CHARS} characters")
        observation["session"] = session
    reset = message.get("reset", False)
    if not isinstance(reset, bool):
        raise ProtocolError(BAD_TYPE, f"reset must be true or false, got {reset!r:.60}")
    if reset:
        observation["reset"] = True

    return Request(
        observation=observation,
        jpeg=jpeg,
        request_id=None if request_id is None else int(request_id),
        timestamp=None if timestamp is None else float(timestamp),
        reset=reset,
    )


# ------------------------------------------------------------------------------ reply


def check_chunk(chunk: Any, action_dim: int) -> np.ndarray:
    """A backend's answer as a finite (H, action_dim) float32 array; ProtocolError otherwise."""
    try:
        array = np.asarray(chunk, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(BAD_POLICY_OUTPUT, f"the policy returned something that is not an array: {exc}") from None
    if array.ndim != 2 or array.shape[1] != action_dim or array.shape[0] < 1:
        raise ProtocolError(BAD_POLICY_OUTPUT, f"the policy returned shape {array.shape}, expected (H, {action_dim})")
    if not np.all(np.isfinite(array)):
        raise ProtocolError(BAD_POLICY_OUTPUT, "the policy returned NaN or infinite actions")
    return np.ascontiguousarray(array)


def make_reply(actions: np.ndarray, request: Request, timing: dict[str, float]) -> dict[str, Any]:
    reply: dict[str, Any] = {"actions": actions, "server_timing": timing}
    if request.request_id is not None:
        reply["request_id"] = request.request_id
    if request.timestamp is not None:
        reply["timestamp"] = request.timestamp
    return reply


def make_error(code: str, message: str, request_id: int | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"error": {"code": code, "message": message}}
    if request_id is not None:
        error["request_id"] = request_id
    return error


def peek_request_id(message: Any) -> int | None:
    """The request_id of a (maybe invalid) request, to tag its error frame."""
    if isinstance(message, dict):
        rid = message.get("request_id")
        if _is_int(rid) and -_INT64 <= rid < _INT64:
            return int(rid)
    return None
