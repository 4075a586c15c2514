"""Tiny, randomly initialised test models that vLLM's CPU build can serve, made from a config.

No hub: the tokenizer is a byte-level BPE (the kind Qwen2 uses) trained here on a few sentences,
with Qwen's special tokens and a chat template that lays images out as Qwen's does. The sizes
are the smallest vLLM's CPU attention accepts (head size 64; 16 is refused). Weights are random
(seeded), so what the model answers means nothing: it exercises the serving path, not judgement.

    python test_models.py qwen2-vl DIR     # writes config, weights, tokenizer and processor
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
           "<|image_pad|>", "<|video_pad|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
    "{% if c['type'] in ('image', 'image_url') %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "Yes yes YES No no NO True true False false",
    "These are frames from a camera watching a robot arm, oldest first. The robot's task: lift the yellow cube. "
    "Looking at the last frame, has the task been completed? Answer with one word, Yes or No.",
    "push the red cube to the left, put the cube in the bowl, pick place lift push",
    "user assistant system",
] * 10
# Images are resized to at most 112x112 pixels: 16 tokens each after the 2x2 merge.
MIN_PIXELS, MAX_PIXELS = 56 * 56, 112 * 112


def qwen2_vl(folder: str, seed: int = 0) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor, Qwen2VLProcessor

    try:
        from transformers import Qwen2TokenizerFast
    except ImportError:  # transformers 5 has one (fast) tokenizer class per model
        from transformers import Qwen2Tokenizer as Qwen2TokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=512, special_tokens=SPECIAL,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = Qwen2TokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token=None, bos_token=None)
    tokenizer.chat_template = CHAT_TEMPLATE
    parts = {"image_processor": Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)}
    try:  # transformers >= 4.54 wants a video processor too
        from transformers import Qwen2VLVideoProcessor

        parts["video_processor"] = Qwen2VLVideoProcessor()
    except ImportError:
        pass
    processor = Qwen2VLProcessor(tokenizer=tokenizer, chat_template=CHAT_TEMPLATE, **parts)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL}
    config = Qwen2VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048,
                         rope_scaling={"type": "mrope", "mrope_section": [8, 12, 12]}, tie_word_embeddings=False,
                         eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=1, embed_dim=128, hidden_size=128, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, in_channels=3),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    answer_bias(model, tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


ANSWERS = {"yes", "no", "true", "false"}


def answer_bias(model, tokenizer, strength: float = 0.5) -> None:
    """Make the answer words likely, whatever the input, so they are among the top logprobs.

    Random weights spread the next token's probability evenly over the vocabulary, so "Yes"
    and "No" would rarely be among the 20 top logprobs a server returns. Every token embedding
    gets a constant first component, which survives the one layer's small residual updates and
    the final norm as a large, positive feature; only the answer tokens' output rows read it.
    Which of yes and no wins still depends on the rest of the hidden state, that is on the input."""
    import torch

    answers = [i for i in range(len(tokenizer)) if tokenizer.decode([i]).strip().lower() in ANSWERS]
    with torch.no_grad():
        model.get_input_embeddings().weight[:, 0] = 1.0
        head = model.get_output_embeddings().weight
        head[:, 0] = 0.0
        head[answers, 0] = strength


MAKERS = {"qwen2-vl": qwen2_vl}


def make(kind: str, folder: str) -> bool:
    """Make test model ``kind`` in ``folder`` unless one is there; True when it was made now.

    Written to a temporary folder beside it and renamed, so a start that is killed half-way
    leaves no half-written model for the next start to serve."""
    if kind not in MAKERS:
        raise SystemExit(f"unknown test model {kind!r}; known: {', '.join(MAKERS)}")
    if os.path.isfile(os.path.join(folder, "config.json")):
        return False
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".making-", dir=parent)
    os.chmod(tmp, 0o755)  # mkdtemp makes it private to its maker
    try:
        MAKERS[kind](tmp)
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return True


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    made = make(sys.argv[1], sys.argv[2])
    print(f"{sys.argv[2]}: {'made' if made else 'already there'}")
