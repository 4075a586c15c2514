"""The qwen-vl rewarder: frames + goal -> a prompt -> P(yes) / (P(yes) + P(no))."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from vla.rewarder import Score
from vla.rewarding.errors import BackendError

from vla_qwen_vl.config import TEST_MODEL_PREFIX, QwenVLConfig
from vla_qwen_vl.frames import render_prompt, subsample, to_data_url, to_pil
from vla_qwen_vl.scoring import score_from_top_logprobs

BACKENDS = ("openai", "transformers")


def _check(config: QwenVLConfig) -> None:
    if config.backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {config.backend!r}")
    if not 0.0 <= config.threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {config.threshold}")
    if config.max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {config.max_frames}")
    if not config.yes_tokens or not config.no_tokens:
        raise ValueError("yes_tokens and no_tokens must not be empty")
    render_prompt(config.prompt, "check", 1)


class QwenVLRewarder:
    def __init__(self, config: QwenVLConfig | None = None, backend: Any = None):
        self.config = config = config or QwenVLConfig()
        _check(config)
        self.threshold = float(config.threshold)
        if backend is not None:
            self.backend = backend
        elif config.backend == "openai":
            from vla_qwen_vl.openai_backend import OpenAIChatBackend

            self.backend = OpenAIChatBackend(config.base_url, config.model, config.api_key, config.timeout_s,
                                             config.retries, config.backoff_s, config.top_logprobs)
        else:
            from vla_qwen_vl.transformers_backend import TransformersBackend

            self.backend = TransformersBackend(config.model, config.device, config.dtype, config.min_pixels,
                                               config.max_pixels, config.yes_tokens, config.no_tokens)
        self.thread_safe = bool(getattr(self.backend, "thread_safe", False))

    def warmup(self) -> None:
        wait = getattr(self.backend, "wait_ready", None)
        if callable(wait):
            wait(self.config.startup_timeout_s)

    def _images(self, frames: list[Any]):
        if isinstance(frames, np.ndarray) and frames.ndim == 3:
            frames = [frames]
        frames = list(frames)
        if not frames:
            raise ValueError("expected at least one frame")
        return [to_pil(f, self.config.max_side) for f in subsample(frames, self.config.max_frames)]

    def score(self, frames: list[Any], goal: str) -> Score:
        c = self.config
        images = self._images(frames)
        prompt = render_prompt(c.prompt, goal, len(images))
        details: dict[str, Any] = {"frames_sent": len(images), "model": c.model, "backend": c.backend}
        if c.model.startswith(TEST_MODEL_PREFIX):
            details["test_model"] = c.model  # random weights: the score exercises the path, nothing more
        if c.backend == "openai" or hasattr(self.backend, "first_token_top_logprobs"):
            urls = [to_data_url(im, c.image_format, c.jpeg_quality) for im in images]
            top, answer = self.backend.first_token_top_logprobs(urls, prompt, c.system_prompt)
            try:
                value, figures = score_from_top_logprobs(top, c.yes_tokens, c.no_tokens)
            except ValueError as exc:
                raise BackendError("no_answer_token", f"model {c.model!r} answered {answer!r}: {exc}") from None
            details.update(figures, answer=answer, top_logprobs=[[t, round(lp, 4)] for t, lp in top[:5]])
        else:
            out = self.backend.yes_no(images, prompt, c.system_prompt)
            total = out["p_yes"] + out["p_no"]
            if total <= 0.0:
                raise BackendError("no_answer_token", f"model {c.model!r} gives yes and no zero probability")
            value = out["p_yes"] / total
            details.update(p_yes=out["p_yes"], p_no=out["p_no"], p_other=max(0.0, 1.0 - total),
                           top=[[t, round(p, 4)] for t, p in out["top"]])
        value = min(1.0, max(0.0, float(value)))
        return Score(score=value, success=value >= self.threshold, details=details)

    def score_batch(self, items: list[tuple[list[Any], str]]) -> list[Score]:
        """Several clips at once: concurrent requests for the server backend (vLLM batches them)."""
        if not self.thread_safe or len(items) == 1:
            return [self.score(frames, goal) for frames, goal in items]
        with ThreadPoolExecutor(max_workers=max(1, self.config.concurrency)) as pool:
            return list(pool.map(lambda item: self.score(*item), items))
