"""EpisodeRecorder writes real LeRobot datasets (lerobot 0.4.4, v3.0) that LeRobotDataset loads.

Everything here is real: LeRobot's writer, PyAV's encoder, LeRobotDataset's loader and video
decoder. The robot is a small pattern arm (``pattern_arm.py``) whose camera pixels encode the
tick, so a decoded frame proves it is the right frame, not just a frame.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vla.recording import EpisodeRecorder, RecordingError, dataset_name, parse_dataset_name, slugify
from vla.recording.features import dataset_fps, lerobot_frame, robot_features

HERE = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("pattern_arm", HERE / "pattern_arm.py")
pattern_arm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pattern_arm)
PatternArm, frame_error = pattern_arm.PatternArm, pattern_arm.frame_error

GOAL = "put the red cube in the blue bowl"


# ----------------------------------------------------------------- naming and features (no lerobot)


def test_dataset_name_is_date_task_arm_run():
    name = dataset_name("pick_place", "arm01", "run7", dt.date(2026, 11, 21))
    assert name == "20261121_pick-place_arm01_run7"
    assert parse_dataset_name(name) == {"date": "20261121", "task": "pick-place", "arm_id": "arm01", "run_id": "run7"}
    assert slugify("Put the RED cube, in the bowl!") == "put-the-red-cube-in-the-bowl"
    with pytest.raises(ValueError, match="task"):
        dataset_name("!!!", "arm01", "1")
    with pytest.raises(ValueError, match="not a dataset name"):
        parse_dataset_name("pick_place_arm01")


def test_features_come_from_the_robot():
    arm = PatternArm()
    features = robot_features(arm, {"observation.environment_state": np.zeros(7)})
    assert features["observation.state"] == {"dtype": "float32", "shape": (6,), "names": list(arm.joint_names)}
    assert features["action"]["names"] == list(arm.joint_names)
    assert features["observation.images.front"]["dtype"] == "video"
    assert features["observation.images.front"]["shape"] == (48, 64, 3)
    assert features["observation.images.wrist"]["shape"] == (32, 32, 3)
    assert features["observation.environment_state"]["shape"] == (7,)
    assert "observation.environment_state" not in robot_features(arm, arm.observe())
    assert dataset_fps(None, 15.0) == 15
    with pytest.raises(ValueError, match="whole number"):
        dataset_fps(None, 12.5)


def test_bad_frames_are_refused_with_the_key_named():
    arm = PatternArm()
    features = robot_features(arm)
    obs = arm.observe()
    with pytest.raises(ValueError, match=r"action: expected shape \(6,\)"):
        lerobot_frame(features, obs, np.zeros(5), GOAL)
    with pytest.raises(ValueError, match="action: holds non-finite"):
        lerobot_frame(features, obs, np.full(6, np.nan), GOAL)
    bad = dict(obs, **{"observation.images.front": np.zeros((48, 64, 3), np.float32)})
    with pytest.raises(ValueError, match=r"observation.images.front: expected a uint8 array of shape \(48, 64, 3\)"):
        lerobot_frame(features, bad, np.zeros(6), GOAL)
    missing = {k: v for k, v in obs.items() if k != "observation.images.wrist"}
    with pytest.raises(ValueError, match="missing 'observation.images.wrist'"):
        lerobot_frame(features, missing, np.zeros(6), GOAL)


def test_recorder_refuses_calls_out_of_order(tmp_path):
    recorder = EpisodeRecorder(tmp_path, PatternArm(), "lift", "arm02", run_id="r1")
    with pytest.raises(RecordingError, match="start_episode first"):
        recorder.add_frame({}, np.zeros(6))
    recorder.start_episode()
    with pytest.raises(RecordingError, match="already being recorded"):
        recorder.start_episode()
    with pytest.raises(RecordingError, match="no frames"):
        recorder.end_episode()
    recorder.close()
    with pytest.raises(RecordingError, match="closed"):
        recorder.start_episode()
    assert not recorder.path.exists()  # nothing recorded, no dataset left behind


# ----------------------------------------------------------------- real datasets (lerobot)


def record_episode(recorder, arm, frames, task=GOAL):
    """Record ``frames`` ticks; returns the ticks recorded."""
    ticks = []
    recorder.start_episode(task)
    for _ in range(frames):
        ticks.append(arm.tick)
        obs = arm.observe()
        action = arm.action(arm.tick)
        recorder.add_frame(obs, action)
        arm.act(action)
    return ticks


def assert_episode_matches(ds, arm, episode, ticks, task):
    """Every frame of ``episode``: state, action, task text and both decoded camera frames."""
    start = ds.meta.episodes[episode]["dataset_from_index"]
    assert ds.meta.episodes[episode]["length"] == len(ticks)
    for offset, tick in enumerate(ticks):
        item = ds[start + offset]
        assert int(item["episode_index"]) == episode
        assert int(item["frame_index"]) == offset
        assert item["task"] == task
        np.testing.assert_allclose(item["observation.state"].numpy(), arm.state(tick), atol=1e-6)
        np.testing.assert_allclose(item["action"].numpy(), arm.action(tick), atol=1e-6)
        for cam in ("front", "wrist"):
            decoded = item[f"observation.images.{cam}"]
            error = frame_error(decoded, arm.image(cam, tick))
            assert error < 8, f"episode {episode} frame {offset} {cam}: off by {error:.1f} grey levels"
            for other in (tick - 1, tick + 1):  # and it is not a neighbouring frame
                assert frame_error(decoded, arm.image(cam, other)) > error + 8


@pytest.mark.lerobot
def test_recorded_dataset_loads_with_lerobot_and_frames_decode(tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    arm = PatternArm()
    recorder = EpisodeRecorder(tmp_path, arm, "pick_place", "arm01", run_id="7", date=dt.date(2026, 11, 21))
    assert recorder.path == tmp_path / "20261121_pick-place_arm01_7"
    first = record_episode(recorder, arm, 12)
    assert recorder.end_episode() == 0
    record_episode(recorder, arm, 5)
    recorder.discard_episode()  # interrupted: dropped, the next episode takes its index
    second = record_episode(recorder, arm, 9, task="lift the yellow cube")
    assert recorder.end_episode() == 1
    record_episode(recorder, arm, 4)
    recorder.close()  # an episode still open at close is discarded, not half-saved

    ds = LeRobotDataset(recorder.repo_id, root=recorder.path)
    assert ds.num_episodes == 2 and ds.num_frames == 21 and len(ds) == 21
    assert ds.fps == 10 and ds.meta.robot_type == "pattern_arm"
    assert ds.meta.names["observation.state"] == list(arm.joint_names)
    assert ds.meta.names["action"] == list(arm.joint_names)
    assert set(ds.meta.video_keys) == {"observation.images.front", "observation.images.wrist"}
    assert_episode_matches(ds, arm, 0, first, GOAL)
    assert_episode_matches(ds, arm, 1, second, "lift the yellow cube")
    assert not (recorder.path / "images").exists()  # no temporary PNGs left behind
    # stats cover exactly the saved frames (the discarded ones did not leak in)
    states = np.stack([arm.state(t) for t in first + second])
    np.testing.assert_allclose(ds.meta.stats["observation.state"]["max"], states.max(axis=0), atol=1e-6)
    np.testing.assert_allclose(ds.meta.stats["observation.state"]["min"], states.min(axis=0), atol=1e-6)


def run_recorder_subprocess(root: Path, run_id: str, episodes: int, mode: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, str(HERE / "record_and_wait.py"), str(root), run_id, str(episodes), mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


FRAMES = 8  # per finished episode in record_and_wait.py


@pytest.mark.lerobot
def test_sigkill_mid_episode_keeps_finished_episodes_and_the_run_resumes(tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    proc = run_recorder_subprocess(tmp_path, "k1", 2, "mid-episode")
    try:
        deadline = time.monotonic() + 150
        line = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.strip() == "IN-EPISODE" or not line:
                break
        assert line.strip() == "IN-EPISODE", f"recorder never reached episode 3:\n{proc.stderr.read()}"
        time.sleep(0.3)  # a few more frames of the third episode are on disk as PNGs
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    (path,) = list(tmp_path.iterdir())
    assert (path / "images").exists()  # the killed episode's frames really were being written

    arm = PatternArm()
    ds = LeRobotDataset(f"local/{path.name}", root=path)
    assert ds.num_episodes == 2 and ds.num_frames == 2 * FRAMES
    assert_episode_matches(ds, arm, 0, list(range(0, FRAMES)), GOAL)
    assert_episode_matches(ds, arm, 1, list(range(FRAMES, 2 * FRAMES)), GOAL)

    # the same run reopens: leftovers of the killed episode go, a new episode is appended
    recorder = EpisodeRecorder(tmp_path, arm, "pick_place", "arm01", run_id="k1")
    assert recorder.path == path and "images" in recorder.repair_report.removed
    arm.tick = 500
    ticks = record_episode(recorder, arm, 6)
    assert recorder.end_episode() == 2
    recorder.close()
    ds = LeRobotDataset(f"local/{path.name}", root=path)
    assert ds.num_episodes == 3 and ds.num_frames == 2 * FRAMES + 6
    assert_episode_matches(ds, arm, 1, list(range(FRAMES, 2 * FRAMES)), GOAL)
    assert_episode_matches(ds, arm, 2, ticks, GOAL)


@pytest.mark.lerobot
def test_sigkill_inside_save_episode_is_repaired_to_the_finished_episodes(tmp_path):
    """Killed after save_episode wrote the episode but before finalize wrote parquet footers."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from vla.recording import repair_dataset

    proc = run_recorder_subprocess(tmp_path, "k2", 1, "in-save")
    out, err = proc.communicate(timeout=150)
    assert proc.returncode == -signal.SIGKILL, f"recorder was not killed (rc={proc.returncode}):\n{out}\n{err}"
    (path,) = list(tmp_path.iterdir())
    # as the kill left it, lerobot cannot read the dataset: the footer-less files break loading
    with pytest.raises(Exception):
        LeRobotDataset(f"local/{path.name}", root=path)

    report = repair_dataset(path)
    assert report.episodes == 1 and report.frames == FRAMES
    assert any(r.startswith("meta/episodes/") for r in report.removed)
    assert any(r.startswith("data/") for r in report.removed)
    ds = LeRobotDataset(f"local/{path.name}", root=path)
    assert ds.num_episodes == 1 and ds.num_frames == FRAMES
    assert_episode_matches(ds, PatternArm(), 0, list(range(FRAMES)), GOAL)
    assert repair_dataset(path).removed == []  # a repaired dataset needs nothing more


