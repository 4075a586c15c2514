"""CMA-ES as an online trainer (vla.learning.contract.OnlineTrainer).

The search runs in the unit cube: parameter i is ``low_i + x_i * (high_i - low_i)``, so one
step size suits grasp offsets in metres and yaw in radians alike, and ``cma``'s bound handling
keeps every candidate inside the ranges the policy declared.

A round is one CMA-ES generation: ``popsize`` candidates, each run once on each of the round's
layouts (the loop draws them fresh per round and gives every candidate the same ones: common
random numbers, so a candidate is not preferred for a lucky layout). Its fitness is the mean of
``score - effort_per_m * path_m`` over those episodes.

State is JSON: the seed, the settings, the space and every finished round's candidates and
fitnesses. ``load_state`` replays the rounds through a new ``CMAEvolutionStrategy`` whose
normal samples come from a generator seeded the same way, so the replayed search asks for
exactly the stored candidates (this is checked) and continues as the killed one would have.
"""

from __future__ import annotations

from typing import Any, Sequence

import attrs
import numpy as np

from vla.learning.contract import Candidate, EpisodeOutcome, LearningError, fitness, parameter_space
from vla_cmaes.config import CMAESConfig

STATE_KIND = "cmaes/1"
SHORTLIST_ROUNDS = 3  # the shortlist looks at this many recent rounds


class CMAESTrainer:
    def __init__(self, config: CMAESConfig | None = None, *, space: Sequence[Any], seed: int = 0):
        self.config = config or CMAESConfig()
        self.space = parameter_space(space)
        self.seed = int(seed)
        self.episodes_per_candidate = int(self.config.layouts_per_generation)
        self._low = np.array([p.low for p in self.space])
        self._span = np.array([p.high - p.low for p in self.space])
        self._history: list[dict[str, Any]] = []
        self._start()

    # ---------------------------------------------------------------- search state

    def _start(self) -> None:
        import cma

        rng = np.random.default_rng(self.seed)
        x0 = [(p.init - p.low) / (p.high - p.low) for p in self.space]
        options = {
            "bounds": [0.0, 1.0],
            "seed": self.seed + 1,  # cma seeds numpy's global generator with it; ours draws the samples
            "randn": lambda *shape: rng.standard_normal(shape),
            "verbose": -9,
            "verb_log": 0,
            "verb_disp": 0,
        }
        if self.config.popsize is not None:
            options["popsize"] = int(self.config.popsize)
        self._es = cma.CMAEvolutionStrategy(x0, float(self.config.sigma0), options)
        self._ask()

    def _ask(self) -> None:
        self._x = [np.asarray(x, dtype=float) for x in self._es.ask()]
        g = len(self._history)
        self._ids = [f"g{g}c{i}" for i in range(len(self._x))]
        self._fitness: dict[str, list[float]] = {cid: [] for cid in self._ids}
        self._handed = 0

    def _params(self, x) -> dict[str, float]:
        values = self._low + np.clip(np.asarray(x, dtype=float), 0.0, 1.0) * self._span
        return {p.name: float(v) for p, v in zip(self.space, values)}

    # ---------------------------------------------------------------- contract

    @property
    def generation(self) -> int:
        return len(self._history)

    @property
    def popsize(self) -> int:
        return len(self._x)

    def propose(self) -> Candidate | None:
        if self._handed >= len(self._x):
            return None
        i = self._handed
        self._handed += 1
        return Candidate(self._ids[i], self._params(self._x[i]))

    def ingest(self, outcome: EpisodeOutcome) -> None:
        scores = self._fitness.get(outcome.candidate_id)
        if scores is None:
            raise LearningError(f"outcome for {outcome.candidate_id!r}, which is not a candidate of round {self.generation}")
        if len(scores) >= self.episodes_per_candidate:
            raise LearningError(f"candidate {outcome.candidate_id!r} already has its {self.episodes_per_candidate} episodes")
        scores.append(fitness(outcome, self.config.effort_per_m))

    def complete(self) -> bool:
        return self._handed >= len(self._x) and all(
            len(v) >= self.episodes_per_candidate for v in self._fitness.values()
        )

    def update(self) -> dict[str, Any]:
        if not self.complete():
            missing = {k: self.episodes_per_candidate - len(v) for k, v in self._fitness.items()
                       if len(v) < self.episodes_per_candidate}
            raise LearningError(f"round {self.generation} is not complete: episodes missing {missing}")
        f = [float(np.mean(self._fitness[cid])) for cid in self._ids]
        self._es.tell([x.copy() for x in self._x], [-v for v in f])  # cma minimises
        self._history.append({"ids": list(self._ids), "x": [x.tolist() for x in self._x], "fitness": f})
        stats = {"generation": self.generation, "best_fitness": max(f), "mean_fitness": float(np.mean(f)),
                 "sigma": float(self._es.sigma)}
        self._ask()
        return stats

    def best(self) -> dict[str, float]:
        """The distribution's mean: CMA-ES's own estimate of the optimum, steadier than any one
        candidate's noisy score."""
        return self._params(self._es.result.xfavorite)

    def shortlist(self, n: int) -> list[Candidate]:
        out = [Candidate(f"mean-g{self.generation}", self.best())]
        recent = [(f, cid, x) for h in self._history[-SHORTLIST_ROUNDS:]
                  for f, cid, x in zip(h["fitness"], h["ids"], h["x"])]
        for _f, cid, x in sorted(recent, key=lambda r: -r[0]):
            if len(out) >= n:
                break
            out.append(Candidate(cid, self._params(x)))
        return out[:n]

    # ---------------------------------------------------------------- state

    def state(self) -> dict[str, Any]:
        return {
            "kind": STATE_KIND,
            "seed": self.seed,
            "config": attrs.asdict(self.config),
            "space": [attrs.asdict(p) for p in self.space],
            "history": [dict(h) for h in self._history],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("kind") != STATE_KIND:
            raise LearningError(f"not a CMA-ES state (kind {state.get('kind')!r}, expected {STATE_KIND!r})")
        names = [p["name"] for p in state.get("space", [])]
        if names != [p.name for p in self.space]:
            raise LearningError(f"the saved parameters {names} are not this policy's {[p.name for p in self.space]}")
        saved = CMAESConfig(**state["config"])
        if saved != self.config:
            raise LearningError(f"the saved settings {attrs.asdict(saved)} differ from these {attrs.asdict(self.config)}")
        self.seed = int(state["seed"])
        self._history = []
        self._start()
        for g, h in enumerate(state["history"]):
            if len(h["x"]) != len(self._x) or not np.allclose(np.array(h["x"]), np.array(self._x), atol=1e-9):
                raise LearningError(f"replaying round {g} asked for other candidates than the saved ones: "
                                    "the checkpoint was written by another version of cma or of this trainer")
            self._x = [np.asarray(x, dtype=float) for x in h["x"]]
            self._ids = list(h["ids"])
            self._fitness = {cid: [v] * self.episodes_per_candidate for cid, v in zip(self._ids, h["fitness"])}
            self._handed = len(self._x)
            self.update()
