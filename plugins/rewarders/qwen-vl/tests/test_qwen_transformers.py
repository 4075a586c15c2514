"""The qwen-vl rewarder's in-process transformers backend on a tiny, randomly initialised Qwen2-VL.

No hub downloads: the test trains a byte-level BPE tokenizer (the kind Qwen2 uses) on a few
sentences with the ``tokenizers`` library, wraps it as a ``Qwen2TokenizerFast`` with Qwen's
special tokens (<|im_start|>, <|vision_start|>, <|image_pad|>, ...) and a minimal chat
template that lays out images the way Qwen's does, builds a ``Qwen2VLProcessor`` from it and a
``Qwen2VLImageProcessor``, builds a ``Qwen2VLForConditionalGeneration`` from a one-layer config,
and saves both to a folder. The backend then loads that folder through the same
``from_pretrained`` calls it uses for the real checkpoint.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "Yes yes YES No no NO True true False false",
    "No",
    "Yes",
    "These are frames from a camera watching a robot arm, oldest first. The robot's task: lift the yellow cube. "
    "Looking at the last frame, has the task been completed? Answer with one word, Yes or No.",
    "user assistant system",
] * 10


def build_processor():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast, Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = Qwen2TokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token=None, bos_token=None)
    tokenizer.chat_template = TEMPLATE
    image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112)
    return Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                            video_processor=Qwen2VLVideoProcessor(), chat_template=TEMPLATE)


def build_model(tokenizer, zero_head: bool):
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL}
    config = Qwen2VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, tie_word_embeddings=False),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config).eval()
    if zero_head:  # every next token equally likely: the score is then a count of token variants
        with torch.no_grad():
            model.lm_head.weight.zero_()
    return model


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    processor = build_processor()
    out = {}
    for name, zero in (("random", False), ("uniform", True)):
        folder = tmp_path_factory.mktemp(name)
        build_model(processor.tokenizer, zero).save_pretrained(folder)
        processor.save_pretrained(folder)
        out[name] = folder
    return out


def make_rewarder(folder):
    from vla_qwen_vl.config import QwenVLConfig
    from vla_qwen_vl.rewarder import QwenVLRewarder

    return QwenVLRewarder(QwenVLConfig(backend="transformers", model=str(folder), device="cpu", dtype="float32",
                                       max_pixels=112 * 112, yes_tokens=["yes"], no_tokens=["no"]))


def clip(seed):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(2)]


def test_uniform_model_scores_by_counting_answer_tokens(checkpoints):
    r = make_rewarder(checkpoints["uniform"])
    tokenizer = r.backend.processor.tokenizer
    spelled_yes = {tokenizer.decode([i]) for i in r.backend.yes_ids}
    spelled_no = {tokenizer.decode([i]) for i in r.backend.no_ids}
    assert {"Yes", " yes"} <= spelled_yes and {"No", " no"} <= spelled_no
    assert all(s.strip().lower() == "yes" for s in spelled_yes) and all(s.strip().lower() == "no" for s in spelled_no)
    score = r.score(clip(0), "lift the yellow cube")
    n_yes, n_no = len(r.backend.yes_ids), len(r.backend.no_ids)
    assert score.score == pytest.approx(n_yes / (n_yes + n_no), abs=1e-5)
    assert score.details["p_yes"] == pytest.approx(n_yes / len(tokenizer), rel=1e-4)


def test_random_model_score_matches_an_independent_forward_pass(checkpoints):
    r = make_rewarder(checkpoints["random"])
    frames = clip(1)
    score = r.score(frames, "lift the yellow cube")
    assert 0.0 <= score.score <= 1.0 and score.details["frames_sent"] == 2 and score.details["backend"] == "transformers"

    # recompute by hand with the transformers API the backend is expected to use
    from PIL import Image
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    from vla_qwen_vl.config import DEFAULT_PROMPT

    processor = AutoProcessor.from_pretrained(checkpoints["random"], max_pixels=112 * 112)
    model = Qwen2VLForConditionalGeneration.from_pretrained(checkpoints["random"]).eval()
    content = [{"type": "image"}, {"type": "image"},
               {"type": "text", "text": DEFAULT_PROMPT.format(goal="lift the yellow cube", n_frames=2)}]
    text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    inputs = processor(text=[text], images=[Image.fromarray(f) for f in frames], return_tensors="pt")
    assert (inputs["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum() > 0
    with torch.no_grad():
        probs = torch.softmax(model(**inputs).logits[0, -1].float(), dim=-1)
    p_yes, p_no = probs[r.backend.yes_ids].sum().item(), probs[r.backend.no_ids].sum().item()
    assert score.score == pytest.approx(p_yes / (p_yes + p_no), rel=1e-4)
    # the pixels reach the model: other frames, another answer
    assert r.score(clip(2), "lift the yellow cube").score != pytest.approx(score.score, rel=1e-6)


def test_cuda_requested_without_gpu_is_a_clear_error(checkpoints):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from vla_qwen_vl.config import QwenVLConfig
    from vla_qwen_vl.rewarder import QwenVLRewarder

    with pytest.raises(RuntimeError, match="no GPU is visible"):
        QwenVLRewarder(QwenVLConfig(backend="transformers", model=str(checkpoints["random"])))
