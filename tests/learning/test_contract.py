"""The online-trainer contract, checkpoints, the arm-to-learner message check and the noisy rewarders."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from vla.atomicfile import write_json_atomic
from vla.learning.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vla.learning.contract import EpisodeOutcome, LearningError, Param, fitness, parameter_space
from vla.learning.fleet import check_episode_message
from vla.learning.rewarders import NoisyRewarder, parse_noise
from vla.learning.source import ParameterSource, UnassignedSession
from vla.rewarder import Score


def test_params_check_their_ranges_and_spaces_their_names():
    with pytest.raises(ValueError, match="below"):
        Param("a", 1.0, 0.0, 0.5)
    with pytest.raises(ValueError, match="outside"):
        Param("a", 0.0, 1.0, 2.0)

    class Foreign:  # a policy plugin's own Param class
        def __init__(self, name):
            self.name, self.low, self.high, self.init = name, -1, 1, 0

    assert parameter_space([Foreign("x")]) == (Param("x", -1.0, 1.0, 0.0),)
    with pytest.raises(LearningError, match="repeat"):
        parameter_space([Foreign("x"), Foreign("x")])
    with pytest.raises(LearningError, match="empty"):
        parameter_space([])


def test_outcome_has_no_simulator_field_and_fitness_charges_effort():
    import attrs

    names = {f.name for f in attrs.fields(EpisodeOutcome)}
    assert names == {"candidate_id", "score", "success", "length_s", "path_m", "safety_events", "arm"}
    o = EpisodeOutcome("c", 0.9, True, 12.0, 2.0, 0, "sim01")
    assert fitness(o, 0.05) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="score"):
        EpisodeOutcome("c", 1.5, True, 1.0, 0.0, 0, "sim01")


def test_checkpoint_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.json"
    save_checkpoint(path, {"episodes": 10}, {"kind": "x", "history": [1]})
    assert load_checkpoint(path) == ({"episodes": 10}, {"kind": "x", "history": [1]})

    def dies_while_flushing(fd):  # the process dies with the new state half on disk
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", dies_while_flushing)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"episodes": 20}, {"kind": "x"})
    monkeypatch.undo()
    assert load_checkpoint(path)[0] == {"episodes": 10}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.json"]  # no temporary file left


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        load_checkpoint(tmp_path / "none.json")
    bad = write_json_atomic(tmp_path / "bad.json", {"format": "other"})
    with pytest.raises(CheckpointError, match="not a vla learn checkpoint"):
        load_checkpoint(bad)
    (tmp_path / "cut.json").write_text('{"format": "vla-lea')
    with pytest.raises(CheckpointError, match="cut.json"):
        load_checkpoint(tmp_path / "cut.json")


def test_the_learner_takes_only_the_rewarder_reply_and_the_arms_own_measurements():
    message = {"type": "episode", "arm": "sim01", "job": "g0:g0c0:s0", "length_s": 12.0, "path_m": 0.4,
               "safety_events": 0, "recorded": False,
               "reply": {"score": 0.8, "raw_score": 0.8, "success": True, "threshold": 0.5, "rewarder": "heuristic"}}
    assert check_episode_message(dict(message)) == message
    for leak in ("sim_success", "success", "environment_state"):
        with pytest.raises(LearningError, match="does not take"):
            check_episode_message({**message, leak: True})
    with pytest.raises(LearningError, match="without a rewarder reply"):
        check_episode_message({**message, "reply": {"score": 0.8}})


def test_parameter_source_hands_each_session_its_own_assignment():
    source = ParameterSource()
    with pytest.raises(UnassignedSession, match="learn-x-sim01"):
        source.params_for("learn-x-sim01")
    source.assign("learn-x-sim01", {"a": 1.0})
    source.assign("learn-x-sim02", {"a": 2.0})
    assert source.params_for("learn-x-sim02") == {"a": 2.0}
    got = source.params_for("learn-x-sim01")
    got["a"] = 5.0  # the policy's copy is its own
    assert source.params_for("learn-x-sim01") == {"a": 1.0}
    assert source.handed == {"learn-x-sim01": 2, "learn-x-sim02": 1}


class _Half:
    threshold = 0.5

    def score(self, frames, goal):
        return Score(0.9, True, {"rule": "test"})


def test_noisy_rewarders_flip_invert_and_zero():
    assert parse_noise("none") is None and parse_noise("flip:0.2") == ("flip", 0.2)
    assert parse_noise("invert") == ("invert", 1.0) and parse_noise("zero") == ("zero", 1.0)
    for bad in ("flip:2", "flip", "loud"):
        with pytest.raises(ValueError, match="flip:P"):
            parse_noise(bad)
    flip = NoisyRewarder(_Half(), "flip", 0.2, seed=1)
    scores = [flip.score([], "g").score for _ in range(2000)]
    share = np.mean(np.isclose(scores, 0.1))
    assert 0.17 < share < 0.23 and set(np.round(scores, 3)) == {0.1, 0.9}
    inverted = NoisyRewarder(_Half(), "invert").score([], "g")
    assert inverted.score == pytest.approx(0.1) and inverted.success is False
    zero = NoisyRewarder(_Half(), "zero").score([], "g")
    assert zero.score == 0.0 and zero.success is False


class _Sim:
    """An episodic robot's surface: it can reset, judge itself and tell its own time."""

    max_episode_s = 12.0

    def __init__(self):
        self.elapsed_s, self.won, self.resets = 0.0, False, []

    def reset(self, task, seed=None):
        self.resets.append((task, seed))
        self.elapsed_s = 0.0

    def success(self):
        return self.won

    def timed_out(self):
        return self.elapsed_s >= self.max_episode_s

    def observe(self, images=True):
        return {"observation.state": [0.0], "observation.environment_state": [1.0, 2.0], "task": "lift it",
                **({"observation.images.front": "frame"} if images else {})}


