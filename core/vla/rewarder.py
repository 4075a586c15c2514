"""What `vla serve-rewarder` needs from a rewarder. Rewarder plugins' factories return one of these."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import attrs


@attrs.frozen
class Score:
    score: float  # in [0, 1]
    success: bool  # score >= the rewarder's threshold
    details: dict[str, Any] = attrs.field(factory=dict)


@runtime_checkable
class Rewarder(Protocol):
    threshold: float

    def score(self, frames: list[Any], goal: str) -> Score:
        """Score one frame or a short clip (HxWx3 uint8 RGB arrays, oldest first) against the goal."""
