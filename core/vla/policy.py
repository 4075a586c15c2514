"""What `vla serve` needs from a policy backend. Policy plugins' factories return one of these.

A backend sees observations as dicts keyed the LeRobot way (see ``vla.robot``) plus
``task`` (the language goal) and, when the client uses real-time chunking,
``inference_delay`` (control ticks that will pass before the chunk starts executing) and
``prev_chunk`` (the unexecuted rest of the previous chunk, (n, action_dim) float32).
It answers one action chunk per observation: (horizon, action_dim) float32, absolute
joint positions in radians unless its metadata says otherwise.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import attrs


@attrs.frozen
class CameraContract:
    name: str  # the camera key without the "observation.images." prefix
    shape: tuple[int, int, int]  # (height, width, 3), uint8 RGB


@attrs.frozen
class PolicyInfo:
    """What a backend tells clients about itself; the server sends it as the metadata frame."""

    name: str
    cameras: tuple[CameraContract, ...]
    state_dim: int
    action_dim: int
    horizon: int
    supports_rtc: bool = False
    max_batch: int = 1
    extra: dict[str, Any] = attrs.field(factory=dict)
    # False promises that ``infer`` keeps no reference to the arrays it is given once it returns.
    # The server may then hand a fast backend views of the received message instead of copies
    # (vla.protocol.borrowed); it checks the promise after every such call.
    keeps_inputs: bool = True


@runtime_checkable
class PolicyBackend(Protocol):
    def info(self) -> PolicyInfo: ...

    def warmup(self) -> None:
        """Load weights and run one dummy call, so the first real request is fast."""

    def infer(self, batch: list[dict[str, Any]]) -> list[Any]:
        """One action chunk per observation, in order."""

    def reset(self) -> None:
        """Forget per-episode state (called when a client starts a new episode)."""
