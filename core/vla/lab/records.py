"""What `vla gates` and `vla board` read from a lab folder: tick logs, `vla eval` results and
rewarder calibration reports, found by their contents wherever they lie under the folder.

A tick log is a ``*.jsonl`` whose first record is a ``run`` record; an eval result is a
``results.json`` with ``tasks`` and ``k``; a calibration report is a ``calibration_*.json``
with ``n_scored`` and ``at_threshold``. Files that do not parse are listed as skipped, never
silently dropped.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import attrs

MAX_FILES = 20_000  # a folder with more is not a lab folder; say so rather than crawl it


@attrs.define
class RunStats:
    """One tick log, reduced to what the gates judge."""

    path: Path
    label: str
    kind: str
    clock: str
    control_hz: float
    ticks: int = 0  # after start-up
    seconds: float = 0.0  # sum over episodes of the span their ticks cover, after start-up
    underflows: int = 0  # after start-up
    latencies_ms: list[float] = attrs.field(factory=list)  # observe-to-action, one per chunk
    rtts_ms: list[float] = attrs.field(factory=list)

    @property
    def rate_hz(self) -> float | None:
        return self.ticks / self.seconds if self.seconds > 0 else None


@attrs.define
class Found:
    runs: list[RunStats] = attrs.field(factory=list)
    evals: list[tuple[Path, dict]] = attrs.field(factory=list)
    calibrations: list[tuple[Path, dict]] = attrs.field(factory=list)
    skipped: list[tuple[Path, str]] = attrs.field(factory=list)


def _first_line(path: Path) -> str:
    with open(path, "rb") as f:
        return f.readline(64 * 1024).decode("utf-8", "replace")


def read_run(path: Path, startup_s: float) -> RunStats | None:
    """A tick log's figures after its first ``startup_s`` seconds; None if it is not a tick log.

    Observe-to-action is, per chunk, the time from the tick whose observation the request
    carried to the tick that executed the chunk's first action: ``(first_tick - obs_tick) / hz``.
    """
    try:
        header = json.loads(_first_line(path))
    except ValueError:
        return None
    if not isinstance(header, dict) or header.get("type") != "run":
        return None
    hz = float(header.get("control_hz") or 0) or 30.0
    stats = RunStats(path, str(header.get("label") or header.get("arm") or header.get("robot") or path.stem),
                     str(header.get("kind") or "run"), str(header.get("clock") or "real"), hz)
    spans: dict[int, list[float]] = {}  # episode -> [first t, last t, ticks]
    with open(path, encoding="utf-8", errors="replace") as f:
        next(f)
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue  # a line cut off by a crash: the rest of the log still counts
            kind = r.get("type")
            if kind == "tick":
                t = r.get("t")
                if not isinstance(t, (int, float)) or t < startup_s:
                    continue
                span = spans.setdefault(int(r.get("episode", 0)), [t, t, 0])
                span[1] = t
                span[2] += 1
                stats.underflows += int(bool(r.get("underflow")))
            elif kind == "chunk":
                first, obs = r.get("first_tick"), r.get("obs_tick")
                t = r.get("t")
                if isinstance(first, int) and isinstance(obs, int) and isinstance(t, (int, float)) and t >= startup_s:
                    stats.latencies_ms.append((first - obs) * 1000.0 / hz)
                if isinstance(r.get("rtt_ms"), (int, float)):
                    stats.rtts_ms.append(float(r["rtt_ms"]))
    for first, last, n in spans.values():
        if n >= 2:
            # n ticks cover n intervals of one period each: the span between first and last plus one
            stats.ticks += n
            stats.seconds += (last - first) + 1.0 / hz
    return stats


def find(folder: Path, startup_s: float = 5.0) -> Found:
    folder = Path(folder)
    found = Found()
    files = []
    for i, path in enumerate(folder.rglob("*")):
        if i >= MAX_FILES:
            raise ValueError(f"{folder} holds more than {MAX_FILES} files; point at the lab's own folder")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts):
            files.append(path)
    for path in sorted(files):
        name = path.name
        try:
            if name.endswith(".jsonl"):
                run = read_run(path, startup_s)
                if run is not None:
                    found.runs.append(run)
            elif name == "results.json":
                data = json.loads(path.read_text())
                if isinstance(data, dict) and isinstance(data.get("tasks"), dict) and "k" in data:
                    found.evals.append((path, data))
                else:
                    found.skipped.append((path, "not a `vla eval` results file"))
            elif name.startswith("calibration_") and name.endswith(".json"):
                data = json.loads(path.read_text())
                if isinstance(data, dict) and "n_scored" in data and "at_threshold" in data:
                    found.calibrations.append((path, data))
                else:
                    found.skipped.append((path, "not a `vla rewarder calibrate` report"))
        except (OSError, ValueError) as exc:
            found.skipped.append((path, f"{type(exc).__name__}: {exc}"))
    return found


def median(values: list[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def checkpoint_of(results: dict, path: Path) -> str:
    """What a results file names its policy by: its checkpoint, else the policy's name, else its folder."""
    return str(results.get("checkpoint") or results.get("policy") or path.parent.name)
