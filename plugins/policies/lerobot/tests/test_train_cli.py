"""`vla train`: the epochs it prints, what it refuses, and the checkpoint it leaves."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from vla.cli import cli
from vla.training import epochs
from vla.training.cli import parse_option
from vla.training.dataset_info import DatasetError, read_dataset_summary


def test_epochs_are_steps_times_batch_over_frames():
    # the seed lab's numbers: 50,000 steps x 32 over 100,832 frames = 15.87 epochs
    assert round(epochs(50_000, 32, 100_832), 2) == 15.87
    assert epochs(20_000, 32, 100_832) == pytest.approx(6.347, abs=1e-3)
    with pytest.raises(ValueError):
        epochs(10, 2, 0)


def test_options_are_read_as_yaml():
    assert parse_option("chunk_size=40") == ("chunk_size", 40)
    assert parse_option("pretrained_backbone_weights=null") == ("pretrained_backbone_weights", None)
    assert parse_option("down_dims=[16, 32]") == ("down_dims", [16, 32])
    assert parse_option("vision_backbone=resnet34") == ("vision_backbone", "resnet34")
    # YAML 1.1 reads 3e-4 as text; a number is meant
    assert parse_option("optimizer_lr=3e-4") == ("optimizer_lr", 3e-4)
    assert parse_option("name=1e") == ("name", "1e")
    import click

    with pytest.raises(click.BadParameter, match="key=value"):
        parse_option("chunk_size")


def test_a_folder_that_is_not_a_dataset_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="no meta/info.json"):
        read_dataset_summary(tmp_path)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "info.json").write_text(json.dumps({"total_frames": 0, "total_episodes": 0}))
    with pytest.raises(DatasetError, match="empty"):
        read_dataset_summary(tmp_path)
    result = CliRunner().invoke(cli, ["train", "--policy", "act", "--dataset", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such dataset folder" in result.output


def test_an_unknown_trainer_is_named_with_the_installed_ones(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--policy", "nope", "--dataset", str(tmp_path)])
    assert result.exit_code == 2
    assert "no trainer named 'nope'" in result.output and "act" in result.output


@pytest.mark.lerobot
def test_a_bad_policy_option_is_refused_by_name(lerobot_dataset, tmp_path):
    pytest.importorskip("lerobot")
    result = CliRunner().invoke(
        cli, ["train", "--policy", "act", "--dataset", str(lerobot_dataset), "--steps", "1", "--output", str(tmp_path / "o"),
              "-o", "not_an_option=3"],
    )
    assert result.exit_code == 1
    assert "bad act option" in result.output and "not_an_option" in result.output
    # the epochs were printed before anything failed: 1 step x 8 / 48 frames
    assert "0.17 epochs" in result.output


@pytest.mark.lerobot
def test_training_writes_a_checkpoint_and_a_summary(lerobot_dataset, tmp_path, policy_helpers):
    pytest.importorskip("lerobot")
    out = tmp_path / "run"
    args = ["train", "--policy", "act", "--dataset", str(lerobot_dataset), "--steps", "2", "--batch-size", "4",
            "--output", str(out), *policy_helpers.cli_options(policy_helpers.TINY_ACT)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "2 x 4 / 48" in flat and "0.17 epochs" in flat
    summary = json.loads((out / "vla_train.json").read_text())
    assert summary["steps"] == 2 and summary["frames"] == 48 and summary["epochs"] == pytest.approx(8 / 48)
    config = json.loads((out / "pretrained_model" / "config.json").read_text())
    assert config["type"] == "act" and config["chunk_size"] == 10 and config["dim_model"] == 32
    # the environment state stays out unless asked for
    assert "observation.environment_state" not in config["input_features"]
    # a second run into the same folder is refused instead of overwriting
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 2 and "already holds a checkpoint" in again.output


@pytest.mark.lerobot
def test_environment_state_is_used_when_the_lab_asks(lerobot_dataset, tmp_path, policy_helpers):
    pytest.importorskip("lerobot")
    config = tmp_path / "vla.yaml"
    config.write_text("plugins:\n  act:\n    use_environment_state: true\n")
    out = tmp_path / "run"
    args = ["--config", str(config), "train", "--policy", "act", "--dataset", str(lerobot_dataset), "--steps", "1",
            "--batch-size", "2", "--output", str(out), *policy_helpers.cli_options(policy_helpers.TINY_ACT)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "pretrained_model" / "config.json").read_text())
    assert saved["input_features"]["observation.environment_state"]["shape"] == [3]

    from vla_lerobot.backend import LeRobotBackend
    from vla_lerobot.config import LeRobotPolicyConfig
    from vla_lerobot.observations import ObservationError

    backend = LeRobotBackend(LeRobotPolicyConfig(path=str(out)))
    assert backend.info().extra["environment_state_dim"] == 3
    with pytest.raises(ObservationError, match="observation.environment_state"):
        backend.infer([policy_helpers.observation()])
    assert backend.infer([policy_helpers.observation(env_dim=3)])[0].shape == (10, 6)


def test_plugin_conformance_and_light_imports():
    """The plugins register without importing torch, and `vla train`'s module stays light."""
    import subprocess
    import sys

    from vla.testing import check_plugin

    assert check_plugin("vla-lerobot") == {"policies": ["lerobot"], "trainers": ["act", "diffusion", "smolvla"]}
    code = (
        "import sys, vla.training.cli, vla_lerobot.plugin, vla_openvla.plugin, vla_openpi.plugin;"
        "heavy = [m for m in ('torch', 'lerobot', 'transformers', 'cv2', 'mujoco') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


@pytest.mark.lerobot
def test_act_trains_offline_without_a_traceback_and_prints_the_last_loss(lerobot_dataset, tmp_path, policy_helpers):
    """No network (every request goes to a closed proxy port) and an empty torch cache: ACT's
    ImageNet backbone cannot be fetched, so the trainer says so in one line and trains it from
    scratch. The final loss printed is the last step's."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("lerobot")
    tiny = {k: v for k, v in policy_helpers.TINY_ACT.items() if k != "pretrained_backbone_weights"}
    offline = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
               "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9", "NO_PROXY": "", "no_proxy": "",
               "TORCH_HOME": str(tmp_path / "torch"), "HF_HUB_OFFLINE": "1"}
    vla = str(Path(sys.executable).parent / "vla")
    result = subprocess.run(
        [vla, "train", "--policy", "act", "--dataset", str(lerobot_dataset), "--steps", "2", "--batch-size", "4",
         "--output", str(tmp_path / "out"), *policy_helpers.cli_options(tiny)],
        capture_output=True, text=True, env=offline, timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    assert "training the backbone from scratch" in output
    steps = re.findall(r"step (\d+)/2\s+loss ([0-9.]+)", output)
    final = re.search(r"final loss ([0-9.]+)", output)
    assert steps and steps[-1][0] == "2" and final and final.group(1) == steps[-1][1], output
    summary = json.loads((tmp_path / "out" / "vla_train.json").read_text())
    assert f"{summary['final_loss']:.4f}" == final.group(1)


# ------------------------------------------------------------------ several datasets


def _info(root, fps=10, front=(48, 64), joints=("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"),
          wrist=False):
    """A dataset folder with only meta/info.json: enough for the checks `vla train` makes before lerobot."""
    features = {
        "observation.state": {"dtype": "float32", "shape": [6], "names": list(joints)},
        "action": {"dtype": "float32", "shape": [6], "names": list(joints)},
        "observation.images.front": {"dtype": "video", "shape": [*front, 3], "names": ["height", "width", "channels"],
                                     "info": {"video.codec": "av1"}},
    }
    if wrist:
        features["observation.images.wrist"] = {"dtype": "video", "shape": [48, 64, 3], "names": ["height", "width", "channels"]}
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(
        {"codebase_version": "v3.0", "robot_type": "so101_sim", "total_frames": 40, "total_episodes": 2, "fps": fps,
         "features": features}))
    return read_dataset_summary(root)


def test_datasets_trained_together_must_have_the_same_features(tmp_path):
    from vla.training.dataset_info import check_same_features

    a = _info(tmp_path / "a")
    check_same_features([a, _info(tmp_path / "same")])  # another codec (video info) does not matter
    cases = {
        "fps": (dict(fps=30), "fps 30, not 10"),
        "shape": (dict(front=(96, 96)), "observation.images.front is video 96x96x3, not video 48x64x3"),
        "extra": (dict(wrist=True), "has observation.images.wrist (video 48x64x3)"),
        "order": (dict(joints=("shoulder_lift", "shoulder_pan", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")),
                  "observation.state is float32 6 [shoulder_lift, shoulder_pan"),
    }
    for name, (kwargs, expected) in cases.items():
        other = _info(tmp_path / name, **kwargs)
        with pytest.raises(DatasetError) as caught:
            check_same_features([a, other])
        message = str(caught.value)
        assert expected in message, message
        assert str(other.root) in message and str(a.root) in message
    # the other way round: the first has a camera the second lacks
    with pytest.raises(DatasetError, match="lacks observation.images.wrist"):
        check_same_features([_info(tmp_path / "w", wrist=True), a])
    with pytest.raises(DatasetError, match="given twice"):
        check_same_features([a, read_dataset_summary(tmp_path / "a" / ".." / "a")])


def test_vla_train_refuses_mismatched_datasets_before_training(tmp_path):
    _info(tmp_path / "a")
    _info(tmp_path / "b", front=(96, 96))
    result = CliRunner().invoke(cli, ["train", "--policy", "act", "--dataset", str(tmp_path / "a"), "--dataset",
                                      str(tmp_path / "b"), "--steps", "1", "--output", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    flat = " ".join(result.output.split())
    assert "cannot be trained together" in flat and "observation.images.front is video 96x96x3, not video 48x64x3" in flat
    assert not (tmp_path / "out").exists()


@pytest.mark.lerobot
def test_vla_train_trains_on_the_union_of_several_datasets(tmp_path, policy_helpers):
    """Two real datasets (different tasks, states 10 rad apart): the run counts both, the
    normalisation the checkpoint carries spans both, and vla_train.json names both."""
    pytest.importorskip("lerobot")
    from safetensors.numpy import load_file

    a = policy_helpers.make_dataset(tmp_path / "lift", episodes=3, frames=16)
    b = policy_helpers.make_dataset(tmp_path / "push", episodes=2, frames=12, task="push the green cube", state_offset=10.0)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--policy", "act", "--dataset", str(a), "--dataset", str(b), "--steps", "3",
                                      "--batch-size", "8", "--output", str(out),
                                      *policy_helpers.cli_options(policy_helpers.TINY_ACT)])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "together: 5 episodes, 72 frames from 2 datasets" in flat
    assert "3 x 8 / 72" in flat and "0.33 epochs" in flat and "CPU-minutes" in flat

    summary = json.loads((out / "vla_train.json").read_text())
    assert summary["frames"] == 72 and summary["episodes"] == 5
    assert summary["epochs"] == pytest.approx(24 / 72) and summary["cpu_seconds"] > 0
    assert [(d["path"], d["episodes"], d["frames"]) for d in summary["datasets"]] == [
        (str(a.resolve()), 3, 48), (str(b.resolve()), 2, 24)]
    assert [d["tasks"] for d in summary["datasets"]] == [[policy_helpers.TASK], ["push the green cube"]]

    # the state's normalisation is over the union: its mean lies between the two datasets' means
    stats = {}
    for path in (out / "pretrained_model").glob("policy_preprocessor*.safetensors"):
        stats.update(load_file(str(path)))
    mean = stats["observation.state.mean"]
    mean_a = json.loads((a / "meta" / "stats.json").read_text())["observation.state"]["mean"]
    mean_b = json.loads((b / "meta" / "stats.json").read_text())["observation.state"]["mean"]
    expected = (np.asarray(mean_a) * 48 + np.asarray(mean_b) * 24) / 72
    assert np.allclose(mean, expected, atol=1e-4), (mean, expected)

    # and the checkpoint's training record reads back for `vla doctor --checkpoint`
    from vla_lerobot.checkpoint_info import read_checkpoint_info

    info = read_checkpoint_info(out)
    assert info.training.dataset_frames == 72 and info.training.dataset_episodes == 5

    # Diffusion's episode-aware sampler sees the second dataset's episodes after the first's
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    from vla.training import TrainRequest
    from vla_lerobot.trainer import LeRobotTrainer, union_episode_bounds

    metas = [LeRobotDatasetMetadata("local/a", root=a), LeRobotDatasetMetadata("local/b", root=b)]
    assert union_episode_bounds(metas, [48, 24]) == ([0, 16, 32, 48, 60], [16, 32, 48, 60, 72])
    result = LeRobotTrainer("diffusion").train(TrainRequest(dataset=a, extra_datasets=[b], output=tmp_path / "diff", steps=2,
                                                            batch_size=4, options=dict(policy_helpers.TINY_DIFFUSION)))
    assert result.steps == 2 and json.loads((tmp_path / "diff" / "vla_train.json").read_text())["frames"] == 72


@pytest.mark.lerobot
def test_image_size_trains_on_frames_resized_as_the_client_resizes_them(lerobot_dataset, tmp_path, policy_helpers):
    """plugins.act.image_size: the cached and the uncached paths give the frames vla's client would
    send (cv2 INTER_AREA of the camera frame), and the checkpoint asks for that size."""
    pytest.importorskip("lerobot")
    import cv2
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from vla_lerobot.frame_cache import cache_decoded_frames, resize_queries

    delta = {"observation.images.front": [-0.1, 0.0]}
    plain = LeRobotDataset("local/synthetic", root=lerobot_dataset, delta_timestamps=delta)
    cached = LeRobotDataset("local/synthetic", root=lerobot_dataset, delta_timestamps=delta)
    uncached = LeRobotDataset("local/synthetic", root=lerobot_dataset, delta_timestamps=delta)
    cache_decoded_frames(cached, size=(24, 32))
    resize_queries(uncached, (24, 32))
    for index in (0, 17, 47):
        full = plain[index]["observation.images.front"]  # (2, 3, 48, 64) floats in [0, 1]
        as_client = np.stack([cv2.resize((f.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), (32, 24),
                                         interpolation=cv2.INTER_AREA) for f in full])
        expected = torch.from_numpy(as_client).permute(0, 3, 1, 2).float() / 255
        for ds in (cached, uncached):
            got = ds[index]["observation.images.front"]
            assert got.shape == (2, 3, 24, 32)
            assert torch.allclose(got, expected, atol=1 / 255 + 1e-6), index

    config = tmp_path / "vla.yaml"
    config.write_text("plugins:\n  act:\n    image_size: [24, 32]\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["--config", str(config), "train", "--policy", "act", "--dataset", str(lerobot_dataset),
                                      "--steps", "1", "--batch-size", "2", "--output", str(out),
                                      *policy_helpers.cli_options(policy_helpers.TINY_ACT)])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "pretrained_model" / "config.json").read_text())
    assert saved["input_features"]["observation.images.front"]["shape"] == [3, 24, 32]
    assert json.loads((out / "vla_train.json").read_text())["image_size"] == [24, 32]

    from vla_lerobot.backend import LeRobotBackend
    from vla_lerobot.config import LeRobotPolicyConfig

    backend = LeRobotBackend(LeRobotPolicyConfig(path=str(out)))
    assert backend.infer([policy_helpers.observation(cameras=(("front", (24, 32)),))])[0].shape == (10, 6)

    bad = tmp_path / "bad.yaml"
    bad.write_text("plugins:\n  act:\n    image_size: [24]\n")
    refused = CliRunner().invoke(cli, ["--config", str(bad), "train", "--policy", "act", "--dataset", str(lerobot_dataset),
                                       "--steps", "1", "--output", str(tmp_path / "bad")])
    assert refused.exit_code == 2 and "image_size" in refused.output, refused.output


@pytest.mark.lerobot
def test_save_every_leaves_servable_checkpoints_along_the_way(lerobot_dataset, tmp_path, policy_helpers):
    """plugins.act.save_every: a long CPU run can be evaluated while it trains on."""
    pytest.importorskip("lerobot")
    config = tmp_path / "vla.yaml"
    config.write_text("plugins:\n  act:\n    save_every: 2\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["--config", str(config), "train", "--policy", "act", "--dataset", str(lerobot_dataset),
                                      "--steps", "5", "--batch-size", "2", "--output", str(out),
                                      *policy_helpers.cli_options(policy_helpers.TINY_ACT)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["000002", "000004"]
    along = json.loads((out / "checkpoints" / "000004" / "vla_train.json").read_text())
    final = json.loads((out / "vla_train.json").read_text())
    assert along["steps"] == 4 and final["steps"] == 5 and len(final["loss_per_100_steps"]) == 1

    from vla_lerobot.backend import LeRobotBackend
    from vla_lerobot.config import LeRobotPolicyConfig

    backend = LeRobotBackend(LeRobotPolicyConfig(path=str(out / "checkpoints" / "000004"), device="cpu"))
    assert backend.infer([policy_helpers.observation()])[0].shape == (10, 6)


@pytest.mark.lerobot
def test_cameras_picks_the_cameras_the_policy_reads(tmp_path, policy_helpers):
    """plugins.act.cameras: a two-camera recording trains a one-camera policy, which then asks
    the client for that camera only; a camera the dataset lacks is refused by name."""
    pytest.importorskip("lerobot")
    two = policy_helpers.make_dataset(tmp_path / "two", episodes=2, frames=12,
                                      cameras=(("front", (48, 64)), ("wrist", (48, 64))))
    config = tmp_path / "vla.yaml"
    config.write_text("plugins:\n  act:\n    cameras: [wrist]\n")
    out = tmp_path / "run"
    args = ["train", "--policy", "act", "--dataset", str(two), "--steps", "1", "--batch-size", "2",
            *policy_helpers.cli_options(policy_helpers.TINY_ACT)]
    result = CliRunner().invoke(cli, ["--config", str(config), *args, "--output", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "pretrained_model" / "config.json").read_text())
    assert [k for k in saved["input_features"] if k.startswith("observation.images.")] == ["observation.images.wrist"]

    from vla_lerobot.backend import LeRobotBackend
    from vla_lerobot.config import LeRobotPolicyConfig

    backend = LeRobotBackend(LeRobotPolicyConfig(path=str(out), device="cpu"))
    assert [c.name for c in backend.info().cameras] == ["wrist"]
    assert backend.infer([policy_helpers.observation(cameras=(("wrist", (48, 64)),))])[0].shape == (10, 6)

    config.write_text("plugins:\n  act:\n    cameras: [top]\n")
    refused = CliRunner().invoke(cli, ["--config", str(config), *args, "--output", str(tmp_path / "bad")])
    assert refused.exit_code != 0 and "no camera top" in refused.output and "front, wrist" in refused.output


@pytest.mark.lerobot
def test_a_run_continued_from_a_checkpoint_records_where_it_started_and_the_totals(lerobot_dataset, tmp_path,
                                                                                  policy_helpers):
    """plugins.act.init_from on a checkpoint of `vla train`: the run starts from its weights, and
    vla_train.json names it and adds the first run's steps, epochs and CPU time to its own."""
    pytest.importorskip("lerobot")
    first = tmp_path / "first"
    args = ["train", "--policy", "act", "--dataset", str(lerobot_dataset), "--batch-size", "2",
            *policy_helpers.cli_options(policy_helpers.TINY_ACT)]
    result = CliRunner().invoke(cli, [*args, "--steps", "3", "--output", str(first)])
    assert result.exit_code == 0, result.output
    config = tmp_path / "vla.yaml"
    config.write_text(f"plugins:\n  act:\n    init_from: {first / 'pretrained_model'}\n")
    second = tmp_path / "second"
    # a learning rate of 0: what the second run saves is what it started from
    result = CliRunner().invoke(cli, ["--config", str(config), *args, "--steps", "2", "--output", str(second),
                                      "-o", "optimizer_lr=0", "-o", "optimizer_lr_backbone=0"])
    assert result.exit_code == 0, result.output
    one = json.loads((first / "vla_train.json").read_text())
    two = json.loads((second / "vla_train.json").read_text())
    assert "init_from" not in one
    assert two["init_from"] == str(first / "pretrained_model")
    assert two["steps"] == 2 and two["init_from_steps"] == 3 and two["steps_total"] == 5
    assert two["epochs_total"] == pytest.approx(one["epochs"] + two["epochs"])
    assert two["cpu_seconds_total"] == pytest.approx(one["cpu_seconds"] + two["cpu_seconds"])

    from safetensors.numpy import load_file

    w1, w2 = (load_file(str(d / "pretrained_model" / "model.safetensors")) for d in (first, second))
    # batch norms' running statistics move without a learning rate; every weight must not
    learned = [k for k in w1 if not k.endswith(("running_mean", "running_var"))]
    assert learned and all(np.array_equal(w1[k], w2[k]) for k in learned)
