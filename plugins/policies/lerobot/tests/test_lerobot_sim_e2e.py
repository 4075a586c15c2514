"""Record, train, serve and run, on the CPU with no hub download (issue 7's path).

1. The simulated SO-101 (`vla-sim`) and its scripted expert record 20 episodes of `lift`
   into a LeRobot dataset with vla's ``EpisodeRecorder`` (radians, as the sim reports them).
2. `vla train --policy act` trains a tiny ACT on it for a handful of steps and prints the epochs.
3. The real `vla serve --policy lerobot` serves the checkpoint; its metadata must describe the
   policy (cameras and shapes, state and action sizes, horizon), and its answer must equal
   LeRobot's own inference on the same checkpoint (the checkpoint round-trips through the server).
4. The real `vla run` drives the simulated arm with it for one short episode.
5. The same for a tiny Diffusion Policy: train, serve (vla's PolicyServer in this process) and infer.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = [pytest.mark.lerobot, pytest.mark.slow]
pytest.importorskip("lerobot")
pytest.importorskip("vla_sim")
os.environ.setdefault("MUJOCO_GL", "egl")

TASK_ID = "lift"
HZ = 10.0
SIM = {"task": TASK_ID, "control_hz": HZ, "image_height": 48, "image_width": 64, "cameras": ["front"]}
EPISODES = 20


@pytest.fixture(scope="module")
def sim_dataset(tmp_path_factory):
    """20 scripted `lift` episodes recorded from the simulator with vla's EpisodeRecorder."""
    from vla_sim.demos import record_demonstrations
    from vla_sim.expert import ScriptedConfig, ScriptedPolicy
    from vla_sim.robot import SimConfig, SimRobot

    from vla.recording import EpisodeRecorder

    root = tmp_path_factory.mktemp("recordings")
    robot = SimRobot(SimConfig(**SIM))
    robot.connect()
    expert = ScriptedPolicy(ScriptedConfig(control_hz=HZ, horizon=10))
    recorder = EpisodeRecorder(root, robot, TASK_ID, "arm0", run_id="ci")
    try:
        successes = record_demonstrations(robot, expert, recorder, TASK_ID, range(EPISODES))
    finally:
        recorder.close()
        robot.disconnect()
    (dataset,) = [p for p in root.iterdir() if p.is_dir()]
    info = json.loads((dataset / "meta" / "info.json").read_text())
    assert info["total_episodes"] == EPISODES
    assert successes >= 0.9 * EPISODES  # the expert solves lift; the demonstrations are good ones
    return dataset


def train(dataset: Path, policy: str, output: Path, steps: int, batch: int, options: dict, helpers) -> str:
    from click.testing import CliRunner

    from vla.cli import cli

    args = ["train", "--policy", policy, "--dataset", str(dataset), "--steps", str(steps), "--batch-size", str(batch),
            "--output", str(output), *helpers.cli_options(options)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def lab_files(tmp: Path, checkpoint: Path) -> Path:
    (tmp / "sim0.yaml").write_text(yaml.safe_dump({"robot": "sim", "config": SIM}))
    config = tmp / "vla.yaml"
    config.write_text(yaml.safe_dump({
        "arms": {"sim0": "sim0.yaml"},
        "plugins": {"lerobot": {"path": str(checkpoint)}},
        "client": {"actions_per_chunk": 10, "merge": "latest"},
    }))
    return config


async def fetch(url: str, obs: dict) -> tuple[dict, dict]:
    from vla.protocol.client import PolicyClient

    client = await PolicyClient.connect(url, open_timeout=30)
    try:
        return client.metadata, await client.infer(obs)
    finally:
        await client.close()


def lerobot_reference(checkpoint: Path, obs: dict) -> np.ndarray:
    """LeRobot's own inference on the checkpoint, without vla: processors + predict_action_chunk."""
    import torch
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.utils import prepare_observation_for_inference

    policy = ACTPolicy.from_pretrained(str(checkpoint))
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(checkpoint))
    raw = {k: np.asarray(obs[k]) for k in ("observation.state", "observation.images.front")}
    with torch.inference_mode():
        batch = pre(prepare_observation_for_inference(raw, torch.device("cpu"), obs["task"], ""))
        batch.pop("action", None)
        return post(policy.predict_action_chunk(batch))[0].numpy()


