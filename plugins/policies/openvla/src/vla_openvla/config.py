"""Config for the `openvla` policy backend (`plugins.openvla` in vla.yaml). attrs only."""

from __future__ import annotations

import attrs


@attrs.define
class OpenVLAConfig:
    model: str = "openvla/openvla-7b"  # hub id or a local folder holding the model and its processor
    # Pin the hub revision (a commit hash) in production: trust_remote_code runs the model
    # repository's Python, so an unpinned revision runs whatever was pushed last.
    revision: str | None = None
    # Which dataset's action statistics un-normalise the output (OpenVLA's `unnorm_key`),
    # e.g. "bridge_orig"; None works only for a model trained on one dataset.
    unnorm_key: str | None = "bridge_orig"
    camera: str = "front"  # the lab camera OpenVLA sees (it reads one image)
    image_size: int = 224  # the processor resizes to this; advertised to clients as the frame shape
    device: str = "auto"  # "auto": cuda when available, else cpu
    dtype: str = "bfloat16"
    attn_implementation: str | None = None  # e.g. "flash_attention_2" when flash-attn is installed
    lowercase_instruction: bool = True
    # transformers: the model in this process (GPU). vllm: ask a vLLM server that serves the model
    # (OpenVLAForActionPrediction, vLLM >= 0.32) over its OpenAI API; this process then needs only
    # the model's config.json (``model``: a folder or hub id) for the action statistics.
    backend: str = "transformers"  # transformers | vllm
    vllm_url: str = "http://vllm:8000/v1"
    served_model_name: str | None = None  # vLLM's --served-model-name; default: model
    api_key: str | None = None  # for a vLLM started with --api-key; VLLM_API_KEY is used when unset
    timeout_s: float = 30.0
    retries: int = 2  # on connection errors, timeouts, 429 and 5xx
