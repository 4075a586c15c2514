"""A tiny learnable policy for the real-arm test of `vla learn` (the kinematic arm has no cubes
for the primitives to find). It speaks the learnable-policy interface the primitives do:
``parameter_space(goal)``, ``set_parameter_source(source)`` and ``source.params_for(session)``
at each episode's first request. Its one parameter is where the shoulder turns to."""

from __future__ import annotations

import numpy as np

from vla import hookimpl
from vla.learning.contract import Param
from vla.policy import CameraContract, PolicyInfo
from vla.specs import PolicySpec

HORIZON = 15


class ReachPolicy:
    def __init__(self, config=None):
        self.source = None
        self.sessions: dict[str, float] = {}

    def parameter_space(self, goal: str):
        return [Param("pan", -1.0, 1.0, 0.0)]

    def set_parameter_source(self, source) -> None:
        self.source = source

    def info(self) -> PolicyInfo:
        return PolicyInfo(name="reach-test", cameras=(CameraContract("front", (96, 128, 3)),), state_dim=6,
                          action_dim=6, horizon=HORIZON)

    def warmup(self) -> None:
        pass

    def reset(self) -> None:
        pass

    def infer(self, batch):
        out = []
        for obs in batch:
            session = obs.get("session", "")
            if obs.get("reset") or session not in self.sessions:
                self.sessions[session] = float(self.source.params_for(session)["pan"])
            q = np.asarray(obs["observation.state"], dtype=np.float32)
            target = q.copy()
            target[0] = self.sessions[session]
            # small steps toward the target: the safety layer's step limit stays quiet
            steps = np.linspace(0.0, 1.0, HORIZON + 1, dtype=np.float32)[1:, None]
            out.append((q + steps * (target - q)).astype(np.float32))
        return out


class Plugin:
    @staticmethod
    @hookimpl
    def register_policies(register):
        register(PolicySpec(name="reach-test", description="Test: a learnable one-parameter reach (vla learn tests).",
                            factory="learn_standin:ReachPolicy"))
