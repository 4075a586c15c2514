"""Chunking: the checkpoint's chunk settings against the client's, and the jumps an eval recording shows.

Settings (``chunking``): the client uses ``min(actions_per_chunk, horizon)`` actions of each
chunk and asks again when the queue falls to ``threshold`` of that, so it plans anew every
``used - floor(threshold x used)`` ticks. It warns when the client asks for more actions than
the policy answers (they are not there) and when it merges by real-time chunking with a policy
that takes no RTC inputs (the frozen prefix is then a guess the new chunk does not continue).

Jumps (``action_jumps``): in an eval recording, the largest change of each joint's action from
one frame to the next, against the same figure over the training data. Seed 004 saw 10-26°
between frames where training had 3-13°. A joint whose largest jump reaches 1.5x the
training's warns, 2x fails. The training figure has a floor of 0.01 rad so that a joint that
barely moved in training does not make any motion look like a jump.
"""

from __future__ import annotations

import math

import numpy as np

from vla.matching.inputs import MatchInputs
from vla.matching.results import FAIL, PASS, SKIP, WARN, Check

JUMP_WARN = 1.5
JUMP_FAIL = 2.0
JUMP_FLOOR = 0.01  # radians


def check_chunking(inputs: MatchInputs) -> Check:
    d, ckpt = inputs.deployment, inputs.checkpoint
    if d.actions_per_chunk is None:
        return Check("chunking", SKIP, "the client's chunk settings are unknown", {})
    horizon = ckpt.horizon if ckpt is not None else None
    used = min(d.actions_per_chunk, horizon) if horizon else d.actions_per_chunk
    threshold = d.threshold or 0.0
    replan = max(1, used - math.floor(threshold * used))
    numbers = {
        "policy": ckpt.policy if ckpt else None,
        "chunk_size": ckpt.chunk_size if ckpt else None,
        "n_action_steps": ckpt.n_action_steps if ckpt else None,
        "horizon": horizon,
        "supports_rtc": ckpt.supports_rtc if ckpt else None,
        "actions_per_chunk": d.actions_per_chunk,
        "threshold": d.threshold,
        "merge": d.merge,
        "actions_used_per_chunk": used,
        "replan_every_ticks": replan,
        "replan_every_s": replan / d.control_hz if d.control_hz else None,
    }
    if ckpt is None:
        return Check("chunking", SKIP, f"no checkpoint or policy server to compare with (client: {used} actions per "
                                       f"chunk, threshold {threshold:g}, merge {d.merge})", numbers)
    every = f"{replan} ticks" + (f" ({replan / d.control_hz:.2f} s)" if d.control_hz else "")
    steps = f", executes {ckpt.n_action_steps}" if ckpt.n_action_steps is not None else ""
    base = (f"policy chunk {horizon if ckpt.chunk_size is None else ckpt.chunk_size}{steps}; client uses {used} of "
            f"each chunk, threshold {threshold:g}, merge {d.merge}: plans anew every {every}")
    warnings = []
    if horizon and d.actions_per_chunk > horizon:
        warnings.append(f"actions_per_chunk {d.actions_per_chunk} but the policy answers {horizon}")
    if d.merge == "rtc" and not ckpt.supports_rtc:
        warnings.append(f"merge rtc with {ckpt.policy}, which takes no RTC inputs: seams are not inpainted "
                        "(use latest or weighted_average)")
    numbers["warnings"] = warnings
    return Check("chunking", WARN if warnings else PASS, base + ("; " + "; ".join(warnings) if warnings else ""), numbers)


def check_action_jumps(inputs: MatchInputs) -> Check:
    rec = inputs.deployment.recording
    if rec is None:
        return Check("action_jumps", SKIP, "no eval recording (--episodes)", {})
    names = inputs.dataset.names("action")
    train, deployed = inputs.dataset.action_jumps(), rec.action_jumps()
    if train.shape[1] != deployed.shape[1]:
        return Check("action_jumps", FAIL, f"the recording's actions have {deployed.shape[1]} joints, the dataset's "
                                           f"{train.shape[1]}", {})
    if not len(deployed) or not len(train):
        return Check("action_jumps", SKIP, "too few frames to measure jumps", {})
    inputs.artifacts["jumps"] = {"dataset": train, "recording": deployed, "names": names}
    t_max, d_max = train.max(0), deployed.max(0)
    ratio = d_max / np.maximum(t_max, JUMP_FLOOR)
    joints = {}
    for j, name in enumerate(names):
        status = FAIL if ratio[j] >= JUMP_FAIL else WARN if ratio[j] >= JUMP_WARN else PASS
        joints[name] = {"dataset_max": float(t_max[j]), "recording_max": float(d_max[j]), "ratio": float(ratio[j]),
                        "dataset_p99": float(np.percentile(train[:, j], 99)),
                        "recording_p99": float(np.percentile(deployed[:, j], 99)), "status": status}
    worst_j = int(np.argmax(ratio))
    status = joints[names[worst_j]]["status"]
    numbers = {"joints": joints, "worst_joint": names[worst_j], "warn_ratio": JUMP_WARN, "fail_ratio": JUMP_FAIL,
               "floor_rad": JUMP_FLOOR}
    flagged = [n for n in names if joints[n]["status"] == status] if status != PASS else [names[worst_j]]
    parts = [f"{n} up to {joints[n]['recording_max']:.3f} rad ({math.degrees(joints[n]['recording_max']):.1f}°) "
             f"vs {joints[n]['dataset_max']:.3f} ({math.degrees(joints[n]['dataset_max']):.1f}°) in training, "
             f"{joints[n]['ratio']:.1f}x" for n in flagged]
    lead = "largest jump between consecutive actions: " if status == PASS else "actions jump: "
    return Check("action_jumps", status, lead + "; ".join(parts), numbers)
