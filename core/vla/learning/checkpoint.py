"""Learner checkpoints: one JSON file, replaced atomically after every update.

A run killed at any instant (SIGKILL included) leaves either the previous checkpoint or the
new one, never a half-written file: the new state is written to a temporary file in the same
folder, flushed to disk, and renamed over the old one (a rename within a filesystem is atomic
on POSIX). The file is JSON, not a pickle, so reading a checkpoint never runs code from it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from vla.atomicfile import write_json_atomic

FORMAT = "vla-learn-checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not belong to this run; the message names the file."""


def save_checkpoint(path: str | os.PathLike, run: dict[str, Any], trainer_state: dict[str, Any]) -> Path:
    return write_json_atomic(path, {"format": FORMAT, "run": run, "trainer": trainer_state}, indent=1, sort_keys=True)


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """(run, trainer_state) from a checkpoint file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}: nothing to resume (run without --resume to start)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read the checkpoint {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a vla learn checkpoint (expected format {FORMAT!r})")
    if not isinstance(data.get("run"), dict) or not isinstance(data.get("trainer"), dict):
        raise CheckpointError(f"{path}: the checkpoint lacks its 'run' or 'trainer' section")
    return data["run"], data["trainer"]
