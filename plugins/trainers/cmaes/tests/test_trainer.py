"""The CMA-ES trainer through the online-trainer contract, on a toy task whose optimum is known."""

from __future__ import annotations

import json

import pytest

from vla.learning.contract import EpisodeOutcome, LearningError, OnlineTrainer, Param
from vla_cmaes.config import CMAESConfig
from vla_cmaes.trainer import CMAESTrainer

SPACE = [Param("dx", -0.05, 0.05, 0.0), Param("dy", -0.05, 0.05, 0.0), Param("yaw", -1.0, 1.0, 0.5)]
TARGET = {"dx": 0.03, "dy": -0.02, "yaw": -0.4}


def toy_score(params) -> float:
    """1 at TARGET, falling off with distance in range-scaled units (a stand-in rewarder)."""
    d = sum(((params[p.name] - TARGET[p.name]) / (p.high - p.low)) ** 2 for p in SPACE)
    return max(0.0, 1.0 - 4.0 * d)


def run_round(trainer, score=toy_score, path_m=0.0):
    jobs = []
    while (c := trainer.propose()) is not None:
        jobs.append(c)
    for c in jobs:
        for _ in range(trainer.episodes_per_candidate):
            trainer.ingest(EpisodeOutcome(c.id, score(c.params), score(c.params) > 0.5, 10.0, path_m, 0, "arm01"))
    assert trainer.complete()
    return trainer.update()


def test_learns_the_optimum_of_a_toy_rewarder():
    trainer = CMAESTrainer(CMAESConfig(layouts_per_generation=1), space=SPACE, seed=3)
    assert isinstance(trainer, OnlineTrainer)
    start = toy_score(trainer.best())
    for _ in range(40):
        stats = run_round(trainer)
    best = trainer.best()
    assert toy_score(best) > 0.98 > start
    assert stats["generation"] == 40 and stats["best_fitness"] > 0.98
    for p in SPACE:
        assert p.low <= best[p.name] <= p.high


def test_a_zero_rewarder_teaches_nothing_but_effort():
    """Every score 0: fitness is only the effort term, identical for all, so the mean wanders but
    never homes in on the target."""
    trainer = CMAESTrainer(CMAESConfig(layouts_per_generation=1, effort_per_m=0.05), space=SPACE, seed=3)
    for _ in range(20):
        stats = run_round(trainer, score=lambda p: 0.0, path_m=1.0)
    assert stats["best_fitness"] == pytest.approx(-0.05)
    assert toy_score(trainer.best()) < 0.9


def test_state_round_trips_through_json_and_continues_identically():
    a = CMAESTrainer(CMAESConfig(), space=SPACE, seed=11)
    for _ in range(5):
        run_round(a)
    saved = json.loads(json.dumps(a.state()))
    b = CMAESTrainer(CMAESConfig(), space=SPACE, seed=0)
    b.load_state(saved)
    assert b.generation == 5 and b.best() == a.best()
    for _ in range(3):
        assert run_round(a) == run_round(b)
    assert a.best() == b.best()
    assert [c.params for c in a.shortlist(4)] == [c.params for c in b.shortlist(4)]


def test_state_refuses_another_space_or_settings():
    a = CMAESTrainer(CMAESConfig(), space=SPACE, seed=1)
    run_round(a)
    with pytest.raises(LearningError, match="parameters"):
        CMAESTrainer(CMAESConfig(), space=SPACE[:2], seed=1).load_state(a.state())
    with pytest.raises(LearningError, match="settings"):
        CMAESTrainer(CMAESConfig(popsize=5), space=SPACE, seed=1).load_state(a.state())


def test_outcomes_must_belong_to_the_round_and_rounds_must_be_complete():
    t = CMAESTrainer(CMAESConfig(layouts_per_generation=2), space=SPACE, seed=1)
    c = t.propose()
    with pytest.raises(LearningError, match="not a candidate"):
        t.ingest(EpisodeOutcome("g9c0", 1.0, True, 1.0, 0.0, 0, "arm01"))
    t.ingest(EpisodeOutcome(c.id, 1.0, True, 1.0, 0.0, 0, "arm01"))
    t.ingest(EpisodeOutcome(c.id, 1.0, True, 1.0, 0.0, 0, "arm01"))
    with pytest.raises(LearningError, match="already has"):
        t.ingest(EpisodeOutcome(c.id, 1.0, True, 1.0, 0.0, 0, "arm01"))
    with pytest.raises(LearningError, match="not complete"):
        t.update()


def test_effort_breaks_ties_between_equal_scores():
    """Same rewarder score everywhere; the shorter path wins, so the search drifts toward it."""
    t = CMAESTrainer(CMAESConfig(layouts_per_generation=1, effort_per_m=0.1), space=SPACE, seed=2)
    for _ in range(25):
        jobs = []
        while (c := t.propose()) is not None:
            jobs.append(c)
        for c in jobs:  # the path grows with dx: a longer push
            t.ingest(EpisodeOutcome(c.id, 1.0, True, 5.0, 1.0 + 10 * (c.params["dx"] + 0.05), 0, "arm01"))
        t.update()
    assert t.best()["dx"] < -0.03


def test_registered_as_an_online_trainer():
    from vla.plugins import get_spec

    spec = get_spec("trainers", "cmaes")
    assert spec.mode == "online" and spec.config is CMAESConfig
    trainer = spec.build(CMAESConfig(), space=SPACE, seed=0)
    assert trainer.propose() is not None


def test_vla_train_refuses_an_online_trainer_and_names_vla_learn(tmp_path):
    from click.testing import CliRunner

    from vla.cli import cli

    result = CliRunner().invoke(cli, ["train", "--policy", "cmaes", "--dataset", str(tmp_path), "--steps", "1"])
    assert result.exit_code == 2
    assert "online trainer" in result.output and "vla learn --trainer cmaes" in result.output
