"""Rewarders wrapped for control experiments: flip a share of answers, invert them, or zero them.

``--rewarder-noise flip:0.2`` stands in for a noisy VLM (each answer flipped with probability
0.2: score s becomes 1 - s); ``invert`` flips every answer (the learner should learn to fail);
``zero`` answers 0 always (the learner should learn nothing). They wrap the rewarder inside the
real rewarder service, so the arms and the learner see them as they would see a real one.
"""

from __future__ import annotations

import re
import threading

import numpy as np

from vla.rewarder import Score

_FLIP = re.compile(r"^flip:(0(\.\d+)?|1(\.0+)?)$")


def parse_noise(text: str | None) -> tuple[str, float] | None:
    if text is None or text == "none":
        return None
    if text in ("invert", "zero"):
        return text, 1.0
    match = _FLIP.match(text)
    if not match:
        raise ValueError(f"expected none, invert, zero or flip:P with P in [0, 1], got {text!r}")
    return "flip", float(match.group(1))


class NoisyRewarder:
    def __init__(self, inner, kind: str, p: float = 1.0, seed: int = 0):
        if kind not in ("flip", "invert", "zero"):
            raise ValueError(f"unknown rewarder noise {kind!r}")
        self.inner = inner
        self.kind, self.p = kind, float(p)
        self.threshold = float(inner.threshold)
        self.thread_safe = bool(getattr(inner, "thread_safe", False))
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self.flipped = 0

    def warmup(self) -> None:
        warmup = getattr(self.inner, "warmup", None)
        if callable(warmup):
            warmup()

    def score(self, frames, goal: str) -> Score:
        result = self.inner.score(frames, goal)
        if self.kind == "zero":
            return Score(0.0, False, {**result.details, "noise": "zero"})
        with self._lock:
            flip = self.kind == "invert" or self._rng.random() < self.p
            self.flipped += int(flip)
        if not flip:
            return result
        score = 1.0 - float(result.score)
        return Score(score, score >= self.threshold, {**result.details, "noise": f"{self.kind}ped"})
