"""Real-time chunking reaches a real (tiny) SmolVLA through the `lerobot` backend.

SmolVLA's backbone is SmolVLM2 from the hub; here a tiny SmolVLM (2 text layers, 64 wide, a
word-level tokenizer with SmolVLM's special tokens) is written to a local folder and named as
``vlm_model_name``, so SmolVLA builds, trains (2 steps) and serves offline. lerobot 0.4.4
applies RTC guidance in SmolVLA's flow-matching loop; the test checks its effect: with the
client's ``prev_chunk`` and ``inference_delay = d``, the first d actions of the new chunk are
pulled onto the previous chunk's, which they are not without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.lerobot, pytest.mark.slow]
pytest.importorskip("lerobot")
pytest.importorskip("num2words")  # SmolVLM's processor needs it (lerobot's smolvla extra)


def write_tiny_smolvlm(out: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.models.smolvlm import SmolVLMConfig, SmolVLMImageProcessor, SmolVLMProcessor, SmolVLMVideoProcessor

    special = ["<pad>", "<unk>", "<|im_start|>", "<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>"]
    tiles = [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
    words = "lift the yellow cube put red in blue bowl push green to left of line".split()
    vocab = {t: i for i, t in enumerate(special + tiles + words + list("0123456789") + ["\n", ".", ",", ":"])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>", bos_token="<|im_start|>",
        additional_special_tokens=special[2:] + tiles,
        extra_special_tokens={"fake_image_token": "<fake_token_around_image>", "image_token": "<image>",
                              "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"},
    )
    images = SmolVLMImageProcessor(size={"longest_edge": 32}, max_image_size={"longest_edge": 32}, do_image_splitting=False)
    SmolVLMProcessor(image_processor=images, tokenizer=fast, video_processor=SmolVLMVideoProcessor(), image_seq_len=4).save_pretrained(out)
    SmolVLMConfig(
        text_config={"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32, "vocab_size": len(vocab),
                     "max_position_embeddings": 512},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        scale_factor=2, image_token_id=vocab["<image>"], vocab_size=len(vocab),
    ).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_smolvla(lerobot_dataset, tmp_path_factory):
    from vla.training import TrainRequest
    from vla_lerobot.trainer import LeRobotTrainer

    work = tmp_path_factory.mktemp("smolvla")
    vlm = write_tiny_smolvlm(work / "tiny_smolvlm")
    options = {
        "vlm_model_name": str(vlm), "load_vlm_weights": False, "resize_imgs_with_padding": [32, 32],
        "chunk_size": 10, "n_action_steps": 10, "num_steps": 4, "tokenizer_max_length": 16,
        "max_state_dim": 8, "max_action_dim": 8, "scheduler_warmup_steps": 1, "scheduler_decay_steps": 10,
    }
    result = LeRobotTrainer("smolvla").train(TrainRequest(dataset=lerobot_dataset, output=work / "out", steps=2, batch_size=2, options=options))
    return result.checkpoint


def test_smolvla_takes_the_previous_chunk_and_delay(tiny_smolvla, policy_helpers):
    import torch

    from vla_lerobot.backend import LeRobotBackend
    from vla_lerobot.config import LeRobotPolicyConfig

    backend = LeRobotBackend(LeRobotPolicyConfig(path=str(tiny_smolvla)))
    backend.warmup()
    info = backend.info()
    assert info.name == "lerobot/smolvla" and info.supports_rtc and info.horizon == 10
    obs = policy_helpers.observation(seed=1)
    prev = np.tile(np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0], np.float32), (10, 1))
    d = 4

    torch.manual_seed(0)
    free = backend.infer([obs])[0]
    torch.manual_seed(0)
    guided = backend.infer([dict(obs, inference_delay=d, prev_chunk=prev)])[0]
    assert np.abs(free[:d] - prev[:d]).mean() > 0.3  # left alone, the policy goes elsewhere
    assert np.abs(guided[:d] - prev[:d]).mean() < 0.1  # frozen prefix: it follows what the arm is executing

    # two arms with different delays in one request batch: each gets its own guidance
    other = np.tile(np.array([-0.5, 0.5, -0.5, 0.5, -0.5, 0.5], np.float32), (6, 1))
    a, b = backend.infer([dict(obs, inference_delay=d, prev_chunk=prev), dict(obs, inference_delay=2, prev_chunk=other)])
    assert np.abs(a[:d] - prev[:d]).mean() < 0.1
    assert np.abs(b[:2] - other[:2]).mean() < 0.1

    # RTC off in the config: the same inputs are ignored
    plain = LeRobotBackend(LeRobotPolicyConfig(path=str(tiny_smolvla), rtc=False))
    assert plain.info().supports_rtc is False
    plain.warmup()  # load before seeding: building the model draws random numbers
    torch.manual_seed(0)
    unguided = plain.infer([dict(obs, inference_delay=d, prev_chunk=prev)])[0]
    np.testing.assert_allclose(unguided, free, atol=1e-5)
