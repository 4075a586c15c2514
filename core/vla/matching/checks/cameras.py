"""Cameras: the right names and shapes reach the policy, and each camera is the one it was trained with.

Names follow a camera from the dataset to the policy and from the arm to the policy: the
checkpoint's training rename map (LeRobot's ``rename_map``: dataset key -> policy key) and the
lab's serving map (``plugins.<policy>.camera_map``: arm camera -> policy camera). A policy camera
that no arm camera reaches fails. A shape that differs is resized by the client: the same
aspect ratio warns, another aspect ratio (a squashed image) fails.

Identity compares what the arm's cameras see (a live frame, or frames of an eval recording)
with the training frames of the camera each is paired with (``vla.matching.similarity``). A
swap is reported when a crossed pairing scores better than the straight one by more than a
margin, naming which camera looks like which.
"""

from __future__ import annotations

import numpy as np

from vla.matching.inputs import MatchInputs
from vla.matching.results import FAIL, PASS, SKIP, WARN, Check, worst
from vla.matching.similarity import LOW_SIMILARITY, SWAP_MARGIN, best_assignment, similarity_matrix

ASPECT_TOLERANCE = 0.02
REFERENCE_EPISODES = 6  # training episodes the identity check takes frames from
REFERENCE_POSITIONS = (0.0, 0.25, 0.5, 0.75, 1.0)  # where in each episode
RECORDING_EPISODES = 4
RECORDING_POSITIONS = (0.0, 0.5, 1.0)


def _shape_status(have, want) -> str:
    if tuple(have) == tuple(want):
        return PASS
    ratio_have, ratio_want = have[1] / have[0], want[1] / want[0]
    return WARN if abs(ratio_have / ratio_want - 1) <= ASPECT_TOLERANCE else FAIL


def _deployed_cameras(inputs: MatchInputs) -> tuple[dict, str]:
    d = inputs.deployment
    if d.cameras:
        return dict(d.cameras), "arm"
    if d.recording is not None:
        return dict(d.recording.cameras), "recording"
    return {}, ""


def check_cameras(inputs: MatchInputs) -> Check:
    dataset_cams = inputs.dataset.cameras
    deployed, where = _deployed_cameras(inputs)
    ckpt = inputs.checkpoint
    if not deployed:
        inputs.camera_pairs = {c: c for c in dataset_cams}
        return Check("cameras", SKIP, "no arm (--arm/--robot) and no eval recording: the arm's cameras are unknown",
                     {"dataset": dataset_cams})
    pairs, problems = [], []
    if ckpt is not None and ckpt.cameras:
        for policy_cam, policy_shape in ckpt.cameras.items():
            from_dataset = [d for d in dataset_cams if ckpt.training_rename.get(d, d) == policy_cam]
            from_arm = [c for c in deployed if ckpt.serving_rename.get(c, c) == policy_cam]
            pair = {"policy": policy_cam, "policy_shape": list(policy_shape),
                    "dataset": from_dataset[0] if from_dataset else None,
                    "deployment": from_arm[0] if from_arm else None}
            if not from_arm:
                problems.append((FAIL, f"the policy reads camera {policy_cam!r} but the {where} has none that maps to it "
                                       f"(cameras: {', '.join(deployed)}; camera map {ckpt.serving_rename or '{}'})"))
            else:
                have = deployed[from_arm[0]]
                pair["deployment_shape"] = list(have)
                status = _shape_status(have, policy_shape)
                if status != PASS:
                    problems.append((status, f"{from_arm[0]!r} gives {have[0]}x{have[1]} frames, the policy reads "
                                             f"{policy_shape[0]}x{policy_shape[1]}"
                                             + (" (another aspect ratio: the image would be squashed)" if status == FAIL
                                                else " (resized on the way)")))
            if not from_dataset:
                problems.append((WARN, f"no dataset camera becomes the policy's {policy_cam!r} "
                                       f"(dataset cameras: {', '.join(dataset_cams)}; rename map {ckpt.training_rename or '{}'})"))
            else:
                pair["dataset_shape"] = list(dataset_cams[from_dataset[0]])
            pairs.append(pair)
    else:
        for cam, shape in dataset_cams.items():
            pair = {"policy": None, "dataset": cam, "dataset_shape": list(shape),
                    "deployment": cam if cam in deployed else None}
            if cam not in deployed:
                problems.append((FAIL, f"the dataset has camera {cam!r}; the {where} has {', '.join(deployed) or 'none'}"))
            else:
                pair["deployment_shape"] = list(deployed[cam])
                status = _shape_status(deployed[cam], shape)
                if status != PASS:
                    problems.append((status, f"{cam!r} gives {deployed[cam][0]}x{deployed[cam][1]} frames, the dataset has "
                                             f"{shape[0]}x{shape[1]}"))
            pairs.append(pair)
    inputs.camera_pairs = {p["dataset"]: p["deployment"] for p in pairs if p["dataset"] and p["deployment"]}
    numbers = {
        "dataset": {k: list(v) for k, v in dataset_cams.items()},
        "deployment": {k: list(v) for k, v in deployed.items()},
        "deployment_source": where,
        "policy": {k: list(v) for k, v in (ckpt.cameras if ckpt else {}).items()},
        "training_rename": dict(ckpt.training_rename) if ckpt else {},
        "serving_rename": dict(ckpt.serving_rename) if ckpt else {},
        "pairs": pairs,
        "problems": [text for _, text in problems],
    }
    if not problems:
        names = ", ".join(f"{p['deployment']}->{p['policy'] or p['dataset']}" for p in pairs)
        return Check("cameras", PASS, f"every camera the policy reads is there with its shape ({names})", numbers)
    status = worst(s for s, _ in problems)
    return Check("cameras", status, "; ".join(text for s, text in problems if s == status), numbers)


def _reference_frames(inputs: MatchInputs, cameras) -> dict[str, list[np.ndarray]]:
    ds = inputs.dataset
    n = ds.total_episodes
    episodes = sorted({int(round(i)) for i in np.linspace(0, n - 1, min(n, REFERENCE_EPISODES))})
    return {cam: [f for e in episodes for f in ds.frames(cam, e, REFERENCE_POSITIONS)] for cam in cameras}


def _identity(scores, expected: dict[str, str]) -> dict:
    """Straight vs best pairing of deployed cameras (keys of ``expected``) with training cameras."""
    cams = list(expected)
    straight = sum(scores[c][expected[c]] for c in cams)
    best, best_total = best_assignment(scores, cams, list(dict.fromkeys(expected.values())))
    n = max(1, len(cams))
    swapped = [[c, best[c]] for c in cams if best[c] != expected[c]]
    result = {"scores": scores, "expected": expected, "best": best, "straight_mean": straight / n,
              "best_mean": best_total / n, "swapped": []}
    if swapped and (best_total - straight) / n >= SWAP_MARGIN:
        result["swapped"] = swapped
        result["status"] = FAIL
    elif any(scores[c][expected[c]] < LOW_SIMILARITY for c in cams):
        result["status"] = WARN
    else:
        result["status"] = PASS
    return result


def check_camera_identity(inputs: MatchInputs) -> Check:
    d = inputs.deployment
    pairs = inputs.camera_pairs or {}
    sources = {}
    if d.live is not None and d.live.images:
        sources["live"] = {dep: [d.live.images[dep]] for dep in pairs.values() if dep in d.live.images}
    if d.recording is not None:
        rec = d.recording
        episodes = sorted({int(round(i)) for i in np.linspace(0, rec.total_episodes - 1, min(rec.total_episodes, RECORDING_EPISODES))})
        sources["recording"] = {dep: [f for e in episodes for f in rec.frames(dep, e, RECORDING_POSITIONS)]
                                for dep in pairs.values() if dep in rec.cameras}
    sources = {k: v for k, v in sources.items() if len(v) >= 1}
    if not sources:
        return Check("camera_identity", SKIP, "no frames to compare: give --arm/--robot (live frames) or --episodes",
                     {"measure": "ssim"})
    expected_of = {dep: ds_cam for ds_cam, dep in pairs.items()}
    training = _reference_frames(inputs, list(pairs))
    results = {}
    for source, frames in sources.items():
        expected = {dep: expected_of[dep] for dep in frames}
        scores = similarity_matrix(frames, {cam: training[cam] for cam in dict.fromkeys(expected.values())})
        results[source] = _identity(scores, expected)
        inputs.artifacts.setdefault("camera_frames", {})[source] = {
            dep: {"deployed": frames[dep][0], "training": {cam: training[cam][0] for cam in training}} for dep in frames
        }
    status = worst(r["status"] for r in results.values())
    numbers = {"measure": "ssim", "swap_margin": SWAP_MARGIN, "low_similarity": LOW_SIMILARITY,
               "sources": {k: {kk: vv for kk, vv in v.items() if kk != "status"} | {"status": v["status"]}
                           for k, v in results.items()}}
    source, r = next((k, v) for k, v in results.items() if v["status"] == status)
    if status == FAIL:
        parts = [f"{c} looks like the training's {t} ({r['scores'][c][t]:.2f} vs {r['scores'][c][r['expected'][c]]:.2f} "
                 f"for {r['expected'][c]})" for c, t in r["swapped"]]
        summary = f"cameras swapped ({source} frames): " + "; ".join(parts)
    elif status == WARN:
        low = [f"{c} ({r['scores'][c][r['expected'][c]]:.2f})" for c in r["expected"]
               if r["scores"][c][r["expected"][c]] < LOW_SIMILARITY]
        summary = (f"{', '.join(low)} look little like the training's view ({source} frames; SSIM below "
                   f"{LOW_SIMILARITY}): moved camera, other lighting or another scene?")
    else:
        summary = ", ".join(f"{c} {r['scores'][c][r['expected'][c]]:.2f}" for c in r["expected"])
        summary = f"each camera looks most like its training camera ({source} frames, SSIM: {summary})"
    return Check("camera_identity", status, summary, numbers)
