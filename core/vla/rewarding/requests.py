"""The /score request and reply bodies, parsed strictly.

A score request is a map:
  goal        str, required: the task's goal text ("put the red cube in the blue bowl")
  frames      one frame or a list of frames, oldest first (see vla.rewarding.frames);
              ``frame`` is accepted as a synonym for a single frame
  episode_id  str, optional: smooth scores over this episode (when the service smooths)
  reset       bool, optional: start the episode's smoothing over
A batch request is ``{"items": [score request, ...]}``.

Bodies are JSON (``application/json``) or msgpack (``application/msgpack`` /
``application/x-msgpack``); msgpack maps may carry raw image bytes or openpi-style ndarrays.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from vla.rewarding.errors import BadRequest, RewarderError, TooLarge
from vla.rewarding.frames import Frame, decode_frames, frame_pixels, probe_frames

JSON_TYPES = ("application/json",)
MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")
MAX_GOAL_CHARS = 2000
MAX_EPISODE_ID_CHARS = 200
KNOWN_FIELDS = {"goal", "frames", "frame", "episode_id", "reset"}


@attrs.frozen
class Limits:
    max_pixels: int = 4096 * 4096  # per image
    # Per HTTP request, all items and frames together, counted from the image headers before
    # anything is decoded: 16 Mpx decode to 48 MB of RGB (64 frames of 512x512, or one 4096x4096).
    max_request_pixels: int = 16 * 1024 * 1024
    max_frames: int = 64  # per score request (one item of a batch)
    max_batch: int = 64  # items per /score/batch
    max_decodes: int = 2  # requests decoding at once, across all connections


@attrs.frozen
class ScoreRequest:
    frames: list[Frame]  # arrays, or probed images until ``decoded()``
    goal: str
    episode_id: str | None = None
    reset: bool = False

    @property
    def pixels(self) -> int:
        return sum(frame_pixels(f) for f in self.frames)

    def decoded(self) -> ScoreRequest:
        return attrs.evolve(self, frames=decode_frames(self.frames))


def check_pixel_budget(requests: list[ScoreRequest], limits: Limits) -> None:
    """Refuse (413) a request whose frames add up to more than ``max_request_pixels``, undecoded."""
    total = sum(r.pixels for r in requests)
    if total > limits.max_request_pixels:
        frames = sum(len(r.frames) for r in requests)
        raise TooLarge(
            "too_many_pixels",
            f"the request's {frames} frame(s) hold {total} pixels; the limit per request is {limits.max_request_pixels}",
        )


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_body(body: bytes, content_type: str | None) -> Any:
    kind = media_type(content_type)
    if kind in JSON_TYPES:
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, nesting
            raise BadRequest("bad_json", f"the body is not valid JSON ({str(exc)[:200]})") from None
    if kind in MSGPACK_TYPES:
        from vla.protocol.codec import decode
        from vla.protocol.errors import ProtocolError

        try:
            # the policy protocol's strict decoder: dtype allow-list, shape checks, never pickle
            return decode(body, max_bytes=None)
        except ProtocolError as exc:
            raise BadRequest(exc.code, f"msgpack body: {exc.message}") from None
    raise RewarderError(
        "unsupported_media_type",
        f"Content-Type {content_type!r} is not supported; send application/json or application/msgpack",
        status=415,
    )


def _get(obj: dict, name: str):
    return obj.get(name)


def parse_score_request(obj: Any, limits: Limits, where: str = "body") -> ScoreRequest:
    if not isinstance(obj, dict):
        raise BadRequest("wrong_type", f"{where}: expected a map with 'goal' and 'frames', got {type(obj).__name__}")
    unknown = sorted(str(k) for k in set(obj) - KNOWN_FIELDS)
    if unknown:
        raise BadRequest("unknown_field", f"{where}: unknown field(s) {unknown}; known: {sorted(KNOWN_FIELDS)}")
    goal = _get(obj, "goal")
    if goal is None:
        raise BadRequest("missing_goal", f"{where}: the 'goal' field (the task's goal text) is required")
    if not isinstance(goal, str):
        raise BadRequest("wrong_type", f"{where}.goal: expected a string, got {type(goal).__name__}")
    if not goal.strip():
        raise BadRequest("missing_goal", f"{where}.goal: the goal text is empty")
    if len(goal) > MAX_GOAL_CHARS:
        raise BadRequest("goal_too_long", f"{where}.goal: {len(goal)} characters is over {MAX_GOAL_CHARS}")
    payload = _get(obj, "frames")
    name = "frames"
    if payload is None:
        payload, name = _get(obj, "frame"), "frame"
    if payload is None:
        raise BadRequest("missing_frames", f"{where}: the 'frames' field (one frame or a list) is required")
    frames = probe_frames(payload, f"{where}.{name}", limits.max_pixels, limits.max_frames)
    episode_id = _get(obj, "episode_id")
    if episode_id is not None and (not isinstance(episode_id, str) or len(episode_id) > MAX_EPISODE_ID_CHARS):
        raise BadRequest(
            "wrong_type", f"{where}.episode_id: expected a string of at most {MAX_EPISODE_ID_CHARS} characters"
        )
    reset = _get(obj, "reset")
    if reset is None:
        reset = False
    if not isinstance(reset, bool):
        raise BadRequest("wrong_type", f"{where}.reset: expected true or false, got {type(reset).__name__}")
    return ScoreRequest(frames=frames, goal=goal.strip(), episode_id=episode_id, reset=reset)


def parse_batch_request(obj: Any, limits: Limits) -> list[ScoreRequest]:
    if not isinstance(obj, dict) or _get(obj, "items") is None:
        raise BadRequest("wrong_type", "body: expected a map {'items': [score request, ...]}")
    items = _get(obj, "items")
    if not isinstance(items, list):
        raise BadRequest("wrong_type", f"body.items: expected a list, got {type(items).__name__}")
    if not items:
        raise BadRequest("no_items", "body.items: expected at least one score request")
    if len(items) > limits.max_batch:
        raise RewarderError("batch_too_large", f"body.items: {len(items)} items is over the limit of {limits.max_batch}", 413)
    return [parse_score_request(item, limits, f"items[{i}]") for i, item in enumerate(items)]


def clamp01(value: float) -> float:
    value = float(value)
    if value != value:  # NaN: a broken rewarder must not report success
        return 0.0
    return min(1.0, max(0.0, value))
