"""What `vla train` asks of a trainer plugin. Trainer plugins' factories return one of these.

A trainer reads one or more local LeRobot datasets with the same features (their union is the
training set), trains for a number of optimizer steps and writes a
checkpoint folder a policy backend can serve (for LeRobot policies: ``OUTPUT/pretrained_model``
with the config, the weights and the processor pipelines).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import attrs


class TrainingError(RuntimeError):
    """Training cannot start or cannot go on; the message says why."""


@attrs.frozen
class TrainRequest:
    dataset: Path  # the first (or only) dataset
    output: Path
    steps: int
    batch_size: int
    seed: int = 1000
    device: str | None = None  # None: the trainer config's device
    # Policy options from the command line (`-o key=value`), values already parsed as YAML.
    options: dict[str, Any] = attrs.field(factory=dict)
    # Further datasets with the same features as `dataset`, trained on together with it
    # (`vla train --dataset A --dataset B`).
    extra_datasets: tuple[Path, ...] = attrs.field(default=(), converter=lambda v: tuple(Path(p) for p in v))

    @property
    def datasets(self) -> tuple[Path, ...]:
        """Every dataset of the run, `dataset` first."""
        return (Path(self.dataset), *self.extra_datasets)


@attrs.frozen
class TrainResult:
    checkpoint: Path  # the folder a policy backend loads
    steps: int
    final_loss: float | None  # the last step's loss
    seconds: float
    cpu_seconds: float | None = None  # CPU time the training took (all threads), when the trainer measured it


@runtime_checkable
class Trainer(Protocol):
    def train(self, request: TrainRequest, progress: Callable[[int, int, dict], None] | None = None) -> TrainResult:
        """Train; call ``progress(step, total_steps, metrics)`` after every optimizer step.

        ``metrics`` holds ``loss``; a call with ``{"note": text}`` (step 0) is one line for the
        user about what the trainer decided (weights it could not fetch, what it did instead)."""


def epochs(steps: int, batch_size: int, frames: int) -> float:
    """How many times training sees each frame: steps x batch / frames.

    Labs count steps, but a small dataset overfits by epochs (a seed lab ran 15.9 epochs when
    it meant to run ~6), so `vla train` prints this before it starts.
    """
    if frames <= 0:
        raise ValueError(f"the dataset has no frames ({frames})")
    return steps * batch_size / frames
