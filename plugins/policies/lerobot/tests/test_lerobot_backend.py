"""The `lerobot` policy backend on tiny policies trained here (CPU, no hub).

Checks that the metadata comes from the policy's config, that batching several arms gives
each arm what it would get alone, that the answers agree with LeRobot's own inference path
(``lerobot.utils.control_utils.predict_action``), the camera rename map, Diffusion's
per-arm frame history, and the errors bad input gets.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.lerobot
pytest.importorskip("lerobot")

from vla.policy import PolicyBackend  # noqa: E402
from vla_lerobot.backend import CheckpointError, LeRobotBackend, resolve_checkpoint  # noqa: E402
from vla_lerobot.config import LeRobotPolicyConfig  # noqa: E402
from vla_lerobot.observations import ObservationError  # noqa: E402


@pytest.fixture(scope="module")
def act_backend(tiny_act):
    backend = LeRobotBackend(LeRobotPolicyConfig(path=str(tiny_act)))
    backend.warmup()
    return backend


def test_metadata_comes_from_the_policy_config(act_backend, tiny_act):
    assert isinstance(act_backend, PolicyBackend)
    info = act_backend.info()
    assert info.name == "lerobot/act"
    assert [(c.name, c.shape) for c in info.cameras] == [("front", (48, 64, 3))]
    assert (info.state_dim, info.action_dim, info.horizon) == (6, 6, 10)  # chunk_size of TINY_ACT
    assert info.supports_rtc is False  # ACT has no RTC in lerobot 0.4.4
    assert info.extra["policy_type"] == "act" and info.extra["units"] == "radians"
    # the environment state was left out of training by default, so the policy does not read it
    assert "environment_state_dim" not in info.extra


def test_checkpoint_paths_are_resolved_or_refused(tiny_act, tmp_path):
    train_output = tiny_act.parent
    assert resolve_checkpoint(str(train_output)) == str(tiny_act)
    assert resolve_checkpoint("lerobot/smolvla_base") == "lerobot/smolvla_base"  # a hub id passes through
    with pytest.raises(CheckpointError, match="no checkpoint configured"):
        resolve_checkpoint("")
    with pytest.raises(CheckpointError, match="no LeRobot checkpoint here"):
        resolve_checkpoint(str(tmp_path / "missing"))


def test_a_batch_of_arms_gets_what_each_arm_gets_alone(act_backend, policy_helpers):
    observations = [policy_helpers.observation(seed=i) for i in range(4)]
    together = act_backend.infer(observations)
    assert len(together) == 4
    for obs, chunk in zip(observations, together):
        assert chunk.shape == (10, 6) and chunk.dtype == np.float32
        alone = act_backend.infer([obs])[0]
        np.testing.assert_allclose(chunk, alone, atol=1e-5)
    # different observations, different chunks: the batch is not one answer copied
    assert not np.allclose(together[0], together[1])


def test_answers_match_lerobots_own_inference_path(act_backend, tiny_act, policy_helpers):
    import torch
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.utils.control_utils import predict_action

    policy = ACTPolicy.from_pretrained(str(tiny_act))
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(tiny_act))
    obs = policy_helpers.observation(seed=7)
    raw = {k: v for k, v in obs.items() if k != "task"}
    expected = predict_action(raw, policy, torch.device("cpu"), pre, post, use_amp=False, task=obs["task"], robot_type="")
    chunk = act_backend.infer([obs])[0]
    np.testing.assert_allclose(chunk[0], expected.reshape(-1).numpy(), atol=1e-5)


def test_camera_rename_map(tiny_act, act_backend, policy_helpers):
    renamed = LeRobotBackend(LeRobotPolicyConfig(path=str(tiny_act), camera_map={"top": "front"}))
    assert [c.name for c in renamed.info().cameras] == ["top"]
    obs = policy_helpers.observation(seed=3)
    as_top = dict(obs)
    as_top["observation.images.top"] = as_top.pop("observation.images.front")
    np.testing.assert_allclose(renamed.infer([as_top])[0], act_backend.infer([obs])[0], atol=1e-5)
    with pytest.raises(ObservationError, match="observation.images.top"):
        renamed.infer([obs])  # the lab's name is what the client must send
    with pytest.raises(ValueError, match="cameras the policy does not have"):
        LeRobotBackend(LeRobotPolicyConfig(path=str(tiny_act), camera_map={"top": "overhead"})).info()


def test_bad_observations_are_refused_with_the_key_named(act_backend, tiny_act, policy_helpers):
    good = policy_helpers.observation()
    cases = [
        ({"observation.state": None}, "observation.state"),
        ({"observation.state": np.zeros(5, np.float32)}, r"observation.state: expected shape \(6,\)"),
        ({"observation.state": np.array([0, 0, np.nan, 0, 0, 0], np.float32)}, "non-finite"),
        ({"observation.images.front": np.zeros((24, 32, 3), np.uint8)}, "trained on"),
        ({"observation.images.front": np.zeros((48, 64, 3), np.float32)}, "uint8"),
        ({"observation.images.front": b"not a jpeg"}, "not a JPEG"),
        ({"task": 5}, "task"),
    ]
    for change, message in cases:
        obs = {**good, **change}
        obs = {k: v for k, v in obs.items() if v is not None}
        with pytest.raises(ObservationError, match=message):
            act_backend.infer([good, obs])
    # still serving after the refusals
    assert act_backend.infer([good])[0].shape == (10, 6)
    # resizing is opt-in
    resizing = LeRobotBackend(LeRobotPolicyConfig(path=str(tiny_act), resize_images=True))
    small = {**good, "observation.images.front": np.zeros((24, 32, 3), np.uint8)}
    assert resizing.infer([small])[0].shape == (10, 6)


def test_jpeg_frames_are_decoded(act_backend, policy_helpers):
    import cv2

    obs = policy_helpers.observation(seed=4)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(obs["observation.images.front"], cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    as_jpeg = dict(obs, **{"observation.images.front": jpeg.tobytes()})
    # JPEG is lossy (on this test's noise frames, chroma subsampling alone moves pixels far), and
    # how far a chunk moves with the pixels depends on the model; what must hold is that the
    # backend sees exactly the RGB frame the JPEG decodes to
    rgb = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    as_rgb = dict(obs, **{"observation.images.front": rgb})
    np.testing.assert_allclose(act_backend.infer([as_jpeg])[0], act_backend.infer([as_rgb])[0], atol=1e-5)


def test_rtc_inputs_are_normalised_with_the_policys_action_statistics(act_backend, tiny_act):
    """The previous chunk reaches an RTC policy in its normalised action space (ACT's stats here)."""
    import json

    from safetensors.torch import load_file

    backend = act_backend
    prev = np.tile(np.linspace(-0.3, 0.3, 6, dtype=np.float32), (7, 1))
    kwargs = backend._rtc_kwargs([(3, prev)], "cpu")
    assert kwargs["inference_delay"] == 3
    stats_file = next(tiny_act.glob("policy_preprocessor_step_*_normalizer_processor.safetensors"))
    stats = load_file(str(stats_file))
    mean, std = stats["action.mean"].numpy(), stats["action.std"].numpy()
    np.testing.assert_allclose(kwargs["prev_chunk_left_over"][0].numpy(), (prev - mean) / (std + 1e-8), atol=1e-4)
    assert json.loads((tiny_act / "config.json").read_text())["type"] == "act"


def test_diffusion_keeps_each_arms_frame_history_apart(lerobot_dataset, tmp_path, policy_helpers):
    """Diffusion reads the last n_obs_steps frames; interleaving another arm must not change an arm's answer."""
    import torch

    from vla.training import TrainRequest
    from vla_lerobot.trainer import LeRobotTrainer

    result = LeRobotTrainer("diffusion").train(
        TrainRequest(dataset=lerobot_dataset, output=tmp_path / "diff", steps=2, batch_size=4, options=dict(policy_helpers.TINY_DIFFUSION))
    )
    backend = LeRobotBackend(LeRobotPolicyConfig(path=str(result.checkpoint)))
    backend.warmup()
    info = backend.info()
    assert (info.horizon, info.extra["n_obs_steps"]) == (4, 2)  # n_action_steps, frames read

    a1, a2, b1 = (dict(policy_helpers.observation(seed=s), session=name) for s, name in ((1, "a"), (2, "a"), (3, "b")))

    def call(obs, seed):
        torch.manual_seed(seed)  # the same denoising noise for the same call
        return backend.infer([obs])[0]

    call(a1, 10)
    alone = call(a2, 11)
    backend.reset()
    call(a1, 10)
    call(b1, 12)  # another arm in between
    interleaved = call(a2, 11)
    np.testing.assert_allclose(interleaved, alone, atol=1e-5)
    # and the history matters: a fresh arm seeing a2 first answers differently
    backend.reset()
    assert not np.allclose(call(a2, 11), alone)
    assert alone.shape == (4, 6) and np.all(np.isfinite(alone))


def test_the_training_frame_cache_returns_lerobots_items_exactly(lerobot_dataset):
    """Decoding each episode once must not change a single pixel or any other field of an item."""
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from vla_lerobot.frame_cache import cache_decoded_frames

    delta = {"action": [i / 10 for i in range(5)], "observation.images.front": [-0.1, 0.0]}
    plain = LeRobotDataset("local/synthetic", root=lerobot_dataset, delta_timestamps=delta)
    cached = LeRobotDataset("local/synthetic", root=lerobot_dataset, delta_timestamps=delta)
    assert cache_decoded_frames(cached) == 48
    for index in (0, 1, 15, 16, 30, 47):  # episode starts and ends included (padding)
        a, b = plain[index], cached[index]
        assert a.keys() == b.keys()
        for key in a:
            if torch.is_tensor(a[key]):
                assert torch.equal(a[key], b[key]), (index, key)
            else:
                assert a[key] == b[key], (index, key)
