"""Test policies that speak the real ``PolicyBackend`` interface.

``TimedPolicy`` stands in for a model on a GPU (which cannot run here): a batch call sleeps for
a set time, like a GPU kernel it does not hold the GIL, and its chunks are computed from each
observation's state so that a test can tell whether every client got its own answer.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import numpy as np

from vla.builtins import TimedPolicyConfig
from vla.policy import CameraContract, PolicyInfo


def expected_chunk(
    state,
    horizon: int = 50,
    action_dim: int = 6,
    step: float = 0.01,
    inference_delay: int = 0,
    prev_chunk=None,
) -> np.ndarray:
    """The chunk ``TimedPolicy`` answers: action t (1-based) is ``state + t * step * (+1, -1, +1, ...)``.

    With real-time chunking inputs, the first ``inference_delay`` actions are the matching
    actions of ``prev_chunk`` (they execute while the model runs, so an RTC policy keeps them).
    """
    base = np.zeros(action_dim, np.float64)
    state = np.asarray(state, np.float64).reshape(-1)
    n = min(action_dim, state.shape[0])
    base[:n] = state[:n]
    signs = np.where(np.arange(action_dim) % 2 == 0, 1.0, -1.0)
    t = np.arange(1, horizon + 1, dtype=np.float64)[:, None]
    chunk = (base + step * t * signs).astype(np.float32)
    if prev_chunk is not None and inference_delay:
        prev = np.asarray(prev_chunk, np.float32)
        d = min(int(inference_delay), prev.shape[0], horizon)
        chunk[:d] = prev[:d, :action_dim]
    return chunk


class TimedPolicy:
    """A ``PolicyBackend`` whose batch call costs ``batch_cost_ms`` (+ ``item_cost_ms`` each)."""

    keeps_inputs = False  # it keeps no observation; a subclass that does must say True

    def __init__(self, config: TimedPolicyConfig | None = None):
        self.config = config or TimedPolicyConfig()
        self._rng = random.Random(self.config.seed)
        self._lock = threading.Lock()
        self.calls = 0  # batch calls so far
        self.batch_sizes: list[int] = []
        self.resets = 0
        self.warmed_up = False

    def info(self) -> PolicyInfo:
        c = self.config
        return PolicyInfo(
            name="timed",
            cameras=tuple(CameraContract(name, tuple(shape)) for name, shape in c.cameras.items()),
            state_dim=c.state_dim,
            action_dim=c.action_dim,
            horizon=c.horizon,
            supports_rtc=c.supports_rtc,
            max_batch=c.max_batch,
            keeps_inputs=self.keeps_inputs,
        )

    def warmup(self) -> None:
        if self.config.warmup_s > 0:
            time.sleep(self.config.warmup_s)
        if self.config.fail_warmup:
            raise RuntimeError("warm-up failed on purpose (fail_warmup is set)")
        self.warmed_up = True

    def _cost_s(self, n: int) -> float:
        c = self.config
        cost = c.batch_cost_ms + c.item_cost_ms * n
        if c.jitter_ms:
            with self._lock:
                cost += self._rng.uniform(-c.jitter_ms, c.jitter_ms)
        return max(0.0, cost) / 1000.0

    def infer(self, batch: list[dict[str, Any]]) -> list[np.ndarray]:
        c = self.config
        cost = self._cost_s(len(batch))
        if cost:
            time.sleep(cost)
        if c.fail_task is not None and any(obs.get("task") == c.fail_task for obs in batch):
            raise RuntimeError(f"the policy fails on task {c.fail_task!r} on purpose")
        with self._lock:
            self.calls += 1
            self.batch_sizes.append(len(batch))
        rtc = c.supports_rtc
        return [
            expected_chunk(
                obs["observation.state"],
                c.horizon,
                c.action_dim,
                c.step,
                obs.get("inference_delay", 0) if rtc else 0,
                obs.get("prev_chunk") if rtc else None,
            )
            for obs in batch
        ]

    def reset(self) -> None:
        with self._lock:
            self.resets += 1


class ChunkList:
    """A ``PolicyBackend`` that answers the chunks it was given, in turn, whatever they are (for
    safety and merge tests: wrong shapes, NaN, wild values). It keeps every observation in ``seen``."""

    def __init__(self, chunks, horizon: int = 10, supports_rtc: bool = True, n_joints: int = 6):
        self.chunks = list(chunks)
        self.horizon = horizon
        self.supports_rtc = supports_rtc
        self.n_joints = n_joints
        self.seen: list[dict] = []
        self._i = 0

    def info(self) -> PolicyInfo:
        return PolicyInfo("chunks", (), self.n_joints, self.n_joints, self.horizon, supports_rtc=self.supports_rtc)

    def warmup(self) -> None:
        pass

    def reset(self) -> None:
        pass

    def infer(self, batch):
        out = []
        for obs in batch:
            self.seen.append(obs)
            out.append(self.chunks[self._i % len(self.chunks)])
            self._i += 1
        return out
