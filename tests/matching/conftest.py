"""Shared fixtures for the deployment-vs-training checks, built once per session (they are slow):

- ``training``: 6 `lift` episodes recorded from the scripted expert with vla's EpisodeRecorder
  (LeRobot v3 dataset, front and wrist cameras at 48x64, 10 fps), the training dataset;
- ``checkpoints``: two tiny ACTs trained on it with the real `vla train` for 2 and 20 epochs
  (batch = every frame, so an epoch is one step: the cost here is per step, not per frame);
- ``recordings``: eval recordings of deployed episodes, made by the real control loop
  (controller, queue, safety layer, recorder) driving the sim on simulated time against the
  scripted expert through ``SimulatedLink`` (a stand-in for the socket only: the reply is the
  real policy's, delivered after a set latency): ``matching`` with the training's chunk
  settings and no delay, ``jumpy`` with 5-action chunks, latest-merge and a 0.45 s round trip;
- ``lab``: a lab folder (vla.yaml, arm files for the sim and the crossed sim).

``VLA_TEST_FIXTURES=DIR`` keeps the dataset, checkpoints and recordings in DIR and reuses
them on the next run (for working on these tests; CI builds them afresh).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

os.environ.setdefault("MUJOCO_GL", "egl")
HERE = Path(__file__).parent
HZ = 10.0
SIM = {"task": "lift", "control_hz": HZ, "image_height": 48, "image_width": 64, "cameras": ["front", "wrist"]}
EPISODES = 6
TINY_ACT = {"pretrained_backbone_weights": None, "dim_model": 32, "n_heads": 2, "dim_feedforward": 64,
            "n_encoder_layers": 1, "n_decoder_layers": 1, "latent_dim": 8, "chunk_size": 10, "n_action_steps": 10}
MATCHING_CLIENT = {"actions_per_chunk": 10, "chunk_size_threshold": 0.1, "merge": "latest"}
JUMPY_CLIENT = {"actions_per_chunk": 5, "chunk_size_threshold": 0.1, "merge": "latest"}


def _load_crossed():
    spec = importlib.util.spec_from_file_location("vla_test_crossed_sim", HERE / "crossed_sim.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["vla_test_crossed_sim"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def crossed_sim():
    pytest.importorskip("vla_sim")
    return _load_crossed()


@pytest.fixture
def with_crossed_sim(crossed_sim):
    """The plugin registry of this process with the `sim-crossed` robot added (in-process CLI runs)."""
    import vla.plugins as plugins

    previous = plugins._registry
    plugins._registry = plugins.load_registry(((crossed_sim.PLUGIN, "vla-test-crossed-sim"),))
    yield
    plugins._registry = previous


def _folder(tmp_path_factory, name: str) -> tuple[Path, bool]:
    """Where a session fixture builds, and whether a previous run (VLA_TEST_FIXTURES) already did."""
    cache = os.environ.get("VLA_TEST_FIXTURES")
    if not cache:
        return tmp_path_factory.mktemp(name), False
    path = Path(cache) / name
    done = path / ".done"
    return path, done.is_file()


def _done(path: Path) -> None:
    if os.environ.get("VLA_TEST_FIXTURES"):
        (path / ".done").write_text("")


def _sim(**overrides):
    from vla_sim.robot import SimConfig, SimRobot

    robot = SimRobot(SimConfig(**{**SIM, **overrides}))
    robot.connect()
    return robot


@pytest.fixture(scope="session")
def training(tmp_path_factory):
    pytest.importorskip("lerobot")
    pytest.importorskip("vla_sim")
    from vla_sim.demos import record_demonstrations
    from vla_sim.expert import ScriptedConfig, ScriptedPolicy

    from vla.recording import EpisodeRecorder

    root, built = _folder(tmp_path_factory, "training")
    if built:
        return next(p for p in root.iterdir() if p.is_dir())
    robot = _sim()
    recorder = EpisodeRecorder(root, robot, "lift", "arm0", run_id="demos")
    try:
        successes = record_demonstrations(robot, ScriptedPolicy(ScriptedConfig(control_hz=HZ, horizon=10)), recorder,
                                          "lift", range(EPISODES))
    finally:
        recorder.close()
        robot.disconnect()
    assert successes == EPISODES
    _done(root)
    return recorder.path


def _train(dataset: Path, output: Path, epochs: int) -> Path:
    from click.testing import CliRunner

    from vla.cli import cli

    frames = json.loads((dataset / "meta" / "info.json").read_text())["total_frames"]
    args = ["train", "--policy", "act", "--dataset", str(dataset), "--steps", str(epochs), "--batch-size", str(frames),
            "--output", str(output)]
    for key, value in TINY_ACT.items():
        args += ["-o", f"{key}={'null' if value is None else value}"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"= {epochs:.2f} epochs" in " ".join(result.output.split())
    return output


@pytest.fixture(scope="session")
def checkpoints(training, tmp_path_factory):
    root, built = _folder(tmp_path_factory, "checkpoints")
    if built:
        return {"matching": root / "act_2ep", "overtrained": root / "act_20ep"}
    out = {"matching": _train(training, root / "act_2ep", 2), "overtrained": _train(training, root / "act_20ep", 20)}
    _done(root)
    return out


def record_eval(root: Path, client: dict, latency_s: float, seeds=range(100, 103)) -> Path:
    """Deployed episodes through the session loop on simulated time, recorded as `vla run --record` does."""
    from vla_sim.expert import ScriptedConfig, ScriptedPolicy

    from vla.client.clock import SimulatedClock
    from vla.client.controller import Controller, ControlSettings
    from vla.client.safety import SafetyLayer
    from vla.client.session import run_episodes, wait_connected
    from vla.client.simlink import SimulatedLink
    from vla.client.ticklog import TickLog
    from vla.recording import EpisodeRecorder

    robot = _sim()
    clock = SimulatedClock(100.0)
    log = TickLog(None, t0=clock.now())
    safety = SafetyLayer(_safety_config(), robot.joint_names, robot.forward_kinematics)
    settings = ControlSettings(HZ, actions_per_chunk=client["actions_per_chunk"],
                               chunk_size_threshold=client["chunk_size_threshold"], merge=client["merge"])
    controller = Controller(robot, safety, settings, clock, log, task="lift")
    link = SimulatedLink(ScriptedPolicy(ScriptedConfig(control_hz=HZ, horizon=10)), clock, lambda: latency_s)
    wait_connected(controller, link, clock, 5.0)
    recorder = EpisodeRecorder(root, robot, "lift", "arm0", run_id="eval", fps=HZ)
    try:
        results = run_episodes(robot, controller, link, clock, task="lift", episodes=len(seeds), seed=seeds[0],
                               recorder=recorder)
    finally:
        recorder.close()
        robot.disconnect()
    assert all(r.recorded is not None for r in results)
    return recorder.path


def _safety_config():
    from vla.description import get_description

    return get_description("sim").default_safety()


@pytest.fixture(scope="session")
def recordings(training, tmp_path_factory):
    root, built = _folder(tmp_path_factory, "recordings")
    if built:
        return {name: next((root / name).iterdir()) for name in ("matching", "jumpy")}
    out = {"matching": record_eval(root / "matching", MATCHING_CLIENT, 0.0),
           "jumpy": record_eval(root / "jumpy", JUMPY_CLIENT, 0.45)}
    _done(root)
    return out


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    (root / "sim0.yaml").write_text(yaml.safe_dump({"robot": "sim", "config": SIM}))
    (root / "crossed.yaml").write_text(yaml.safe_dump({"robot": "sim-crossed", "config": SIM}))
    for name, client in (("vla.yaml", MATCHING_CLIENT), ("jumpy.yaml", JUMPY_CLIENT)):
        (root / name).write_text(yaml.safe_dump({"arms": {"sim0": "sim0.yaml", "crossed": "crossed.yaml"},
                                                 "client": client, "log_dir": "logs"}))
    return root


def lerobot_columns(dataset: Path) -> dict[str, np.ndarray]:
    """Actions, states and episode indices as lerobot's own LeRobotDataset reads them (the tests'
    reference, independent of vla.matching's reader)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    hf = LeRobotDataset(f"local/{dataset.name}", root=dataset).hf_dataset.with_format("numpy")
    return {"action": np.stack(hf["action"]).astype(np.float64), "state": np.stack(hf["observation.state"]).astype(np.float64),
            "episode": np.asarray(hf["episode_index"]), "frame": np.asarray(hf["frame_index"])}


def max_jumps(columns: dict[str, np.ndarray]) -> np.ndarray:
    same = columns["episode"][1:] == columns["episode"][:-1]
    return np.abs(np.diff(columns["action"], axis=0))[same].max(0)


@pytest.fixture(scope="session")
def helpers():
    """This module, for tests (pytest's importlib mode cannot import conftest by name)."""
    return sys.modules[__name__]
