"""Rates: the dataset's frames per second against the arm's control rate.

A policy's chunk is a trajectory timed at the dataset's fps; played at another rate every
motion runs faster or slower by the ratio (and an eval recording made at another rate is not
comparable frame by frame). Within 2% passes, within 10% warns, beyond fails.
"""

from __future__ import annotations

from vla.matching.inputs import MatchInputs
from vla.matching.results import FAIL, PASS, SKIP, WARN, Check, worst

PASS_WITHIN = 0.02
WARN_WITHIN = 0.10


def _status(ratio: float) -> str:
    off = abs(ratio - 1.0)
    return PASS if off <= PASS_WITHIN else WARN if off <= WARN_WITHIN else FAIL


def check_rates(inputs: MatchInputs) -> Check:
    fps = inputs.dataset.fps
    d = inputs.deployment
    compared, statuses, parts = {}, [], []
    if d.control_hz:
        ratio = d.control_hz / fps
        compared["control_hz"] = {"value": d.control_hz, "ratio": ratio, "status": _status(ratio)}
        statuses.append(_status(ratio))
        parts.append(f"the arm runs at {d.control_hz:g} Hz, the dataset was recorded at {fps:g} fps"
                     + (f" (motions {ratio:.2f}x as fast)" if _status(ratio) != PASS else ""))
    if d.recording is not None and d.recording.fps:
        ratio = d.recording.fps / fps
        compared["recording_fps"] = {"value": d.recording.fps, "ratio": ratio, "status": _status(ratio)}
        statuses.append(_status(ratio))
        parts.append(f"the eval recording is at {d.recording.fps:g} fps")
    if not compared:
        return Check("rates", SKIP, f"no control rate known (no --arm/--robot, no client.control_hz); dataset {fps:g} fps",
                     {"dataset_fps": fps})
    status = worst(statuses)
    return Check("rates", status, "; ".join(parts), {"dataset_fps": fps, "pass_within": PASS_WITHIN,
                                                     "warn_within": WARN_WITHIN, "compared": compared})
