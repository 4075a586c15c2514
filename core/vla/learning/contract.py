"""What `vla learn` asks of an online trainer, and what it hands one.

An online trainer searches a small box of named parameters (a policy's parameter space). The
loop asks it for candidates (``propose``), runs each on the arms, gives it each episode's
outcome (``ingest``), and calls ``update`` when it says a round is complete. It never sees the
simulator's own success check: an ``EpisodeOutcome`` carries only what the rewarder replied
(its score and success flag) and what the arm measured about its own motion (time, path
length, safety events). ``state()`` is the trainer's whole state as plain JSON-ready data, so a
checkpoint is a text file and ``load_state`` continues exactly where ``state`` left off.

A trainer plugin registers ``TrainerSpec(mode="online", factory=...)``; the factory is called
as ``factory(config, space=[Param, ...], seed=int)``.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, Sequence, runtime_checkable

import attrs


class LearningError(RuntimeError):
    """The learning run cannot start or go on; the message says why."""


def _finite(_inst, attribute, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be a finite number, got {value!r}")


@attrs.frozen
class Param:
    """One dimension of a policy's parameter space: a name, its range and where to start."""

    name: str
    low: float = attrs.field(validator=_finite)
    high: float = attrs.field(validator=_finite)
    init: float = attrs.field(validator=_finite)

    def __attrs_post_init__(self):
        if not self.low < self.high:
            raise ValueError(f"parameter {self.name!r}: low {self.low} must be below high {self.high}")
        if not self.low <= self.init <= self.high:
            raise ValueError(f"parameter {self.name!r}: init {self.init} is outside [{self.low}, {self.high}]")

    @classmethod
    def of(cls, other: Any) -> Param:
        """A Param from any object with ``name``, ``low``, ``high`` and ``init`` (a policy plugin's own class)."""
        return cls(str(other.name), float(other.low), float(other.high), float(other.init))


def parameter_space(params: Sequence[Any]) -> tuple[Param, ...]:
    space = tuple(Param.of(p) for p in params)
    if not space:
        raise LearningError("the policy's parameter space is empty")
    names = [p.name for p in space]
    if len(set(names)) != len(names):
        raise LearningError(f"the policy's parameter names repeat: {names}")
    return space


@attrs.frozen
class Candidate:
    """Parameters to try: ``id`` is unique within a run, ``params`` maps every parameter name to a value."""

    id: str
    params: dict[str, float]


@attrs.frozen
class EpisodeOutcome:
    """One episode of one candidate, as the learner may know it: the rewarder's verdict and the
    arm's own measurements. There is no field for the simulator's success check, on purpose."""

    candidate_id: str
    score: float  # the rewarder's score, in [0, 1]
    success: bool  # the rewarder's success flag (score >= its threshold)
    length_s: float  # control time the episode took
    path_m: float  # distance the tool point travelled (forward kinematics of the commands)
    safety_events: int  # commands the safety layer clamped or rejected
    arm: str

    def __attrs_post_init__(self):
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"score must be in [0, 1], got {self.score!r}")


@runtime_checkable
class OnlineTrainer(Protocol):
    episodes_per_candidate: int  # each candidate runs this many episodes per round (one per layout)
    popsize: int  # candidates per round

    @property
    def generation(self) -> int:
        """Rounds completed so far (0 before the first ``update``)."""

    def propose(self) -> Candidate | None:
        """The next candidate of the current round, or None when every one has been handed out."""

    def ingest(self, outcome: EpisodeOutcome) -> None:
        """One episode's outcome for a candidate of the current round."""

    def complete(self) -> bool:
        """Whether every candidate of the round has all its episodes ingested."""

    def update(self) -> dict[str, Any]:
        """Learn from the round and start the next; returns the round's figures (best fitness, ...)."""

    def state(self) -> dict[str, Any]:
        """The whole state, JSON-ready."""

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from what ``state()`` returned (possibly in another process)."""

    def best(self) -> dict[str, float]:
        """The parameters the trainer believes best so far (its mean, for CMA-ES)."""

    def shortlist(self, n: int) -> list[Candidate]:
        """Up to ``n`` candidates worth checking on held-out layouts at the end, best guess first."""


def fitness(outcome: EpisodeOutcome, effort_per_m: float) -> float:
    """The rewarder's score less a small effort penalty: without it a push learns to shove a cube
    three times farther than needed (facts.md, "Learning")."""
    return float(outcome.score) - effort_per_m * float(outcome.path_m)
