"""The rules behind each check, on small hand-made inputs (fast: no simulator, no training).

The numbers are the seed lab's where it gave them (seed 004): 50,000 steps x 32 over 100,832
frames, a gripper closed in 54.5% of training frames and 0% deployed, "Grab the brain" against
"Grasp a brain and put it in the bin.", training starting closed and deployment open.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from vla.matching.checks.actions import infer_units, wasserstein
from vla.matching.checks.start_state import evaluate
from vla.matching.checks.task import compare, word_diff
from vla.matching.results import FAIL, PASS, SKIP, WARN, Check, MatchReport, worst
from vla.matching.robot_facts import RobotFacts
from vla.matching.similarity import best_assignment

SO101 = RobotFacts("so101", ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"),
                   ((-1.91986, 1.91986), (-1.74533, 1.74533), (-1.69, 1.69), (-1.65806, 1.65806),
                    (-2.79253, 2.79253), (-0.174533, 1.74533)), "gripper", -0.174533, 1.74533)


def test_the_seed_labs_task_texts_fail_with_the_words_that_differ():
    result = compare("Grasp a brain and put it in the bin.", ["Grab the brain"])
    assert result["status"] == FAIL and result["closest"] == "Grab the brain"
    # the diff is an edit script: dropping {+...+} gives the training text, dropping [-...-] the deployed one
    import re

    diff = result["diff"]
    assert " ".join(re.sub(r"\{\+.*?\+\}|\[-|-\]", "", diff).split()) == "Grab the brain"
    assert " ".join(re.sub(r"\[-.*?-\]|\{\+|\+\}", "", diff).split()) == "Grasp a brain and put it in the bin."
    assert compare("Grab the brain", ["Grab the brain", "other"])["status"] == PASS
    assert compare("grab the  brain.", ["Grab the brain"])["status"] == WARN
    # the closest of several
    assert compare("lift the red cube", ["push the green cube", "lift the yellow cube"])["closest"] == "lift the yellow cube"
    assert word_diff("a b c", "a x c") == "a [-b-] {+x+} c"


def test_a_start_state_is_judged_joint_by_joint_and_the_gripper_open_or_closed():
    rng = np.random.default_rng(0)
    # training starts: shoulder_pan -8 deg +- 3 deg, gripper closed (0.5 deg), the rest near zero
    starts = np.zeros((40, 6))
    starts[:, 0] = np.radians(-8 + 3 * rng.standard_normal(40))
    starts[:, 5] = np.radians(0.5 + 0.3 * rng.standard_normal(40))
    names = list(SO101.joint_names)
    same = evaluate(starts[3], starts, names, SO101)
    assert same["status"] == PASS and same["gripper"]["deployment"] == "closed"
    far = starts[3].copy()
    far[0] = np.radians(14.0)
    far[5] = np.radians(40.0)  # open: (0.70 + 0.17) / 1.92 = 0.45 of the travel... still closed by the halfway rule
    result = evaluate(far, starts, names, SO101)
    pan = result["joints"]["shoulder_pan"]
    tol = max(3 * starts[:, 0].std(), 0.1)
    assert pan["outside_by"] == pytest.approx(far[0] - starts[:, 0].max()) and pan["tolerance"] == pytest.approx(tol)
    assert pan["status"] == (FAIL if pan["outside_by"] > 2 * tol else WARN)
    assert result["gripper"]["deployment"] == "closed"
    far[5] = np.radians(60.0)  # 1.05 rad: 0.64 of the travel, open
    result = evaluate(far, starts, names, SO101)
    assert result["gripper"] == {"joint": "gripper", "deployment": "open", "deployment_open_fraction":
                                 pytest.approx((math.radians(60) + 0.174533) / 1.919863), "dataset_closed_share": 1.0,
                                 "dataset_majority": "closed", "status": FAIL}
    assert result["status"] == FAIL


def test_units_are_read_against_the_robots_limits():
    q = np.linspace(-1.5, 1.5, 50)
    assert infer_units(q, SO101.limits[1], False) == "radians"
    assert infer_units(np.degrees(q), SO101.limits[1], False) == "degrees"
    assert infer_units(np.linspace(0, 100, 50), SO101.limits[5], True) == "percent"
    assert infer_units(np.linspace(-0.1, 1.6, 50), SO101.limits[5], True) == "radians"
    assert infer_units(np.linspace(0, 5000, 50), SO101.limits[0], False) == "unknown"


def test_wasserstein_distance_is_the_mean_quantile_gap():
    a = np.random.default_rng(1).normal(size=2000)
    assert wasserstein(a, a) == 0.0
    assert wasserstein(a, a + 0.5) == pytest.approx(0.5, abs=1e-9)


def test_the_best_camera_assignment_names_a_swap():
    scores = {"front": {"front": 0.35, "wrist": 0.8}, "wrist": {"front": 0.75, "wrist": 0.4}}
    best, total = best_assignment(scores, ["front", "wrist"], ["front", "wrist"])
    assert best == {"front": "wrist", "wrist": "front"} and total == pytest.approx(1.55)
    three = {c: {t: (0.9 if c == t else 0.2) for t in "abc"} for c in "abc"}
    assert best_assignment(three, "abc", "abc")[0] == {"a": "a", "b": "b", "c": "c"}


def test_the_report_fails_on_one_failed_check_and_skips_do_not_count():
    checks = [Check("a", PASS, "ok"), Check("b", WARN, "hm"), Check("c", SKIP, "no input")]
    report = MatchReport(checks, {}, None, {})
    assert (report.status, report.exit_code) == (WARN, 0)
    report.checks.append(Check("d", FAIL, "bad", {"x": np.float32(1.5), "v": np.arange(2)}))
    assert (report.status, report.exit_code) == (FAIL, 1)
    data = report.to_json()
    assert data["counts"] == {"pass": 1, "warn": 1, "fail": 1, "skip": 1}
    assert data["checks"][3]["numbers"] == {"x": 1.5, "v": [0, 1]}
    assert worst([SKIP, PASS]) == PASS and worst([]) == SKIP


def test_epochs_warning_cites_where_seven_comes_from(tmp_path):
    """The seed lab's run: 50,000 steps x 32 over 100,832 frames of 241 episodes."""
    from vla.matching.checkpoint import CheckpointInfo, TrainingRun
    from vla.matching.checks.training import check_training_length
    from vla.matching.deployment import Deployment
    from vla.matching.inputs import MatchInputs

    class Dataset:  # the two figures the check reads, as LeRobotDatasetReader gives them
        total_frames, total_episodes = 100_832, 241

    ckpt = CheckpointInfo("lerobot/smolvla", "ckpt", {}, training=TrainingRun(50_000, 32, source="train_config.json"))
    check = check_training_length(MatchInputs(Dataset(), Deployment(), ckpt))
    assert check.status == WARN and check.numbers["epochs"] == pytest.approx(15.87, abs=0.01)
    assert "seed 004" in check.summary and "3-7 epochs" in check.numbers["citation"]
    ckpt = CheckpointInfo("lerobot/smolvla", "ckpt", {}, training=TrainingRun(20_000, 32))
    assert check_training_length(MatchInputs(Dataset(), Deployment(), ckpt)).status == PASS  # 6.35 epochs
