"""Start state: the arm's joints before the first action against where the training episodes started.

Per joint, the dataset's episode starts give a range [min, max]; a deployed start is scored by
how far outside that range it lies, in units of a tolerance: three standard deviations of the
training starts, but at least 0.1 rad (5.7 degrees), because a scripted or carefully reset
dataset starts from one pose every time and a real arm never returns to it exactly. Up to one
tolerance outside passes, up to two warns, beyond fails.

The gripper is judged as open or closed (its opening as a fraction of its travel, from the
robot's description; half-way and beyond is open): when nine in ten training episodes or more
started with it one way and the arm has it the other way, the check fails (seed 004: training
always started closed, deployment started open).
"""

from __future__ import annotations

import math

import numpy as np

from vla.matching.inputs import MatchInputs
from vla.matching.results import FAIL, PASS, SKIP, WARN, Check, worst

MIN_TOLERANCE = 0.1  # radians
STD_TOLERANCE = 3.0
GRIPPER_OPEN_FRACTION = 0.5
GRIPPER_MAJORITY = 0.9


def _deg(x: float) -> float:
    return math.degrees(x)


def evaluate(q: np.ndarray, starts: np.ndarray, names: list[str], facts) -> dict:
    lo, hi = starts.min(0), starts.max(0)
    mean, std = starts.mean(0), starts.std(0)
    tol = np.maximum(STD_TOLERANCE * std, MIN_TOLERANCE)
    outside = np.maximum(0.0, np.maximum(lo - q, q - hi))
    z = outside / tol
    joints, statuses = {}, []
    gripper_index = facts.gripper_index if facts is not None else None
    for j, name in enumerate(names):
        status = PASS if z[j] <= 1 else WARN if z[j] <= 2 else FAIL
        joints[name] = {"deployment": float(q[j]), "dataset_mean": float(mean[j]), "dataset_std": float(std[j]),
                        "dataset_min": float(lo[j]), "dataset_max": float(hi[j]), "tolerance": float(tol[j]),
                        "outside_by": float(outside[j]), "z": float(z[j]), "status": status}
        statuses.append(status)
    gripper = None
    if gripper_index is not None and facts.gripper_closed is not None:
        train_open = np.asarray(facts.gripper_fraction(starts[:, gripper_index])) >= GRIPPER_OPEN_FRACTION
        fraction = float(facts.gripper_fraction(q[gripper_index]))
        state = "open" if fraction >= GRIPPER_OPEN_FRACTION else "closed"
        closed_share = float(np.mean(~train_open))
        majority = "closed" if closed_share >= 0.5 else "open"
        share = max(closed_share, 1 - closed_share)
        status = FAIL if share >= GRIPPER_MAJORITY and state != majority else PASS
        gripper = {"joint": facts.gripper_joint, "deployment": state, "deployment_open_fraction": fraction,
                   "dataset_closed_share": closed_share, "dataset_majority": majority, "status": status}
        statuses.append(status)
    return {"joints": joints, "gripper": gripper, "status": worst(statuses)}


def _summary(result: dict, source: str, episodes: int) -> str:
    bad = [(n, j) for n, j in result["joints"].items() if j["status"] != PASS]
    parts = []
    for name, j in sorted(bad, key=lambda item: -item[1]["z"]):
        parts.append(f"{name} {j['deployment']:+.3f} rad ({_deg(j['deployment']):+.1f}°), training started in "
                     f"[{j['dataset_min']:+.3f}, {j['dataset_max']:+.3f}] (±{j['tolerance']:.2f} allowed)")
    g = result["gripper"]
    if g is not None and g["status"] == FAIL:
        n = round(g["dataset_closed_share"] * episodes) if g["dataset_majority"] == "closed" else \
            round((1 - g["dataset_closed_share"]) * episodes)
        parts.insert(0, f"gripper {g['deployment']} ({g['deployment_open_fraction']:.2f} of its travel); the training "
                        f"started {g['dataset_majority']} in {n}/{episodes} episodes")
    if not parts:
        return f"every joint is within the training's start range ({source})"
    return f"{source}: " + "; ".join(parts)


def check_start_state(inputs: MatchInputs) -> Check:
    d = inputs.deployment
    starts = inputs.dataset.start_states()
    names = inputs.dataset.names("observation.state")
    facts = d.facts
    candidates = {}
    if d.live is not None:
        candidates["live"] = [d.live.state]
    if d.recording is not None:
        candidates["recording"] = list(d.recording.start_states())
    if not candidates:
        return Check("start_state", SKIP, "no arm (--arm/--robot) and no eval recording: no start state to compare",
                     {"dataset_episodes": int(len(starts))})
    inputs.artifacts["start_states"] = {"dataset": starts, "names": names,
                                         **{k: np.asarray(v) for k, v in candidates.items()}}
    sources, statuses, summaries = {}, [], []
    for source, states in candidates.items():
        if states[0].shape != starts[0].shape:
            return Check("start_state", FAIL, f"the {source} state has {states[0].size} joints, the dataset's "
                                              f"{starts.shape[1]}", {"dataset_joints": names})
        results = [evaluate(np.asarray(q, dtype=np.float64), starts, names, facts) for q in states]
        worst_i = max(range(len(results)), key=lambda i: (["skip", "pass", "warn", "fail"].index(results[i]["status"]),
                                                           max(j["z"] for j in results[i]["joints"].values())))
        entry = dict(results[worst_i])
        if source == "recording":
            entry["episode"] = worst_i
            entry["episodes_failing"] = sum(r["status"] == FAIL for r in results)
            entry["episodes"] = len(results)
        sources[source] = entry
        statuses.append(entry["status"])
        label = source if source == "live" else f"recording episode {worst_i}"
        summaries.append((entry["status"], _summary(entry, label, len(starts))))
    status = worst(statuses)
    numbers = {"dataset_episodes": int(len(starts)), "min_tolerance_rad": MIN_TOLERANCE, "std_tolerance": STD_TOLERANCE,
               "sources": sources}
    if status == PASS:
        return Check("start_state", PASS, f"every joint is within the training's start range ({', '.join(sources)})",
                     numbers)
    return Check("start_state", status, "; ".join(s for st, s in summaries if st == status), numbers)