def test_record_train_serve_and_run_a_tiny_act(sim_dataset, tmp_path, policy_helpers):
    info = json.loads((sim_dataset / "meta" / "info.json").read_text())
    frames = info["total_frames"]
    steps, batch = 10, 8
    output = train(sim_dataset, "act", tmp_path / "act", steps, batch, policy_helpers.TINY_ACT, policy_helpers)
    # the epochs the run amounts to, printed before training
    flat = " ".join(output.split())
    assert f"= {steps * batch / frames:.2f} epochs" in flat, output
    assert f"{steps} x {batch} / {frames}" in flat
    checkpoint = tmp_path / "act" / "pretrained_model"
    assert {"config.json", "model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json"} <= {
        p.name for p in checkpoint.iterdir()
    }

    config = lab_files(tmp_path, checkpoint)
    from vla_sim.robot import SimConfig, SimRobot

    robot = SimRobot(SimConfig(**SIM))
    robot.connect()
    robot.reset(TASK_ID, seed=123)
    obs = robot.observe()
    robot.disconnect()

    with policy_helpers.vla_serve(config, "lerobot", tmp_path) as url:
        metadata, reply = asyncio.run(fetch(url, obs))
        assert metadata["policy"] == "lerobot/act"
        assert metadata["cameras"] == {"front": [48, 64, 3]}
        assert (metadata["state_dim"], metadata["action_dim"], metadata["horizon"]) == (6, 6, 10)
        assert metadata["capabilities"]["rtc"] is False and metadata["capabilities"]["batching"] is True
        assert reply["actions"].shape == (10, 6) and reply["actions"].dtype == np.float32
        np.testing.assert_allclose(reply["actions"], lerobot_reference(checkpoint, obs), atol=1e-4)

        logs = tmp_path / "logs"
        run = subprocess.run(
            [policy_helpers.VLA, "--config", str(config), "run", "--arm", "sim0", "--task", TASK_ID,
             "--policy-url", url, "--episodes", "1", "--seed", "5", "--duration", "3", "--log-dir", str(logs)],
            capture_output=True, text=True, timeout=240, cwd=tmp_path,
        )
        assert run.returncode == 0, run.stdout + run.stderr
    (log,) = logs.glob("*.jsonl")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    chunks = [r for r in records if r["type"] == "chunk"]
    executed = [r for r in records if r["type"] == "tick" and r.get("action") is not None]
    assert chunks, "the client merged no chunk from the served ACT"
    assert len(executed) >= 5, "the arm executed too few of the policy's actions"
    assert all(len(r["command"]) == 6 and all(np.isfinite(r["command"])) for r in executed)


def test_train_serve_and_infer_a_tiny_diffusion_policy(sim_dataset, tmp_path, policy_helpers):
    from vla_lerobot.backend import LeRobotBackend
    from vla_lerobot.config import LeRobotPolicyConfig

    output = train(sim_dataset, "diffusion", tmp_path / "diffusion", 4, 8, policy_helpers.TINY_DIFFUSION, policy_helpers)
    assert re.search(r"\d+\.\d\d epochs", output)
    backend = LeRobotBackend(LeRobotPolicyConfig(path=str(tmp_path / "diffusion")))

    from vla.serving.server import PolicyServer

    async def serve_and_ask():
        server = PolicyServer(backend, host="127.0.0.1", port=0)
        await server.start()
        try:
            await server.wait_settled(120)
            url = f"ws://127.0.0.1:{server.port}"
            obs = policy_helpers.observation(cameras=(("front", (48, 64)),), seed=1)
            replies = []
            for session in ("arm-a", "arm-b"):
                metadata, reply = await fetch(url, dict(obs, session=session))
                replies.append(reply)
            return metadata, replies
        finally:
            await server.stop()

    metadata, replies = asyncio.run(serve_and_ask())
    assert metadata["policy"] == "lerobot/diffusion"
    assert metadata["horizon"] == 4  # Diffusion answers n_action_steps actions
    assert metadata["cameras"] == {"front": [48, 64, 3]} and metadata["state_dim"] == 6
    for reply in replies:
        assert reply["actions"].shape == (4, 6) and np.all(np.isfinite(reply["actions"]))
