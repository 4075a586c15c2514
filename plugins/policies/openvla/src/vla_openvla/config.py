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
