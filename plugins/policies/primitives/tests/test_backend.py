"""The backend in-process on the simulator: plans that pass the safety layer, per-session
parameters, where a later chunk starts, the learned parameters succeeding, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vla.client.safety import SafetyLayer
from vla.policy import PolicyBackend
from vla_primitives import ParamsError, set_parameter_source
from vla_primitives.backend import PrimitivesBackend
from vla_primitives.config import PrimitivesConfig
from vla_so101_description.description import SO101

from .conftest import GOALS, LEARNED, Fixed, play


def _first(robot, backend, task, seed, params, session="s"):
    robot.reset(task, seed)
    backend.source = Fixed(params)
    obs = robot.observe()
    obs.update(session=session, reset=True)
    return obs, backend.infer([obs])[0]


def test_info_announces_the_front_camera_and_long_chunks(backend):
    assert isinstance(backend, PolicyBackend)
    info = backend.info()
    assert info.name == "primitives" and [c.name for c in info.cameras] == ["front"]
    assert info.cameras[0].shape == (224, 224, 3)
    assert (info.state_dim, info.action_dim, info.horizon) == (6, 6, 600) and info.supports_rtc


@pytest.mark.parametrize("task", list(GOALS))
@pytest.mark.parametrize("which", ["init", "learned", "extreme"])
def test_plans_pass_the_default_safety_layer_untouched(sim, backend, task, which):
    from vla_primitives import parameter_space

    space = parameter_space(GOALS[task])
    params = {"init": {}, "learned": LEARNED[task], "extreme": {p.name: p.low for p in space}}[which]
    obs, chunk = _first(sim, backend, task, 21, params)
    plan = backend.episode("s").plan
    layer = SafetyLayer(SO101.default_safety(), SO101.joint_names, SO101.kinematics.forward_kinematics)
    last = obs["observation.state"].astype(np.float64)
    for q in plan:
        command, clamps = layer.limit(q, last)
        assert clamps == (), (which, clamps)
        last = command
    assert chunk.shape == (600, 6) and chunk.dtype == np.float32
    # a still start: a late first reply skips stillness, not motion
    np.testing.assert_allclose(plan[:10], np.repeat(obs["observation.state"][None], 10, axis=0), atol=1e-6)


def test_environment_state_is_never_read(sim, backend):
    obs, chunk = _first(sim, backend, "pick_place", 33, LEARNED["pick_place"])
    poisoned = dict(obs, **{"observation.environment_state": np.full_like(obs["observation.environment_state"], 7.0)})
    without = {k: v for k, v in obs.items() if k != "observation.environment_state"}
    for variant in (poisoned, without):
        np.testing.assert_array_equal(backend.infer([variant])[0], chunk)


def test_params_come_from_the_source_once_per_episode_and_session(sim, backend):
    source = Fixed(LEARNED["lift"])
    set_parameter_source(backend, source)
    sim.reset("lift", 5)
    obs = sim.observe()
    for session in ("learn-run-arm01", "learn-run-arm02"):
        backend.infer([dict(obs, session=session, reset=True)])
    rest = backend.infer([dict(obs, session="learn-run-arm01")])[0]  # no reset: the same episode
    assert source.calls == ["learn-run-arm01", "learn-run-arm02"]
    assert backend.episode("learn-run-arm01").params["lift_z"] == LEARNED["lift"]["lift_z"]
    assert rest.shape == (600, 6)
    with pytest.raises(TypeError, match="params_for"):
        set_parameter_source(backend, object())


def test_a_later_chunk_continues_the_plan_where_the_arm_is(sim, backend):
    obs, chunk = _first(sim, backend, "push_left", 8, LEARNED["push_left"])
    plan = backend.episode("s").plan
    for action in chunk[:40]:
        sim.act(action)
    now = sim.observe()
    # RTC: the unexecuted rest of the last chunk says exactly where
    rtc = backend.infer([dict(now, session="s", prev_chunk=chunk[40:])])[0]
    np.testing.assert_array_equal(rtc, np.vstack([plan, np.repeat(plan[-1:], 640, 0)])[40:640])
    # without it, the nearest planned pose to the measured joints (within a few ticks)
    backend.episode("s").start = 0
    latest = backend.infer([dict(now, session="s")])[0]
    j = int(np.argmin(np.abs(plan - latest[0]).max(axis=1)))
    assert 36 <= j <= 44


@pytest.mark.parametrize("task", list(GOALS))
def test_learned_params_succeed_on_held_out_layouts(sim, backend, task):
    results = [play(sim, backend, GOALS[task], 700000 + i, LEARNED[task]) for i in range(5)]
    assert sum(results) >= 5, results


def test_the_initial_params_are_a_start_not_a_solution(sim, backend):
    # what a run that learns nothing ends with: the middle of every range fails these layouts
    assert not any(play(sim, backend, GOALS[t], 710000, {}) for t in ("lift", "pick_place"))


def test_fixed_params_from_a_json_file(tmp_path, calibration_file, sim):
    path = tmp_path / "params.json"
    path.write_text(json.dumps([{"task": GOALS[t], "params": LEARNED[t]} for t in ("lift", "push_left")]))
    backend = PrimitivesBackend(PrimitivesConfig(calibration=str(calibration_file), params=str(path), robot="sim"))
    sim.reset("lift", 720001)
    backend.infer([dict(sim.observe(), session="f", reset=True)])
    assert backend.episode("f").params == pytest.approx(LEARNED["lift"])
    sim.reset("pick_place", 720001)  # a goal the file does not name: the initial values
    backend.infer([dict(sim.observe(), session="f", reset=True)])
    assert backend.episode("f").params["release_z"] == pytest.approx(0.11)


@pytest.mark.parametrize("content, match", [
    ("{not json", "not a JSON parameters file"),
    ('{"task": "lift the yellow cube"}', "expected"),
    ('{"task": "lift the yellow cube", "params": {"push_z": 0.1}}', "push_z are not in the space"),
    ('{"task": "lift the pink cube", "params": {}}', "colour 'pink'"),
])
def test_bad_params_files_are_refused_naming_the_problem(tmp_path, calibration_file, content, match):
    path = tmp_path / "params.json"
    path.write_text(content)
    with pytest.raises(ParamsError, match=match):
        PrimitivesBackend(PrimitivesConfig(calibration=str(calibration_file), params=str(path), robot="sim"))


def test_per_arm_calibrations_by_session_part(calibration_file, tmp_path):
    from vla.calibration.camera import CameraCalibration

    other = CameraCalibration.load(calibration_file)
    import attrs

    moved = attrs.evolve(other, t=tuple(np.asarray(other.t) + [0.0, 0.0, 0.01])).save(tmp_path / "arm02.yaml")
    backend = PrimitivesBackend(PrimitivesConfig(calibration=str(calibration_file), robot="sim",
                                                 calibrations={"arm02": str(moved)}))
    assert backend.calibration_for("learn-20261202-arm02").t == CameraCalibration.load(moved).t
    assert backend.calibration_for("learn-20261202-arm01").t == other.t


def test_clear_errors(sim, backend, tmp_path):
    with pytest.raises(ValueError, match="need a camera calibration: set calibration=PATH"):
        PrimitivesBackend(PrimitivesConfig(robot="sim"))
    with pytest.raises(ValueError, match="no such calibration file"):
        PrimitivesBackend(PrimitivesConfig(calibration=str(tmp_path / "nope.yaml"), robot="sim"))
    sim.reset("lift", 2)
    obs = dict(sim.observe(), session="e", reset=True)
    backend.source = None
    with pytest.raises(ValueError, match="colour 'pink'"):
        backend.infer([dict(obs, task="lift the pink cube")])
    with pytest.raises(ValueError, match="do not know the goal"):
        backend.infer([dict(obs, task="wave hello")])
    with pytest.raises(ValueError, match="no purple object"):
        backend.infer([dict(obs, task="lift the purple cube")])
    # a failed start forgets the last episode: a retry is planned afresh, not the old plan replayed
    backend.infer([dict(obs, task=GOALS["lift"])])
    with pytest.raises(ValueError, match="no purple object"):
        backend.infer([dict(obs, task="lift the purple cube")])
    assert backend.episode("e") is None
    with pytest.raises(ValueError, match="front camera's frame"):
        backend.infer([{k: v for k, v in obs.items() if not k.startswith("observation.images")}])
    with pytest.raises(ValueError, match="expected 6 finite joint positions"):
        backend.infer([dict(obs, **{"observation.state": np.zeros(3, np.float32)})])


@pytest.mark.parametrize("merge", ["latest", "weighted_average"])
def test_short_chunks_without_rtc_still_follow_the_plan(sim, backend, merge):
    """`vla run`'s defaults elsewhere: 40 actions used of each chunk, a request every 16 ticks,
    no prev_chunk; the backend finds its place in the plan from the measured joints."""
    from vla.client.clock import SimulatedClock
    from vla.client.controller import Controller, ControlSettings
    from vla.client.session import run_episodes, wait_connected
    from vla.client.simlink import SimulatedLink
    from vla.client.ticklog import TickLog

    backend.source = Fixed(LEARNED["lift"])
    clock = SimulatedClock(100.0)
    log = TickLog(None, t0=clock.now())
    log.records = []
    safety = SafetyLayer(SO101.default_safety(), SO101.joint_names, SO101.kinematics.forward_kinematics)
    controller = Controller(sim, safety, ControlSettings(30.0, actions_per_chunk=40, merge=merge), clock, log,
                            session="short")
    link = SimulatedLink(backend, clock, lambda: 0.05)
    wait_connected(controller, link, clock, 5.0)
    results = run_episodes(sim, controller, link, clock, task=GOALS["lift"], episodes=2, seed=740000)
    assert [r.success for r in results] == [True, True]
    assert controller.totals["requests"] >= 8  # many short chunks, not one plan sent whole
    assert not any(r["clamps"] for r in log.records if r["type"] == "tick")
