"""OpenVLA's processing, checked against the formulas in openvla/openvla's code.

OpenVLA-7B cannot run here (15 GB of hub weights, a GPU) and its modelling code lives in the
hub repository (trust_remote_code), so no tiny randomly initialised OpenVLA can be built
offline either. What is tested instead: the pure functions (prompt, 256-bin de-tokenisation
from the end of the vocabulary, q01/q99 un-normalisation with the mask, the unnorm_key
choice) against values worked out from the formulas in ``prismatic/vla/action_tokenizer.py``
and ``OpenVLAForActionPrediction.predict_action``; and the backend's glue around
``generate`` with a stand-in model and processor that have the HF interfaces the backend uses
(``processor(prompt, image)`` -> input_ids/attention_mask/pixel_values, ``model.generate``,
``model.config.text_config.vocab_size``, ``pad_to_multiple_of``, ``norm_stats``).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vla.testing import check_plugin
from vla_openvla import actions as A

VOCAB = 32000  # Llama-2's vocabulary; OpenVLA's text config says 32064 with pad_to_multiple_of 64

BRIDGE = {
    "action": {
        "q01": [-0.03, -0.04, -0.03, -0.1, -0.1, -0.2, 0.0],
        "q99": [0.03, 0.04, 0.03, 0.1, 0.1, 0.2, 1.0],
        "mask": [True, True, True, True, True, True, False],
    }
}


def test_plugin_conformance():
    assert check_plugin("vla-openvla") == {"policies": ["openvla"]}


def test_prompt_format():
    assert A.prompt("Put the red cube in the blue bowl") == "In: What action should the robot take to put the red cube in the blue bowl?\nOut:"
    assert A.prompt("Lift", lowercase=False) == "In: What action should the robot take to Lift?\nOut:"


def test_bins_and_vocabulary():
    centers = A.bin_centers()
    assert centers.shape == (255,)
    assert centers[0] == pytest.approx(-1 + 1 / 255) and centers[-1] == pytest.approx(1 - 1 / 255)
    assert A.action_vocab_size(32064, 64) == VOCAB


def test_token_ids_decode_from_the_end_of_the_vocabulary():
    # token vocab-1 is bin index 0 (the lowest centre); vocab-255 is index 254 (the highest);
    # vocab-256 would be index 255 and is clipped to the last centre, as OpenVLA clips it
    ids = np.array([VOCAB - 1, VOCAB - 2, VOCAB - 128, VOCAB - 255, VOCAB - 256, VOCAB + 5])
    decoded = A.tokens_to_normalized(ids, VOCAB)
    centers = A.bin_centers()
    np.testing.assert_allclose(decoded, [centers[0], centers[1], centers[127], centers[254], centers[254], centers[0]])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=7, max_size=7))
def test_tokenising_then_decoding_lands_within_one_bin(values):
    a = np.array(values)
    back = A.tokens_to_normalized(A.normalized_to_tokens(a, VOCAB), VOCAB)
    assert np.all(np.abs(back - a) <= 1 / 255 + 1e-9)  # half a bin width


def test_unnormalisation_with_q01_q99_and_the_mask():
    stats = BRIDGE["action"]
    normalized = np.array([-1.0, 1.0, 0.0, 0.5, -0.5, 0.25, 0.8])
    out = A.unnormalize(normalized, stats)
    low, high = np.array(stats["q01"]), np.array(stats["q99"])
    expected = 0.5 * (normalized + 1) * (high - low) + low
    np.testing.assert_allclose(out[:6], expected[:6])
    assert out[6] == 0.8  # the gripper is masked out: left normalised
    np.testing.assert_allclose(out[:2], [-0.03, 0.04])  # -1 -> q01, +1 -> q99
    # without a mask every dimension is un-normalised
    no_mask = {k: v for k, v in stats.items() if k != "mask"}
    assert A.unnormalize(normalized, no_mask)[6] == pytest.approx(0.5 * 1.8 * 1.0)
    # without statistics the normalised values come back
    np.testing.assert_allclose(A.unnormalize(normalized, None), normalized)


def test_the_unnorm_key_is_checked():
    stats = {"bridge_orig": BRIDGE, "fractal20220817_data": BRIDGE}
    assert A.select_action_stats(stats, "bridge_orig") is BRIDGE["action"]
    with pytest.raises(A.UnnormKeyError, match="choose one of: bridge_orig, fractal20220817_data"):
        A.select_action_stats(stats, "libero")
    with pytest.raises(A.UnnormKeyError, match="trained on 2 datasets"):
        A.select_action_stats(stats, None)
    assert A.select_action_stats({"only": BRIDGE}, None) is BRIDGE["action"]
    assert A.action_dim(stats, "bridge_orig") == 7 and A.action_dim(None, None) == 7


class _Config:
    class text_config:  # noqa: N801 - mirrors the HF attribute name
        vocab_size = VOCAB + 64

    pad_to_multiple_of = 64
    norm_stats = {"bridge_orig": BRIDGE}


class StandInProcessor:
    """Has the call signature of OpenVLA's PrismaticProcessor; records the prompt it was given."""

    def __init__(self):
        self.prompts = []

    def __call__(self, text, image):
        import torch
        from transformers import BatchFeature

        self.prompts.append(text)
        assert image.size == (224, 224) or image.mode == "RGB"
        ids = torch.tensor([[1, 512, 3869, 29901]])  # ends without the empty token, as Llama tokenises "Out:"
        return BatchFeature({"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": torch.zeros(1, 6, 224, 224)})