@pytest.mark.lerobot
def test_recording_from_the_simulated_arm(tmp_path):
    """The sim (MuJoCo, rendered headless) recorded through the recorder: object poses included."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    sim = pytest.importorskip("vla_sim.robot", reason="vla-sim is not installed")
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    robot = sim.SimRobot(sim.SimConfig(control_hz=10.0, image_height=64, image_width=64))
    robot.connect()
    try:
        robot.reset("lift", seed=3)
        recorder = EpisodeRecorder(tmp_path, robot, "lift", "sim01", run_id="s1", parallel_encoding=False)
        recorder.start_episode("lift the yellow cube")
        seen = []
        q = robot.observe(images=False)["observation.state"].copy()
        for tick in range(10):
            obs = robot.observe()
            q = q + np.array([0.02, -0.01, 0.01, 0.0, 0.03, 0.0], np.float32)
            recorder.add_frame(obs, q)
            seen.append(obs)
            robot.act(q)
        assert recorder.end_episode() == 0
        recorder.close()
    finally:
        robot.disconnect()

    ds = LeRobotDataset(recorder.repo_id, root=recorder.path)
    assert ds.num_episodes == 1 and ds.num_frames == 10 and ds.fps == 10
    assert ds.meta.names["observation.state"] == list(robot.joint_names)
    env_dim = seen[0]["observation.environment_state"].shape[0]
    assert ds.features["observation.environment_state"]["shape"] == (env_dim,)
    for i, obs in enumerate(seen):
        item = ds[i]
        assert item["task"] == "lift the yellow cube"
        np.testing.assert_allclose(item["observation.state"].numpy(), obs["observation.state"], atol=1e-6)
        np.testing.assert_allclose(item["observation.environment_state"].numpy(), obs["observation.environment_state"], atol=1e-6)
        for cam in robot.cameras:
            assert frame_error(item[f"observation.images.{cam}"], obs[f"observation.images.{cam}"]) < 10
