"""The run's JSONL log: one line per control tick, plus lines for chunks and events.

Record types (field ``type``):
- ``run``: the first line; settings of the run (robot, task, merge mode, rate, policy URL).
- ``episode``: an episode started (``phase: start``) or ended (``phase: end``, with success,
  duration and counters).
- ``tick``: one control tick: ``t`` (seconds since the run started, client clock), ``tick``
  (index in the episode), ``queue`` (targets left after this tick), ``hold`` (no target was
  executed: the arm was told to stay at its last safe command), ``reason`` for a hold
  (``startup``, ``underflow``, ``disconnected``, ``late``, ``stopping``), ``underflow``,
  ``action`` (the target popped from the queue, or null) and ``deadline`` (latest time it
  could be executed), ``t_exec`` (when the command went to the robot), ``command`` (what the
  robot was sent, after safety), ``clamps`` (the safety clamps applied), ``chunk`` (id of the
  chunk that set the target), ``expired`` (targets dropped because their tick had passed),
  ``missed`` (ticks skipped because the loop overran), ``rtt_ms`` (last measured round trip).
- ``chunk``: a reply merged: ``rtt_ms``, ``delay`` (RTC inference delay sent), ``first_tick``,
  ``stale``, ``overlap``, ``discontinuity``, ``plan_change``, ``server_timing``.
- ``event``: ``connected``, ``disconnected``, ``connect_failed``, ``rejected`` (a chunk the safety
  layer refused), ``error`` (an error frame), ``stop`` (a signal), ``recording`` (the dataset
  path), ``start_outside_limits``, ``start_outside_workspace``, ``worker_failed``, ``crash``
  (the robot or the recorder failed).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            value = np.round(value, 7)  # joint values to 0.1 microradian: a third of the bytes
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


class TickLog:
    """Appends records to a JSONL file; times are written relative to ``t0`` (the run's start)."""

    def __init__(self, path: str | Path | None, t0: float = 0.0):
        self.path = Path(path) if path is not None else None
        self.t0 = t0
        self._file = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", buffering=1)  # line-buffered: a killed run keeps its log
        self.records: list[dict] | None = None  # set to a list to also keep records in memory

    def rel(self, t: float | None) -> float | None:
        return None if t is None else round(t - self.t0, 6)

    def write(self, record_type: str, **fields: Any) -> None:
        record = {"type": record_type, **{k: _plain(v) for k, v in fields.items()}}
        if self.records is not None:
            self.records.append(record)
        if self._file is not None:
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_log(path: str | Path) -> Iterator[dict]:
    """Records of a JSONL tick log; a truncated last line (killed run) is skipped."""
    with Path(path).open() as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue
