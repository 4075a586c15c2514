"""A recorded lab folder, made by vla's own code: tick logs written by the real session runner
(the control loop on a simulated clock against a real policy backend, through a simulated
link: two simulated minutes take a second), `vla eval` results from ``summarize`` and rewarder
calibration reports from ``summarise``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SAFETY = """\
joints:
  shoulder_pan: {{min: -1.5, max: {pan_max}, max_step: 0.2}}
  shoulder_lift: {{min: -1.5, max: 1.5, max_step: 0.2}}
  elbow_flex: {{min: -1.5, max: 1.5, max_step: 0.2}}
  wrist_flex: {{min: -1.5, max: 1.5, max_step: 0.2}}
  wrist_roll: {{min: -2.5, max: 2.5, max_step: 0.2}}
  gripper: {{min: 0.0, max: 1.5, max_step: 0.2}}
"""


def write_lab(root: Path, arms: dict[str, str]) -> Path:
    """``arms``: id -> arm file body (without the safety line); each gets ``<id>_safety.yaml``."""
    (root / "arms").mkdir(parents=True, exist_ok=True)
    lines = ["lab: gatelab", "log_dir: logs", "arms:" if arms else "arms: {}"]
    for arm_id, body in arms.items():
        lines.append(f"  {arm_id}: arms/{arm_id}.yaml")
        (root / "arms" / f"{arm_id}.yaml").write_text(body + f"safety: {arm_id}_safety.yaml\n")
        (root / "arms" / f"{arm_id}_safety.yaml").write_text(SAFETY.format(pan_max=1.5))
    lines.append("gates:\n  startup_s: 2.0")
    (root / "vla.yaml").write_text("\n".join(lines) + "\n")
    return root / "vla.yaml"


def record_run(log_path: Path, label: str, seconds: float, latency_s: float = 0.05, control_hz: float = 30.0,
               horizon: int = 40):
    """A tick log of ``seconds`` of the real control loop on a simulated clock."""
    from vla.builtins import TimedPolicyConfig
    from vla.client.clock import SimulatedClock
    from vla.client.runner import SessionOptions, SessionRunner
    from vla.client.session import EpisodeSpec
    from vla.client.simlink import SimulatedLink
    from vla.config import load_config
    from vla.testing.policies import TimedPolicy

    lab = log_path.parent / "_runlab"
    lab.mkdir(parents=True, exist_ok=True)
    (lab / "vla.yaml").write_text("plugins:\n  kinematic:\n    cameras: {}\n")
    loaded = load_config(lab / "vla.yaml", environ={})
    clock = SimulatedClock(10.0)
    link = SimulatedLink(TimedPolicy(TimedPolicyConfig(horizon=horizon, cameras={})), clock, lambda: latency_s)
    options = SessionOptions(tasks="wave", robot="kinematic", handle_signals=False, log_path=str(log_path),
                             label=label, control_hz=control_hz)
    summary = SessionRunner(loaded, options, link=link, clock=clock).run(plan=[EpisodeSpec("wave", 0, seconds)])
    assert summary.exit_code == 0, summary.error
    return summary


def write_eval(folder: Path, checkpoint: str, outcomes: dict[str, list[bool]], finished_at: float, k=(1, 5),
               video: bool = False, incidents: dict[str, int] | None = None, rejected: dict[str, int] | None = None):
    """A `vla eval` results.json (through eval's own ``summarize``)."""
    from vla.client.session import EpisodeResult
    from vla.evaluation.cli import summarize

    results = {}
    for task, wins in outcomes.items():
        runs = []
        for i, ok in enumerate(wins):
            counts = {"ticks": 100, "underflows": 0, "rejected": 0}
            if rejected and i < rejected.get(task, 0):
                counts["rejected"] = 1
            info = {"incidents": ["yellow_cube knocked off the table"]} if incidents and i < incidents.get(task, 0) else {}
            runs.append(EpisodeResult(i, task, i, ok, 4.0 + i * 0.1 if ok else 20.0, 100, False, counts, info=info))
        results[task] = runs
    data = summarize(results, list(k), robot="sim", url="ws://gpu:8080", merge="rtc", seed=0, policy="lerobot/act",
                     checkpoint=checkpoint, interrupted=False, finished_at=finished_at)
    data["video"] = None
    folder.mkdir(parents=True, exist_ok=True)
    if video:
        import numpy as np

        from vla.evaluation.media import write_video

        frames = [np.full((32, 48, 3), 40 * i, np.uint8) for i in range(4)]
        data["video"] = write_video(frames, folder / "episode.gif", 4).name
    (folder / "results.json").write_text(json.dumps(data))
    return folder / "results.json"


def write_calibration(folder: Path, n: int, correct: int, name: str = "heuristic"):
    """A `vla rewarder calibrate` report with ``correct`` of ``n`` clips judged as labelled."""
    from vla.rewarding.calibration import ClipScore, summarise

    clips = [ClipScore(f"c{i}", "lift", i % 2 == 0, (0.9 if i % 2 == 0 else 0.1) if i < correct else
                       (0.1 if i % 2 == 0 else 0.9)) for i in range(n)]
    summary = summarise(clips, 0.5)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"calibration_{name}.json"
    path.write_text(json.dumps({"rewarder": name, **summary}))
    return path


@pytest.fixture
def recorded():
    return {"lab": write_lab, "run": record_run, "eval": write_eval, "calibration": write_calibration}
