"""`vla train`: improve a policy with a trainer plugin. Light to import: no torch here."""

from vla.training.trainer import Trainer, TrainingError, TrainRequest, TrainResult, epochs

__all__ = ["TrainRequest", "TrainResult", "Trainer", "TrainingError", "epochs"]
