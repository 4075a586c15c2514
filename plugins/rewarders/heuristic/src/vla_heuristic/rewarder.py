"""The heuristic rewarder: the goal text picks a task rule; the rule scores the frames."""

from __future__ import annotations

from typing import Any

import numpy as np

from vla.rewarder import Score

from vla_heuristic.config import HeuristicConfig
from vla_heuristic.rules import RuleSet, Scene, load_rules


class HeuristicRewarder:
    # pure functions of the frames: the service may call it from many threads at once
    thread_safe = True

    def __init__(self, config: HeuristicConfig | None = None, rules: RuleSet | None = None):
        self.config = config or HeuristicConfig()
        if not 0.0 <= self.config.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.config.threshold}")
        self.rules = rules or load_rules(self.config.rules)
        self.threshold = float(self.config.threshold)

    def score(self, frames: list[Any], goal: str) -> Score:
        if isinstance(frames, np.ndarray) and frames.ndim == 3:
            frames = [frames]
        frames = [np.asarray(f) for f in frames]
        if not frames:
            raise ValueError("expected at least one frame")
        for i, f in enumerate(frames):
            if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
                raise ValueError(f"frame {i}: expected HxWx3 uint8 RGB, got {f.dtype} {f.shape}")
        task = self.rules.find(goal)
        scenes = [Scene(f, self.rules.colours, task.roi) for f in frames]
        hold = min(task.hold_frames, len(scenes))
        values, details = [], {}
        for end in range(len(scenes) - hold + 1, len(scenes) + 1):
            # each held frame is judged as the clip's last frame (raised compares with frame 0)
            value, details = task.rule.evaluate(scenes[:end], self.rules.min_area)
            values.append(value)
        score = float(np.median(values))
        details = {"task": task.id, "rule": task.rule.kind, **details}
        if hold > 1:
            details["held_scores"] = [round(v, 4) for v in values]
        return Score(score=score, success=score >= self.threshold, details=details)
