"""`vla sim clips`: labelled clips in the team's format, balanced, with labels from the physics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

VLA = str(Path(sys.executable).parent / "vla")


def test_clips_command_writes_balanced_labelled_clips(tmp_path):
    from vla.rewarding.labels import load_clips

    out = tmp_path / "clips"
    result = subprocess.run(
        [VLA, "sim", "clips", "--task", "lift", "--task", "push_left", "-n", "6", "--frames", "3", "--size", "96", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "lift: 6 clips (3 successes, 3 failures)" in result.stdout
    clips = load_clips(out)  # the rewarders' own reader accepts the folder
    assert len(clips) == 12
    for task in ("lift", "push_left"):
        labels = [c.success for c in clips if c.task == task]
        assert sorted(labels) == [False] * 3 + [True] * 3
    info = json.loads((out / "clips_info.json").read_text())
    for clip in clips:
        assert clip.goal == {"lift": "lift the yellow cube", "push_left": "push the green cube to the left of the line"}[clip.task]
        assert 1 <= len(clip.frames) <= 3
        for path in clip.frames:
            with Image.open(path) as img:
                assert img.mode == "RGB" and img.size == (96, 96)
        source = info[clip.id]["source"]
        if source == "still":  # an arm held still never moves a cube to its goal
            assert not clip.success
        if source == "expert":  # the expert solves these tasks (tests/sim/test_expert.py)
            assert clip.success
    # the frames move: the first and last frames of a success differ (the cube went somewhere)
    success = next(c for c in clips if c.success)
    first, last = (np.asarray(Image.open(p), dtype=int) for p in (success.frames[0], success.frames[-1]))
    assert np.abs(first - last).mean() > 1.0


def test_clip_labels_match_the_physics_of_their_last_frame():
    """generate_clips labels each clip with robot.success() at the episode's end."""
    from vla_sim.clips import _Runner
    from vla_sim.config import SimConfig
    from vla_sim.expert import ScriptedPolicy
    from vla_sim.robot import SimRobot

    robot = SimRobot(SimConfig(cameras=["front"], image_height=64, image_width=64))
    try:
        runner = _Runner(robot, ScriptedPolicy())
        rng = np.random.default_rng(0)
        ok = runner.run("pick_place", 1, "expert", rng)
        assert ok.success and robot.success()
        still = runner.run("pick_place", 1, "still", rng)
        assert not still.success and not robot.success()
        early = runner.run("pick_place", 2, "early_stop", rng)
        assert early.success == robot.success() and not early.success
        assert early.frames[-1].shape == (64, 64, 3)
    finally:
        robot.close()


def test_bad_arguments_are_refused():
    result = subprocess.run([VLA, "sim", "clips", "--task", "stack", "--out", "x"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "stack" in result.stderr
    result = subprocess.run([VLA, "sim", "clips", "--task", "lift", "-n", "1", "--out", "x"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
