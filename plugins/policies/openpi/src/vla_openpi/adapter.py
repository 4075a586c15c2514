"""Translating between vla's observations and what an openpi policy server reads and answers.

vla's client sends LeRobot-named keys (``observation.state``, ``observation.images.front``,
``task``); openpi's policies read the keys of their example (``observation/image``, ...,
``prompt``). ``to_openpi`` builds the openpi request from a vla observation and
``from_openpi`` takes the action chunk out of openpi's reply. The run client applies them
when it talks to an openpi server directly; the `pi0`/`pi0-fast` backend (remote.py) applies
them when `vla serve` fronts one. Pure numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vla_openpi.config import KeyMap

STATE_KEY = "observation.state"
IMAGE_PREFIX = "observation.images."


class KeyMapError(ValueError):
    """An observation or reply that does not fit the key map; the message names the key."""


def to_openpi(obs: dict[str, Any], keys: KeyMap) -> dict[str, Any]:
    """The openpi request for one vla observation (images stay HxWx3 uint8, as openpi's examples send)."""
    request: dict[str, Any] = {}
    for camera, key in keys.images.items():
        frame = obs.get(IMAGE_PREFIX + camera)
        if frame is None:
            raise KeyMapError(f"observation is missing {IMAGE_PREFIX + camera!r}, which the key map sends as {key!r}")
        request[key] = np.asarray(frame) if not isinstance(frame, (bytes, bytearray)) else _decode(frame, camera)
    if keys.state:
        if STATE_KEY not in obs:
            raise KeyMapError(f"observation is missing {STATE_KEY!r}")
        state = np.asarray(obs[STATE_KEY], dtype=np.float32).reshape(-1)
        if keys.state_pad_to is not None:
            if state.size > keys.state_pad_to:
                raise KeyMapError(f"{STATE_KEY} has {state.size} values, more than state_pad_to={keys.state_pad_to}")
            state = np.concatenate([state, np.zeros(keys.state_pad_to - state.size, np.float32)])
        for part in keys.state:
            request[part.key] = state[part.start : part.stop]
    request[keys.prompt] = str(obs.get("task") or "")
    return request


def _decode(data: bytes, camera: str) -> np.ndarray:
    import cv2

    decoded = cv2.imdecode(np.frombuffer(bytes(data), np.uint8), cv2.IMREAD_COLOR)
    if decoded is None:
        raise KeyMapError(f"{IMAGE_PREFIX + camera}: bytes that are not a JPEG image")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def from_openpi(reply: dict[str, Any], keys: KeyMap) -> np.ndarray:
    """The (H, A) float32 action chunk in an openpi reply."""
    if not isinstance(reply, dict) or keys.actions not in reply:
        got = sorted(reply) if isinstance(reply, dict) else type(reply).__name__
        raise KeyMapError(f"openpi reply has no {keys.actions!r} (got {got})")
    actions = np.asarray(reply[keys.actions], dtype=np.float32)
    if actions.ndim == 1:
        actions = actions[None, :]
    if actions.ndim != 2:
        raise KeyMapError(f"openpi {keys.actions!r}: expected (H, D), got shape {actions.shape}")
    if keys.action_dim is not None:
        if actions.shape[1] < keys.action_dim:
            raise KeyMapError(f"openpi {keys.actions!r} has {actions.shape[1]} columns, fewer than action_dim={keys.action_dim}")
        actions = actions[:, : keys.action_dim]
    return np.ascontiguousarray(actions)


class OpenpiAdapter:
    """What `vla run --adapter pi0-fast` puts between the control loop and openpi's own server."""

    def __init__(self, config):
        self.keys = config.keys

    def request(self, observation: dict[str, Any]) -> dict[str, Any]:
        return to_openpi(observation, self.keys)

    def actions(self, reply: dict[str, Any]) -> np.ndarray:
        return from_openpi(reply, self.keys)

    def server_key_map(self) -> dict[str, str]:
        """The same map read backwards, for `vla serve --adapter pi0`: openpi's keys -> vla's, so
        that openpi's own example clients drive a vla policy unchanged."""
        state = self.keys.state
        if len(state) != 1 or state[0].start != 0 or state[0].stop is not None or self.keys.state_pad_to is not None:
            raise ValueError("this key map splits or pads observation.state, which a key rename cannot undo")
        key_map = {key: IMAGE_PREFIX + camera for camera, key in self.keys.images.items()}
        key_map[state[0].key] = STATE_KEY
        key_map[self.keys.prompt] = "task"
        return key_map
