"""The plan: joint targets indexed by control tick, and how a new chunk merges into it.

Time is counted in control ticks from the start of an episode. A chunk answered for an
observation taken at tick ``n`` holds the targets for ticks ``n+1, n+2, ...`` (its first
action is the one meant to follow the observation). By the time the chunk arrives some of
those ticks have passed; their actions are stale and never enter the plan.

Merge modes (``MERGE_MODES``):
- ``latest``: the new chunk replaces the plan from the next tick on.
- ``weighted_average``: where the old plan and the new chunk overlap, 0.3 old + 0.7 new
  (the weighting LeRobot's async client uses); beyond the overlap, the new chunk.
- ``rtc`` (real-time chunking): the request carried the inference delay ``d`` (ticks) and the
  unexecuted rest of the plan; the policy keeps its first ``d`` actions equal to that rest, so
  the client drops them and keeps executing the old plan through tick ``n+d``; the new chunk
  takes over from tick ``n+d+1`` (or at once, if the old plan ends earlier, so no gap opens).
"""

from __future__ import annotations

import attrs
import numpy as np

LATEST = "latest"
WEIGHTED_AVERAGE = "weighted_average"
RTC = "rtc"
MERGE_MODES = (LATEST, WEIGHTED_AVERAGE, RTC)

OLD_WEIGHT = 0.3  # weighted_average: 0.3 old + 0.7 new where chunks overlap


@attrs.frozen
class MergeInfo:
    first_tick: int  # first tick whose target the new chunk decided
    stale: int  # actions of the new chunk whose tick had already come (or were frozen by RTC)
    overlap: int  # ticks where the old plan and the new chunk both had a target
    discontinuity: float  # largest joint jump at the seam, radians (vs the previous tick's target)
    plan_change: float  # largest change to a target the old plan already had, radians


class ActionQueue:
    """Targets for consecutive ticks ``start, start+1, ...``; each remembers which chunk set it."""

    def __init__(self, action_dim: int):
        self.action_dim = action_dim
        self.clear()

    def clear(self, start: int = 0) -> None:
        self.start = start
        self.actions = np.zeros((0, self.action_dim), dtype=np.float64)
        self.sources = np.zeros(0, dtype=np.int64)

    @property
    def end(self) -> int:
        """One past the last planned tick."""
        return self.start + len(self.actions)

    def length_from(self, tick: int) -> int:
        return max(0, self.end - max(tick, self.start))

    def rest(self, tick: int) -> np.ndarray:
        """Targets for ticks >= ``tick`` (the unexecuted rest of the plan)."""
        return self.actions[max(0, tick - self.start):].copy()

    def target(self, tick: int) -> np.ndarray | None:
        i = tick - self.start
        return self.actions[i] if 0 <= i < len(self.actions) else None

    def drop_before(self, tick: int) -> int:
        """Forget targets for ticks before ``tick``; returns how many were dropped."""
        n = min(max(0, tick - self.start), len(self.actions))
        if n:
            self.actions, self.sources = self.actions[n:], self.sources[n:]
        self.start = max(self.start, tick) if len(self.actions) else tick
        return n

    def pop(self, tick: int) -> tuple[np.ndarray | None, int | None, int]:
        """The target for ``tick`` and its chunk id (None when there is none), and how many
        targets for earlier ticks were dropped unexecuted."""
        expired = self.drop_before(tick)
        if len(self.actions) and self.start == tick:
            action, source = self.actions[0], int(self.sources[0])
            self.actions, self.sources = self.actions[1:], self.sources[1:]
            self.start = tick + 1
            return action, source, expired
        return None, None, expired

    def merge(
        self,
        chunk: np.ndarray,
        chunk_start: int,
        next_tick: int,
        mode: str,
        chunk_id: int,
        last_command: np.ndarray,
        inference_delay: int = 0,
    ) -> MergeInfo:
        """Merge ``chunk`` (targets for ticks ``chunk_start ...``) into the plan; ``next_tick`` is
        the first tick that has not been executed yet."""
        if mode not in MERGE_MODES:
            raise ValueError(f"unknown merge mode {mode!r} (expected one of {', '.join(MERGE_MODES)})")
        if chunk_start > next_tick:
            raise ValueError(f"a chunk starting at tick {chunk_start} cannot arrive before tick {next_tick}")
        chunk = np.asarray(chunk, dtype=np.float64)
        self.drop_before(next_tick)
        old_start, old = self.start, self.actions
        old_end = old_start + len(old)
        chunk_end = chunk_start + len(chunk)

        first = max(next_tick, chunk_start)
        if mode == RTC:
            # Keep the old plan through the frozen prefix, but never open a gap after it ends.
            first = max(first, min(chunk_start + inference_delay, max(old_end, next_tick)))
        first = min(first, chunk_end)
        stale = first - chunk_start
        new = chunk[stale:]

        keep = old[: max(0, first - old_start)] if len(old) else old  # old targets before `first`
        overlap_end = min(old_end, chunk_end)
        overlap = max(0, overlap_end - first)
        plan_change = 0.0
        if overlap:
            old_part = old[first - old_start : overlap_end - old_start]
            if mode == WEIGHTED_AVERAGE:
                new = new.copy()
                new[:overlap] = OLD_WEIGHT * old_part + (1.0 - OLD_WEIGHT) * new[:overlap]
            plan_change = float(np.max(np.abs(new[:overlap] - old_part)))

        start = next_tick if len(keep) else first
        actions = np.concatenate([keep, new]) if len(keep) else new.copy()
        sources = np.concatenate(
            [self.sources[: len(keep)], np.full(len(new), chunk_id, dtype=np.int64)]
        )
        discontinuity = 0.0
        if len(new):
            before = keep[-1] if len(keep) else np.asarray(last_command, dtype=np.float64)
            discontinuity = float(np.max(np.abs(new[0] - before)))
        self.start, self.actions, self.sources = start, actions, sources
        return MergeInfo(first, stale, overlap, discontinuity, plan_change)
