"""`vla doctor --dataset` on the simulated arm: each mismatch flagged by its check, with its numbers.

The training dataset is recorded from the scripted expert; the checkpoints are tiny ACTs trained
on it with `vla train`; eval recordings come from the real control loop (see conftest.py).
Deployments: (a) another task text, (b) front and wrist cameras crossed, (c) a start pose far
from the training's with the gripper open, (d) a checkpoint trained for 20 epochs, (e) an eval
recording whose chunk settings make the actions jump; and one that matches, which passes every
check. Expected numbers are computed here independently (lerobot's own dataset reader, numpy).
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from vla.cli import cli
from vla.matching.checks import CHECK_NAMES

pytestmark = [pytest.mark.lerobot, pytest.mark.slow]


def doctor(lab: Path, *args: str, config: str = "vla.yaml"):
    """`vla doctor --json` in this process; returns (exit code, parsed JSON, stderr text)."""
    result = CliRunner().invoke(cli, ["--config", str(lab / config), "doctor", *args, "--json"])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"no JSON on stdout (exit {result.exit_code}):\n{result.stdout}\n{result.stderr}") from None
    return result.exit_code, report, result.stderr


def checks(report) -> dict:
    return {c["name"]: c for c in report["checks"]}


def test_a_matching_deployment_passes_every_check(training, checkpoints, recordings, lab, tmp_path):
    code, report, err = doctor(lab, "--dataset", str(training), "--checkpoint", str(checkpoints["matching"]),
                               "--arm", "sim0", "--task", "lift", "--episodes", str(recordings["matching"]),
                               "--report", str(tmp_path / "report"))
    by_name = checks(report)
    assert {n: c["status"] for n, c in by_name.items()} == {n: "pass" for n in CHECK_NAMES}, json.dumps(report, indent=1)
    assert code == 0 and report["status"] == "pass" and report["exit_code"] == 0
    # the stable shape documented in the README
    assert set(report) == {"schema", "status", "exit_code", "counts", "dataset", "checkpoint", "deployment", "checks"}
    assert report["schema"] == "vla.doctor/1" and [c["name"] for c in report["checks"]] == list(CHECK_NAMES)
    assert all(set(c) == {"name", "status", "summary", "numbers"} for c in report["checks"])
    assert report["counts"] == {"pass": 10, "warn": 0, "fail": 0, "skip": 0}
    # the numbers behind two of the passes
    info = json.loads((training / "meta" / "info.json").read_text())
    assert by_name["training_length"]["numbers"]["epochs"] == pytest.approx(2.0)
    assert by_name["training_length"]["numbers"]["dataset_frames"] == info["total_frames"]
    identity = by_name["camera_identity"]["numbers"]["sources"]
    assert set(identity) == {"live", "recording"}
    for source in identity.values():
        assert source["best"] == source["expected"] == {"front": "front", "wrist": "wrist"}
    # the HTML page: the numbers, each camera's frames side by side, the histograms
    page = tmp_path / "report" / "index.html"
    names = {p.name for p in (tmp_path / "report").rglob("*.png")}
    assert {"live_front_deployed.png", "live_front_training_front.png", "live_front_training_wrist.png",
            "recording_wrist_deployed.png", "start_states.png", "actions.png", "action_jumps.png"} <= names
    assert json.loads((tmp_path / "report" / "report.json").read_text())["checks"] == report["checks"]
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'id="verdict"' in dom.stdout and ">pass</span>" in dom.stdout
    assert dom.stdout.count("<tr>") == len(CHECK_NAMES) and "frames/live_wrist_deployed.png" in dom.stdout


def test_a_different_task_text_fails_with_the_closest_training_task(training, lab):
    # on the sim the task id chooses the goal text the policy receives: push_left's is not lift's
    code, report, _ = doctor(lab, "--dataset", str(training), "--arm", "sim0", "--task", "push_left")
    task = checks(report)["task"]
    assert code == 1 and task["status"] == "fail"
    (compared,) = task["numbers"]["compared"]
    from vla_sim.tasks import resolve_task

    assert compared["text"] == resolve_task("push_left").goal and compared["closest"] == "lift the yellow cube"
    assert task["numbers"]["dataset_tasks"] == ["lift the yellow cube"]
    # free text on a real arm: the words that differ are shown; a full stop alone only warns
    code, report, _ = doctor(lab, "--dataset", str(training), "--task", "lift the red cube")
    task = checks(report)["task"]
    assert code == 1 and task["status"] == "fail" and "[-yellow-] {+red+}" in task["summary"]
    code, report, _ = doctor(lab, "--dataset", str(training), "--task", "Lift the yellow cube.")
    assert code == 0 and checks(report)["task"]["status"] == "warn"


def test_crossed_front_and_wrist_cameras_fail_the_identity_check(training, checkpoints, lab, with_crossed_sim):
    code, report, _ = doctor(lab, "--dataset", str(training), "--checkpoint", str(checkpoints["matching"]),
                             "--arm", "crossed", "--task", "lift")
    by_name = checks(report)
    identity = by_name["camera_identity"]
    assert code == 1 and identity["status"] == "fail"
    live = identity["numbers"]["sources"]["live"]
    assert live["expected"] == {"front": "front", "wrist": "wrist"}
    assert live["best"] == {"front": "wrist", "wrist": "front"}
    assert sorted(map(tuple, live["swapped"])) == [("front", "wrist"), ("wrist", "front")]
    scores = live["scores"]
    assert scores["front"]["wrist"] > scores["front"]["front"] and scores["wrist"]["front"] > scores["wrist"]["wrist"]
    assert live["best_mean"] - live["straight_mean"] >= identity["numbers"]["swap_margin"]
    assert "front looks like the training's wrist" in identity["summary"]
    # the names and shapes are right: only the identity check can see this
    assert by_name["cameras"]["status"] == "pass" and [c["name"] for c in report["checks"] if c["status"] == "fail"] == [
        "camera_identity"]


def test_a_start_state_far_from_the_training_fails_joint_by_joint(training, helpers):
    """The sim arm is driven somewhere the training never started, gripper open, then checked."""
    from vla_sim.robot import SimConfig, SimRobot

    from vla.matching.deployment import Deployment, from_observation
    from vla.matching.inputs import MatchInputs
    from vla.matching.robot_facts import robot_facts
    from vla.matching.run import open_dataset, run_checks

    robot = SimRobot(SimConfig(**helpers.SIM))
    robot.connect()
    far = np.array([0.9, -0.3, 0.9, 0.7, 1.2, 1.2])  # gripper 1.2 rad: open
    for _ in range(30):
        robot.act(far)
    observation = robot.observe()
    robot.disconnect()
    deployment = Deployment(task="lift the yellow cube", robot="sim", facts=robot_facts(robot, "sim"),
                            joint_names=tuple(robot.joint_names), live=from_observation(observation))
    report = run_checks(MatchInputs(open_dataset(training), deployment), only=("start_state",))
    check = report.get("start_state")
    assert check.status == "fail" and report.exit_code == 1

    columns = helpers.lerobot_columns(training)
    starts = columns["state"][columns["frame"] == 0]
    q = observation["observation.state"].astype(np.float64)
    live = check.numbers["sources"]["live"]
    for j, name in enumerate(robot.joint_names):
        lo, hi = starts[:, j].min(), starts[:, j].max()
        tol = max(3 * starts[:, j].std(), 0.1)
        outside = max(0.0, lo - q[j], q[j] - hi)
        got = live["joints"][name]
        assert got["deployment"] == pytest.approx(q[j], abs=1e-6)
        assert (got["dataset_min"], got["dataset_max"]) == (pytest.approx(lo, abs=1e-6), pytest.approx(hi, abs=1e-6))
        assert got["outside_by"] == pytest.approx(outside, abs=1e-6) and got["tolerance"] == pytest.approx(tol, abs=1e-6)
        assert got["status"] == ("fail" if outside > 2 * tol else "warn" if outside > tol else "pass")
    assert live["joints"]["shoulder_pan"]["status"] == "fail" and live["joints"]["wrist_roll"]["status"] == "fail"
    assert live["gripper"] == {"joint": "gripper", "deployment": "open", "deployment_open_fraction":
                               pytest.approx((q[5] + 0.174533) / (1.74533 + 0.174533), abs=1e-4),
                               "dataset_closed_share": 1.0, "dataset_majority": "closed", "status": "fail"}
    assert f"the training started closed in {len(starts)}/{len(starts)} episodes" in check.summary
    # the arm back at the training's start pose passes
    robot = SimRobot(SimConfig(**helpers.SIM))
    robot.connect()
    deployment.live = from_observation(robot.observe())
    robot.disconnect()
    assert run_checks(MatchInputs(open_dataset(training), deployment), only=("start_state",)).get("start_state").status == "pass"


def test_a_checkpoint_trained_for_20_epochs_warns_citing_the_source(training, checkpoints, lab):
    code, report, _ = doctor(lab, "--dataset", str(training), "--checkpoint", str(checkpoints["overtrained"]))
    check = checks(report)["training_length"]
    info = json.loads((training / "meta" / "info.json").read_text())
    n = check["numbers"]
    assert check["status"] == "warn" and code == 0  # a warning: exit 0
    assert (n["steps"], n["batch_size"], n["dataset_frames"]) == (20, info["total_frames"], info["total_frames"])
    assert n["epochs"] == pytest.approx(20.0) and n["dataset_episodes"] == 6 and n["max_epochs"] == 7
    assert n["source"].endswith("vla_train.json") and "seed 004" in n["citation"]
    assert f"20 steps x {info['total_frames']} / {info['total_frames']} frames = 20.00 epochs" in check["summary"]
    assert "above 7 epochs for a dataset of 6 episodes" in check["summary"] and "seed 004" in check["summary"]
    _, report, _ = doctor(lab, "--dataset", str(training), "--checkpoint", str(checkpoints["matching"]))
    assert checks(report)["training_length"]["status"] == "pass"


def test_an_eval_recording_whose_chunk_settings_jump_fails(training, checkpoints, recordings, lab, helpers):
    code, report, _ = doctor(lab, "--dataset", str(training), "--checkpoint", str(checkpoints["matching"]),
                             "--episodes", str(recordings["jumpy"]), config="jumpy.yaml")
    check = checks(report)["action_jumps"]
    assert code == 1 and check["status"] == "fail"
    train_max = helpers.max_jumps(helpers.lerobot_columns(training))
    eval_max = helpers.max_jumps(helpers.lerobot_columns(recordings["jumpy"]))
    joints = check["numbers"]["joints"]
    names = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
    for j, name in enumerate(names):
        assert joints[name]["dataset_max"] == pytest.approx(train_max[j], abs=1e-6)
        assert joints[name]["recording_max"] == pytest.approx(eval_max[j], abs=1e-6)
        assert joints[name]["ratio"] == pytest.approx(eval_max[j] / max(train_max[j], 0.01), rel=1e-6)
    worst = check["numbers"]["worst_joint"]
    assert joints[worst]["ratio"] >= 2.0 and joints[worst]["ratio"] == max(j["ratio"] for j in joints.values())
    assert f"{worst} up to {eval_max[names.index(worst)]:.3f} rad" in check["summary"]
    # the settings behind it, as the chunking check reads them
    chunking = checks(report)["chunking"]["numbers"]
    assert (chunking["actions_per_chunk"], chunking["replan_every_ticks"], chunking["horizon"]) == (5, 5, 10)
    # the matching recording's jumps stay within the training's
    _, report, _ = doctor(lab, "--dataset", str(training), "--episodes", str(recordings["matching"]))
    assert checks(report)["action_jumps"]["status"] == "pass"


def test_actions_in_degrees_fail_the_units_check(training, tmp_path, lab, helpers):
    """The same demonstrations written as LeRobot's SO-101 driver records them: degrees, gripper 0-100."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    columns = helpers.lerobot_columns(training)
    names = [f"{j}.pos" for j in ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")]
    features = {"observation.state": {"dtype": "float32", "shape": (6,), "names": names},
                "action": {"dtype": "float32", "shape": (6,), "names": names}}
    ds = LeRobotDataset.create("local/degrees", fps=10, root=tmp_path / "degrees", features=features,
                               robot_type="so101_follower", use_videos=False)

    def lerobot_units(q):
        out = np.degrees(q)
        out[:, 5] = (q[:, 5] + 0.174533) / 1.919863 * 100.0
        return out.astype(np.float32)

    state, action = lerobot_units(columns["state"]), lerobot_units(columns["action"])
    for episode in np.unique(columns["episode"]):
        for i in np.flatnonzero(columns["episode"] == episode):
            ds.add_frame({"observation.state": state[i], "action": action[i], "task": "lift the yellow cube"})
        ds.save_episode()
    ds.finalize()
    code, report, _ = doctor(lab, "--dataset", str(tmp_path / "degrees"), "--robot", "sim", "--task", "lift")
    units = checks(report)["units"]
    assert code == 1 and units["status"] == "fail"
    assert units["numbers"]["dataset_action"][5] == "percent" and "degrees" in units["numbers"]["dataset_action"]
    assert "dataset action in degrees (shoulder_pan, shoulder_lift, elbow_flex, wrist_flex" in units["summary"]
    assert "percent (gripper)" in units["summary"] and "the robot speaks radians" in units["summary"]
    assert checks(report)["start_state"]["status"] == "fail"  # 0 rad is far from -48 "degrees"


def test_unreadable_inputs_exit_2_naming_them(training, lab, tmp_path):
    result = CliRunner().invoke(cli, ["--config", str(lab / "vla.yaml"), "doctor", "--dataset",
                                                      str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such dataset folder" in result.stderr
    result = CliRunner().invoke(cli, ["--config", str(lab / "vla.yaml"), "doctor", "--dataset",
                                                      str(training), "--checkpoint", str(tmp_path)])
    assert result.exit_code == 2 and "no installed policy plugin reads this checkpoint" in result.stderr
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    assert result.exit_code == 2 and "--json only go with --dataset" in result.stderr
