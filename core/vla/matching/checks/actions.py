"""Actions: each joint's action distribution in an eval recording against the dataset's, and units.

Distributions (``actions``): per joint, the 1-D Wasserstein distance between the recording's and
the training's actions, in units of the training's standard deviation (how far the deployed
policy's actions sit from what it was taught); above 1 warns. The gripper is read as closed or
open (its opening as a fraction of its travel, from the robot's description, below half is
closed): seed 004's training closed the gripper in 54.5% of frames and the deployment in 0%.
A recording that closes it in under a quarter of the training's share, where training closed
it in at least a fifth of its frames, fails; a share that differs by more than 0.2 warns.

Units (``units``): vla records radians (the gripper too); LeRobot's SO-101 driver records
degrees and a gripper in 0-100. Each joint's values are read against the robot's limits in
radians and in degrees: values that fit the radian range are radians, values beyond it that
fit the degree range are degrees, a gripper within 0..100 beyond its radian range is percent.
The dataset's units against the deployment's (the robot speaks radians; an eval recording is
read the same way) fail when they differ, and so do joint names that differ.
"""

from __future__ import annotations

import math

import numpy as np

from vla.matching.inputs import MatchInputs
from vla.matching.results import FAIL, PASS, SKIP, WARN, Check, worst
from vla.matching.robot_facts import bare_joint_name

SHIFT_WARN = 1.0  # Wasserstein distance in training standard deviations
GRIPPER_CLOSED_FRACTION = 0.5
GRIPPER_MIN_TRAIN_SHARE = 0.2
GRIPPER_FAIL_RATIO = 0.25
GRIPPER_WARN_DIFF = 0.2
STD_FLOOR = 1e-3


def wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """1-D Wasserstein (earth mover's) distance, from 101 matched quantiles."""
    q = np.linspace(0, 100, 101)
    return float(np.mean(np.abs(np.percentile(a, q) - np.percentile(b, q))))


def check_actions(inputs: MatchInputs) -> Check:
    rec = inputs.deployment.recording
    if rec is None:
        return Check("actions", SKIP, "no eval recording (--episodes)", {})
    names = inputs.dataset.names("action")
    train, deployed = inputs.dataset.actions, rec.actions
    if train.shape[1] != deployed.shape[1]:
        return Check("actions", FAIL, f"the recording's actions have {deployed.shape[1]} joints, the dataset's "
                                      f"{train.shape[1]}", {})
    inputs.artifacts["actions"] = {"dataset": train, "recording": deployed, "names": names}
    joints, statuses = {}, []
    for j, name in enumerate(names):
        std = max(float(train[:, j].std()), STD_FLOOR)
        shift = wasserstein(train[:, j], deployed[:, j]) / std
        status = WARN if shift > SHIFT_WARN else PASS
        joints[name] = {"dataset_mean": float(train[:, j].mean()), "dataset_std": float(train[:, j].std()),
                        "recording_mean": float(deployed[:, j].mean()), "recording_std": float(deployed[:, j].std()),
                        "dataset_p5_p95": np.percentile(train[:, j], [5, 95]), "recording_p5_p95":
                        np.percentile(deployed[:, j], [5, 95]), "shift_std": shift, "status": status}
        statuses.append(status)
    numbers = {"joints": joints, "shift_warn": SHIFT_WARN, "gripper": None}
    parts = []
    facts = inputs.deployment.facts
    g = facts.gripper_index if facts is not None and facts.gripper_closed is not None else None
    if g is not None and g < train.shape[1]:
        t_closed = float(np.mean(facts.gripper_fraction(train[:, g]) < GRIPPER_CLOSED_FRACTION))
        d_closed = float(np.mean(facts.gripper_fraction(deployed[:, g]) < GRIPPER_CLOSED_FRACTION))
        if t_closed >= GRIPPER_MIN_TRAIN_SHARE and d_closed < GRIPPER_FAIL_RATIO * t_closed:
            status = FAIL
        elif abs(t_closed - d_closed) > GRIPPER_WARN_DIFF:
            status = WARN
        else:
            status = PASS
        numbers["gripper"] = {"joint": facts.gripper_joint, "dataset_closed_share": t_closed,
                              "recording_closed_share": d_closed, "status": status}
        statuses.append(status)
        parts.append(f"gripper closed in {100 * d_closed:.1f}% of recorded frames, {100 * t_closed:.1f}% in training")
    status = worst(statuses)
    shifted = [f"{n} ({joints[n]['shift_std']:.1f} std)" for n in names if joints[n]["status"] == WARN]
    if shifted:
        parts.append("shifted from training: " + ", ".join(shifted))
    else:
        parts.append(f"every joint within {SHIFT_WARN:g} training std of its training distribution")
    return Check("actions", status, "; ".join(parts), numbers)


def infer_units(values: np.ndarray, limits: tuple[float, float], gripper: bool) -> str:
    """'radians', 'degrees', 'percent' or 'unknown' for one joint's values, from the robot's radian limits."""
    lo, hi = limits
    margin = 0.25 * (hi - lo) + 0.05
    vmin, vmax = float(np.min(values)), float(np.max(values))
    if lo - margin <= vmin and vmax <= hi + margin:
        return "radians"
    if gripper and -5.0 <= vmin and vmax <= 105.0:
        return "percent"
    dlo, dhi, dmargin = math.degrees(lo), math.degrees(hi), math.degrees(margin)
    if dlo - dmargin <= vmin and vmax <= dhi + dmargin:
        return "degrees"
    return "unknown"


def _units_of(values: np.ndarray, facts) -> list[str]:
    return [infer_units(values[:, j], facts.limits[j], j == facts.gripper_index) for j in range(values.shape[1])]


def check_units(inputs: MatchInputs) -> Check:
    d, ds = inputs.deployment, inputs.dataset
    facts = d.facts
    if facts is None:
        return Check("units", SKIP, "the robot's joint limits are unknown (no --arm/--robot with a description)", {})
    names = [bare_joint_name(n) for n in ds.names("action")]
    problems = []
    if tuple(names) != tuple(facts.joint_names):
        problems.append(f"the dataset's joints are {', '.join(ds.names('action'))}; the robot's "
                        f"{', '.join(facts.joint_names)}")
        return Check("units", FAIL, problems[0], {"dataset_joints": ds.names("action"),
                                                  "robot_joints": list(facts.joint_names)})
    units = {"dataset_action": _units_of(ds.actions, facts), "dataset_state": _units_of(ds.states, facts)}
    deployed = {j: "radians" for j in facts.joint_names}  # what a vla robot reports, by contract (vla.robot)
    if d.recording is not None:
        units["recording_action"] = _units_of(d.recording.actions, facts)
    if d.live is not None:
        units["live_state"] = _units_of(d.live.state[None, :], facts)
    for source, per_joint in units.items():
        wrong: dict[str, list[str]] = {}
        for name, unit in zip(facts.joint_names, per_joint):
            if unit != deployed[name]:
                wrong.setdefault(unit, []).append(name)
        if wrong:
            problems.append(f"{source.replace('_', ' ')} in " + ", ".join(f"{u} ({', '.join(n)})" for u, n in wrong.items()))
    numbers = {"joints": list(facts.joint_names), "robot": "radians", **units}
    if problems:
        return Check("units", FAIL, "; ".join(problems) + "; the robot speaks radians (the gripper too)", numbers)
    return Check("units", PASS, "every joint reads as radians (the gripper too), as the robot speaks", numbers)
