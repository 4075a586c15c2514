"""Settings of the qwen-vl rewarder (the `plugins.qwen-vl` section of vla.yaml)."""

from __future__ import annotations

import attrs

# Served names of test models (random weights, e.g. the cpu profile's) start so; their scores
# carry details["test_model"] and reports say the numbers mean nothing.
TEST_MODEL_PREFIX = "vla-test/"

DEFAULT_PROMPT = (
    "These are {n_frames} frame(s) from a camera watching a robot arm, oldest first. "
    "The robot's task: \"{goal}\". Looking at the last frame, has the task been completed? "
    "Answer with one word, Yes or No."
)


@attrs.define
class QwenVLConfig:
    backend: str = "openai"  # openai (vLLM or any OpenAI-compatible server) | transformers
    # OpenAI-compatible server: base URL including /v1, and the served model name
    base_url: str = "http://vllm:8000/v1"
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"  # served name (openai) or hub id / folder (transformers)
    api_key: str | None = None  # for servers started with --api-key; VLLM_API_KEY is used when unset
    prompt: str = DEFAULT_PROMPT  # placeholders: {goal}, {n_frames}
    system_prompt: str | None = None
    max_frames: int = 4  # a clip is subsampled evenly to at most this many frames, keeping the last
    max_side: int | None = 448  # downscale so the longer side is at most this many pixels
    image_format: str = "jpeg"  # jpeg | png, for data URLs
    jpeg_quality: int = 90
    top_logprobs: int = 20  # vLLM's default --max-logprobs is 20
    yes_tokens: list[str] = attrs.field(factory=lambda: ["yes", "true"])
    no_tokens: list[str] = attrs.field(factory=lambda: ["no", "false"])
    threshold: float = 0.5
    timeout_s: float = 60.0
    retries: int = 3  # on connection errors, timeouts, 429 and 5xx
    backoff_s: float = 0.5  # doubles after each retry
    startup_timeout_s: float = 300.0  # how long warmup waits for the server to answer /v1/models
    concurrency: int = 4  # parallel requests for /score/batch
    # transformers backend
    device: str = "cuda"
    dtype: str = "bfloat16"  # bfloat16 | float16 | float32 | auto
    min_pixels: int | None = None  # the processor's image resizing bounds (tokens ~ pixels / 784)
    max_pixels: int | None = 448 * 448
