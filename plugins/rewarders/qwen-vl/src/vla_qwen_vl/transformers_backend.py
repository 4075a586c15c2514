"""Running Qwen2-VL / Qwen2.5-VL in this process with transformers (one GPU, no vLLM).

One forward pass over the prompt gives the next-token distribution; the probabilities of
every vocabulary entry that spells yes or no (any case, with or without a leading space)
are summed, so no top-k cut-off can hide one of them.
"""

from __future__ import annotations

import logging
from typing import Any

from vla_qwen_vl.scoring import normalise_token

log = logging.getLogger("vla.qwen_vl")

DTYPES = ("bfloat16", "float16", "float32", "auto")


def model_class(model_type: str):
    import transformers

    names = {
        "qwen2_vl": "Qwen2VLForConditionalGeneration",
        "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    }
    if model_type not in names:
        raise ValueError(f"model type {model_type!r} is not Qwen2-VL or Qwen2.5-VL (supported: {sorted(names)})")
    cls = getattr(transformers, names[model_type], None)
    if cls is None:
        raise ValueError(f"this transformers ({transformers.__version__}) has no {names[model_type]}; upgrade it")
    return cls


def answer_token_ids(tokenizer, words: list[str]) -> list[int]:
    """Ids of single tokens that spell one of ``words`` in any usual variant."""
    wanted = {normalise_token(w) for w in words}
    ids: set[int] = set()
    for word in words:
        for variant in {word, word.lower(), word.capitalize(), word.upper()}:
            for text in (variant, " " + variant):
                tokens = tokenizer.encode(text, add_special_tokens=False)
                if len(tokens) == 1 and normalise_token(tokenizer.decode(tokens)) in wanted:
                    ids.add(tokens[0])
    return sorted(ids)


class TransformersBackend:
    thread_safe = False  # one model, one forward pass at a time

    def __init__(self, model: str, device: str = "cuda", dtype: str = "bfloat16",
                 min_pixels: int | None = None, max_pixels: int | None = None,
                 yes: list[str] = ("yes",), no: list[str] = ("no",)):
        import torch
        from transformers import AutoConfig, AutoProcessor

        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("the transformers backend was asked for CUDA, but no GPU is visible; "
                               "set plugins.qwen-vl.device: cpu (slow) or use the openai backend")
        config = AutoConfig.from_pretrained(model)
        cls = model_class(config.model_type)
        torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
        log.info("loading %s (%s) on %s as %s", model, cls.__name__, device, dtype)
        self.model = cls.from_pretrained(model, dtype=torch_dtype).to(device).eval()
        kwargs = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v}
        self.processor = AutoProcessor.from_pretrained(model, **kwargs)
        self.device = device
        tokenizer = self.processor.tokenizer
        self.yes_ids = answer_token_ids(tokenizer, list(yes))
        self.no_ids = answer_token_ids(tokenizer, list(no))
        if not self.yes_ids or not self.no_ids:
            raise ValueError(f"the tokenizer of {model} has no single token for yes ({list(yes)}) or no ({list(no)})")

    def yes_no(self, images: list[Any], prompt: str, system_prompt: str | None = None, top_k: int = 5) -> dict:
        """P(yes), P(no) and the top next tokens for the prompt with the images (PIL) before it."""
        import torch

        content = [{"type": "image"} for _ in images] + [{"type": "text", "text": prompt}]
        messages = []
        if system_prompt:
            messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
        messages.append({"role": "user", "content": content})
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = self.processor(text=[text], images=images, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            logits = self.model(**inputs).logits[0, -1].float()
        probs = torch.softmax(logits, dim=-1)
        top = torch.topk(probs, k=min(top_k, probs.numel()))
        tokenizer = self.processor.tokenizer
        return {
            "p_yes": float(probs[self.yes_ids].sum()),
            "p_no": float(probs[self.no_ids].sum()),
            "top": [(tokenizer.decode([int(i)]), float(p)) for p, i in zip(top.values, top.indices)],
        }
