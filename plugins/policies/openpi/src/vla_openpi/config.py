"""Config for the `pi0` and `pi0-fast` policies (`plugins.pi0` / `plugins.pi0-fast` in vla.yaml).

openpi's policies read the keys of the example their training config was written for (the
LIBERO example: ``observation/image``, ``observation/wrist_image``, ``observation/state``,
``prompt``; DROID: ``observation/exterior_image_1_left``, ``observation/wrist_image_left``,
``observation/joint_position``, ``observation/gripper_position``, ``prompt``) and answer
``actions`` of shape (H, D) in that dataset's units. ``KeyMap`` connects vla's LeRobot-named
observation to those keys.
"""

from __future__ import annotations

import attrs

# openpi's policy server listens on 8000 inside its container (scripts/serve_policy.py --port).
OPENPI_PORT = 8000


@attrs.define
class StateSlice:
    """Part of ``observation.state`` sent under one openpi key (DROID splits joints and gripper)."""

    key: str
    start: int = 0
    stop: int | None = None  # None: to the end


@attrs.define
class KeyMap:
    """vla observation keys -> the keys an openpi policy reads, and its answer back."""

    # lab camera name -> openpi image key
    images: dict[str, str] = attrs.field(factory=lambda: {"front": "observation/image", "wrist": "observation/wrist_image"})
    # how observation.state is sent: one or more slices of it under openpi keys
    state: list[StateSlice] = attrs.field(factory=lambda: [StateSlice("observation/state")])
    # zero-pad the state to this length (LIBERO's policies read 8 values); None: as is
    state_pad_to: int | None = None
    prompt: str = "prompt"
    actions: str = "actions"
    # keep the first action_dim columns of the answer (openpi pads actions to the model's width)
    action_dim: int | None = 6


@attrs.define
class OpenPIConfig:
    # Where `vla serve --policy pi0|pi0-fast` finds the openpi server it fronts (see remote.py).
    server_url: str = f"ws://127.0.0.1:{OPENPI_PORT}"
    api_key: str | None = None  # openpi-client sends it; openpi's server ignores it
    keys: KeyMap = attrs.field(factory=KeyMap)
    # openpi's server sends no observation contract; what a vla client should send:
    cameras: dict[str, list[int]] = attrs.field(factory=lambda: {"front": [224, 224, 3], "wrist": [224, 224, 3]})
    state_dim: int = 6
    horizon: int = 50  # openpi's pi0 configs answer 50 actions (action_horizon)
    connect_timeout_s: float = 10.0


@attrs.define
class Pi0FastConfig(OpenPIConfig):
    horizon: int = 10  # openpi's pi0-FAST LIBERO and DROID configs answer 10 actions
