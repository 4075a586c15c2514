"""Fixtures for the policy plugins' tests: small LeRobot datasets, tiny policy options, and a
real `vla serve` subprocess.

Everything runs on the CPU without the hub: datasets are made here (with lerobot's own
``LeRobotDataset.create`` or by recording the simulator with vla's ``EpisodeRecorder``) and
policies are trained here from scratch (``pretrained_backbone_weights=None``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

VLA = str(Path(sys.executable).parent / "vla")
TASK = "lift the yellow cube"

# A tiny ACT: one encoder and one decoder layer, a 32-wide transformer, ResNet18 from scratch.
TINY_ACT = {
    "pretrained_backbone_weights": None,
    "dim_model": 32,
    "n_heads": 2,
    "dim_feedforward": 64,
    "n_encoder_layers": 1,
    "n_decoder_layers": 1,
    "latent_dim": 8,
    "chunk_size": 10,
    "n_action_steps": 10,
}
# A tiny Diffusion Policy: two U-Net levels, 4 denoising steps, no random crop (small frames).
TINY_DIFFUSION = {
    "pretrained_backbone_weights": None,
    "use_group_norm": True,
    "crop_shape": None,
    "n_obs_steps": 2,
    "horizon": 8,
    "n_action_steps": 4,
    "drop_n_last_frames": 5,
    "down_dims": [16, 32],
    "kernel_size": 3,
    "n_groups": 4,
    "diffusion_step_embed_dim": 16,
    "spatial_softmax_num_keypoints": 8,
    "num_train_timesteps": 20,
    "num_inference_steps": 4,
}


def cli_options(options: dict) -> list[str]:
    """`-o key=value` arguments for `vla train` (values written as YAML)."""
    import yaml

    args = []
    for key, value in options.items():
        args += ["-o", f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"]
    return args


def make_dataset(root: Path, episodes: int = 3, frames: int = 16, cameras=(("front", (48, 64)),), env_dim: int | None = 3, fps: int = 10,
                 task: str = TASK, state_offset: float = 0.0):
    """A small LeRobot dataset made with lerobot's own API: state, action, video cameras, env state.

    The action is a fixed function of the state and the frame's brightness, so a policy has
    something to learn and each frame differs. ``state_offset`` shifts every state and action,
    so that datasets made with different offsets have different statistics.
    """
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    joints = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
    features = {
        "observation.state": {"dtype": "float32", "shape": (6,), "names": joints},
        "action": {"dtype": "float32", "shape": (6,), "names": joints},
    }
    for name, (h, w) in cameras:
        features[f"observation.images.{name}"] = {"dtype": "video", "shape": (h, w, 3), "names": ["height", "width", "channels"]}
    if env_dim:
        features["observation.environment_state"] = {"dtype": "float32", "shape": (env_dim,), "names": None}
    ds = LeRobotDataset.create(f"local/{root.name}", fps=fps, root=root, features=features, robot_type="test", use_videos=True)
    rng = np.random.default_rng(0)
    for _ in range(episodes):
        start = (rng.uniform(-0.5, 0.5, 6) + state_offset).astype(np.float32)
        for i in range(frames):
            q = (start + 0.02 * i).astype(np.float32)
            frame = {"observation.state": q, "action": (q + 0.05).astype(np.float32), "task": task}
            for name, (h, w) in cameras:
                image = np.zeros((h, w, 3), np.uint8)
                image[:, : (i * 4) % w, 0] = 200
                image[:, :, 1] = 40 + 10 * i
                frame[f"observation.images.{name}"] = image
            if env_dim:
                frame["observation.environment_state"] = np.full(env_dim, 0.1 * i, np.float32)
            ds.add_frame(frame)
        ds.save_episode()
    ds.finalize()
    return root


def observation(cameras=(("front", (48, 64)),), seed: int = 0, env_dim: int | None = None) -> dict:
    rng = np.random.default_rng(seed)
    obs = {"observation.state": rng.uniform(-0.5, 0.5, 6).astype(np.float32), "task": TASK}
    for name, (h, w) in cameras:
        obs[f"observation.images.{name}"] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if env_dim:
        obs["observation.environment_state"] = rng.normal(size=env_dim).astype(np.float32)
    return obs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, process: subprocess.Popen, timeout: float = 240.0) -> None:
    """Poll /healthz until the server says ready; fail with its output if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"vla serve exited with {process.returncode}:\n{out}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"vla serve did not become ready within {timeout} s")


@contextlib.contextmanager
def vla_serve(config: Path, policy: str, cwd: Path, env: dict | None = None):
    """The real `vla serve` command in a subprocess; yields its ws:// URL once /healthz is ready."""
    port = free_port()
    log = open(cwd / f"serve_{port}.log", "w+")
    process = subprocess.Popen(
        [VLA, "--config", str(config), "serve", "--policy", policy, "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )
    try:
        try:
            wait_ready(port, process)
        except AssertionError:
            log.seek(0)
            raise AssertionError(f"vla serve failed:\n{log.read()[-4000:]}") from None
        yield f"ws://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="session")
def lerobot_dataset(tmp_path_factory):
    pytest.importorskip("lerobot")
    return make_dataset(tmp_path_factory.mktemp("lerobot_ds") / "synthetic", episodes=3, frames=16)


@pytest.fixture(scope="session")
def policy_helpers():
    """This module, for tests (pytest's importlib mode cannot import conftest by name)."""
    return sys.modules[__name__]


@pytest.fixture(scope="session")
def tiny_act(lerobot_dataset, tmp_path_factory):
    """A tiny ACT trained for a few steps on the synthetic dataset, through the `act` trainer spec."""
    from vla.plugins import get_spec
    from vla.training import TrainRequest

    out = tmp_path_factory.mktemp("tiny_act")
    spec = get_spec("trainers", "act")
    trainer = spec.build(spec.default_config())
    result = trainer.train(TrainRequest(dataset=lerobot_dataset, output=out, steps=3, batch_size=4, options=dict(TINY_ACT)))
    return result.checkpoint