class StandInModel:
    """Has OpenVLA's ``generate`` signature and config fields; answers fixed action tokens."""

    config = _Config()

    def __init__(self, action_tokens):
        self.action_tokens = action_tokens
        self.calls = []

    def generate(self, input_ids, pixel_values, attention_mask=None, max_new_tokens=None, do_sample=None):
        import torch

        self.calls.append({"input_ids": input_ids, "attention_mask": attention_mask, "max_new_tokens": max_new_tokens, "do_sample": do_sample})
        return torch.cat([input_ids, torch.tensor([self.action_tokens])], dim=1)


def test_backend_glue_around_generate():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from vla_openvla.backend import OpenVLABackend
    from vla_openvla.config import OpenVLAConfig

    tokens = [VOCAB - 1, VOCAB - 255, VOCAB - 128, VOCAB - 128, VOCAB - 64, VOCAB - 192, VOCAB - 200]
    model, processor = StandInModel(tokens), StandInProcessor()
    backend = OpenVLABackend(OpenVLAConfig(camera="front"))
    backend.attach(model, processor)
    info = backend.info()
    assert (info.action_dim, info.horizon, info.state_dim) == (7, 1, 0)
    assert info.extra["action_space"] == "end_effector_delta"
    obs = {"observation.images.front": np.zeros((120, 160, 3), np.uint8), "task": "Lift the Yellow Cube"}
    (chunk,) = backend.infer([obs])
    assert chunk.shape == (1, 7) and chunk.dtype == np.float32
    assert processor.prompts == ["In: What action should the robot take to lift the yellow cube?\nOut:"]
    call = model.calls[0]
    assert call["max_new_tokens"] == 7 and call["do_sample"] is False
    assert call["input_ids"][0, -1].item() == A.EMPTY_TOKEN_ID  # appended, and the mask grew with it
    assert call["attention_mask"].shape == call["input_ids"].shape
    expected = A.unnormalize(A.tokens_to_normalized(np.array(tokens), VOCAB), BRIDGE["action"])
    np.testing.assert_allclose(chunk[0], expected, rtol=1e-6)
    with pytest.raises(ValueError, match="observation.images.front"):
        backend.infer([{"task": "lift"}])
    with pytest.raises(ValueError, match="task instruction"):
        backend.infer([{"observation.images.front": np.zeros((8, 8, 3), np.uint8)}])