def test_the_control_loop_never_learns_of_the_simulators_success():
    from vla.learning.arm import LearningRobot

    sim = _Sim()
    robot = LearningRobot(sim, episode_s=None)
    robot.reset("lift", 3)
    sim.won = True
    assert robot.success() is False and robot.audit_success() is True  # only the audit reads it
    # the object poses stay on the arm: what the policy server gets has none
    assert robot.observe() == {"observation.state": [0.0], "task": "lift it", "observation.images.front": "frame"}
    assert "observation.images.front" not in robot.observe(images=False)
    assert not robot.timed_out()
    sim.elapsed_s = 12.0
    assert robot.timed_out() and sim.resets == [("lift", 3)]
    shorter = LearningRobot(sim, episode_s=7.0)
    sim.elapsed_s = 7.0  # the simulator's own time, not the wall clock
    assert shorter.max_episode_s == 7.0 and shorter.timed_out()
    sim.elapsed_s = 1.0
    shorter.aborted.set()  # an operator's pause ends the episode at once
    assert shorter.timed_out()


def test_a_real_arm_gets_an_operator_reset_and_a_wall_clock_limit():
    from vla.learning.arm import LearningRobot

    class Arm:
        joint_names = ("a",)

    robot = LearningRobot(Arm(), episode_s=0.05)
    robot.reset("lift the yellow cube", None)  # nothing to reset: the operator did
    assert robot.audit_success() is None and robot.joint_names == ("a",)
    assert not robot.timed_out()
    import time

    time.sleep(0.06)
    assert robot.timed_out()


def test_resuming_drops_the_unfinished_round_and_a_torn_line_from_the_learners_log(tmp_path):
    from vla.learning.loop import _keep_rounds_before

    log = tmp_path / "learner.jsonl"
    rounds = "".join(json.dumps({"generation": g, "job": f"g{g}:{i}"}) + "\n" for g in range(3) for i in range(2))
    log.write_text(rounds + '{"generation": 2, "jo')  # round 2 cut short mid-line by a SIGKILL
    _keep_rounds_before(log, 2)  # the checkpoint had taken in rounds 0 and 1
    assert [json.loads(line)["job"] for line in log.read_text().splitlines()] == ["g0:0", "g0:1", "g1:0", "g1:1"]
    _keep_rounds_before(tmp_path / "absent.jsonl", 2)  # a run killed before its first episode
