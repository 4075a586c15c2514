"""Per-episode exponential moving average of scores, so one noisy frame does not flip success.

s_t = alpha * raw_t + (1 - alpha) * s_{t-1}, starting from the first raw score. Episodes are
keyed by the id the client sends; the least recently used ones are forgotten past a bound so
a long-running service does not grow without limit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class EpisodeSmoother:
    def __init__(self, alpha: float, max_episodes: int = 4096):
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"EMA alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self.max_episodes = max_episodes
        self._state: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def update(self, episode_id: str, raw: float, reset: bool = False) -> float:
        with self._lock:
            previous = None if reset else self._state.pop(episode_id, None)
            value = raw if previous is None else self.alpha * raw + (1.0 - self.alpha) * previous
            self._state[episode_id] = value
            self._state.move_to_end(episode_id)
            while len(self._state) > self.max_episodes:
                self._state.popitem(last=False)
            return value

    def forget(self, episode_id: str) -> None:
        with self._lock:
            self._state.pop(episode_id, None)

    def __len__(self) -> int:
        return len(self._state)
